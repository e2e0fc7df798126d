using System.Reflection;
using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Data;
using Whittle.Native.Model;
using Whittle.Native.Tensors;
using Whittle.Native.Training;

namespace Whittle.Native.Tests.Model;

/// <summary>
/// bf16 mixed precision (Model/Precision.cs) on the CPU, which emulates what CUDA runs on tensor cores. References are
/// independent of the engine's bf16 code: rounding by comparing the two neighbouring bf16 values in double (not the bit
/// trick the engine uses), GEMMs as double loops, and the whole model as the f32 engine behind a backend proxy that rounds
/// every GEMM operand with that reference.
///
/// Tolerances. bf16 keeps 8 significant bits, so round-to-nearest has unit roundoff u = 2^-8 and a relative error
/// roughly uniform on [-u, u] (variance u²/3). A GEMM whose two operands are rounded independently has an output error
/// Σ x_i w_i (δ_i + ε_i) of RMS ≈ sqrt(2/3)·u times the output's RMS (random-sign terms). Each of the G GEMMs a value
/// passes through adds such an error; layernorms keep the gain near 1, so the relative RMS error after G GEMMs is at most
/// G·sqrt(2/3)·u, and we allow twice that. Forward logits pass through G = 4L + 1 GEMMs (L layers, 4 Linears each, the
/// head); gradients also through the 2 backward GEMMs of each Linear, G = 3(4L + 1). A lower bound of u/16 shows that the
/// bf16 path is in use at all (f32 round-off is ~1e-7, thousands of times smaller).
/// </summary>
[Category(TestBackends.GemmSensitive)]
public class Bf16Tests
{
    const double U = 1.0 / 256;                                   // bf16 unit roundoff, 2^-8
    static readonly double PerGemm = Math.Sqrt(2.0 / 3) * U;
    static string Fixture => Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", "tiny-neox");

    // ---------------------------------------------------------------- the reference rounding

