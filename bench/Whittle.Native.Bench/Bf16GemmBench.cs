using System.Diagnostics;
using Whittle.Native.Cpu;
using Whittle.Native.Tensors;

namespace Whittle.Native.Bench;

// Policy: the CPU backend's bf16 GEMM (--precision bf16: bf16 operands, f32 accumulation) against its f32 GEMM, through
// CpuBackend.MatMul as the model calls it, at the forward (eval) shapes of the `small` config (d 256, MLP 1024, V 4096,
// 8 × 256 = 2048 tokens; x (2048, k) @ Wᵀ, W (n, k)), and two of the backward's (dX = dY W, dW = dYᵀ X: the other
// transpose cases). Every variant runs once per round, interleaved, so all see the same load; the table gives medians
// and ratios to ours f32. Variants:
//   f32 ours / f32 OpenBLAS        the f32 GEMMs (--gemm ours | openblas)
//   bf16 AVX512-BF16               Gemm.Bf16DotGemm on vdpbf16ps (what --precision bf16 runs with --gemm auto | ours where
//                                  the CPU reports AVX512_BF16; n/a elsewhere)
//   bf16 ours packed               ours with bf16 widened while packing (--gemm ours on CPUs without AVX512_BF16, and the
//                                  forced ours-* paths)
//   bf16 ours widened              the first bf16 path: f32 copies of both operands, then our f32 GEMM
//   bf16 OpenBLAS widened          f32 copies, then OpenBLAS (what --precision bf16 --gemm openblas runs)
//   dotnet bench/Whittle.Native.Bench/bin/Release/net10.0/Whittle.Native.Bench.dll gemm-bf16-quick [rounds]
public static class Bf16GemmBench
{
    /// <summary>C (m, n) = op(A) op(B), k the reduction; A is the activation side, B the weight side.</summary>
    static readonly (int M, int N, int K, bool TransA, bool TransB, string What)[] Shapes =
    [
        (2048, 768, 256, false, true, "qkv"),
        (2048, 256, 256, false, true, "attention out"),
        (2048, 1024, 256, false, true, "MLP up"),
        (2048, 256, 1024, false, true, "MLP down"),
        (2048, 4096, 256, false, true, "LM head"),
        (2048, 256, 1024, false, false, "MLP up dX"),
        (1024, 256, 2048, true, false, "MLP up dW"),
    ];

    public static void Quick(int rounds = 9)
    {
        var ours = new CpuBackend(CpuGemm.Ours);
        // Our GEMM pinned to its best f32 kernel: a forced path, so its bf16 GEMM is the widened-panel one.
        var packed = new CpuBackend(Gemm.Best switch
        {
            Gemm.Kernel.Avx512 => CpuGemm.OursAvx512, Gemm.Kernel.Avx256 => CpuGemm.OursAvx2, _ => CpuGemm.OursScalar,
        });
        CpuBackend? dot = Avx512Bf16Kernel.TryGet(out var dotProblem) ? ours : null;
        CpuBackend? blas = OpenBlas.TryLoad(out var problem) ? new CpuBackend(CpuGemm.OpenBlas) : null;
        Console.WriteLine($"{Environment.ProcessorCount} threads; our kernel {Gemm.Best}; " +
            $"{(blas is null ? problem : OpenBlas.Config)}; AVX512-BF16 kernel: {(dot is null ? dotProblem : "yes")}; " +
            $"median of {rounds} interleaved rounds; GFLOP/s (ratio to f32 ours)");
        var names = new[]
        {
            "f32 ours", "f32 OpenBLAS", "bf16 AVX512-BF16", "bf16 ours packed", "bf16 ours widened", "bf16 OpenBLAS widened",
        };
        Console.WriteLine($"{"shape (m×n×k)",-28}" + string.Concat(names.Select(n => $"{n,24}")));
        var logRatios = new double[names.Length];
        foreach (var (m, n, k, ta, tb, what) in Shapes)
        {
            var rng = new Random(42);
            int[] aShape = ta ? [k, m] : [m, k], bShape = tb ? [n, k] : [k, n];
            using var x32 = Tensor.FromArray(Uniform(rng, m * k), aShape);
            using var w32 = Tensor.FromArray(Uniform(rng, n * k), bShape);
            using var x16 = Tensor.Empty(DType.BF16, aShape); ours.Copy(x32, x16);
            using var w16 = Tensor.Empty(DType.BF16, bShape); ours.Copy(w32, w16);
            using var c = Tensor.Empty(DType.F32, m, n);
            var variants = new Action?[]
            {
                () => ours.MatMul(x32, ta, w32, tb, c),
                blas is null ? null : () => blas.MatMul(x32, ta, w32, tb, c),
                dot is null ? null : () => dot.MatMul(x16, ta, w16, tb, c),
                () => packed.MatMul(x16, ta, w16, tb, c),
                () => { using var a = Widened(ours, x16); using var b = Widened(ours, w16); ours.MatMul(a, ta, b, tb, c); },
                blas is null ? null : () => blas.MatMul(x16, ta, w16, tb, c),
            };
            var times = variants.Select(_ => new double[rounds]).ToArray();
            for (int r = -2; r < rounds; r++)   // two untimed rounds first
                for (int v = 0; v < variants.Length; v++)
                {
                    if (variants[v] is not { } run) continue;
                    long t0 = Stopwatch.GetTimestamp();
                    run();
                    if (r >= 0) times[v][r] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                }
            double flops = 2.0 * m * n * k;
            var gflops = times.Select(t => { Array.Sort(t); return flops / t[rounds / 2] / 1e9; }).ToArray();
            var cells = new List<string>();
            for (int v = 0; v < variants.Length; v++)
            {
                if (variants[v] is null) { cells.Add($"{"n/a",24}"); continue; }
                logRatios[v] += Math.Log(gflops[v] / gflops[0]);
                cells.Add($"{$"{gflops[v]:F1} ({gflops[v] / gflops[0]:F2})",24}");
            }
            Console.WriteLine($"{$"{m}×{n}×{k} {what}{(ta ? " ᵀ·" : "")}{(tb ? " ·ᵀ" : "")}",-28}" + string.Concat(cells));
        }
        Console.WriteLine($"{"geometric mean ratio",-28}" +
            string.Concat(logRatios.Select(l => $"{Math.Exp(l / Shapes.Length),24:F2}")));
    }

    static float[] Uniform(Random rng, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (float)(rng.NextDouble() * 2 - 1);
        return values;
    }

    static Tensor Widened(CpuBackend backend, Tensor bf16)
    {
        var f32 = Tensor.Empty(DType.F32, bf16.ShapeArray);
        backend.Copy(bf16, f32);
        return f32;
    }
}
