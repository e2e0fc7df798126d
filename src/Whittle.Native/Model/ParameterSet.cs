using Whittle.Native.Tensors;

namespace Whittle.Native.Model;

/// <summary>One named parameter inside the flat buffer.</summary>
public sealed record ParameterInfo(string Name, int[] Shape, long Offset, bool Decay)
{
    public long Count => Tensor.Numel(Shape);
}

/// <summary>
/// All parameters of a model in ONE flat f32 buffer (P), each a contiguous view into it, laid out weight-decayed
/// tensors first (matrices, embeddings) and then the rest (biases, layernorms): AdamW is one fused launch over the
/// buffer with a single split point, and the global gradient norm is one reduction over the flat gradient buffer.
/// </summary>
public sealed class ParameterSet : IDisposable
{
    readonly Dictionary<string, ParameterInfo> _byName;
    Tensor? _grad;

    public ParameterSet(IBackend backend, IEnumerable<(string Name, int[] Shape)> layout)
    {
        Backend = backend;
        // Decayed first (stable order within each group) so the no-decay mask is one index.
        var items = layout.ToList();
        var ordered = items.Where(p => p.Shape.Length >= 2).Concat(items.Where(p => p.Shape.Length < 2)).ToList();
        var entries = new List<ParameterInfo>(ordered.Count);
        long offset = 0;
        foreach (var (name, shape) in ordered)
        {
            bool decay = shape.Length >= 2;
            entries.Add(new ParameterInfo(name, shape, offset, decay));
            offset += Tensor.Numel(shape);
            if (decay) DecayCount = offset;
        }
        Entries = entries;
        Count = offset;
        _byName = entries.ToDictionary(e => e.Name);
        Flat = backend.Zeros(DType.F32, checked((int)Count));
    }

    public IBackend Backend { get; }
    public IReadOnlyList<ParameterInfo> Entries { get; }
    /// <summary>Total number of parameters P.</summary>
    public long Count { get; }
    /// <summary>Elements [0, DecayCount) take weight decay.</summary>
    public long DecayCount { get; }
    /// <summary>(P) every parameter.</summary>
    public Tensor Flat { get; }
    /// <summary>(P) every gradient, or null before <see cref="EnsureGrad"/>.</summary>
    public Tensor? FlatGrad => _grad;

    public bool Contains(string name) => _byName.ContainsKey(name);
    public ParameterInfo Info(string name) => _byName.TryGetValue(name, out var p) ? p : throw new KeyNotFoundException($"no parameter named '{name}'");

    public Tensor this[string name] => View(Flat, Info(name));

    /// <summary>The gradient view of a parameter (the gradient buffer must exist).</summary>
    public Tensor Grad(string name) => View(_grad ?? throw new InvalidOperationException("gradients have not been allocated"), Info(name));

    public Tensor EnsureGrad() => _grad ??= Backend.Zeros(DType.F32, checked((int)Count));

    public void ZeroGrad() { if (_grad is not null) Backend.Fill(_grad, 0f); }

    static Tensor View(Tensor flat, ParameterInfo p)
    {
        var t = flat.AsStrided(p.Shape, Tensor.ContiguousStrides(p.Shape), p.Offset);
        t.Name = p.Name;
        return t;
    }

    public void Dispose()
    {
        Flat.Dispose();
        _grad?.Dispose();
    }
}
