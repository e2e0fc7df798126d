using System.Numerics.Tensors;
using Whittle.Native.Tensors;
using Tensor = Whittle.Native.Tensors.Tensor;

namespace Whittle.Native.Cpu;

// The ops the Llama family adds: RMSNorm (rows of a matrix, or the heads of a (B, T, H, D) view for QK-norm) and the
// gated SwiGLU activation. Same policy as the rest of the backend: statistics and cross-row reductions in double with
// a fixed chunking, work split only where outputs are disjoint, so results do not depend on the thread count.
public sealed unsafe partial class CpuBackend
{
    // ---------------------------------------------------------------- rmsnorm

    public void RmsNormForward(Tensor x, Tensor weight, float eps, Tensor y, Tensor rstd)
    {
        var xs = new RowAccess(x, nameof(x));
        int c = xs.Cols;
        ArgCheck.Vector(weight, c, nameof(weight));
        ArgCheck.SameShape(x, y, "rmsnorm y"); ArgCheck.Contiguous(y, nameof(y));
        ArgCheck.Vector(rstd, xs.Rows, nameof(rstd));
        float* pw = (float*)weight.Pointer, py = (float*)y.Pointer, pr = (float*)rstd.Pointer;
        ParallelRows(xs.Rows, c, i => pr[i] = RmsNormRow(xs.Row(i), c, pw, eps, py + (long)i * c));
    }

    /// <summary>One row of <see cref="RmsNormForward"/>: o = w ⊙ (x · rstd); returns rstd.</summary>
    static float RmsNormRow(float* row, int c, float* pw, float eps, float* o)
    {
        double sq = 0;
        for (int j = 0; j < c; j++) sq += (double)row[j] * row[j];
        float r = (float)(1.0 / Math.Sqrt(sq / c + eps));
        for (int j = 0; j < c; j++) o[j] = pw[j] * (row[j] * r);   // HF: weight * (x * rsqrt(var + eps))
        return r;
    }

