using System.Reflection;
using Whittle.Native.Cpu;
using Whittle.Native.Data;
using Whittle.Native.Evaluation;
using Whittle.Native.Model;
using Whittle.Native.Search;
using Whittle.Native.Tensors;
using Whittle.Native.Tests.Distillation;
using Whittle.Native.Tests.Model;

namespace Whittle.Native.Tests.Evaluation;

/// <summary>
/// The evaluation path without waste (Evaluation/EvalForward.cs) against independent references: PyTorch's float64 losses
/// of the six reference fixtures (both families: GPT-NeoX parallel and sequential residual; Llama, Qwen2, Qwen3, Mistral
/// with GQA, QK-norm and biases) and of five in-place sub-networks of each GPT-NeoX fixture (float64 logits computed on
/// head-structured views by tools/fixtures/make_subnet_reference.py); the fused ops against the ops they fuse; and its
/// steady state against a bound on managed allocation.
/// Tolerance against float64: FixtureParityTests' derivation (a loss passes through about a dozen f32 dot-product stages of
/// length ≤ 72, each ≲ 5e-7 of its terms' scale: ~6e-6; for any GEMM, so the class runs under every GEMM path): 1e-5
/// relative. The fused path changes none of that: it reassociates the residual sums (x + (a + b) instead of (x + a) + b,
/// one more rounding of 2^-24 per element, far below the dot products' error) and chunks the head's rows.
/// </summary>
[Category(TestBackends.GemmSensitive)]
public class EvalForwardTests
{
    static readonly string[] Fixtures = ["tiny-neox", "tiny-neox-seq", "tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-mistral"];

    static IEnumerable<TestCaseData> FixtureCases() =>
        Fixtures.SelectMany(f => new[] { new TestCaseData(f, 5), new TestCaseData(f, EvalForward.DefaultChunkRows) });

    [TestCaseSource(nameof(FixtureCases))]
    public void LossMatchesPyTorchsFloat64(string fixture, int chunkRows)
    {
        var (model, expected, inputs, targets) = FixtureParityTests.Load(fixture);
        using var _ = model; using var __ = expected; using var ___ = inputs; using var ____ = targets;
        int b = inputs.Size(0), t = inputs.Size(1);
        using var eval = new EvalForward(model, b, t, chunkRows: chunkRows);
        double sum = eval.LossSum(inputs, targets, -100);
        Assert.That(Math.Abs(sum / (b * t) / expected.ReadFloats("loss")[0] - 1), Is.LessThan(1e-5), "loss, relative");

        using var ignore = expected.ReadTensor("targets_ignore");
        var ignoreFlat = ignore.Reshape(-1);
        int valid = ignoreFlat.ToIntArray().Count(x => x != -100);
        double ignored = eval.LossSum(inputs, ignoreFlat, -100) / valid;
        Assert.That(Math.Abs(ignored / expected.ReadFloats("loss_ignore")[0] - 1), Is.LessThan(1e-5), "loss with ignored targets");

        // The buffers are reused: the same batch again gives the same bits (nothing stale is read: GPT-NeoX's parallel
        // residual accumulates the MLP onto the attention branch's buffer, which each layer must overwrite first).
        Assert.That(eval.LossSum(inputs, targets, -100), Is.EqualTo(sum), "second evaluation of the same batch");
        // A shorter batch (b − 1 windows, as the last batch of an evaluation) through its own views.
        if (b < 2) return;
        double firstRows = eval.LossSum(inputs.Narrow(0, 0, b - 1), targets.Narrow(0, 0, (b - 1) * t), -100);
        double lastRow = eval.LossSum(inputs.Narrow(0, b - 1, 1), targets.Narrow(0, (b - 1) * t, t), -100);
        Assert.That(firstRows + lastRow, Is.EqualTo(sum).Within(1e-5 * Math.Abs(sum)), "the batch as two shorter batches");
    }

