using System.Diagnostics;

namespace Whittle.Cli;

/// <summary>
/// `whittle bench --profile`: wraps a backend and adds up the wall time of each op (the backend is synchronised after
/// every call, so on CUDA an op's time is its kernels' time plus one launch round trip). MatMul is keyed by its shape
/// and layout, since the GEMMs are what a CPU step is mostly made of. Only the timed steps are counted (Reset after
/// warm-up); the report divides by the number of timed steps.
/// </summary>
sealed class ProfilingBackend(IBackend inner) : IBackend
{
    readonly Dictionary<string, (double Seconds, long Calls)> _ops = new();

    public IBackend Inner => inner;
    public void Reset() => _ops.Clear();

    T Time<T>(string op, Func<T> body)
    {
        var sw = Stopwatch.StartNew();
        var r = body();
        inner.Synchronize();
        var (s, n) = _ops.GetValueOrDefault(op);
        _ops[op] = (s + sw.Elapsed.TotalSeconds, n + 1);
        return r;
    }

    void Time(string op, Action body) => Time(op, () => { body(); return 0; });

    /// <summary>Per-op seconds per step and share of the step, largest first.</summary>
    public JsonArray Report(int steps, double stepSeconds)
    {
        var rows = new JsonArray();
        foreach (var (op, (s, n)) in _ops.OrderByDescending(kv => kv.Value.Seconds))
            rows.Add((JsonNode)new JsonObject
            {
                ["op"] = op,
                ["ms_per_step"] = Math.Round(s / steps * 1e3, 3),
                ["calls_per_step"] = Math.Round((double)n / steps, 2),
                ["share_of_step"] = Math.Round(s / steps / stepSeconds, 4),
            });
        return rows;
    }

