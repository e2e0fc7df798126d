using Whittle.Native.Tensors;

namespace Whittle.Native.Autograd;

/// <summary>
/// The autograd tape, micrograd-style: each op run while recording appends a closure that knows how to push its
/// output's gradient to its inputs; <see cref="Backward"/> replays them in reverse. The tape owns every tensor the
/// ops allocate (activations, saved statistics, gradients) and frees them on <see cref="Dispose"/>.
///
/// No-grad mode (<see cref="NoGrad"/>, or a tape created with recording off) records nothing and keeps nothing:
/// <see cref="Release"/> frees an activation as soon as the model is done with it, so evaluation and teacher
/// forwards hold only a layer's working set.
/// </summary>
public sealed class Tape : IDisposable
{
    readonly List<Action> _backward = new();
    readonly List<Tensor> _owned = new();
    int _noGradDepth;

    public Tape(IBackend backend, bool recording = true)
    {
        Backend = backend;
        if (!recording) _noGradDepth = 1;
    }

    public IBackend Backend { get; }
    public bool IsRecording => _noGradDepth == 0;
    public int RecordedOps => _backward.Count;
    /// <summary>Tensors the tape currently holds (activations, scratch, gradients).</summary>
    public int OwnedTensors => _owned.Count;

    /// <summary>Until the returned scope is disposed, ops record nothing.</summary>
    public IDisposable NoGrad() { _noGradDepth++; return new Scope(this); }

    sealed class Scope(Tape tape) : IDisposable
    {
        bool _done;
        public void Dispose() { if (!_done) { _done = true; tape._noGradDepth--; } }
    }

    /// <summary>Allocates a tensor owned by this tape.</summary>
    public Tensor Empty(DType dtype, params int[] shape) => Own(Backend.Empty(dtype, shape));
    public Tensor Zeros(DType dtype, params int[] shape) => Own(Backend.Zeros(dtype, shape));

    internal Tensor Own(Tensor t) { _owned.Add(t); return t; }

    /// <summary>A Var for a freshly computed tensor; it requires a gradient when recording and any input does.</summary>
    internal Var Output(Tensor data, params Var[] inputs)
    {
        bool requires = IsRecording && inputs.Any(v => v.RequiresGrad);
        return new Var(data, requires);
    }

    internal void Record(Action backward)
    {
        if (IsRecording) _backward.Add(backward);
    }

    /// <summary>
    /// Declares that the model no longer needs <paramref name="v"/>. When not recording, its memory is freed now;
    /// when recording it stays (the backward pass may need it) until the tape is disposed.
    /// </summary>
    public void Release(params Var[] vars)
    {
        if (IsRecording) return;
        foreach (var v in vars) ReleaseScratch(v.Data);   // parameters and views are not the tape's: skipped
    }

    /// <summary>
    /// Frees the data of tape-owned values now, recording or not. Unlike <see cref="Release"/> the caller vouches that no
    /// recorded backward step reads them: e.g. a layernorm output consumed only by a <see cref="Ops.LinearBf16"/>, which
    /// kept its own bf16 copy (the layernorm's backward reads its input, not its output). Gradients are unaffected.
    /// </summary>
    public void Discard(params Var[] vars)
    {
        foreach (var v in vars) ReleaseScratch(v.Data);
    }

    /// <summary>Frees tape-owned tensors that nothing will read again, recording or not (op-internal scratch).</summary>
    internal void ReleaseScratch(params Tensor[] tensors)
    {
        foreach (var t in tensors)
        {
            int i = _owned.LastIndexOf(t);
            if (i < 0) continue;
            _owned[i].Dispose();
            _owned.RemoveAt(i);
        }
    }

    /// <summary>Seeds d loss / d loss = 1 and replays every recorded closure in reverse.</summary>
    public void Backward(Var loss)
    {
        if (loss.Data.Count != 1) throw new ArgumentException($"Backward needs a scalar loss, got {loss.Data.Describe()}");
        if (!loss.RequiresGrad)
            throw new InvalidOperationException("the loss does not depend on anything that requires a gradient (was it computed in " +
            "no-grad mode?)");
        Backend.Fill(loss.GradOrCreate(this), 1f);
        for (int i = _backward.Count - 1; i >= 0; i--) _backward[i]();
        _backward.Clear();
    }

    /// <summary>Replays the tape from any output with a given upstream gradient (same shape): used by gradient checks and by losses built
    /// outside the tape.</summary>
    public void Backward(Var output, Tensor upstream)
    {
        if (!output.RequiresGrad) throw new InvalidOperationException("the output does not depend on anything that requires a gradient");
        Backend.Copy(upstream, output.GradOrCreate(this));
        for (int i = _backward.Count - 1; i >= 0; i--) _backward[i]();
        _backward.Clear();
    }

    public void Dispose()
    {
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
        _backward.Clear();
    }
}