    /// <summary>
    /// bf16 mode (each GEMM on the weight's bf16 copy, its input rounded to bf16) on every fixture: equal, up to f32
    /// round-off (1e-5 relative, as above), to the f32 path behind Bf16Tests.EmulatingBackend, which rounds every GEMM
    /// operand with an independent reference rounding, on the same GEMM (Bf16Tests.Emulable: the AVX512-BF16 kernel sums
    /// in pairs, which the f32 engine does not reproduce; Bf16Tests covers it against budgets); and not the f32 loss
    /// (on tiny-qwen3 the two differ by only 6e-6 relative, so no tighter lower bound is derivable from the loss).
    /// </summary>
    [TestCaseSource(nameof(Fixtures))]
    public void Bf16LossIsTheRoundedGemmEmulations(string fixture)
    {
        var (parity, expected, inputs, targets) = FixtureParityTests.Load(fixture);
        using var _ = parity; using var __ = expected; using var ___ = inputs; using var ____ = targets;
        string dir = Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", fixture);
        var backend = Bf16Tests.Emulable;
        using var f32 = ModelCheckpoint.Load(dir, backend);
        using var bf16 = ModelCheckpoint.Load(dir, backend);
        bf16.Precision = Precision.Bf16;
        using var emulated = ModelCheckpoint.Load(dir, Bf16Tests.EmulatingBackend.Create(backend));
        int b = inputs.Size(0), t = inputs.Size(1);
        // The full model, and a sub-network in place (leading views of the bf16 copies).
        // Sub-network: the layers reversed, in each half the kv heads (whole query groups, at least one) and half the MLP.
        var c = f32.Config;
        int[] layers = Enumerable.Range(0, c.NumLayers).Reverse().ToArray();
        int[] kv = layers.Select(l => Math.Max(1, c.KvHeadsOf(l) / 2)).ToArray();
        var sub = new ActiveArchitecture(c.HiddenSize, layers, layers.Select((l, i) => kv[i] * c.QueryHeadsPerGroup(l)).ToArray(),
            layers.Select(l => c.IntermediateOf(l) / 2).ToArray(), kv);
        foreach (var active in new[] { null, sub })
        {
            double Loss(LanguageModel model)
            {
                using var eval = new EvalForward(model, b, t, active, chunkRows: 5);
                return eval.LossSum(inputs, targets, -100) / (b * t);
            }
            double l16 = Loss(bf16), emu = Loss(emulated), l32 = Loss(f32);
            string what = $"{fixture}{(active is null ? "" : " sub-network")}";
            TestContext.Out.WriteLine($"{what}: bf16 {l16:R}, emulation {emu:R}, f32 {l32:R}");
            Assert.That(Math.Abs(l16 / emu - 1), Is.LessThan(1e-5), $"{what}: bf16 = the emulation up to f32 round-off");
            Assert.That(l16, Is.Not.EqualTo(l32), $"{what}: the bf16 path is in use (the same code at f32 gives these bits)");
        }
    }

    [TestCase("tiny-neox")]
    [TestCase("tiny-neox-seq")]
    public void SubNetworkLossesMatchPyTorchsFloat64(string fixture)
    {
        var (model, expected, inputs, targets) = FixtureParityTests.Load(fixture);
        using var _ = model; using var __ = expected; using var ___ = inputs; using var ____ = targets;
        string dir = Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", fixture);
        using var reference = new SafeTensorsFile(Path.Combine(dir, "subnets.safetensors"));
        int b = inputs.Size(0), t = inputs.Size(1), v = model.Config.VocabSize;
        var tg = targets.ToIntArray();
        var names = reference.Tensors.Keys.Where(k => k.StartsWith("subnet.")).Order().ToList();
        Assert.That(names, Has.Count.EqualTo(5));
        foreach (var name in names)
        {
            var active = SubnetSpec.Parse(reference.Metadata[name], model.Config, name);
            var logits = reference.ReadFloats(name);   // (B·T, V) float64 logits stored in f32
            double want = KdReference.CrossEntropySum(logits, tg, v);
            using var eval = new EvalForward(model, b, t, active, chunkRows: 7);
            double got = eval.LossSum(inputs, targets, -100);
            Assert.That(Math.Abs(got / want - 1), Is.LessThan(1e-5), reference.Metadata[name]);
        }
    }

