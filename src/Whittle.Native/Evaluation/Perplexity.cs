using System.Diagnostics;
using Whittle.Native.Autograd;
using Whittle.Native.Data;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Evaluation;

/// <summary>An evaluation's outcome. Stride: the windows' step S (T for non-overlapping windows).</summary>
public sealed record EvalResult(double Loss, long Tokens, long Windows, double Seconds, int Stride)
{
    public double Perplexity => Math.Exp(Loss);
    public double TokensPerSecond => Seconds > 0 ? Tokens / Seconds : 0;
}

/// <summary>
/// Perplexity over windows of T tokens that start every S tokens (S = stride, 1 ≤ S ≤ T; by default S = T):
/// window i holds tokens [i·S, i·S + T), for i = 0 .. W − 1 with W = 1 + ⌊(N − T) / S⌋ (only whole windows, so up to S − 1
/// trailing tokens are not scored). Window 0 scores each of its tokens after the first; every later window scores only
/// its last min(S, T − 1) tokens, which the windows before it did not score, each predicted from the tokens of its own
/// window before it. Perplexity = exp(mean negative log-likelihood over the scored tokens).
///  - S = T: consecutive non-overlapping windows, T − 1 predictions each (a trailing remainder shorter than T dropped).
///  - S &lt; T: Hugging Face's strided sliding-window perplexity (the "Perplexity of fixed-length models" guide): every
///    token from position T on is predicted with at least T − S tokens of context, tokens 1 .. T + (W − 1)·S − 1 are
///    each scored exactly once. HF also scores the tail in a final shorter window; this definition stops at the last
///    whole window, so that S = T is exactly the non-overlapping definition above.
/// <see cref="EvalResult.Tokens"/> counts scored tokens. Runs B windows per forward through <see cref="EvalForward"/>
/// (no tape, buffers made once and reused for every batch, the LM head and the fused cross-entropy in chunks of rows:
/// no (N, V) logits, no probability buffer; unscored positions carry the ignore index; log-sum-exp accumulated in double).
/// </summary>
public static class Perplexity
{
    const int Unscored = -100;

    public static EvalResult Evaluate(LanguageModel model, ITokenSource tokens, int seqLen, int batchSize, long maxTokens = long.MaxValue,
        ActiveArchitecture? active = null, Action<long, long>? progress = null, int? stride = null)
    {
        if (seqLen < 2) throw new WhittleException($"--seq-len must be at least 2 (one context token and one prediction), got {seqLen}");
        if (batchSize < 1) throw new WhittleException($"--batch-size must be at least 1, got {batchSize}");
        int step = stride ?? seqLen;
        CheckStride(step, seqLen);
        if (tokens.Length < seqLen)
            throw new WhittleException($"the evaluation text has {tokens.Length} tokens, fewer than one window of {seqLen}");
        int later = Math.Min(step, seqLen - 1);   // tokens scored by each window after the first
        long windows = 1 + (tokens.Length - seqLen) / step;
        if (maxTokens < long.MaxValue) windows = Math.Min(windows, 1 + Math.Max(0, (maxTokens - (seqLen - 1)) / later));
        var backend = model.Backend;
        var sw = Stopwatch.StartNew();
        double nll = 0; long predictions = 0;
        int n = seqLen - 1, rows = (int)Math.Min(batchSize, windows);
        var window = new int[seqLen];
        using var hIn = Tensor.Empty(DType.I32, rows, n);       // (B, T − 1) host, reused for every batch
        using var hTg = Tensor.Empty(DType.I32, rows * n);      // (B·(T − 1)) host
        using var fused = EvalForward.Supports(model)
            ? new EvalForward(model, rows, n, active, model.LossChunkRows > 0 ? model.LossChunkRows : EvalForward.DefaultChunkRows)
            : null;
        for (long w0 = 0; w0 < windows; w0 += batchSize)
        {
            int b = (int)Math.Min(batchSize, windows - w0);
            Span<int> inputs = hIn.AsSpan<int>(), targets = hTg.AsSpan<int>();
            int scored = 0;
            for (int i = 0; i < b; i++)
            {
                tokens.Read((w0 + i) * step, window);
                window.AsSpan(0, n).CopyTo(inputs[(i * n)..]);
                window.AsSpan(1).CopyTo(targets[(i * n)..]);
                int keep = w0 + i == 0 ? n : later;   // the window's last `keep` targets are scored
                targets.Slice(i * n, n - keep).Fill(Unscored);
                scored += keep;
            }
            var bIn = b == rows ? hIn : hIn.Narrow(0, 0, b);
            var bTg = b == rows ? hTg : hTg.Narrow(0, 0, b * n);
            nll += BatchLossSum(model, fused, bIn, bTg, active, scored);
            predictions += scored;
            progress?.Invoke(w0 + b, windows);
        }
        return new EvalResult(nll / predictions, predictions, windows, sw.Elapsed.TotalSeconds, step);
    }

    /// <summary>
    /// The summed loss of one batch (ids (b, T − 1), targets (b·(T − 1)) on the host): through <see cref="EvalForward"/> when
    /// the model has one (on the CPU the host tensors are the backend's: nothing is copied or allocated), else the tape's
    /// no-grad forward (bf16 models).
    /// </summary>
    static double BatchLossSum(LanguageModel model, EvalForward? fused, Tensor hIn, Tensor hTg, ActiveArchitecture? active, int scored)
    {
        var backend = model.Backend;
        bool cpu = backend.Device == Device.Cpu;
        var dIn = cpu ? hIn : backend.FromHost(hIn);
        var dTg = cpu ? hTg : backend.FromHost(hTg);
        try
        {
            if (fused is not null) return fused.LossSum(dIn, dTg, Unscored);
            using var tape = new Tape(backend, recording: false);
            if (model.ChunksLoss((int)hTg.Count))   // the (N, V) logits never whole; the mean comes back as f32 (relative 6e-8)
                return (double)model.Loss(tape, dIn, dTg, active, Unscored).Data.ToFloatArray()[0] * scored;
            var logits = model.Forward(tape, dIn, active);
            using var losses = backend.Empty(DType.F32, (int)hTg.Count);
            backend.CrossEntropy(logits.Data, dTg, Unscored, losses, null, 0f);   // unscored rows: loss 0
            return backend.Sum(losses);
        }
        finally
        {
            if (!cpu) { dIn.Dispose(); dTg.Dispose(); }
        }
    }

    /// <summary>A window's step S must be in [1, T].</summary>
    public static void CheckStride(int stride, int seqLen)
    {
        if (stride < 1 || stride > seqLen)
            throw new WhittleException($"--stride must be in [1, --seq-len] = [1, {seqLen}] (the step between windows of {seqLen} " +
                $"tokens), got {stride}");
    }
}
