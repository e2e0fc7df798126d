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
/// For bf16 mixed precision (<see cref="Precision"/>) it also owns one flat bf16 buffer mirroring a contiguous run of
/// weight matrices, refreshed from the f32 masters by one conversion.
/// </summary>
public sealed class ParameterSet : IDisposable
{
    readonly Dictionary<string, ParameterInfo> _byName;
    Tensor? _grad;
    Tensor? _lowPrecision;     // (end - start) bf16: Flat[start, end) rounded to nearest even
    long _lowStart, _lowEnd;

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
    public ParameterInfo Info(string name) =>
        _byName.TryGetValue(name, out var p) ? p : throw new KeyNotFoundException($"no parameter named '{name}'");

    public Tensor this[string name] => View(Flat, Info(name));

    /// <summary>The gradient view of a parameter (the gradient buffer must exist).</summary>
    public Tensor Grad(string name) => View(_grad ?? throw new InvalidOperationException("gradients have not been allocated"), Info(name));

    public Tensor EnsureGrad() => _grad ??= Backend.Zeros(DType.F32, checked((int)Count));

    public void ZeroGrad() { if (_grad is not null) Backend.Fill(_grad, 0f); }

    // ---------------------------------------------------------------- bf16 copies of the weight matrices

    /// <summary>The flat bf16 copy, or null when low precision is off.</summary>
    public Tensor? LowPrecision => _lowPrecision;

    /// <summary>
    /// Allocates the bf16 copy of the parameters <paramref name="isCopied"/> selects and fills it from the masters.
    /// They must form one contiguous run of the layout (no parameter left out in between), so the copy is one buffer and
    /// <see cref="RefreshLowPrecision"/> one conversion. Idempotent.
    /// </summary>
    public void EnableLowPrecision(Func<ParameterInfo, bool> isCopied)
    {
        if (_lowPrecision is not null) return;
        var chosen = Entries.Where(isCopied).ToList();
        if (chosen.Count == 0) throw new ArgumentException("no parameter selected for a bf16 copy");
        long start = chosen.Min(e => e.Offset), end = chosen.Max(e => e.Offset + e.Count);
        if (Entries.FirstOrDefault(e => e.Offset >= start && e.Offset < end && !isCopied(e)) is { } gap)
            throw new ArgumentException($"the parameters with a bf16 copy are not contiguous in the layout: '{gap.Name}' lies " +
                $"between them");
        (_lowStart, _lowEnd) = (start, end);
        _lowPrecision = Backend.Empty(DType.BF16, checked((int)(end - start)));
        RefreshLowPrecision();
    }

    /// <summary>Frees the bf16 copy (back to f32 compute).</summary>
    public void DisableLowPrecision()
    {
        _lowPrecision?.Dispose();
        _lowPrecision = null;
    }

    /// <summary>Re-rounds the bf16 copy from the f32 masters; call after anything writes <see cref="Flat"/> (optimizer step, load). No-op
    /// when off.</summary>
    public void RefreshLowPrecision()
    {
        if (_lowPrecision is null) return;
        Backend.Copy(Flat.Narrow(0, (int)_lowStart, (int)(_lowEnd - _lowStart)), _lowPrecision);
    }

    /// <summary>The bf16 copy of one parameter (same shape as <c>this[name]</c>).</summary>
    public Tensor LowPrecisionOf(string name)
    {
        var p = Info(name);
        if (_lowPrecision is null || p.Offset < _lowStart || p.Offset + p.Count > _lowEnd)
            throw new InvalidOperationException($"parameter '{name}' has no bf16 copy");
        var t = _lowPrecision.AsStrided(p.Shape, Tensor.ContiguousStrides(p.Shape), p.Offset - _lowStart);
        t.Name = p.Name;
        return t;
    }

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
        _lowPrecision?.Dispose();
    }
}