    /// <summary>
    /// The CPU's fused ops compute what the ops they fuse compute, in the same order, so the results are the same bits:
    /// x + (delta + bias) then the norm; gelu(x + bias). Sizes not multiples of the SIMD width; the norm weights are
    /// leading views of longer vectors (a sub-network's).
    /// </summary>
    [Test]
    public void CpuFusedOpsEqualTheOpsTheyFuseBitForBit()
    {
        var cpu = CpuBackend.Instance;
        const int n = 37, c = 70;
        var rng = new Random(5);
        Tensor Rand(params int[] shape)
        {
            var t = Tensor.Empty(DType.F32, shape);
            foreach (ref var x in t.AsSpan<float>()) x = (float)(rng.NextDouble() * 4 - 2);
            return t;
        }
        using var x0 = Rand(n, c); using var delta = Rand(n, c); using var bias = Rand(c);
        using var w = Rand(c + 9); using var wb = Rand(c + 9);
        var weight = w.Narrow(0, 0, c); var normBias = wb.Narrow(0, 0, c);
        foreach (bool rms in new[] { false, true })
        {
            // unfused: the branch's GEMM bias (delta + bias), the residual add, the norm
            using var branch = Tensor.Empty(DType.F32, n, c);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < c; j++) branch.AsSpan<float>()[i * c + j] = delta.AsSpan<float>()[i * c + j] + bias.AsSpan<float>()[j];
            using var x1 = x0.Contiguous(); using var y1 = Tensor.Empty(DType.F32, n, c);
            using var stat1 = Tensor.Empty(DType.F32, n); using var stat2 = Tensor.Empty(DType.F32, n);
            cpu.Add(x1, branch, x1);
            if (rms) cpu.RmsNormForward(x1, weight, 1e-6f, y1, stat1);
            else cpu.LayerNormForward(x1, weight, normBias, 1e-5f, y1, stat1, stat2);
            using var x2 = x0.Contiguous(); using var y2 = Tensor.Empty(DType.F32, n, c);
            if (rms) cpu.AddRmsNormForward(x2, delta, bias, weight, 1e-6f, y2);
            else cpu.AddLayerNormForward(x2, delta, bias, weight, normBias, 1e-5f, y2);
            Assert.That(x2.ToFloatArray(), Is.EqualTo(x1.ToFloatArray()), $"residual stream ({(rms ? "rms" : "layer")}norm)");
            Assert.That(y2.ToFloatArray(), Is.EqualTo(y1.ToFloatArray()), $"norm output ({(rms ? "rms" : "layer")}norm)");
        }
        foreach (bool tanh in new[] { false, true })
        {
            using var biased = x0.Contiguous();
            for (int i = 0; i < n; i++)
                for (int j = 0; j < c; j++) biased.AsSpan<float>()[i * c + j] += bias.AsSpan<float>()[j];
            using var y1 = Tensor.Empty(DType.F32, n, c);
            cpu.GeluForward(biased, y1, tanh);
            using var y2 = x0.Contiguous();
            cpu.BiasGeluForward(y2, bias, y2, tanh);   // in place, as evaluation runs it
            Assert.That(y2.ToFloatArray(), Is.EqualTo(y1.ToFloatArray()), $"bias + gelu ({(tanh ? "tanh" : "exact")})");
        }
    }

    /// <summary>
    /// No managed allocation in the steady state, measured: `Perplexity.Evaluate` over 14 windows of 512 positions, one per
    /// batch, and the bytes this process allocated (all threads, GC.GetTotalAllocatedBytes(precise)) during each of windows
    /// 3..14; the median window is asserted. The bound, derived: what a window may still allocate is the backend calls'
    /// bookkeeping, whose size does not depend on the data (a Parallel.For's loop objects and closure, argument checks'
    /// shape arrays, a view or two): at most <see cref="PerCallBytes"/> per call, times the K backend calls a window makes
    /// (counted by running the same window through a counting proxy). It is asserted below the (N, V) logits the unfused
    /// path allocated per window and below one (N, d) activation, so any buffer allocated per window fails the test.
    /// Why the median: a thread-pool thread that runs a GEMM or attention tile for the first time allocates its pack
    /// buffers once (Gemm.PackBuffers, ~2.3 MB, kept for the thread's life); when the pool grows (on a loaded machine it
    /// does, at moments of its own choosing) that lands in some window. Those are per-thread, not per-window, costs.
    /// </summary>
    [Test]
    public void TheSteadyStateAllocatesOnlyPerCallBookkeeping()
    {
        var (fixture, expected, _, _) = FixtureParityTests.Load("tiny-neox");
        using var _f = fixture; using var _e = expected;
        using var model = LanguageModel.CreateRandom(fixture.Config with { MaxPositionEmbeddings = 1024 }, CpuBackend.Instance, 7);
        const int seqLen = 513, windows = 14;   // 512 positions a window: two chunks of the head's default 256 rows
        var rng = new Random(3);
        var tokens = Enumerable.Range(0, seqLen * windows).Select(_ => rng.Next(model.Config.VocabSize)).ToArray();
        var source = new ArrayTokenSource(tokens);
        var marks = new long[windows + 1];
        Perplexity.Evaluate(model, source, seqLen, batchSize: 1,
            progress: (done, _) => marks[done] = GC.GetTotalAllocatedBytes(precise: true));
        var perWindow = Enumerable.Range(3, windows - 2).Select(w => marks[w] - marks[w - 1]).Order().ToArray();   // windows 3..10
        TestContext.Out.WriteLine(string.Join(" ", perWindow));

        int calls = CountBackendCalls(model, seqLen - 1);
        long bound = (long)calls * PerCallBytes;
        long n = seqLen - 1, logitsBytes = n * model.Config.VocabSize * 4, activationBytes = n * model.Config.HiddenSize * 4;
        TestContext.Out.WriteLine($"{perWindow[perWindow.Length / 2]} bytes per window (median); {calls} backend calls; bound {bound}; " +
            $"(N, V) logits {logitsBytes} B, (N, d) activation {activationBytes} B");
        Assert.That(bound, Is.LessThan(Math.Min(logitsBytes, activationBytes)), "the bound must catch any per-window buffer");
        Assert.That(perWindow[perWindow.Length / 2], Is.LessThanOrEqualTo(bound));
    }

    /// <summary>
    /// Bytes a backend call may allocate for its bookkeeping (see the test above): a Parallel.For is ~1.7 KB (its loop
    /// state, replica tasks and closure), but most calls of a window are small enough to run on the calling thread
    /// (CpuBackend's SerialWork) or are a GEMM (OpenBLAS: nothing; ours: one Parallel.For); 1.5 KB a call on average.
    /// Measured here on 2 cores: ~780 B a call.
    /// </summary>
    const int PerCallBytes = 1536;

    /// <summary>Backend calls one window of T − 1 = <paramref name="n"/> positions makes, counted through a proxy.</summary>
    static int CountBackendCalls(LanguageModel model, int n)
    {
        var counter = DispatchProxy.Create<IBackend, CountingBackend>();
        ((CountingBackend)(object)counter).Inner = model.Backend;
        using var copy = LanguageModel.CreateRandom(model.Config, counter, 1);
        using var eval = new EvalForward(copy, 1, n);
        using var ids = Tensor.Zeros(DType.I32, 1, n); using var tg = Tensor.Zeros(DType.I32, n);
        eval.LossSum(ids, tg, -100);                          // the first call makes the views
        ((CountingBackend)(object)counter).Calls = 0;
        eval.LossSum(ids, tg, -100);
        return ((CountingBackend)(object)counter).Calls;
    }

    public class CountingBackend : DispatchProxy
    {
        public IBackend Inner = null!;
        public int Calls;
        protected override object? Invoke(MethodInfo? method, object?[]? args)
        {
            Calls++;
            try { return method!.Invoke(Inner, args); }
            catch (TargetInvocationException e) { throw e.InnerException!; }
        }
    }
}