    public void RmsNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor dx, Tensor dWeight)
    {
        var xs = new RowAccess(x, nameof(x)); var dys = new RowAccess(dy, nameof(dy)); var dxs = new RowAccess(dx, nameof(dx));
        int n = xs.Rows, c = xs.Cols;
        ArgCheck.SameShape(x, dy, "rmsnorm dy"); ArgCheck.SameShape(x, dx, "rmsnorm dx");
        ArgCheck.Vector(weight, c, nameof(weight)); ArgCheck.Vector(dWeight, c, nameof(dWeight)); ArgCheck.Vector(rstd, n, nameof(rstd));
        float* pw = (float*)weight.Pointer, pr = (float*)rstd.Pointer;
        int chunks = (n + ReductionChunk - 1) / ReductionChunk;
        var partW = new double[chunks * c];   // (chunks, C) per-chunk Σ dy ⊙ x̂, added in chunk order afterwards
        Parallel.For(0, chunks, ch =>
        {
            for (int i = ch * ReductionChunk, end = Math.Min(n, i + ReductionChunk); i < end; i++)
            {
                float* xr = xs.Row(i), dyr = dys.Row(i), dxr = dxs.Row(i);
                float r = pr[i];
                double sumGx = 0;
                for (int j = 0; j < c; j++)
                {
                    double xh = (double)xr[j] * r;
                    sumGx += (double)dyr[j] * pw[j] * xh;
                    partW[ch * c + j] += dyr[j] * xh;
                }
                double meanGx = sumGx / c;
                for (int j = 0; j < c; j++) dxr[j] += (float)(r * ((double)dyr[j] * pw[j] - (double)xr[j] * r * meanGx));
            }
        });
        AccumulateChunks(partW, chunks, c, (float*)dWeight.Pointer);
    }

    /// <summary>Rows of a (N, C) matrix with dense rows or of a (B, T, H, C) view with a dense last dimension.</summary>
    readonly struct RowAccess
    {
        readonly float* _p;
        readonly long _s0, _s1, _s2;
        readonly int _d1, _d2;   // rank 4: sizes of T and H, to split a row index into (b, t, h)
        readonly bool _heads;
        public int Rows { get; }
        public int Cols { get; }

        public RowAccess(Tensor x, string name)
        {
            _p = (float*)x.Pointer;
            if (x.Rank == 2) { (Rows, Cols) = ArgCheck.Matrix(x, name); _s0 = x.Stride(0); return; }
            var (b, t, h, d) = ArgCheck.Heads(x, name);
            (_heads, _d1, _d2, _s0, _s1, _s2) = (true, t, h, x.Stride(0), x.Stride(1), x.Stride(2));
            Rows = checked(b * t * h); Cols = d;
        }

        public float* Row(int i)
        {
            if (!_heads) return _p + i * _s0;
            int h = i % _d2, bt = i / _d2;
            return _p + (bt / _d1) * _s0 + (bt % _d1) * _s1 + h * _s2;
        }
    }

    // ---------------------------------------------------------------- swiglu

    /// <summary>Elements per block of the SwiGLU loops: the σ(gate) scratch of one block lives on the stack.</summary>
    const int SwiGluBlock = 1024;

    public void SwiGluForward(Tensor gate, Tensor up, Tensor y)
    {
        CheckSwiGlu(gate, up, y, "y");
        float* pg = (float*)gate.Pointer, pu = (float*)up.Pointer, py = (float*)y.Pointer;
        ParallelRange(gate.Count, (lo, hi) =>
        {
            Span<float> sig = stackalloc float[SwiGluBlock];
            for (long b = lo; b < hi; b += SwiGluBlock)
            {
                int len = (int)Math.Min(SwiGluBlock, hi - b);
                var g = new ReadOnlySpan<float>(pg + b, len);
                var s = sig[..len];
                TensorPrimitives.Sigmoid(g, s);
                var o = new Span<float>(py + b, len);
                TensorPrimitives.Multiply(g, s, o);                                   // silu(g) = g σ(g)
                TensorPrimitives.Multiply(o, new ReadOnlySpan<float>(pu + b, len), o);
            }
        });
    }

    public void SwiGluBackward(Tensor dy, Tensor gate, Tensor up, Tensor dGate, Tensor dUp)
    {
        CheckSwiGlu(gate, up, dy, "dy"); CheckSwiGlu(gate, dGate, dUp, "dUp");
        float* pdy = (float*)dy.Pointer, pg = (float*)gate.Pointer, pu = (float*)up.Pointer, pdg = (float*)dGate.Pointer,
            pdu = (float*)dUp.Pointer;
        ParallelRange(gate.Count, (lo, hi) =>
        {
            Span<float> sig = stackalloc float[SwiGluBlock];
            for (long b = lo; b < hi; b += SwiGluBlock)
            {
                int len = (int)Math.Min(SwiGluBlock, hi - b);
                TensorPrimitives.Sigmoid(new ReadOnlySpan<float>(pg + b, len), sig[..len]);
                for (int i = 0; i < len; i++)
                {
                    long e = b + i;
                    float g = pg[e], s = sig[i], d = pdy[e];
                    pdg[e] += d * pu[e] * (s * (1f + g * (1f - s)));                  // silu'(g) = σ(g)(1 + g(1 − σ(g)))
                    pdu[e] += d * (g * s);
                }
            }
        });
    }

    static void CheckSwiGlu(Tensor gate, Tensor a, Tensor b, string name)
    {
        ArgCheck.SameShape(gate, a, "swiglu"); ArgCheck.SameShape(gate, b, "swiglu " + name);
        foreach (var t in new[] { gate, a, b })
        {
            ArgCheck.Contiguous(t, "swiglu " + name);
            if (t.DType != DType.F32) throw new ArgumentException($"swiglu: f32 expected, got {t.Describe()}");
        }
    }
}
