using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Data;
using Whittle.Native.Model;
using Whittle.Native.Tensors;
using Whittle.Native.Training;

namespace Whittle.Native.Tests.Distillation;

/// <summary>
/// Float64 references for distillation and evaluation tests, computed from the models' own Forward logits (whose
/// agreement with PyTorch is the fixture tests' business) or from stored logits: log-softmax in double, the mean and the
/// summed cross-entropy, the mean τ²·KL(q‖p) over the rows, and how far a teacher cache's f16 log-probabilities can move
/// that KL. Rows are (B·T) of V, row-major.
/// </summary>
static class KdReference
{
    /// <summary>The first micro-batch a training run with this batch shape and seed trains on (Trainer.TrainingBatches).</summary>
    public static (int[] Inputs, int[] Targets) FirstBatch(string dataDir, int b, int t, ulong seed)
    {
        using var data = TokenDataset.Open(dataDir);
        var loader = Trainer.TrainingBatches(data, b, t, seed);
        loader.TryNext(out var batch);
        var inputs = new int[b * t]; var targets = new int[b * t];
        Trainer.SplitBatch(batch, b, t, inputs, targets);
        return (inputs, targets);
    }

    /// <summary>log softmax(logits / τ) in double, from <paramref name="model"/>'s no-grad Forward of inputs (B, T).</summary>
    public static double[] LogSoftmax(LanguageModel model, int[] inputs, int b, int t, double tau = 1)
    {
        using var x = Tensor.FromArray(inputs, b, t);
        using var dx = model.Backend.FromHost(x);
        using var tape = new Tape(model.Backend, recording: false);
        var logits = model.Forward(tape, dx).Data.ToFloatArray();
        int v = model.Config.VocabSize;
        var l = new double[logits.Length];
        for (int r = 0; r < b * t; r++)
        {
            var row = logits.AsSpan(r * v, v);
            double lse = LogSumExp(row, tau);
            for (int i = 0; i < v; i++) l[r * v + i] = row[i] / tau - lse;
        }
        return l;
    }

    /// <summary>log Σ exp(z / τ) over a row of logits, in double, shifted by the row's max.</summary>
    public static double LogSumExp(ReadOnlySpan<float> row, double tau = 1)
    {
        double max = double.NegativeInfinity, sum = 0;
        foreach (var z in row) max = Math.Max(max, z / tau);
        foreach (var z in row) sum += Math.Exp(z / tau - max);
        return max + Math.Log(sum);
    }

    /// <summary>Σ over the rows of logits (rows, V) of −log softmax(row)[target], in double.</summary>
    public static double CrossEntropySum(float[] logits, int[] targets, int vocab)
    {
        double total = 0;
        for (int r = 0; r < logits.Length / vocab; r++)
        {
            var row = logits.AsSpan(r * vocab, vocab);
            total += LogSumExp(row) - row[targets[r]];
        }
        return total;
    }

    /// <summary>Mean over the rows of −log p[target].</summary>
    public static double CrossEntropy(double[] logP, int[] targets, int vocab) =>
        targets.Select((y, r) => -logP[r * vocab + y]).Average();

    /// <summary>Mean over the rows of τ²·Σ q (log q − log p) (teacher q, student p, both at temperature τ).</summary>
    public static double ForwardKl(double[] logQ, double[] logP, int vocab, double tau = 1)
    {
        int rows = logQ.Length / vocab;
        double total = 0;
        for (int r = 0; r < rows; r++)
            for (int i = r * vocab; i < (r + 1) * vocab; i++) total += Math.Exp(logQ[i]) * (logQ[i] - logP[i]);
        return tau * tau * total / rows;
    }

    /// <summary>
    /// How far the mean KD from a teacher cache can be from the one of the live teacher. The cache stores each
    /// log-probability ℓ (f32) as f16: |ℓ̃ − ℓ| ≤ ε = (2^-11 + 2^-24)·|ℓ| + 2^-25 (f16's unit roundoff, the f32 rounding
    /// before it, and half of f16's subnormal spacing). A row's KD is Σ_i g(ℓ_i) with g(x) = e^x·(x − log p_i),
    /// g'(x) = e^x·(x − log p_i + 1), so by the mean value theorem each term moves by at most ε·e^(ℓ+ε)·(|ℓ − log p_i + 1| + ε);
    /// the logged KD is the mean over the rows. <paramref name="topK"/> &lt; V adds the tail bucket's term t·(ln t − ln p_t),
    /// whose f32-rounded t (2^-24 relative) moves it by at most 2^-24·t·(|ln t − ln p_t| + 1); only the top-k terms are summed then.
    /// </summary>
    public static double F16Bound(double[] logQ, double[] logP, int topK, int vocab)
    {
        int rows = logQ.Length / vocab;
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            var q = logQ[(r * vocab)..((r + 1) * vocab)]; var p = logP[(r * vocab)..((r + 1) * vocab)];
            var ids = Enumerable.Range(0, vocab).OrderByDescending(i => q[i]).ToArray();
            double row = 0, tail = 0, pTail = 0;
            for (int j = 0; j < vocab; j++)
            {
                int i = ids[j];
                if (j >= topK) { tail += Math.Exp(q[i]); pTail += Math.Exp(p[i]); continue; }
                double eps = (Math.Pow(2, -11) + Math.Pow(2, -24)) * Math.Abs(q[i]) + Math.Pow(2, -25);
                row += eps * Math.Exp(q[i] + eps) * (Math.Abs(q[i] - p[i] + 1) + eps);
            }
            if (tail > 0) row += Math.Pow(2, -24) * tail * (Math.Abs(Math.Log(tail) - Math.Log(pTail)) + 1);
            total += row;
        }
        return total / rows;
    }

    /// <summary>Loads a model directory on the CPU.</summary>
    public static LanguageModel Load(string dir) => ModelCheckpoint.Load(dir, CpuBackend.Instance);
}
