using Whittle.Native.Tensors;

namespace Whittle.Native.Autograd;

/// <summary>
/// A tensor on the tape: its value and, lazily, its gradient (same shape, same device, accumulated into).
/// A view Var (q, k, v inside the fused qkv buffer) has no gradient of its own: its gradient is the same view of its
/// parent's gradient, so backward ops writing through the view land in the parent's buffer with no copy.
/// </summary>
public sealed class Var
{
    readonly Func<Tensor, Tensor>? _view;
    readonly Var? _parent;
    Tensor? _grad;

    internal Var(Tensor data, bool requiresGrad) { Data = data; RequiresGrad = requiresGrad; }

    internal Var(Var parent, Func<Tensor, Tensor> view)
    {
        _parent = parent; _view = view;
        Data = view(parent.Data);
        RequiresGrad = parent.RequiresGrad;
    }

    public Tensor Data { get; }
    public bool RequiresGrad { get; }

    /// <summary>The accumulated gradient, or null if nothing has flowed into it yet.</summary>
    public Tensor? Grad => _parent is null ? _grad : _parent.Grad is { } g ? _view!(g) : null;

    /// <summary>A parameter: its gradient lives in a caller-owned buffer (a view into the flat gradient buffer).</summary>
    public static Var Parameter(Tensor data, Tensor grad)
    {
        if (!data.SameShape(grad))
            throw new ArgumentException($"parameter {data.Describe()} and its gradient {grad.Describe()} differ in shape");
        return new Var(data, true) { _grad = grad };
    }

    /// <summary>A constant input: no gradient.</summary>
    public static Var Constant(Tensor data) => new(data, false);

    /// <summary>The gradient buffer, created as zeros on first use (owned by the tape).</summary>
    internal Tensor GradOrCreate(Tape tape)
    {
        if (_parent is not null) return _view!(_parent.GradOrCreate(tape));
        if (_grad is null)
        {
            _grad = tape.Backend.Zeros(Data.DType, Data.ShapeArray);
            tape.Own(_grad);
        }
        return _grad;
    }

    /// <summary>Hands an existing buffer over as this Var's gradient when none exists yet (saves a copy); false if one exists.</summary>
    internal bool TryAdoptGrad(Tensor grad)
    {
        if (_parent is not null || _grad is not null) return false;
        _grad = grad;
        return true;
    }

    public override string ToString() => $"Var {Data}";
}
