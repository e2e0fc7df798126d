using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Whittle.Native.Tensors;
using Tensor = Whittle.Native.Tensors.Tensor;

namespace Whittle.Native.Cpu;

/// <summary>
/// The CPU implementation of every op: the ground truth the CUDA kernels are checked against.
/// Policy: exactness and determinism before speed. Reductions accumulate in double, except the GEMM-shaped ones
/// (matmul, and attention's tile products, which run through the same GEMM) that are f32 FMA chains; work is split
/// across threads only along dimensions whose outputs are disjoint, and cross-row reductions (bias and norm gradients,
/// sums) use a fixed chunking (or fixed SIMD lanes) that does not depend on the thread count, so results are
/// bit-identical from run to run. Small ops (under about 32K element-operations) run on the calling thread.
/// Speed comes from SIMD (System.Numerics.Tensors, Vector256) on contiguous rows and a blocked GEMM: MatMul runs
/// OpenBLAS's sgemm when it is installed and faster (CpuGemm.Auto: CpuGemmChoice.Resolve says when) or ours (Gemm.cs;
/// CpuGemm.Ours, which is also bit-identical for any thread count).
/// </summary>
public sealed unsafe partial class CpuBackend : IBackend
{
    /// <summary>Rows per chunk in cross-row reductions; fixed so results do not depend on the thread count.</summary>
    const int ReductionChunk = 64;

    public static CpuBackend Instance { get; } = new();

    /// <summary>The GEMM MatMul runs (Auto resolved): ours (possibly a forced micro-kernel) or OpenBLAS. Attention's tile products
    /// always run ours, serially inside their own parallel loop over (batch, head, tile).</summary>
    public CpuGemm GemmChoice { get; }

    /// <summary>A backend whose MatMul uses the GEMM chosen by WHITTLE_CPU_GEMM (auto | ours | openblas | ours-scalar | ours-avx2 |
    /// ours-avx512 | ours-avx512bf16; default auto).</summary>
    public CpuBackend() : this(CpuGemmChoice.FromEnvironment()) { }

    public CpuBackend(CpuGemm gemm)
    {
        GemmChoice = CpuGemmChoice.Resolve(gemm, Environment.ProcessorCount);
        _kernel = CpuGemmChoice.KernelOf(GemmChoice);
        Bf16Gemm = CpuGemmChoice.ResolveBf16(gemm, GemmChoice);
    }

    /// <summary>The GEMM MatMul runs on bf16 operands (--precision bf16): the AVX512-BF16 kernel, ours packing bf16 widened,
    /// or OpenBLAS's sgemm on widened copies (see <see cref="CpuGemmChoice.ResolveBf16"/>).</summary>
    public CpuBf16Gemm Bf16Gemm { get; }

    /// <summary>The micro-kernel of our GEMM when a path is forced (ours-scalar | ours-avx2 | ours-avx512), else null
    /// (the widest). Attention's tile products use it too, so a forced path covers every GEMM the backend runs.</summary>
    readonly Gemm.Kernel? _kernel;

    public Device Device => Device.Cpu;
    public string Name =>
        $"cpu ({Environment.ProcessorCount} threads{(Avx2.IsSupported ? ", AVX2" : "")}{(Fma.IsSupported ? "+FMA" : "")}, gemm " +
        $"{CpuGemmChoice.Name(GemmChoice)}, bf16 gemm {CpuGemmChoice.Name(Bf16Gemm)})";

    // ---------------------------------------------------------------- memory

    public Tensor Empty(DType dtype, params int[] shape) => Tensor.Empty(dtype, shape);
    public Tensor Zeros(DType dtype, params int[] shape) => Tensor.Zeros(dtype, shape);
    public Tensor FromHost(Tensor host) => host.Contiguous();
    public void Synchronize() { }
    public void Dispose() { }

    public void Copy(Tensor src, Tensor dst)
    {
        ArgCheck.SameShape(src, dst, nameof(Copy));
        if (src.DType == dst.DType && src.DType.SizeOf() == 4)
        {
            Rows(src, dst, static (s, d, n) => new Span<float>(s, n).CopyTo(new Span<float>(d, n)));
            return;
        }
        if (src.DType == DType.F32 && dst.DType == DType.BF16)
        {
            Rows(src, dst, static (s, d, n) => RoundToBf16((float*)s, (ushort*)d, n));
            return;
        }
        if (src.DType == DType.BF16 && dst.DType == DType.F32)
        {
            Rows(src, dst,
                static (s, d, n) => { var b = (ushort*)s; var f = (float*)d; for (int i = 0; i < n; i++) f[i] = Bf16.ToFloat(b[i]); });
            return;
        }
        if (src.DType == dst.DType && src.DType.SizeOf() == 2)
        {
            Rows(src, dst, static (s, d, n) => new Span<ushort>(s, n).CopyTo(new Span<ushort>(d, n)));
            return;
        }
        throw new NotSupportedException($"Copy from {src.DType.Name()} to {dst.DType.Name()}");
    }

