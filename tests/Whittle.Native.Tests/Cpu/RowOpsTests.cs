using Whittle.Native.Cpu;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Cpu;

/// <summary>
/// The CPU backend's vectorised row ops (CpuBackend.cs): SumRows (bias gradients) and LayerNorm forward and backward, against
/// float64 references written here from the formulas, at a width that leaves a scalar tail after the 8-wide vectors
/// (C = 259), a row count over three 64-row reduction chunks (N = 150), a strided sub-matrix for SumRows, and outputs that
/// start non-zero (the backward ops add to them).
///
/// Tolerances, per element, first-order bounds for the f32 steps (u = 2^-24); the double sums' own error (~1e-16 of the sum
/// of magnitudes) is negligible beside them:
///  - SumRows: the double column sum s is rounded to f32 and added to dBias: |got − ref| ≤ u·(|s| + |ref|);
///  - LayerNorm forward: mean m and rstd r are f32 roundings of double values (each off by u relative), then ((x − m)·r)·w + b
///    is four f32 operations: |got − ref| ≤ 4u·(|x − m|·r·|w| + |m|·r·|w| + |b| + |ref|) covers all of them;
///  - LayerNorm backward: x̂ = (x − m)·r in f32 is off by e = 3u·(|x̂| + |m|·r); dx = r·(dy·w − mean(g) − x̂·mean(g·x̂)) in
///    double from those, rounded once and added: ≤ 4u·r·(|dy·w| + |mean g| + |x̂·mean(g x̂)|)
///    + r·e·|mean(g x̂)| + r·|x̂|·mean(|g|·e) + u·|ref|;
///    dW = Σ dy·x̂: ≤ Σ|dy|·e + u·(|Σ| + |ref|); dBias as SumRows.
/// A wrong column, chunk or tail is off by O(1) of these magnitudes.
/// </summary>
public class RowOpsTests
{
    const double U = 1.0 / (1 << 24);
    const int N = 150, C = 259;

    static float[] Random(int n, double scale, double offset, ulong seed)
    {
        var a = new float[n];
        new Rng(seed).FillNormal(a, 0, 1);
        for (int i = 0; i < n; i++) a[i] = (float)(a[i] * scale + offset);
        return a;
    }

    [Test]
    public void SumRowsOfAStridedMatrixMatchesFloat64()
    {
        const int ld = C + 5;   // a (N, C) view of an (N, C + 5) buffer: a sub-network's narrowed output
        var data = Random(N * ld, 2, 0.3, 1);
        using var full = Tensor.FromArray(data, N, ld);
        var dy = full.Narrow(1, 0, C);
        var init = Random(C, 1, 0, 2);
        using var dBias = Tensor.FromArray((float[])init.Clone(), C);
        CpuBackend.Instance.SumRows(dy, dBias);
        var got = dBias.ToFloatArray();
        for (int j = 0; j < C; j++)
        {
            double s = 0;
            for (int i = 0; i < N; i++) s += data[i * ld + j];
            double reference = init[j] + s;
            Assert.That(got[j], Is.EqualTo(reference).Within(U * (Math.Abs(s) + Math.Abs(reference))), $"column {j}");
        }
    }

    [Test]
    public void LayerNormForwardAndBackwardMatchFloat64()
    {
        var x = Random(N * C, 1.5, 0.7, 3); var w = Random(C, 0.2, 1, 4); var b = Random(C, 0.1, 0, 5);
        var dy = Random(N * C, 1, 0, 6); var dxInit = Random(N * C, 0.5, 0, 7);
        var dwInit = Random(C, 1, 0, 8); var dbInit = Random(C, 1, 0, 9);
        const float eps = 1e-5f;
        using var tx = Tensor.FromArray(x, N, C); using var tw = Tensor.FromArray(w, C); using var tb = Tensor.FromArray(b, C);
        using var y = Tensor.Zeros(N, C); using var mean = Tensor.Zeros(N); using var rstd = Tensor.Zeros(N);
        var cpu = CpuBackend.Instance;
        cpu.LayerNormForward(tx, tw, tb, eps, y, mean, rstd);
        using var tdy = Tensor.FromArray(dy, N, C); using var dx = Tensor.FromArray((float[])dxInit.Clone(), N, C);
        using var dw = Tensor.FromArray((float[])dwInit.Clone(), C); using var db = Tensor.FromArray((float[])dbInit.Clone(), C);
        cpu.LayerNormBackward(tdy, tx, tw, mean, rstd, dx, dw, db);
        float[] gy = y.ToFloatArray(), gdx = dx.ToFloatArray(), gdw = dw.ToFloatArray(), gdb = db.ToFloatArray();

        var dwSum = new double[C]; var dwErr = new double[C]; var dbSum = new double[C];
        for (int i = 0; i < N; i++)
        {
            double mu = 0, var = 0;
            for (int j = 0; j < C; j++) mu += x[i * C + j];
            mu /= C;
            for (int j = 0; j < C; j++) var += (x[i * C + j] - mu) * (x[i * C + j] - mu);
            double r = 1 / Math.Sqrt(var / C + eps);
            var xhat = new double[C];
            double meanG = 0, meanGx = 0, meanGxErr = 0;   // meanGxErr: what x̂'s f32 error can move mean(g·x̂) by
            for (int j = 0; j < C; j++)
            {
                xhat[j] = (x[i * C + j] - mu) * r;
                double reference = xhat[j] * w[j] + b[j];
                double tol = 4 * U * ((Math.Abs(x[i * C + j] - mu) + Math.Abs(mu)) * r * Math.Abs(w[j]) + Math.Abs(b[j]) +
                    Math.Abs(reference));
                Assert.That(gy[i * C + j], Is.EqualTo(reference).Within(tol), $"y[{i}, {j}]");
                double g = (double)dy[i * C + j] * w[j];
                meanG += g / C; meanGx += g * xhat[j] / C;
                meanGxErr += Math.Abs(g) * 3 * U * (Math.Abs(xhat[j]) + Math.Abs(mu) * r) / C;
            }
            for (int j = 0; j < C; j++)
            {
                double e = 3 * U * (Math.Abs(xhat[j]) + Math.Abs(mu) * r);
                double g = (double)dy[i * C + j] * w[j];
                double reference = dxInit[i * C + j] + r * (g - meanG - xhat[j] * meanGx);
                double tol = 4 * U * r * (Math.Abs(g) + Math.Abs(meanG) + Math.Abs(xhat[j] * meanGx)) +
                    r * (e * Math.Abs(meanGx) + Math.Abs(xhat[j]) * meanGxErr) + U * Math.Abs(reference);
                Assert.That(gdx[i * C + j], Is.EqualTo(reference).Within(tol), $"dx[{i}, {j}]");
                dwSum[j] += dy[i * C + j] * xhat[j]; dwErr[j] += Math.Abs(dy[i * C + j]) * e; dbSum[j] += dy[i * C + j];
            }
        }
        for (int j = 0; j < C; j++)
        {
            double rw = dwInit[j] + dwSum[j], rb = dbInit[j] + dbSum[j];
            Assert.That(gdw[j], Is.EqualTo(rw).Within(dwErr[j] + U * (Math.Abs(dwSum[j]) + Math.Abs(rw))), $"dWeight[{j}]");
            Assert.That(gdb[j], Is.EqualTo(rb).Within(U * (Math.Abs(dbSum[j]) + Math.Abs(rb))), $"dBias[{j}]");
        }
    }
}
