using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Training;

/// <summary>
/// AdamW over a model's flat parameter buffer: first and second moments are flat (P) buffers on the same device, the
/// step is one fused backend call, and weight decay skips the trailing no-decay block (biases, norms) of the layout.
/// Gradient clipping by global norm is folded into the same call as a gradient scale (no extra pass over P).
/// </summary>
public sealed class AdamWOptimizer : IDisposable
{
    public AdamWOptimizer(ParameterSet parameters, AdamWSettings settings)
    {
        Parameters = parameters;
        Settings = settings;
        M = parameters.Backend.Zeros(DType.F32, checked((int)parameters.Count));
        V = parameters.Backend.Zeros(DType.F32, checked((int)parameters.Count));
    }

    public ParameterSet Parameters { get; }
    public AdamWSettings Settings { get; }
    /// <summary>(P) first moment.</summary>
    public Tensor M { get; }
    /// <summary>(P) second moment.</summary>
    public Tensor V { get; }
    /// <summary>Steps taken so far.</summary>
    public int Step { get; set; }

    /// <summary>The global L2 norm of the accumulated gradient.</summary>
    public double GradNorm() =>
        Math.Sqrt(Parameters.Backend.SumOfSquares(Parameters.FlatGrad ?? throw new InvalidOperationException("no gradients")));

    /// <summary>
    /// One update at learning rate <paramref name="lr"/>; when <paramref name="clipNorm"/> &gt; 0 and the gradient's
    /// global norm exceeds it, the gradient is scaled down to that norm. Returns the pre-clipping norm.
    /// </summary>
    public double Update(float lr, float clipNorm, double? gradNorm = null)
    {
        double norm = gradNorm ?? GradNorm();
        float scale = clipNorm > 0 && norm > clipNorm ? (float)(clipNorm / norm) : 1f;
        Step++;
        Parameters.Backend.AdamW(
            Parameters.Flat, Parameters.FlatGrad!, M, V, Parameters.DecayCount, Settings with { LearningRate = lr }, Step, scale);
        Parameters.RefreshLowPrecision();   // bf16 training: the next forward must see the updated masters
        return norm;
    }

    public void Dispose() { M.Dispose(); V.Dispose(); }
}