    /// <summary>
    /// dst[0..n) = src[0..n) rounded to bf16, nearest even (Bf16.FromFloat), 16 values at a time: bf16 mode's GEMM-input
    /// cast, once per Linear, so it runs at memory speed. The same bits as the scalar form: add 0x7FFF plus the lowest
    /// kept bit, keep the top half; a NaN keeps its sign and top bits with the quiet bit set.
    /// </summary>
    static void RoundToBf16(float* src, ushort* dst, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var magnitude = Vector256.Create(0x7FFFFFFFu);
            var infinity = Vector256.Create(0x7F800000u);
            var half = Vector256.Create(0x7FFFu);
            var one = Vector256.Create(1u);
            var quiet = Vector256.Create(0x40u);
            for (; i + 16 <= n; i += 16)
            {
                var lo = Round(Vector256.Load((uint*)(src + i)));
                var hi = Round(Vector256.Load((uint*)(src + i + 8)));
                Vector256.Store(Vector256.Narrow(lo, hi), dst + i);
            }
            Vector256<uint> Round(Vector256<uint> u)
            {
                var nan = Vector256.GreaterThan(u & magnitude, infinity);
                var rounded = Vector256.ShiftRightLogical(u + half + (Vector256.ShiftRightLogical(u, 16) & one), 16);
                return Vector256.ConditionalSelect(nan, Vector256.ShiftRightLogical(u, 16) | quiet, rounded);
            }
        }
        for (; i < n; i++) dst[i] = Bf16.FromFloat(src[i]);
    }

    public void Fill(Tensor dst, float value)
    {
        if (dst.DType == DType.F32) { Rows(dst, dst, (s, d, n) => new Span<float>(d, n).Fill(value)); return; }
        if (dst.DType == DType.I32) { Rows(dst, dst, (s, d, n) => new Span<int>(d, n).Fill((int)value)); return; }
        if (dst.DType == DType.BF16) { var b = Bf16.FromFloat(value); Rows(dst, dst, (s, d, n) => new Span<ushort>(d, n).Fill(b)); return; }
        throw new NotSupportedException($"Fill of {dst.DType.Name()}");
    }

    // ---------------------------------------------------------------- embedding

    public void EmbeddingForward(Tensor ids, Tensor weight, Tensor output)
    {
        var (v, c) = ArgCheck.Matrix(weight, "weight");
        int n = ArgCheck.Vector(ids, DType.I32, "ids");
        ArgCheck.Shape(output, nameof(output), n, c);
        ArgCheck.Contiguous(output, nameof(output));
        int* id = (int*)ids.Pointer; float* w = (float*)weight.Pointer; float* o = (float*)output.Pointer; long ldw = weight.Stride(0);
        for (int i = 0; i < n; i++)
        {
            int t = id[i];
            if ((uint)t >= (uint)v)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {t} at position {i} is outside the vocabulary [0, {v})");
            new Span<float>(w + t * ldw, c).CopyTo(new Span<float>(o + (long)i * c, c));
        }
    }

    public void EmbeddingBackward(Tensor ids, Tensor dOutput, Tensor dWeight)
    {
        var (v, c) = ArgCheck.Matrix(dWeight, nameof(dWeight));
        int n = ArgCheck.Vector(ids, DType.I32, "ids");
        ArgCheck.Shape(dOutput, nameof(dOutput), n, c);
        ArgCheck.Contiguous(dOutput, nameof(dOutput));
        int* id = (int*)ids.Pointer; float* dw = (float*)dWeight.Pointer; float* dout = (float*)dOutput.Pointer;
        long ldw = dWeight.Stride(0);
        // Sequential over positions: repeated ids hit the same row, and a fixed order keeps the sum deterministic.
        for (int i = 0; i < n; i++)
        {
            int t = id[i];
            if ((uint)t >= (uint)v)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {t} at position {i} is outside the vocabulary [0, {v})");
            var row = new Span<float>(dw + t * ldw, c);
            TensorPrimitives.Add(row, new ReadOnlySpan<float>(dout + (long)i * c, c), row);
        }
    }

    // ---------------------------------------------------------------- layernorm

    public void LayerNormForward(Tensor x, Tensor weight, Tensor bias, float eps, Tensor y, Tensor mean, Tensor rstd)
    {
        var (n, c) = ArgCheck.ContiguousMatrix(x, nameof(x));
        ArgCheck.Vector(weight, c, nameof(weight)); ArgCheck.Vector(bias, c, nameof(bias));
        ArgCheck.Shape(y, nameof(y), n, c); ArgCheck.Contiguous(y, nameof(y));
        ArgCheck.Vector(mean, n, nameof(mean)); ArgCheck.Vector(rstd, n, nameof(rstd));
        float* px = (float*)x.Pointer, py = (float*)y.Pointer, pw = (float*)weight.Pointer, pb = (float*)bias.Pointer,
            pm = (float*)mean.Pointer, pr = (float*)rstd.Pointer;
        ParallelRows(n, c, i => LayerNormRow(px + (long)i * c, c, pw, pb, eps, py + (long)i * c, pm + i, pr + i));
    }

    /// <summary>One row of <see cref="LayerNormForward"/>: mean and centred variance in double, then o = x̂ · w + b.</summary>
    static void LayerNormRow(float* row, int c, float* pw, float* pb, float eps, float* o, float* mean, float* rstd)
    {
        double mu = SumWidened(row, c) / c;
        float r = (float)(1.0 / Math.Sqrt(SquaredDeviations(row, c, mu) / c + eps));
        float m = (float)mu;
        *mean = m; *rstd = r;
        int j = 0;
        if (Vector256.IsHardwareAccelerated)   // the scalar expression, lane by lane: the same float results
            for (; j + 8 <= c; j += 8)
                ((Vector256.Load(row + j) - Vector256.Create(m)) * r * Vector256.Load(pw + j) + Vector256.Load(pb + j)).Store(o + j);
        for (; j < c; j++) o[j] = (row[j] - m) * r * pw[j] + pb[j];
    }

    public void LayerNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd, Tensor dx, Tensor dWeight, Tensor dBias)
    {
        var (n, c) = ArgCheck.ContiguousMatrix(x, nameof(x));
        ArgCheck.Shape(dy, nameof(dy), n, c); ArgCheck.Contiguous(dy, nameof(dy));
        ArgCheck.Shape(dx, nameof(dx), n, c); ArgCheck.Contiguous(dx, nameof(dx));
        ArgCheck.Vector(weight, c, nameof(weight)); ArgCheck.Vector(dWeight, c, nameof(dWeight)); ArgCheck.Vector(dBias, c, nameof(dBias));
        float* px = (float*)x.Pointer, pdy = (float*)dy.Pointer, pdx = (float*)dx.Pointer, pw = (float*)weight.Pointer,
            pm = (float*)mean.Pointer, pr = (float*)rstd.Pointer;
        int chunks = (n + ReductionChunk - 1) / ReductionChunk;
        var partW = new double[chunks * c]; var partB = new double[chunks * c];
        Parallel.For(0, chunks, ch =>
        {
            var xhatRow = new float[c];
            fixed (float* xhat = xhatRow)   // (c): this row's normalised x
            fixed (double* dw = &partW[ch * c], dbias = &partB[ch * c])   // (c) each: this chunk's sums
            for (int i = ch * ReductionChunk, end = Math.Min(n, i + ReductionChunk); i < end; i++)
            {
                float* xr = px + (long)i * c, dyr = pdy + (long)i * c, dxr = pdx + (long)i * c;
                float m = pm[i], r = pr[i];
                // Vectorised across columns: dWeight's and dBias's partial sums keep each element's chain (bit-identical to
                // a scalar loop); the two row sums run in four double lanes, added up at the end of the row.
                var sumGv = Vector256<double>.Zero; var sumGxv = Vector256<double>.Zero;
                double sumG = 0, sumGx = 0;
                int j = 0;
                if (Vector256.IsHardwareAccelerated)
                    for (; j + 8 <= c; j += 8)
                    {
                        var xh = (Vector256.Load(xr + j) - Vector256.Create(m)) * r;
                        xh.Store(xhat + j);
                        var (dyLo, dyHi) = Vector256.Widen(Vector256.Load(dyr + j));
                        var (wLo, wHi) = Vector256.Widen(Vector256.Load(pw + j));
                        var (xhLo, xhHi) = Vector256.Widen(xh);
                        var gLo = dyLo * wLo; var gHi = dyHi * wHi;
                        sumGv += gLo + gHi; sumGxv += gLo * xhLo + gHi * xhHi;
                        (Vector256.Load(dw + j) + dyLo * xhLo).Store(dw + j);
                        (Vector256.Load(dw + j + 4) + dyHi * xhHi).Store(dw + j + 4);
                        (Vector256.Load(dbias + j) + dyLo).Store(dbias + j);
                        (Vector256.Load(dbias + j + 4) + dyHi).Store(dbias + j + 4);
                    }
                for (; j < c; j++)
                {
                    float xh = (xr[j] - m) * r; xhat[j] = xh;
                    double g = (double)dyr[j] * pw[j];
                    sumG += g; sumGx += g * xh;
                    dw[j] += (double)dyr[j] * xh;
                    dbias[j] += dyr[j];
                }
                double meanG = (sumG + Vector256.Sum(sumGv)) / c, meanGx = (sumGx + Vector256.Sum(sumGxv)) / c;
                j = 0;
                if (Vector256.IsHardwareAccelerated)   // the scalar expression below, lane by lane
                    for (; j + 8 <= c; j += 8)
                    {
                        var (gLo, gHi) = Vector256.Widen(Vector256.Load(dyr + j) * Vector256.Load(pw + j));
                        var (xhLo, xhHi) = Vector256.Widen(Vector256.Load(xhat + j));
                        var mg = Vector256.Create(meanG);
                        var inc = Vector256.Narrow((double)r * (gLo - mg - xhLo * meanGx), (double)r * (gHi - mg - xhHi * meanGx));
                        (Vector256.Load(dxr + j) + inc).Store(dxr + j);
                    }
                for (; j < c; j++) dxr[j] += (float)(r * (dyr[j] * pw[j] - meanG - xhat[j] * meanGx));
            }
        });
        AccumulateChunks(partW, chunks, c, (float*)dWeight.Pointer);
        AccumulateChunks(partB, chunks, c, (float*)dBias.Pointer);
    }

    /// <summary>Σ row[j] in double (four lanes, then the tail).</summary>
    static double SumWidened(float* row, int n)
    {
        var acc = Vector256<double>.Zero; double tail = 0; int j = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; j + 8 <= n; j += 8)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(row + j));
                acc += lo + hi;
            }
        for (; j < n; j++) tail += row[j];
        return Vector256.Sum(acc) + tail;
    }

    /// <summary>Σ (row[j] − mu)² in double (four lanes, then the tail).</summary>
    static double SquaredDeviations(float* row, int n, double mu)
    {
        var acc = Vector256<double>.Zero; double tail = 0; int j = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; j + 8 <= n; j += 8)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(row + j));
                lo -= Vector256.Create(mu); hi -= Vector256.Create(mu);
                acc += lo * lo + hi * hi;
            }
        for (; j < n; j++) { double d = row[j] - mu; tail += d * d; }
        return Vector256.Sum(acc) + tail;
    }

    /// <summary>acc[j] += (double)row[j] for j in [0, n): each element's own chain of additions, vectorised across j only,
    /// so the sums are bit-identical to the scalar loop's.</summary>
    static void AddWidened(float* row, double* acc, int n)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; j + 8 <= n; j += 8)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(row + j));
                (Vector256.Load(acc + j) + lo).Store(acc + j);
                (Vector256.Load(acc + j + 4) + hi).Store(acc + j + 4);
            }
        for (; j < n; j++) acc[j] += row[j];
    }

    static void AccumulateChunks(double[] parts, int chunks, int c, float* dst)
    {
        for (int j = 0; j < c; j++)
        {
            double s = 0;
            for (int ch = 0; ch < chunks; ch++) s += parts[ch * c + j];
            dst[j] += (float)s;
        }
    }

    // ---------------------------------------------------------------- matmul

    public void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, float alpha = 1f, float beta = 0f, Tensor? bias = null)
    {
        bool bf16 = a.DType == DType.BF16 || b.DType == DType.BF16;
        if (bf16 && a.DType != b.DType)
            throw new ArgumentException($"MatMul: a {a.Describe()} and b {b.Describe()} must both be f32 or both bf16");
        if (bf16 && Bf16Gemm == CpuBf16Gemm.OpenBlasWidened)
        {
            // bf16 operands (Model/Precision.cs): widening is exact and so is every product of two bf16 values in f32, so
            // the f32 GEMM of the widened operands differs from a tensor-core GEMM (f32 accumulate) only in addition order.
            using var a32 = Widen(a); using var b32 = Widen(b);
            MatMul(a32, transA, b32, transB, c, alpha, beta, bias);
            return;
        }
        var operands = bf16 ? DType.BF16 : DType.F32;
        var (ar, ac) = ArgCheck.Matrix(a, nameof(a), operands);
        var (br, bc) = ArgCheck.Matrix(b, nameof(b), operands);
        var (m, n) = ArgCheck.Matrix(c, nameof(c));
        int k = transA ? ar : ac;
        int am = transA ? ac : ar, bk = transB ? bc : br, bn = transB ? br : bc;
        if (am != m || bk != k || bn != n)
            throw new ArgumentException($"MatMul shapes: op(a) is ({am}, {k}), op(b) is ({bk}, {bn}), c is ({m}, {n}) [a " +
                $"{a.Describe()}{(transA ? "ᵀ" : "")}, b {b.Describe()}{(transB ? "ᵀ" : "")}]");
        if (bf16 && Bf16Gemm == CpuBf16Gemm.OursAvx512Bf16)
            Gemm.Bf16DotGemm(transA, transB, m, n, k, alpha, (ushort*)a.Pointer, a.Stride(0), (ushort*)b.Pointer, b.Stride(0), beta,
                (float*)c.Pointer, c.Stride(0));
        else if (bf16)
            // Our GEMM packs bf16 directly (widening while packing): the same C, bit for bit, as on widened copies.
            Gemm.Bf16Gemm(transA, transB, m, n, k, alpha, (ushort*)a.Pointer, a.Stride(0), (ushort*)b.Pointer, b.Stride(0), beta,
                (float*)c.Pointer, c.Stride(0), kernel: _kernel);
        else if (GemmChoice == CpuGemm.OpenBlas)
            OpenBlas.Sgemm(
                transA, transB, m, n, k, alpha, (float*)a.Pointer, a.Stride(0), (float*)b.Pointer, b.Stride(0), beta, (float*)c.Pointer,
                c.Stride(0));
        else
            Gemm.Sgemm(transA, transB, m, n, k, alpha, (float*)a.Pointer, a.Stride(0), (float*)b.Pointer, b.Stride(0), beta,
                (float*)c.Pointer, c.Stride(0), kernel: _kernel);
        if (bias is not null)
        {
            ArgCheck.Vector(bias, n, nameof(bias));
            float* pb = (float*)bias.Pointer, pc = (float*)c.Pointer; long ldc = c.Stride(0);
            ParallelRows(m, n, i =>
            {
                var row = new Span<float>(pc + i * ldc, n);
                TensorPrimitives.Add(row, new ReadOnlySpan<float>(pb, n), row);
            });
        }
    }

    Tensor Widen(Tensor bf16)
    {
        var f32 = Tensor.Empty(DType.F32, bf16.ShapeArray);
        Copy(bf16, f32);
        return f32;
    }

    public void SumRows(Tensor dy, Tensor dBias)
    {
        var (m, n) = ArgCheck.Matrix(dy, nameof(dy));
        ArgCheck.Vector(dBias, n, nameof(dBias));
        float* p = (float*)dy.Pointer; long ld = dy.Stride(0);
        int chunks = (m + ReductionChunk - 1) / ReductionChunk;
        var parts = new double[chunks * n];
        Parallel.For(0, chunks, ch =>
        {
            fixed (double* part = &parts[ch * n])   // (n): this chunk's column sums
                for (int i = ch * ReductionChunk, end = Math.Min(m, i + ReductionChunk); i < end; i++)
                    AddWidened(p + i * ld, part, n);
        });
        AccumulateChunks(parts, chunks, n, (float*)dBias.Pointer);
    }

    // ---------------------------------------------------------------- rotary

    public void RotaryForward(Tensor x, Tensor cos, Tensor sin) => Rotate(x, cos, sin, +1f);
    public void RotaryBackward(Tensor dx, Tensor cos, Tensor sin) => Rotate(dx, cos, sin, -1f);

    // Rotation by +angle (forward) or -angle (backward: the transpose of a rotation is its inverse).
    static void Rotate(Tensor x, Tensor cos, Tensor sin, float direction)
    {
        var (b, t, h, d) = ArgCheck.Heads(x, nameof(x));
        var (ct, half) = ArgCheck.ContiguousMatrix(cos, nameof(cos));
        ArgCheck.Shape(sin, nameof(sin), ct, half);
        if (ct < t || 2 * half > d) throw new ArgumentException($"rotary tables {cos.Describe()} do not cover T={t}, head size {d}");
        float* px = (float*)x.Pointer, pc = (float*)cos.Pointer, ps = (float*)sin.Pointer;
        long sb = x.Stride(0), st = x.Stride(1), sh = x.Stride(2);
        ParallelRows(b * t, (long)h * half, bt =>
        {
            int bi = bt / t, ti = bt % t;
            float* c = pc + (long)ti * half, s = ps + (long)ti * half;
            for (int hi = 0; hi < h; hi++)
            {
                float* v = px + bi * sb + ti * st + hi * sh;
                for (int i = 0; i < half; i++)
                {
                    float x1 = v[i], x2 = v[i + half], si = direction * s[i];
                    v[i] = x1 * c[i] - x2 * si;
                    v[i + half] = x2 * c[i] + x1 * si;
                }
            }
        });
    }

    // ---------------------------------------------------------------- gelu

    const double SqrtHalf = 0.7071067811865476, InvSqrt2Pi = 0.3989422804014327, TanhK = 0.7978845608028654, TanhC = 0.044715;

    // GELU in double, four lanes at a time (Vector256<double>, whose Exp is within an ulp of Math.Exp), with the scalar
    // formula for the tail of each range: the same math as before, without a libm call per element.

    public void GeluForward(Tensor x, Tensor y, bool tanhApproximation)
    {
        ArgCheck.SameShape(x, y, "gelu"); ArgCheck.Contiguous(x, nameof(x)); ArgCheck.Contiguous(y, nameof(y));
        float* px = (float*)x.Pointer, py = (float*)y.Pointer;
        ParallelRange(x.Count, (lo, hi) => GeluSpan(px, py, lo, hi, tanhApproximation));
    }

    /// <summary>py[i] = gelu(px[i]) for i in [lo, hi) (py may be px).</summary>
    static void GeluSpan(float* px, float* py, long lo, long hi, bool tanhApproximation)
    {
        long i = lo;
        // the exact form sixteen at a time where the CPU runs Vector512 (two eight-lane chains of the same lane arithmetic)
        if (!tanhApproximation && Vector512.IsHardwareAccelerated)
            for (; i + 16 <= hi; i += 16)
            {
                var x = Vector512.Load(px + i);
                Vector512.Narrow(GeluErf8(Vector512.WidenLower(x)), GeluErf8(Vector512.WidenUpper(x))).Store(py + i);
            }
        // eight at a time as two independent four-lane chains (the exponential's latency overlaps), then four: each element
        // gets the same lane arithmetic as in a four-at-a-time loop, so the bits do not depend on where a range starts
        for (; i + 8 <= hi; i += 8)
        {
            var x = Vector256.Load(px + i);
            Vector256.Narrow(Gelu4(Vector256.WidenLower(x), tanhApproximation), Gelu4(Vector256.WidenUpper(x), tanhApproximation))
                .Store(py + i);
        }
        for (; i + 4 <= hi; i += 4)
        {
            var g = Gelu4(Vector256.WidenLower(Vector128.Load(px + i).ToVector256Unsafe()), tanhApproximation);
            Vector256.Narrow(g, g).GetLower().Store(py + i);
        }
        for (; i < hi; i++)
        {
            double v = px[i];
            py[i] = tanhApproximation
                ? (float)(0.5 * v * (1 + Math.Tanh(TanhK * (v + TanhC * v * v * v))))
                : (float)(0.5 * v * (1 + SpecialFunctions.ErfFast(v * SqrtHalf)));
        }
    }

    public void GeluBackward(Tensor dy, Tensor x, Tensor dx, bool tanhApproximation)
    {
        ArgCheck.SameShape(x, dy, "gelu dy"); ArgCheck.SameShape(x, dx, "gelu dx");
        ArgCheck.Contiguous(x, nameof(x)); ArgCheck.Contiguous(dy, nameof(dy)); ArgCheck.Contiguous(dx, nameof(dx));
        float* px = (float*)x.Pointer, pdy = (float*)dy.Pointer, pdx = (float*)dx.Pointer;
        ParallelRange(x.Count, (lo, hi) =>
        {
            long i = lo;
            if (!tanhApproximation && Vector512.IsHardwareAccelerated)   // sixteen at a time, as in GeluSpan
                for (; i + 16 <= hi; i += 16)
                {
                    var x = Vector512.Load(px + i); var dy = Vector512.Load(pdy + i);
                    var inc = Vector512.Narrow(Vector512.WidenLower(dy) * GeluErfGrad8(Vector512.WidenLower(x)),
                        Vector512.WidenUpper(dy) * GeluErfGrad8(Vector512.WidenUpper(x)));
                    (Vector512.Load(pdx + i) + inc).Store(pdx + i);
                }
            for (; i + 8 <= hi; i += 8)   // two independent four-lane chains, then four at a time (as in GeluSpan)
            {
                var x = Vector256.Load(px + i); var dy = Vector256.Load(pdy + i);
                var inc = Vector256.Narrow(Vector256.WidenLower(dy) * GeluGrad4(Vector256.WidenLower(x), tanhApproximation),
                    Vector256.WidenUpper(dy) * GeluGrad4(Vector256.WidenUpper(x), tanhApproximation));
                (Vector256.Load(pdx + i) + inc).Store(pdx + i);
            }
            for (; i + 4 <= hi; i += 4)
            {
                var grad = GeluGrad4(Vector256.WidenLower(Vector128.Load(px + i).ToVector256Unsafe()), tanhApproximation);
                var dyv = Vector256.WidenLower(Vector128.Load(pdy + i).ToVector256Unsafe());
                var inc = Vector256.Narrow(dyv * grad, dyv * grad).GetLower();
                (Vector128.Load(pdx + i) + inc).Store(pdx + i);
            }
            for (; i < hi; i++)
            {
                double v = px[i], grad;
                if (tanhApproximation)
                {
                    double th = Math.Tanh(TanhK * (v + TanhC * v * v * v));
                    grad = 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * TanhK * (1 + 3 * TanhC * v * v);
                }
                else grad = 0.5 * (1 + SpecialFunctions.ErfFast(v * SqrtHalf)) + v * InvSqrt2Pi * Math.Exp(-0.5 * v * v);
                pdx[i] += (float)(pdy[i] * grad);
            }
        });
    }

    /// <summary>gelu(v) on four lanes in double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<double> Gelu4(Vector256<double> v, bool tanhApproximation) => tanhApproximation
        ? 0.5 * v * (Vector256<double>.One + Tanh(TanhK * (v + TanhC * v * v * v)))
        : 0.5 * v * (Vector256<double>.One + ErfFast(v * SqrtHalf));

    /// <summary>The exact gelu on eight lanes in double: <see cref="Gelu4"/>'s erf form lane for lane (the same operations,
    /// so the same bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<double> GeluErf8(Vector512<double> v)
    {
        var x = v * SqrtHalf;
        return 0.5 * v * (Vector512<double>.One + ErfWithGaussian(x, Vector512.Exp(-(x * x))));
    }

    /// <summary>The exact gelu'(v) on eight lanes in double: <see cref="GeluGrad4"/>'s erf form lane for lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<double> GeluErfGrad8(Vector512<double> v)
    {
        var gauss = Vector512.Exp(-0.5 * v * v);
        return 0.5 * (Vector512<double>.One + ErfWithGaussian(v * SqrtHalf, gauss)) + v * InvSqrt2Pi * gauss;
    }

    /// <summary><see cref="ErfWithGaussian(Vector256{double}, Vector256{double})"/> on eight lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<double> ErfWithGaussian(Vector512<double> x, Vector512<double> gauss)
    {
        var ax = Vector512.Abs(x);
        var t = Vector512<double>.One / (Vector512<double>.One + 0.3275911 * ax);
        var poly = t * (
            Vector512.Create(0.254829592) +
            t * (Vector512.Create(-0.284496736) +
            t * (Vector512.Create(1.421413741) + t * (Vector512.Create(-1.453152027) + t * 1.061405429))));
        var r = Vector512<double>.One - poly * gauss;
        return Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512<double>.Zero), -r, r);
    }

    /// <summary>gelu'(v) on four lanes in double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<double> GeluGrad4(Vector256<double> v, bool tanhApproximation)
    {
        if (tanhApproximation)
        {
            var th = Tanh(TanhK * (v + TanhC * v * v * v));
            return 0.5 * (Vector256<double>.One + th) +
                0.5 * v * (Vector256<double>.One - th * th) * TanhK * (Vector256<double>.One + 3 * TanhC * v * v);
        }
        // one exp for both terms: erf's Gaussian factor exp(-(v/√2)²) is the density's exp(-v²/2)
        var gauss = Vector256.Exp(-0.5 * v * v);
        return 0.5 * (Vector256<double>.One + ErfWithGaussian(v * SqrtHalf, gauss)) + v * InvSqrt2Pi * gauss;
    }

    /// <summary><see cref="SpecialFunctions.ErfFast"/> on four lanes (the same polynomial, in double).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<double> ErfFast(Vector256<double> x) => ErfWithGaussian(x, Vector256.Exp(-(x * x)));

    /// <summary><see cref="ErfFast"/> given <paramref name="gauss"/> = exp(−x²).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<double> ErfWithGaussian(Vector256<double> x, Vector256<double> gauss)
    {
        var ax = Vector256.Abs(x);
        var t = Vector256<double>.One / (Vector256<double>.One + 0.3275911 * ax);
        var poly = t * (
            Vector256.Create(0.254829592) +
            t * (Vector256.Create(-0.284496736) +
            t * (Vector256.Create(1.421413741) + t * (Vector256.Create(-1.453152027) + t * 1.061405429))));
        var r = Vector256<double>.One - poly * gauss;
        return Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256<double>.Zero), -r, r);
    }

    /// <summary>tanh(u) = sign(u) (1 − 2 / (e^{2|u|} + 1)): no cancellation for large |u|, and e^{2|u|} = ∞ gives ±1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<double> Tanh(Vector256<double> u)
    {
        var r = Vector256<double>.One - Vector256.Create(2.0) / (Vector256.Exp(2.0 * Vector256.Abs(u)) + Vector256<double>.One);
        return Vector256.ConditionalSelect(Vector256.LessThan(u, Vector256<double>.Zero), -r, r);
    }

    // ---------------------------------------------------------------- elementwise

    public void Add(Tensor a, Tensor b, Tensor y)
    {
        ArgCheck.SameShape(a, b, "add"); ArgCheck.SameShape(a, y, "add");
        ParallelSpans(a, b, y, static (sa, sb, sy) => TensorPrimitives.Add(sa, sb, sy));
    }

    public void Axpy(float alpha, Tensor x, Tensor y)
    {
        ArgCheck.SameShape(x, y, "axpy");
        if (x.IsContiguous && y.IsContiguous)
        {
            ParallelSpans(x, y, y, (sx, sy, so) => TensorPrimitives.MultiplyAdd(sx, alpha, sy, so));
            return;
        }
        var (m, n) = ArgCheck.Matrix(x, nameof(x)); ArgCheck.Matrix(y, nameof(y));
        float* px = (float*)x.Pointer, py = (float*)y.Pointer;
        long ldx = x.Stride(0), ldy = y.Stride(0);
        ParallelRows(m, n, i =>
        {
            var row = new Span<float>(py + i * ldy, n);
            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(px + i * ldx, n), alpha, row, row);
        });
    }

    public void Scale(Tensor x, float alpha) => ParallelSpans(x, x, x, (s, _, o) => TensorPrimitives.Multiply(s, alpha, o));

    // ---------------------------------------------------------------- cross-entropy

    public void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor losses, Tensor? dLogits, float gradScale)
    {
        var (n, v) = ArgCheck.ContiguousMatrix(logits, nameof(logits));
        ArgCheck.Vector(targets, DType.I32, nameof(targets)); ArgCheck.Vector(losses, n, nameof(losses));
        if (targets.Count != n) throw new ArgumentException($"targets has {targets.Count} entries for {n} rows of logits");
        if (dLogits is not null) { ArgCheck.Shape(dLogits, nameof(dLogits), n, v); ArgCheck.Contiguous(dLogits, nameof(dLogits)); }
        float* pl = (float*)logits.Pointer, po = (float*)losses.Pointer; int* pt = (int*)targets.Pointer;
        float* pd = dLogits is null ? null : (float*)dLogits.Pointer;
        for (int i = 0; i < n; i++)
            if (pt[i] != ignoreIndex && (uint)pt[i] >= (uint)v)
                throw new ArgumentOutOfRangeException(
                nameof(targets), $"target {pt[i]} at row {i} is outside [0, {v}) and is not the ignore index {ignoreIndex}");
        // One exponential pass per row (ExpShiftedSum: f32 exp accurate to ~1 ulp, summed in double in the same pass):
        // e = exp(x - max) into a scratch row, loss = log(sum e) + max - x[target], dlogits += scale * e / sum.
        Parallel.For(0, n, () => ExpScratch(v), (i, _, scratch) =>
        {
            int target = pt[i];
            if (target == ignoreIndex) { po[i] = 0; return scratch; }
            var row = new ReadOnlySpan<float>(pl + (long)i * v, v);
            float max = TensorPrimitives.Max(row);
            double sum;
            fixed (float* e = scratch) sum = ExpShiftedSum(pl + (long)i * v, e, v, max);
            po[i] = (float)(Math.Log(sum) + max - row[target]);
            if (pd == null) return scratch;
            var drow = new Span<float>(pd + (long)i * v, v);
            TensorPrimitives.MultiplyAdd(scratch, (float)(gradScale / sum), drow, drow);
            drow[target] -= gradScale;
            return scratch;
        }, _ => { });
    }

    [ThreadStatic] static float[]? _expScratch;

    /// <summary>A (V) scratch row of the calling thread, kept between calls of the same V: evaluation's chunks of rows
    /// allocate nothing in the steady state (the loop reads the row whole, so its length is exactly V).</summary>
    static float[] ExpScratch(int v) => _expScratch is { } s && s.Length == v ? s : _expScratch = new float[v];

    // ---------------------------------------------------------------- optimizer

    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, long decayCount, in AdamWSettings s, int step, float gradScale)
    {
        long count = param.Count;
        foreach (var (t, name) in new[] { (grad, nameof(grad)), (m, nameof(m)), (v, nameof(v)) })
            if (t.Count != count || !t.IsContiguous)
                throw new ArgumentException($"AdamW: {name} must be a contiguous buffer of {count} elements, got {t.Describe()}");
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), "AdamW steps count from 1");
        float* pp = (float*)param.Pointer, pg = (float*)grad.Pointer, pm = (float*)m.Pointer, pv = (float*)v.Pointer;
        float b1 = s.Beta1, b2 = s.Beta2, lr = s.LearningRate, eps = s.Epsilon, wd = s.WeightDecay;
        double bc1 = 1 - Math.Pow(b1, step), bc2Sqrt = Math.Sqrt(1 - Math.Pow(b2, step));
        float omb1 = 1 - b1, omb2 = 1 - b2;
        double stepSize = lr / bc1;
        ParallelRange(count, (lo, hi) =>
        {
            // Eight lanes at a time, the same operations in the same order as the scalar tail (f32 moments, the update
            // in double), so every element gets the bits the scalar loop would give it.
            long i = lo;
            var vb1 = Vector256.Create(b1); var vb2 = Vector256.Create(b2); var vomb1 = Vector256.Create(omb1);
            var vomb2 = Vector256.Create(omb2);
            var vscale = Vector256.Create(gradScale); var vstep = Vector256.Create(stepSize); var vbc2 = Vector256.Create(bc2Sqrt);
            var veps = Vector256.Create((double)eps);
            for (; i + 8 <= hi; i += 8)
            {
                if (i < decayCount && i + 8 > decayCount) { Scalar(i, i + 8); continue; }   // the one block straddling decayCount
                float decay = i < decayCount ? wd : 0f;
                var g = Vector256.Load(pg + i) * vscale;
                var mi = vb1 * Vector256.Load(pm + i) + vomb1 * g;
                var vi = vb2 * Vector256.Load(pv + i) + vomb2 * g * g;
                mi.Store(pm + i); vi.Store(pv + i);
                var p = Vector256.Load(pp + i) * Vector256.Create(1 - lr * decay);
                var lower = vstep * Vector256.WidenLower(mi) / (Vector256.Sqrt(Vector256.WidenLower(vi)) / vbc2 + veps);
                var upper = vstep * Vector256.WidenUpper(mi) / (Vector256.Sqrt(Vector256.WidenUpper(vi)) / vbc2 + veps);
                (p - Vector256.Narrow(lower, upper)).Store(pp + i);
            }
            Scalar(i, hi);

            void Scalar(long from, long to)
            {
                for (long j = from; j < to; j++)
                {
                    float g = pg[j] * gradScale;
                    float mj = b1 * pm[j] + omb1 * g;
                    float vj = b2 * pv[j] + omb2 * g * g;
                    pm[j] = mj; pv[j] = vj;
                    float decay = j < decayCount ? wd : 0f;
                    float p = pp[j] * (1 - lr * decay);                     // decoupled weight decay, as torch.optim.AdamW
                    pp[j] = p - (float)(stepSize * mj / (Math.Sqrt(vj) / bc2Sqrt + eps));
                }
            }
        });
    }

    public double SumOfSquares(Tensor x) => ChunkedSum(x, static s => SumAsDouble(s, squares: true));
    public double Sum(Tensor x) => ChunkedSum(x, static s => SumAsDouble(s));


    /// <summary>
    /// Σ x (or Σ x²) in double over 16 fixed lanes (four Vector256&lt;double&gt;: element i always lands in lane i mod 16),
    /// the lanes then added in a fixed order and the tail last: the same result on every run and for any thread count,
    /// without the latency-bound scalar chain. Squares are a separate multiply (never fused) so FMA support does not change them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static double SumAsDouble(ReadOnlySpan<float> x, bool squares = false)
    {
        var a0 = Vector256<double>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
        int i = 0;
        fixed (float* p = x)
        {
            for (; i + 16 <= x.Length; i += 16)
            {
                var lo = Vector256.Load(p + i); var hi = Vector256.Load(p + i + 8);
                var d0 = Vector256.WidenLower(lo); var d1 = Vector256.WidenUpper(lo); var d2 = Vector256.WidenLower(hi);
                var d3 = Vector256.WidenUpper(hi);
                if (squares) { d0 *= d0; d1 *= d1; d2 *= d2; d3 *= d3; }
                a0 += d0; a1 += d1; a2 += d2; a3 += d3;
            }
        }
        var lanes = (a0 + a1) + (a2 + a3);
        double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
        for (; i < x.Length; i++) sum += squares ? (double)x[i] * x[i] : x[i];
        return sum;
    }

    /// <summary>
    /// dst[j] = exp(src[j] − shift) for j in [0, n) (dst may be src), returning Σ dst[j] in double: one pass (the
    /// subtraction, the f32 exponential of Vector256.Exp, the same per-lane algorithm as TensorPrimitives.Exp, and the sum)
    /// where separate TensorPrimitives passes and a scalar double chain cost more than the arithmetic on short rows
    /// (attention's 64-key tiles) and re-read long ones (cross-entropy's V logits). The tail is padded with −∞ (exp = 0),
    /// so every element goes through the same vector exponential. The sum runs over 8 fixed lanes (element j in lane
    /// j mod 8), added in a fixed order: the same result on every run and for any thread count.
    /// </summary>
    internal static double ExpShiftedSum(float* src, float* dst, int n, float shift)
    {
        var m = Vector256.Create(shift);
        var lo = Vector256<double>.Zero; var hi = lo;
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            // 16 exponentials per instruction where the CPU has them (the same per-lane algorithm, so the same values),
            // summed as two consecutive 8-element blocks: the same additions, in the same order, as the loop below.
            var m16 = Vector512.Create(shift);
            for (; j + 16 <= n; j += 16)
            {
                var e16 = Vector512.Exp(Vector512.Load(src + j) - m16);
                e16.Store(dst + j);
                var e = e16.GetLower();
                lo += Vector256.WidenLower(e); hi += Vector256.WidenUpper(e);
                e = e16.GetUpper();
                lo += Vector256.WidenLower(e); hi += Vector256.WidenUpper(e);
            }
        }
        for (; j + 8 <= n; j += 8)
        {
            var e = Vector256.Exp(Vector256.Load(src + j) - m);
            e.Store(dst + j);
            lo += Vector256.WidenLower(e); hi += Vector256.WidenUpper(e);
        }
        if (j < n)
        {
            float* tail = stackalloc float[8];
            for (int t = 0; t < 8; t++) tail[t] = j + t < n ? src[j + t] : float.NegativeInfinity;
            var e = Vector256.Exp(Vector256.Load(tail) - m);
            for (int t = 0; j + t < n; t++) dst[j + t] = e[t];
            lo += Vector256.WidenLower(e); hi += Vector256.WidenUpper(e);
        }
        var lanes = lo + hi;
        return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    }

    // ---------------------------------------------------------------- helpers

    const int ElementChunk = 1 << 16;

    static double ChunkedSum(Tensor x, Func<ReadOnlySpan<float>, double> partial)
    {
        ArgCheck.Contiguous(x, nameof(x));
        if (x.DType != DType.F32) throw new ArgumentException($"sum over {x.Describe()}: f32 expected");
        float* p = (float*)x.Pointer; long n = x.Count;
        int chunks = (int)((n + ElementChunk - 1) / ElementChunk);
        var parts = new double[chunks];
        Parallel.For(0, chunks, c =>
        {
            long lo = (long)c * ElementChunk, hi = Math.Min(n, lo + ElementChunk);
            parts[c] = partial(new ReadOnlySpan<float>(p + lo, (int)(hi - lo)));
        });
        double s = 0; foreach (var d in parts) s += d;
        return s;
    }

    /// <summary>Work below this many element-operations runs on the calling thread: waking the pool costs more (and on a
    /// loaded machine a descheduled worker stalls the whole call).</summary>
    const long SerialWork = 1 << 15;

    /// <summary>body(i) for rows [0, n) of about <paramref name="rowCost"/> element-operations each, in blocks of rows whose
    /// outputs are disjoint (so the result does not depend on how blocks are spread over threads).</summary>
    static void ParallelRows(int n, long rowCost, Action<int> body)
    {
        int perBlock = (int)Math.Clamp(SerialWork / Math.Max(1, rowCost), 1, Math.Max(1, n));
        int blocks = (n + perBlock - 1) / perBlock;
        if (blocks <= 1) { for (int i = 0; i < n; i++) body(i); return; }
        Parallel.For(0, blocks, bl => { for (int i = bl * perBlock, end = Math.Min(n, i + perBlock); i < end; i++) body(i); });
    }

    static void ParallelRange(long count, Action<long, long> body)
    {
        int chunks = (int)((count + ElementChunk - 1) / ElementChunk);
        if (chunks <= 1) { body(0, count); return; }
        Parallel.For(0, chunks, c => body((long)c * ElementChunk, Math.Min(count, (long)(c + 1) * ElementChunk)));
    }

    static void ParallelSpans(Tensor a, Tensor b, Tensor y, SpanOp op)
    {
        ArgCheck.Contiguous(a, "a"); ArgCheck.Contiguous(b, "b"); ArgCheck.Contiguous(y, "y");
        float* pa = (float*)a.Pointer, pb = (float*)b.Pointer, py = (float*)y.Pointer;
        ParallelRange(a.Count, (lo, hi) =>
        {
            int len = (int)(hi - lo);
            op(new ReadOnlySpan<float>(pa + lo, len), new ReadOnlySpan<float>(pb + lo, len), new Span<float>(py + lo, len));
        });
    }

    delegate void SpanOp(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y);
    delegate void RowOpPtr(void* src, void* dst, int count);

    // Walks two same-shape views row by row (the last dimension), handing raw row pointers to op.
    static void Rows(Tensor src, Tensor dst, RowOpPtr op)
    {
        if (src.Count == 0) return;
        int rank = src.Rank;
        if (rank == 0) { op((void*)src.Pointer, (void*)dst.Pointer, 1); return; }
        int cols = src.Size(-1);
        bool dense = (src.Stride(-1) == 1 || cols == 1) && (dst.Stride(-1) == 1 || cols == 1);
        long rows = src.Count / cols;
        int es = src.DType.SizeOf(), ed = dst.DType.SizeOf();
        var idx = new int[rank];
        for (long r = 0; r < rows; r++)
        {
            long os = 0, od = 0;
            for (int d = 0; d < rank - 1; d++) { os += idx[d] * src.Stride(d); od += idx[d] * dst.Stride(d); }
            if (dense) op((void*)(src.Pointer + (nint)(os * es)), (void*)(dst.Pointer + (nint)(od * ed)), cols);
            else
                for (int j = 0; j < cols; j++)
                    op((void*)(src.Pointer + (nint)((os + j * src.Stride(-1)) * es)),
                        (void*)(dst.Pointer + (nint)((od + j * dst.Stride(-1)) * ed)), 1);
            for (int d = rank - 2; d >= 0; d--) { if (++idx[d] < src.Size(d)) break; idx[d] = 0; }
        }
    }
}
