using System.Diagnostics;
using Whittle.Native.Cpu;
using Whittle.Native.Tensors;

namespace Whittle.Native.Bench;

// Policy: the CPU attention, tiled (CpuBackend.AttentionForward/Backward) against the dense per-head kernel it replaced
// (CpuBackend.DenseAttention*), on the same operands in the same run, interleaved call by call, median of the rounds.
// Shape: the `small` config's attention (8 heads of 32) with q, k, v as strided views of one fused (B, T, H, 3, D) qkv
// buffer, as GPT-NeoX passes them, at B·T = 2048 tokens per call for T = 256 … 2048 (8×256 down to 1×2048). Memory:
// the bytes each call allocates on the managed heap (GC.GetTotalAllocatedBytes, all threads): the kernels' scratch,
// since the tensors are allocated beforehand; the scratch live at once is at most that.
//   dotnet run -c Release --project bench/Whittle.Native.Bench -- attention-quick [rounds]
static class AttentionBench
{
    public static void Quick(int rounds = 7)
    {
        var cpu = new CpuBackend(CpuGemm.Ours);
        Console.WriteLine(
            $"{Environment.ProcessorCount} threads; {cpu.Name}; H 8, D 32, B·T = 2048; median of {rounds} interleaved calls");
        Console.WriteLine($"{"B×T",-8} {"pass",-9} {"dense tok/s",12} {"tiled tok/s",12} {"tiled/dense",12} " +
            $"{"dense MiB",10} {"tiled MiB",10}");
        foreach (int t in new[] { 256, 512, 1024, 2048 })
        {
            int b = 2048 / t, h = 8, d = 32;
            using var qkv = Tensor.Zeros(b, t, h, 3, d);
            new Rng(1).FillNormal(qkv.AsSpan<float>(), 0, 1);
            long[] strides = [(long)t * h * 3 * d, h * 3 * d, 3 * d, 1];
            var q = qkv.AsStrided([b, t, h, d], strides, 0);
            var k = qkv.AsStrided([b, t, h, d], strides, d);
            var v = qkv.AsStrided([b, t, h, d], strides, 2 * d);
            using var o = Tensor.Zeros(b, t, h, d); using var lse = Tensor.Zeros(b, h, t);
            using var g = Tensor.Zeros(b, t, h, d); new Rng(2).FillNormal(g.AsSpan<float>(), 0, 1);
            using var dq = Tensor.Zeros(b, t, h, d); using var dk = Tensor.Zeros(b, t, h, d); using var dv = Tensor.Zeros(b, t, h, d);
            float scale = 1f / MathF.Sqrt(d);
            Action[] forward =
            [
                () => cpu.DenseAttentionForward(q, k, v, scale, o, lse),
                () => cpu.AttentionForward(q, k, v, scale, o, lse, AttentionPrecision.F32),
            ];
            Action[] backward =
            [
                () => cpu.DenseAttentionBackward(g, q, k, v, o, lse, scale, dq, dk, dv),
                () => cpu.AttentionBackward(g, q, k, v, o, lse, scale, dq, dk, dv, AttentionPrecision.F32),
            ];
            foreach (var (pass, calls) in new[] { ("forward", forward), ("backward", backward) })
            {
                var seconds = new double[2][]; var bytes = new long[2];
                for (int c = 0; c < 2; c++) seconds[c] = new double[rounds];
                for (int r = -1; r < rounds; r++)   // one untimed round first
                    for (int c = 0; c < 2; c++)
                    {
                        if (pass == "backward") forward[c]();   // the backward pass reads its own kernel's lse
                        long a0 = GC.GetTotalAllocatedBytes(true), t0 = Stopwatch.GetTimestamp();
                        calls[c]();
                        long t1 = Stopwatch.GetTimestamp(), a1 = GC.GetTotalAllocatedBytes(true);
                        if (r < 0) continue;
                        seconds[c][r] = (t1 - t0) / (double)Stopwatch.Frequency;
                        bytes[c] = Math.Max(bytes[c], a1 - a0);
                    }
                var tps = seconds.Select(s => { Array.Sort(s); return 2048 / s[rounds / 2]; }).ToArray();
                Console.WriteLine($"{$"{b}×{t}",-8} {pass,-9} {tps[0],12:N0} {tps[1],12:N0} {tps[1] / tps[0],12:F2} " +
                    $"{bytes[0] / 1048576.0,10:F2} {bytes[1] / 1048576.0,10:F2}");
            }
        }
    }
}
