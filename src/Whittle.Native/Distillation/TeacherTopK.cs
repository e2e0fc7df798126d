using Whittle.Native.Tensors;

namespace Whittle.Native.Distillation;

/// <summary>
/// Builds the top-k teacher summary that <see cref="IBackend.Distillation"/> accepts (<see cref="DistillTeacher.TopK"/>)
/// from full teacher logits on the host. Policy: log-probabilities at the loss's temperature τ computed in double;
/// the k largest by value, ties broken by the smaller id (so the summary is deterministic); the tail mass is summed
/// over the ids left out, not taken as 1 - Σ top (which would lose a small tail to rounding).
/// </summary>
public static class TeacherTopK
{
    /// <summary>logits (N, V) f32 (any device; read to the host) → (log-probs (N, k) f32, ids (N, k) i32, tail (N) f32), all new CPU tensors.</summary>
    public static (Tensor LogProbs, Tensor Ids, Tensor Tail) FromLogits(Tensor logits, int k, float temperature)
    {
        var (n, v) = ArgCheck.Matrix(logits, nameof(logits));
        if (k <= 0 || k > v) throw new ArgumentOutOfRangeException(nameof(k), $"top-k: k must be in [1, {v}] (the vocabulary), got {k}");
        if (!(temperature > 0) || !float.IsFinite(temperature)) throw new ArgumentOutOfRangeException(nameof(temperature), $"temperature must be a positive finite number, got {temperature}");
        var all = logits.ToFloatArray();
        var lp = new float[(long)n * k]; var ids = new int[(long)n * k]; var tail = new float[n];
        var logq = new double[v]; var order = new int[v];
        for (int i = 0; i < n; i++)
        {
            var row = new ReadOnlySpan<float>(all, i * v, v);
            double max = double.NegativeInfinity;
            for (int j = 0; j < v; j++) max = Math.Max(max, row[j] / (double)temperature);
            double z = 0;
            for (int j = 0; j < v; j++) z += Math.Exp(row[j] / (double)temperature - max);
            double lse = max + Math.Log(z);
            for (int j = 0; j < v; j++) { logq[j] = row[j] / (double)temperature - lse; order[j] = j; }
            Array.Sort(order, (a, b) => logq[a] != logq[b] ? logq[b].CompareTo(logq[a]) : a.CompareTo(b));
            double rest = 0;
            for (int r = k; r < v; r++) rest += Math.Exp(logq[order[r]]);
            for (int r = 0; r < k; r++) { ids[(long)i * k + r] = order[r]; lp[(long)i * k + r] = (float)logq[order[r]]; }
            tail[i] = (float)rest;
        }
        return (Tensor.FromArray(lp, n, k), Tensor.FromArray(ids, n, k), Tensor.FromArray(tail, n));
    }
}