    public Device Device => inner.Device;
    public string Name => inner.Name;
    public Tensor Empty(DType dtype, params int[] shape) => inner.Empty(dtype, shape);
    public Tensor Zeros(DType dtype, params int[] shape) => Time("Zeros", () => inner.Zeros(dtype, shape));
    public Tensor FromHost(Tensor host) => Time("FromHost", () => inner.FromHost(host));
    public void Copy(Tensor src, Tensor dst) => Time("Copy", () => inner.Copy(src, dst));
    public void Fill(Tensor dst, float value) => Time("Fill", () => inner.Fill(dst, value));
    public void Synchronize() => inner.Synchronize();
    public void Dispose() => inner.Dispose();
    public void EmbeddingForward(Tensor ids, Tensor weight, Tensor output) =>
        Time("EmbeddingForward", () => inner.EmbeddingForward(ids, weight, output));
    public void EmbeddingBackward(Tensor ids, Tensor dOutput, Tensor dWeight) =>
        Time("EmbeddingBackward", () => inner.EmbeddingBackward(ids, dOutput, dWeight));
    public void LayerNormForward(Tensor x, Tensor weight, Tensor bias, float eps, Tensor y, Tensor mean, Tensor rstd) =>
        Time("LayerNormForward", () => inner.LayerNormForward(x, weight, bias, eps, y, mean, rstd));
    public void LayerNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd, Tensor dx, Tensor dWeight, Tensor dBias) =>
        Time("LayerNormBackward", () => inner.LayerNormBackward(dy, x, weight, mean, rstd, dx, dWeight, dBias));

    public void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, float alpha = 1f, float beta = 0f, Tensor? bias = null)
    {
        int k = transA ? a.Size(0) : a.Size(1);
        string key = $"MatMul {c.Size(0)}x{c.Size(1)}x{k} {(transA ? 'T' : 'N')}{(transB ? 'T' : 'N')}{(bias is null ? "" : " +bias")}";
        Time(key, () => inner.MatMul(a, transA, b, transB, c, alpha, beta, bias));
    }

    public void SumRows(Tensor dy, Tensor dBias) => Time("SumRows", () => inner.SumRows(dy, dBias));
    public void RmsNormForward(Tensor x, Tensor weight, float eps, Tensor y, Tensor rstd) =>
        Time("RmsNormForward", () => inner.RmsNormForward(x, weight, eps, y, rstd));
    public void RmsNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor dx, Tensor dWeight) =>
        Time("RmsNormBackward", () => inner.RmsNormBackward(dy, x, weight, rstd, dx, dWeight));
    public void SwiGluForward(Tensor gate, Tensor up, Tensor y) => Time("SwiGluForward", () => inner.SwiGluForward(gate, up, y));
    public void SwiGluBackward(Tensor dy, Tensor gate, Tensor up, Tensor dGate, Tensor dUp) =>
        Time("SwiGluBackward", () => inner.SwiGluBackward(dy, gate, up, dGate, dUp));
    public void RotaryForward(Tensor x, Tensor cos, Tensor sin) => Time("RotaryForward", () => inner.RotaryForward(x, cos, sin));
    public void RotaryBackward(Tensor dx, Tensor cos, Tensor sin) => Time("RotaryBackward", () => inner.RotaryBackward(dx, cos, sin));
    public void AttentionForward(Tensor q, Tensor k, Tensor v, float scale, Tensor output, Tensor lse, AttentionPrecision precision) =>
        Time("AttentionForward", () => inner.AttentionForward(q, k, v, scale, output, lse, precision));
    public void AttentionBackward(
        Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse, float scale, Tensor dq, Tensor dk, Tensor dv,
        AttentionPrecision precision) =>
        Time("AttentionBackward", () => inner.AttentionBackward(dOut, q, k, v, output, lse, scale, dq, dk, dv, precision));
    public void AddLayerNormForward(Tensor x, Tensor? delta, Tensor? deltaBias, Tensor weight, Tensor bias, float eps, Tensor y) =>
        Time("AddLayerNormForward", () => inner.AddLayerNormForward(x, delta, deltaBias, weight, bias, eps, y));
    public void AddRmsNormForward(Tensor x, Tensor? delta, Tensor? deltaBias, Tensor weight, float eps, Tensor y) =>
        Time("AddRmsNormForward", () => inner.AddRmsNormForward(x, delta, deltaBias, weight, eps, y));
    public void BiasGeluForward(Tensor x, Tensor? bias, Tensor y, bool tanhApproximation) =>
        Time("BiasGeluForward", () => inner.BiasGeluForward(x, bias, y, tanhApproximation));
    public void GeluForward(Tensor x, Tensor y, bool tanhApproximation) =>
        Time("GeluForward", () => inner.GeluForward(x, y, tanhApproximation));
    public void GeluBackward(Tensor dy, Tensor x, Tensor dx, bool tanhApproximation) =>
        Time("GeluBackward", () => inner.GeluBackward(dy, x, dx, tanhApproximation));
    public void Add(Tensor a, Tensor b, Tensor y) => Time("Add", () => inner.Add(a, b, y));
    public void Axpy(float alpha, Tensor x, Tensor y) => Time("Axpy", () => inner.Axpy(alpha, x, y));
    public void Scale(Tensor x, float alpha) => Time("Scale", () => inner.Scale(x, alpha));
    public void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor losses, Tensor? dLogits, float gradScale) =>
        Time("CrossEntropy", () => inner.CrossEntropy(logits, targets, ignoreIndex, losses, dLogits, gradScale));
    public void Distillation(
        Tensor studentLogits, DistillTeacher teacher, Tensor targets, in DistillSettings settings, Tensor losses, Tensor? dStudent)
    {
        var s = settings;
        Time("Distillation", () => inner.Distillation(studentLogits, teacher, targets, s, losses, dStudent));
    }
    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, long decayCount, in AdamWSettings settings, int step, float gradScale)
    {
        var s = settings;
        Time("AdamW", () => inner.AdamW(param, grad, m, v, decayCount, s, step, gradScale));
    }
    public double SumOfSquares(Tensor x) => Time("SumOfSquares", () => inner.SumOfSquares(x));
    public double Sum(Tensor x) => Time("Sum", () => inner.Sum(x));
}