    /// <summary>
    /// f32 → bf16 bits, round to nearest, ties to even, by value: the two bf16 neighbours of f (truncation toward zero
    /// and the next one away from zero, whose value for the largest finite bf16 is 2^128, i.e. overflow to infinity)
    /// compared in double, which holds every f32 and every difference exactly.
    /// </summary>
    internal static ushort ReferenceRne(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f)) return (ushort)((bits >> 16) | 0x40);             // any quiet NaN will do; keep the sign
        if (float.IsInfinity(f)) return (ushort)(bits >> 16);
        ushort down = (ushort)(bits >> 16), up = (ushort)(down + 1);
        double lo = Math.Abs((double)BitConverter.UInt32BitsToSingle((uint)down << 16));
        double hi = (up & 0x7FFF) == 0x7F80 ? Math.Pow(2, 128) : Math.Abs((double)BitConverter.UInt32BitsToSingle((uint)up << 16));
        double a = Math.Abs((double)f);
        if (a - lo < hi - a) return down;
        if (a - lo > hi - a) return up;
        return (down & 1) == 0 ? down : up;
    }

    internal static float RoundF(float f) => BitConverter.UInt32BitsToSingle((uint)ReferenceRne(f) << 16);

    [Test]
    public void CopyToBf16RoundsToNearestEvenLikeTheReference()
    {
        var special = new uint[]
        {
            0x3F808000, 0x3F818000, 0xBF808000, 0x3F808001, 0x3F807FFF,      // ties to even (down, up, negative) and either side of a tie
            0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0xFF7FFFFF,                   // max f32 and the overflow boundary
            0x00008000, 0x00018000, 0x00000001, 0x007FFFFF, 0x80008001,       // subnormals: ties, the smallest, the largest
            // ±Inf, NaNs (signalling ones whose top half reads as Inf), ±0
            0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0x7F80FFFF, 0x00000000, 0x80000000,
        };
        var rng = new Random(5);
        var values = special.Select(BitConverter.UInt32BitsToSingle)
            .Concat(Enumerable.Range(0, 20000 + (4 - special.Length % 4) % 4).Select(
                _ => BitConverter.UInt32BitsToSingle((uint)rng.NextInt64(0, 1L << 32))))
            .ToArray();
        using var src = Tensor.FromArray(values, 4, values.Length / 4);
        using var dst = Tensor.Empty(DType.BF16, src.ShapeArray);
        CpuBackend.Instance.Copy(src, dst);
        var got = dst.AsSpan<ushort>().ToArray();
        for (int i = 0; i < values.Length; i++)
        {
            ushort want = ReferenceRne(values[i]);
            if (float.IsNaN(values[i]))
                Assert.That(
                    float.IsNaN(Bf16.ToFloat(got[i])) && (got[i] & 0x8000) == (want & 0x8000), Is.True,
                    $"NaN 0x{BitConverter.SingleToUInt32Bits(values[i]):X8} must stay NaN, got 0x{got[i]:X4}");
            else Assert.That(got[i], Is.EqualTo(want), $"f32 0x{BitConverter.SingleToUInt32Bits(values[i]):X8}");
        }
        Assert.That(got[5], Is.EqualTo((ushort)0x7F80), "the largest f32 rounds to +Inf");

        // Back to f32 is exact (the bf16 bits are the top half), and a strided view converts element by element.
        using var back = Tensor.Empty(DType.F32, src.ShapeArray);
        CpuBackend.Instance.Copy(dst, back);
        var backBits = back.AsSpan<float>().ToArray().Select(BitConverter.SingleToUInt32Bits).ToArray();
        for (int i = 0; i < values.Length; i++) Assert.That(backBits[i], Is.EqualTo((uint)got[i] << 16));
        using var t = Tensor.Empty(DType.BF16, src.Size(1), 4);
        CpuBackend.Instance.Copy(src.Transpose(0, 1), t);
        var tv = t.AsSpan<ushort>().ToArray();
        Assert.That(tv[3 * 4 + 2], Is.EqualTo(got[2 * src.Size(1) + 3]), "transposed view");
    }

    // ---------------------------------------------------------------- GEMM

    [TestCase(false, false, 1f, 0f, false, 0)]
    [TestCase(false, true, 1f, 0f, true, 0)]
    [TestCase(true, false, 0.5f, 1f, false, 0)]
    [TestCase(true, true, -2f, 0.25f, true, 0)]
    [TestCase(false, true, 1f, 1f, true, 19)]       // a sub-network Linear: W a view with a wider row stride
    public void Bf16MatMulIsTheF32GemmOfTheRoundedOperands(bool ta, bool tb, float alpha, float beta, bool bias, int extraCols)
    {
        const int m = 13, k = 70, n = 37;
        var rng = new Rng(9);
        float[] Rand(int count, float scale) { var a = new float[count]; rng.FillNormal(a, 0, scale); return a; }
        int[] aShape = ta ? [k, m] : [m, k];
        int[] bShape = tb ? [n, k + extraCols] : [k, n];
        using var a32 = Tensor.FromArray(Rand(m * k, 3f), aShape);
        using var b32 = Tensor.FromArray(Rand(bShape[0] * bShape[1], 0.1f), bShape);
        using var a16 = Tensor.Empty(DType.BF16, aShape); CpuBackend.Instance.Copy(a32, a16);
        using var b16 = Tensor.Empty(DType.BF16, bShape); CpuBackend.Instance.Copy(b32, b16);
        var bView = extraCols > 0 ? b16.Narrow(1, 0, k) : b16;
        using var biasT = Tensor.FromArray(Rand(n, 1f), n);
        var c0 = Rand(m * n, 1f);
        using var c = Tensor.FromArray((float[])c0.Clone(), m, n);
        CpuBackend.Instance.MatMul(a16, ta, bView, tb, c, alpha, beta, bias ? biasT : null);

        var av = a32.ToFloatArray().Select(RoundF).ToArray();
        var bv = b32.ToFloatArray().Select(RoundF).ToArray();
        var bi = biasT.ToFloatArray();
        var got = c.ToFloatArray();
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0, abs = 0;
                for (int p = 0; p < k; p++)
                {
                    double x = ta ? av[p * m + i] : av[i * k + p];
                    double y = tb ? bv[j * bShape[1] + p] : bv[p * n + j];
                    sum += x * y; abs += Math.Abs(x * y);
                }
                double want = alpha * sum + beta * c0[i * n + j] + (bias ? bi[j] : 0);
                // f32 accumulation of exact products: at most (k + 2) roundings of the running magnitude.
                double bound = (k + 3) * Math.Pow(2, -24) * (
                    Math.Abs(alpha) * abs + Math.Abs(beta * c0[i * n + j]) + (bias ? Math.Abs(bi[j]) : 0));
                Assert.That(Math.Abs(got[i * n + j] - want), Is.LessThanOrEqualTo(bound), $"c[{i}, {j}]");
            }
        using var c32 = Tensor.Zeros(m, n);
        Assert.That(() => CpuBackend.Instance.MatMul(a32, ta, bView, tb, c32), Throws.ArgumentException.With.Message.Contains("both bf16"));
    }

    // ---------------------------------------------------------------- the model

    /// <summary>
    /// The f32 CPU engine, except that every GEMM operand is rounded with the reference first: bf16 mode by definition.
    /// Its f32 GEMM is the one whose FMA chains the bf16 backend under test runs (ours when that backend packs bf16 for our
    /// GEMM, else its own): bf16 mode rounds each GEMM's input, so a last-bit difference in the f32 activations from
    /// another summation order can move a value across a bf16 rounding boundary (a 2^-8 relative step) and show at the
    /// logits as ~1e-3; with the same GEMM both sides do the same arithmetic and agree to f32 round-off.
    /// </summary>
    public class EmulatingBackend : DispatchProxy
    {
        CpuBackend Inner = CpuBackend.Instance;

        public static IBackend Create(CpuBackend? underTest = null)
        {
            var proxy = Create<IBackend, EmulatingBackend>();
            var bf16 = underTest ?? CpuBackend.Instance;
            ((EmulatingBackend)(object)proxy).Inner =
                bf16.Bf16Gemm == CpuBf16Gemm.OursPacked && bf16.GemmChoice == CpuGemm.OpenBlas ? new CpuBackend(CpuGemm.Ours) : bf16;
            return proxy;
        }

        protected override object? Invoke(MethodInfo? method, object?[]? args)
        {
            if (method!.Name == nameof(IBackend.MatMul))
            {
                using var a = Rounded((Tensor)args![0]!); using var b = Rounded((Tensor)args[2]!);
                Inner.MatMul(a, (bool)args[1]!, b, (bool)args[3]!, (Tensor)args[4]!, (float)args[5]!, (float)args[6]!, (Tensor?)args[7]);
                return null;
            }
            try { return method.Invoke(Inner, args); }
            catch (TargetInvocationException e) when (e.InnerException is not null) { throw e.InnerException; }
        }

        static Tensor Rounded(Tensor t)
        {
            Assert.That(t.DType, Is.EqualTo(DType.F32), "the f32 engine's GEMMs take f32 operands");
            return Tensor.FromArray(t.ToFloatArray().Select(RoundF).ToArray(), t.ShapeArray);
        }
    }

    static (Tensor Inputs, Tensor Targets) FixtureBatch()
    {
        using var expected = new SafeTensorsFile(Path.Combine(Fixture, "expected.safetensors"));
        using var tokens = expected.ReadTensor("tokens");                 // (B, T+1)
        int b = tokens.Size(0), t = tokens.Size(1) - 1;
        var all = tokens.ToIntArray();
        var inputs = new int[b * t]; var targets = new int[b * t];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t; j++) { inputs[i * t + j] = all[i * (t + 1) + j]; targets[i * t + j] = all[i * (t + 1) + j + 1]; }
        return (Tensor.FromArray(inputs, b, t), Tensor.FromArray(targets, b * t));
    }

    static (float[] Logits, float Loss) Forward(GptNeoX model, Tensor inputs, Tensor targets, ActiveArchitecture? active = null)
    {
        using var tape = new Tape(model.Backend, recording: false);
        var logits = model.Forward(tape, inputs, active);
        var values = logits.Data.ToFloatArray();
        return (values, tape.CrossEntropy(logits, targets).Data.ToFloatArray()[0]);
    }

    static double RelativeRms(float[] ours, float[] reference)
    {
        double d = 0, r = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            d += Math.Pow(ours[i] - (double)reference[i], 2);
            r += (double)reference[i] * reference[i];
        }
        return Math.Sqrt(d / r);
    }

    /// <summary>
    /// The backend of the exact-emulation checks: the process's, unless its bf16 GEMM is the AVX512-BF16 kernel (vdpbf16ps
    /// adds products in pairs, an association the f32 engine does not reproduce); then our GEMM pinned to its AVX-512 f32
    /// kernel, whose bf16 GEMM widens while packing. The dot kernel's own model-level checks are
    /// <see cref="Bf16OnTheAvx512Bf16KernelIsWithinTheBudgetOfF32AndOfTheEmulation"/>.
    /// </summary>
    internal static CpuBackend Emulable =>
        CpuBackend.Instance.Bf16Gemm == CpuBf16Gemm.OursAvx512Bf16 ? new CpuBackend(CpuGemm.OursAvx512) : CpuBackend.Instance;

    [Test]
    public void Bf16ForwardIsTheRoundedGemmEmulationAndCloseToF32()
    {
        var (inputs, targets) = FixtureBatch();
        using var _i = inputs; using var _t = targets;
        var backend = Emulable;
        using var f32 = GptNeoXCheckpoint.Load(Fixture, backend);
        using var bf16 = GptNeoXCheckpoint.Load(Fixture, backend);
        bf16.Precision = Precision.Bf16;
        using var emulated = GptNeoXCheckpoint.Load(Fixture, EmulatingBackend.Create(backend));
        var sub = new ActiveArchitecture(48, [1, 0], [3, 2], [50, 40]);

        foreach (var active in new[] { null, sub })
        {
            string what = active is null ? "full model" : "sub-network (strided views of the bf16 copy)";
            var full = Forward(f32, inputs, targets, active);
            var mixed = Forward(bf16, inputs, targets, active);
            var emu = Forward(emulated, inputs, targets, active);
            double vsEmulation = Errors.Scaled(mixed.Logits, emu.Logits);
            double vsF32 = RelativeRms(mixed.Logits, full.Logits);
            int gemms = 4 * (active?.Layers.Length ?? f32.Config.NumLayers) + 1;
            TestContext.Out.WriteLine($"{what}: bf16 vs emulation {vsEmulation:0.0e+00}; bf16 vs f32 RMS {vsF32:0.0e+00} (bound " +
                $"{2 * gemms * PerGemm:0.0e+00}); loss {mixed.Loss} vs {full.Loss}");
            Assert.That(vsEmulation, Is.LessThanOrEqualTo(1e-6), $"{what}: bf16 logits = the emulation up to f32 round-off");
            Assert.That(Math.Abs(mixed.Loss - emu.Loss), Is.LessThanOrEqualTo(1e-6 * Math.Abs(emu.Loss)), $"{what}: loss vs emulation");
            Assert.That(vsF32, Is.LessThanOrEqualTo(2 * gemms * PerGemm), $"{what}: bf16 logits within the bf16 error budget of f32");
            Assert.That(vsF32, Is.GreaterThan(U / 16), $"{what}: the bf16 path is in use");
            // Cross-entropy is 1-Lipschitz in the max-norm of the logits through both logsumexp and the target logit.
            double maxDiff = mixed.Logits.Zip(full.Logits, (x, y) => Math.Abs(x - (double)y)).Max();
            Assert.That(Math.Abs(mixed.Loss - full.Loss), Is.LessThanOrEqualTo(2 * maxDiff + 1e-6), $"{what}: loss");
        }
    }

    internal static float[] Gradients(LanguageModel model, Tensor inputs, Tensor targets)
    {
        model.Parameters.EnsureGrad();
        model.Parameters.ZeroGrad();
        using (var tape = new Tape(model.Backend)) tape.Backward(model.Loss(tape, inputs, targets));
        return model.Parameters.FlatGrad!.ToFloatArray();
    }

    [Test]
    public void Bf16GradientsAreTheEmulationsAndCloseToF32()
    {
        var (inputs, targets) = FixtureBatch();
        using var _i = inputs; using var _t = targets;
        var backend = Emulable;
        using var f32 = GptNeoXCheckpoint.Load(Fixture, backend);
        using var bf16 = GptNeoXCheckpoint.Load(Fixture, backend);
        bf16.Precision = Precision.Bf16;
        using var emulated = GptNeoXCheckpoint.Load(Fixture, EmulatingBackend.Create(backend));
        var g32 = Gradients(f32, inputs, targets);
        var g16 = Gradients(bf16, inputs, targets);
        var gEmu = Gradients(emulated, inputs, targets);

        double vsEmulation = Errors.Scaled(g16, gEmu);
        double vsF32 = RelativeRms(g16, g32);
        double bound = 2 * 3 * (4 * f32.Config.NumLayers + 1) * PerGemm;
        TestContext.Out.WriteLine($"gradients: bf16 vs emulation {vsEmulation:0.0e+00}; bf16 vs f32 RMS {vsF32:0.0e+00} (bound " +
            $"{bound:0.0e+00})");
        Assert.That(vsEmulation, Is.LessThanOrEqualTo(1e-6), "every gradient = the emulation's up to f32 round-off");
        Assert.That(vsF32, Is.LessThanOrEqualTo(bound), "the flat gradient within the bf16 error budget of f32");
        Assert.That(vsF32, Is.GreaterThan(U / 16), "the bf16 path is in use");
        foreach (var p in f32.Parameters.Entries.Where(p => p.Shape.Length == 2))
        {
            var a = g16.AsSpan((int)p.Offset, (int)p.Count).ToArray(); var b = g32.AsSpan((int)p.Offset, (int)p.Count).ToArray();
            Assert.That(RelativeRms(a, b), Is.LessThanOrEqualTo(bound), $"gradient of {p.Name}");
        }
    }

    /// <summary>
    /// bf16 mode on the AVX512-BF16 kernel (auto and ours pick it where the CPU has it): logits and the flat gradient
    /// within the bf16 error budgets of f32 (as above), and within the same budgets of the exact emulation. Not tighter:
    /// the kernel's f32 sums differ from the FMA chain in the last bits, and bf16 mode rounds every GEMM input, so a
    /// last-bit difference can cross a bf16 rounding boundary (a 2^-8 step) and propagate.
    /// </summary>
    [Test]
    public void Bf16OnTheAvx512Bf16KernelIsWithinTheBudgetOfF32AndOfTheEmulation()
    {
        if (!Avx512Bf16Kernel.TryGet(out var problem)) Assert.Ignore($"the AVX512-BF16 kernel cannot run here: {problem}");
        var (inputs, targets) = FixtureBatch();
        using var _i = inputs; using var _t = targets;
        var dot = new CpuBackend(CpuGemm.Ours);
        Assert.That(dot.Bf16Gemm, Is.EqualTo(CpuBf16Gemm.OursAvx512Bf16));
        using var f32 = GptNeoXCheckpoint.Load(Fixture, dot);
        using var bf16 = GptNeoXCheckpoint.Load(Fixture, dot);
        bf16.Precision = Precision.Bf16;
        using var emulated = GptNeoXCheckpoint.Load(Fixture, EmulatingBackend.Create(Emulable));
        var full = Forward(f32, inputs, targets); var mixed = Forward(bf16, inputs, targets); var emu = Forward(emulated, inputs, targets);
        double forwardBudget = 2 * (4 * f32.Config.NumLayers + 1) * PerGemm;
        double vsF32 = RelativeRms(mixed.Logits, full.Logits), vsEmulation = RelativeRms(mixed.Logits, emu.Logits);
        var g32 = Gradients(f32, inputs, targets); var g16 = Gradients(bf16, inputs, targets);
        var gEmu = Gradients(emulated, inputs, targets);
        double gradientBudget = 3 * forwardBudget, gVsF32 = RelativeRms(g16, g32), gVsEmulation = RelativeRms(g16, gEmu);
        TestContext.Out.WriteLine($"logits: vs f32 {vsF32:0.0e+00}, vs emulation {vsEmulation:0.0e+00} (budget {forwardBudget:0.0e+00}); " +
            $"gradients: vs f32 {gVsF32:0.0e+00}, vs emulation {gVsEmulation:0.0e+00} (budget {gradientBudget:0.0e+00})");
        Assert.That(vsF32, Is.LessThanOrEqualTo(forwardBudget).And.GreaterThan(U / 16), "logits vs f32");
        Assert.That(vsEmulation, Is.LessThanOrEqualTo(forwardBudget), "logits vs the emulation");
        Assert.That(gVsF32, Is.LessThanOrEqualTo(gradientBudget).And.GreaterThan(U / 16), "gradients vs f32");
        Assert.That(gVsEmulation, Is.LessThanOrEqualTo(gradientBudget), "gradients vs the emulation");
    }

    static ushort[] Bits(Tensor bf16)
    {
        using var c = bf16.Contiguous();
        return c.AsSpan<ushort>().ToArray();
    }

    [Test]
    public void TheBf16CopyIsTheRoundedMasterAfterLoadAndAfterEveryStep()
    {
        var (inputs, targets) = FixtureBatch();
        using var _i = inputs; using var _t = targets;
        using var model = GptNeoXCheckpoint.Load(Fixture, CpuBackend.Instance);
        model.Precision = Precision.Bf16;
        var ps = model.Parameters;
        var copied = ps.Entries.Where(p => p.Shape.Length == 2 && p.Name != GptNeoX.EmbedIn).ToList();
        Assert.That(copied.Select(p => p.Name), Has.Member(GptNeoX.EmbedOut).And.Member("gpt_neox.layers.1.mlp.dense_4h_to_h.weight"));
        Assert.That(ps.LowPrecision!.Count, Is.EqualTo(copied.Sum(p => p.Count)), "matrices only: embed_in is gathered from f32");
        void Check(string when)
        {
            foreach (var p in copied)
            {
                var want = ps[p.Name].ToFloatArray().Select(ReferenceRne).ToArray();
                Assert.That(Bits(ps.LowPrecisionOf(p.Name)), Is.EqualTo(want), $"{p.Name} {when}");
            }
        }
        Check("after the load");
        using var opt = new AdamWOptimizer(ps, new AdamWSettings(1e-2f));
        for (int step = 1; step <= 2; step++)
        {
            var before = Bits(ps.LowPrecisionOf(GptNeoX.EmbedOut));
            Gradients(model, inputs, targets);
            opt.Update(1e-2f, 1f);
            Assert.That(Bits(ps.LowPrecisionOf(GptNeoX.EmbedOut)), Is.Not.EqualTo(before), "the step moved the weights");
            Check($"after step {step}");
        }
        using var host = ps.Flat.ToCpu();
        host.AsSpan<float>().Fill(0.3f);
        model.LoadFlat(host);
        Check("after LoadFlat");
        model.Precision = Precision.F32;
        Assert.That(ps.LowPrecision, Is.Null, "back to f32 frees the copy");
    }

    // ---------------------------------------------------------------- training

    static GptNeoXConfig Tiny =>
        new() { VocabSize = 4096, HiddenSize = 32, NumLayers = 2, NumHeads = 2, IntermediateSize = 64, MaxPositionEmbeddings = 64 };

    static (double[] Losses, float[] Weights) Train(
        string run, Precision precision, int steps, int stopAfter = int.MaxValue, bool resume = false)
    {
        using var data = TokenDataset.Open(TestData.AustenSlice);
        using var model = GptNeoX.CreateRandom(Tiny, CpuBackend.Instance, 11);
        model.Precision = precision;
        var options = new TrainOptions
        {
            RunDir = run, SeqLen = 32, MicroBatch = 4, Steps = steps, SaveEvery = 3, EvalTokens = 1024, Seed = 7,
            Schedule = new LrSchedule(ScheduleKind.Cosine, 1e-2f, 1e-3f, 2, steps), Adam = new AdamWSettings(1e-2f),
        };
        using var trainer = new Trainer(model, data, options);
        if (resume) Assert.That(trainer.TryResume(), Is.True);
        var losses = new List<double>();
        using var cts = new CancellationTokenSource();
        try { trainer.Run(onStep: r => { losses.Add(r.Loss); if (r.Step == stopAfter) cts.Cancel(); }, cancel: cts.Token); }
        catch (OperationCanceledException) { }
        return (losses.ToArray(), model.Parameters.Flat.ToFloatArray());
    }

    [Test]
    public void Bf16TrainingLearnsLikeF32AndResumesBitIdentically()
    {
        var root = Directory.CreateTempSubdirectory("whittle-bf16-").FullName;
        try
        {
            const int steps = 30;
            var f32 = Train(Path.Combine(root, "f32"), Precision.F32, steps);
            var bf16 = Train(Path.Combine(root, "bf16"), Precision.Bf16, steps);
            // Progress = mean loss of the first 3 steps minus that of the last 3 (one batch is noisy). Gradients differ
            // from f32 by at most ε (the bound of the gradient test), so each AdamW step descends by (1 ± ε) of the f32
            // step to first order; over the run we allow 2ε either way.
            double Progress(double[] l) => l.Take(3).Average() - l.TakeLast(3).Average();
            double eps = 2 * 3 * (4 * Tiny.NumLayers + 1) * PerGemm;
            TestContext.Out.WriteLine($"loss {f32.Losses[0]:F3} → {f32.Losses[^1]:F3} (f32), {bf16.Losses[0]:F3} → {bf16.Losses[^1]:F3} " +
                $"(bf16); ε = {eps:F3}");
            Assert.That(Progress(f32.Losses), Is.GreaterThan(0.5), "the f32 run learns");
            Assert.That(Progress(bf16.Losses) / Progress(f32.Losses), Is.InRange(1 - 2 * eps, 1 + 2 * eps), "bf16 learns like f32");
            Assert.That(bf16.Losses, Is.Not.EqualTo(f32.Losses), "the bf16 run computes differently");

            // The bf16 copy is refreshed from the restored masters: a resumed bf16 run is the uninterrupted one, bit for bit.
            var split = Path.Combine(root, "split");
            Train(split, Precision.Bf16, 6, stopAfter: 3);
            var second = Train(split, Precision.Bf16, 6, resume: true);
            var straight = Train(Path.Combine(root, "straight"), Precision.Bf16, 6);
            Assert.That(second.Losses, Is.EqualTo(straight.Losses.Skip(3)), "losses after the resume");
            Assert.That(second.Weights, Is.EqualTo(straight.Weights), "final weights");
        }
        finally { Directory.Delete(root, true); }
    }
}
