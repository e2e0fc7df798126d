using Whittle.Native.Verification;
using Whittle.Native.Autograd;
using Whittle.Native.Cuda;
using Whittle.Native.Evaluation;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Cuda;

/// <summary>
/// Every family's whole fixture on the GPU (GPT-NeoX; Llama, Qwen2, Qwen3, Mistral: RMSNorm, SwiGLU, GQA with KV = H/2
/// and KV = 1, QK-norm, scaled rotary): logits, loss, every gradient and one AdamW step against PyTorch's float64
/// reference, with the CPU engine's tolerances (FixtureParityTests) widened only for TF32 when it is on. Skips without a device.
/// </summary>
[TestFixture("tiny-neox")]
[TestFixture("tiny-neox-seq")]
[TestFixture("tiny-llama")]
[TestFixture("tiny-qwen2")]
[TestFixture("tiny-qwen3")]
[TestFixture("tiny-mistral")]
public class CudaFixtureTests(string fixture)
{
    CudaBackend? _gpu;

    [OneTimeSetUp]
    public void Open()
    {
        _gpu = TestBackends.CudaOrIgnore();
    }

    [OneTimeTearDown]
    public void Close() => _gpu?.Dispose();

    /// <summary>
    /// Evaluation's path (EvalForward: the fused no-grad ops as CUDA composes them, the chunked head) on the GPU: the loss
    /// against PyTorch's float64, at the tolerance of the logits and loss above.
    /// </summary>
    [Test]
    public void EvalForwardLossMatchesPyTorch()
    {
        var dir = Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", fixture);
        using var model = ModelCheckpoint.Load(dir, _gpu!);
        using var expected = new SafeTensorsFile(Path.Combine(dir, "expected.safetensors"));
        var (cpuModel, _, hIn, hTg) = Whittle.Native.Tests.Model.FixtureParityTests.Load(fixture);
        using var _m = cpuModel; using var _i = hIn; using var _t = hTg;
        using var dIn = _gpu!.FromHost(hIn); using var dTg = _gpu.FromHost(hTg);
        int n = (int)hTg.Count;
        using var eval = new EvalForward(model, hIn.Size(0), hIn.Size(1), chunkRows: 5);
        double loss = eval.LossSum(dIn, dTg, -100) / n;
        double tol = ModelParity.GradientTolerance * (_gpu.AllowTf32 ? ModelParity.Tf32Factor : 1) / 10;
        Assert.That(Math.Abs(loss / expected.ReadFloats("loss")[0] - 1), Is.LessThan(tol), "loss");
    }

    /// <summary>
    /// EvalForward in bf16 mode on the GPU (cuBLAS(Lt) bf16 GEMMs, and on CUDA the bf16 tensor-core attention of
    /// Model/Precision.cs) against the CPU's bf16 EvalForward. Both round every GEMM input to bf16 and accumulate in f32,
    /// so they differ by f32 summation order, which can move a value across a bf16 rounding boundary, and by the GPU's
    /// bf16 attention: held to the bf16 budget of Bf16GemmTests' eval test (|ΔCE| ≲ √2·2G·sqrt(2/3)·u·RMS(z), G = 4L + 1
    /// GEMMs, u = 2^-8), and the GPU's bf16 loss must not be its f32 loss (the bf16 path is in use).
    /// </summary>
    [Test]
    public void EvalForwardInBf16IsTheCpusWithinTheBf16Budget()
    {
        var dir = Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", fixture);
        var (cpu, _, hIn, hTg) = Whittle.Native.Tests.Model.FixtureParityTests.Load(fixture);
        using var _m = cpu; using var _i = hIn; using var _t = hTg;
        using var gpu = ModelCheckpoint.Load(dir, _gpu!);
        using var dIn = _gpu!.FromHost(hIn); using var dTg = _gpu.FromHost(hTg);
        int b = hIn.Size(0), t = hIn.Size(1), n = (int)hTg.Count;
        double rmsLogits;
        using (var tape = new Tape(cpu.Backend, recording: false))
            rmsLogits = Math.Sqrt(cpu.Forward(tape, hIn).Data.ToFloatArray().Average(v => (double)v * v));
        double GpuLoss()
        {
            using var eval = new EvalForward(gpu, b, t, chunkRows: 5);
            return eval.LossSum(dIn, dTg, -100) / n;
        }
        double gpu32 = GpuLoss();
        gpu.Precision = Precision.Bf16;
        cpu.Precision = Precision.Bf16;
        double gpu16 = GpuLoss();
        double cpu16;
        using (var eval = new EvalForward(cpu, b, t, chunkRows: 5)) cpu16 = eval.LossSum(hIn, hTg, -100) / n;
        double budget = Math.Sqrt(2) * 2 * (4 * cpu.Config.NumLayers + 1) * Math.Sqrt(2.0 / 3) / 256 * rmsLogits;
        TestContext.Out.WriteLine($"{fixture}: bf16 loss gpu {gpu16:R}, cpu {cpu16:R}, gpu f32 {gpu32:R} (budget {budget:0.0e+00})");
        Assert.That(Math.Abs(gpu16 - cpu16), Is.LessThanOrEqualTo(budget), "GPU bf16 vs CPU bf16");
        Assert.That(gpu16, Is.Not.EqualTo(gpu32), "the bf16 path is in use");
    }

