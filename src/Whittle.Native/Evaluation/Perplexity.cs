using System.Diagnostics;
using Whittle.Native.Autograd;
using Whittle.Native.Data;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Evaluation;

public sealed record EvalResult(double Loss, long Tokens, long Windows, double Seconds)
{
    public double Perplexity => Math.Exp(Loss);
    public double TokensPerSecond => Seconds > 0 ? Tokens / Seconds : 0;
}

/// <summary>
/// Perplexity, defined as: the token stream is cut into consecutive non-overlapping windows of T tokens (a trailing
/// remainder shorter than T is dropped); in each window every token after the first is predicted from the tokens
/// before it; perplexity = exp(mean negative log-likelihood over those predictions). So each window contributes T − 1
/// predictions, and <see cref="EvalResult.Tokens"/> counts predictions.
/// Runs with no tape (nothing recorded, activations freed layer by layer), B windows per forward, the fused
/// cross-entropy (no probability buffer) and log-sum-exp accumulated in double.
/// </summary>
public static class Perplexity
{
    public static EvalResult Evaluate(LanguageModel model, ITokenSource tokens, int seqLen, int batchSize, long maxTokens = long.MaxValue,
        ActiveArchitecture? active = null, Action<long, long>? progress = null)
    {
        if (seqLen < 2) throw new WhittleException($"--seq-len must be at least 2 (one context token and one prediction), got {seqLen}");
        if (batchSize < 1) throw new WhittleException($"--batch-size must be at least 1, got {batchSize}");
        long windows = tokens.Length / seqLen;
        if (maxTokens < long.MaxValue) windows = Math.Min(windows, Math.Max(1, maxTokens / (seqLen - 1)));
        if (windows == 0) throw new WhittleException($"the evaluation text has {tokens.Length} tokens, fewer than one window of {seqLen}");
        var backend = model.Backend;
        var sw = Stopwatch.StartNew();
        double nll = 0; long predictions = 0;
        var window = new int[seqLen];
        for (long w0 = 0; w0 < windows; w0 += batchSize)
        {
            int b = (int)Math.Min(batchSize, windows - w0);
            var inputs = new int[b * (seqLen - 1)]; var targets = new int[b * (seqLen - 1)];
            for (int i = 0; i < b; i++)
            {
                tokens.Read((w0 + i) * seqLen, window);
                window.AsSpan(0, seqLen - 1).CopyTo(inputs.AsSpan(i * (seqLen - 1)));
                window.AsSpan(1).CopyTo(targets.AsSpan(i * (seqLen - 1)));
            }
            using var hIn = Tensor.FromArray(inputs, b, seqLen - 1);
            using var hTg = Tensor.FromArray(targets, b * (seqLen - 1));
            using var dIn = backend.FromHost(hIn);
            using var dTg = backend.FromHost(hTg);
            using var tape = new Tape(backend, recording: false);
            if (model.ChunksLoss(targets.Length))   // the (N, V) logits never whole; the mean comes back as f32 (relative 6e-8)
                nll += (double)model.Loss(tape, dIn, dTg, active).Data.ToFloatArray()[0] * targets.Length;
            else
            {
                var logits = model.Forward(tape, dIn, active);
                using var losses = backend.Empty(DType.F32, targets.Length);
                backend.CrossEntropy(logits.Data, dTg, -100, losses, null, 0f);
                nll += backend.Sum(losses);
            }
            predictions += targets.Length;
            progress?.Invoke(w0 + b, windows);
        }
        return new EvalResult(nll / predictions, predictions, windows, sw.Elapsed.TotalSeconds);
    }
}