    [Test]
    public void ForwardBackwardAndAdamWMatchPyTorch()
    {
        var dir = Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", fixture);
        using var model = ModelCheckpoint.Load(dir, _gpu!);
        using var expected = new SafeTensorsFile(Path.Combine(dir, "expected.safetensors"));
        using var tokenTensor = expected.ReadTensor("tokens");   // (B, T+1)
        var tokens = tokenTensor.ToIntArray();
        int b = tokenTensor.Size(0), t = tokenTensor.Size(1) - 1;
        var inputs = new int[b * t]; var targets = new int[b * t];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t; j++) { inputs[i * t + j] = tokens[i * (t + 1) + j]; targets[i * t + j] = tokens[i * (t + 1) + j + 1]; }
        using var hIn = Tensor.FromArray(inputs, b, t); using var hTg = Tensor.FromArray(targets, b * t);
        using var dIn = _gpu!.FromHost(hIn); using var dTg = _gpu.FromHost(hTg);
        double tol = ModelParity.GradientTolerance * (_gpu.AllowTf32 ? ModelParity.Tf32Factor : 1);   // logits and loss: tol / 10

        model.Parameters.EnsureGrad();
        using (var tape = new Tape(_gpu))
        {
            var logits = model.Forward(tape, dIn);
            Assert.That(Errors.Scaled(logits.Data.ToFloatArray(), expected.ReadFloats("logits")), Is.LessThan(tol / 10), "logits");
            var loss = tape.CrossEntropy(logits, dTg);
            Assert.That(Math.Abs(loss.Data.ToFloatArray()[0] / expected.ReadFloats("loss")[0] - 1), Is.LessThan(tol / 10), "loss");
            tape.Backward(loss);
        }
        foreach (var p in model.Parameters.Entries)
            Assert.That(
                Errors.Scaled(model.Parameters.Grad(p.Name).ToFloatArray(), expected.ReadFloats("grad." + p.Name)), Is.LessThan(tol),
                $"gradient of {p.Name}");

        // One AdamW step from PyTorch's gradients (isolates the optimizer kernel).
        var md = expected.Metadata;
        var settings = new AdamWSettings(
            float.Parse(md["adamw.lr"]), float.Parse(md["adamw.beta1"]), float.Parse(md["adamw.beta2"]), float.Parse(md["adamw.eps"]),
            float.Parse(md["adamw.weight_decay"]));
        using var hostGrad = Tensor.Zeros((int)model.Parameters.Count);
        foreach (var p in model.Parameters.Entries)
            expected.ReadFloats("grad." + p.Name, hostGrad.AsSpan<float>().Slice((int)p.Offset, (int)p.Count));
        using var devGrad = _gpu.FromHost(hostGrad);
        using var m = _gpu.Zeros(DType.F32, (int)model.Parameters.Count); using var v = _gpu.Zeros(DType.F32, (int)model.Parameters.Count);
        _gpu.AdamW(model.Parameters.Flat, devGrad, m, v, model.Parameters.DecayCount, settings, 1, 1f);
        var after = model.Parameters.Flat.ToFloatArray();
        foreach (var p in model.Parameters.Entries)
            Assert.That(
                Errors.Scaled(after.AsSpan((int)p.Offset, (int)p.Count).ToArray(), expected.ReadFloats("adamw." + p.Name)),
                Is.LessThan(ModelParity.AdamWTolerance), $"{p.Name} after AdamW");
    }
}
