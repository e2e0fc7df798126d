using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Whittle.Native.Tensors;

namespace Whittle.Native.Cpu;

// Policy: single-precision GEMM for the CPU backend, Goto/BLIS style, written from first principles.
//  - Micro-kernels: 12x32 with Vector512 (AVX-512: 24 of the 32 zmm registers accumulate, so a k step is 24 FMAs for
//    2 vector loads and 12 broadcasts, fewer loads per FMA than 8x32: bench/RESULTS.md), 6x16 with Vector256
//    (AVX2/FMA; plain multiply+add without FMA), and a scalar one for anything else. The widest the machine accelerates is used.
//  - All four transpose cases are reduced to one micro-kernel by packing: A into MR-row panels laid out k-major,
//    B into NR-column panels laid out k-major. Packing reads only inside the matrix; tails are padded with zeros,
//    and edge tiles go through a scratch tile so only valid C elements are written.
//  - Blocking: kc along k (a B micro-panel, kc x NR, stays in L1), mc along m (the packed A block stays in L2),
//    nc along n (the packed B block stays in L2/L3).
//  - Determinism: C[i, j] is always produced by one thread, as the same chain of fused multiply-adds over k in
//    increasing order, split at the same kc boundaries. Which thread or tile it lands in does not change that,
//    so results are bit-identical run to run and for any thread count.
//  - alpha and beta are applied when a tile is written: the first k block does C = alpha*AB + beta*C (C is not
//    read when beta == 0, so NaN there cannot leak), later k blocks do C = alpha*AB + C.
//  - Hot loops are AggressiveOptimization: fully optimised from the first call, instead of running tier-0 code
//    (no inlining of the SIMD helpers) for the first calls of a run.
//  - Pack buffers are thread-static pinned arrays sized for the largest blocks, allocated once per thread, so the
//    steady state allocates nothing but Parallel.For's small bookkeeping.
//  - bf16 operands (for --precision bf16) take one of two routes. Bf16Gemm widens them to f32 while packing (a 16-bit
//    shift, exact), so the micro-kernels, and every C element, are those of Sgemm on the widened values; no widened copy
//    of A or B exists and the operands are read at half the bytes. Bf16DotGemm, where the CPU has AVX512-BF16, packs
//    k pairs of bf16 into 32-bit panel entries and runs Avx512Bf16Kernel (vdpbf16ps, machine code: .NET 10 has no
//    intrinsics for it): two products per lane and instruction, f32 accumulation, a different association than the FMA
//    chain (so bounded by tests, not bit-compared). Its tile is always 12x32 and goes through the edge scratch, then
//    C = alpha * acc + beta * C is written as the other kernels write it. The same blocking and determinism apply.
internal static unsafe class Gemm
{
    /// <summary>Micro-kernels, all over the same packed layout; each C element is the same fused multiply-add chain in
    /// every one of them (a lane is a lane), so they agree bit for bit where hardware FMA exists.</summary>
    internal enum Kernel { Scalar, Avx256, Avx512 }

    internal const int KC = 256;
    /// <summary>A block height: a multiple of both tile heights (6 and 12); (MC, KC) floats = 144 KiB stays in L2.</summary>
    internal const int MC = 144;
    /// <summary>B block width: (KC, NC) floats = 2 MiB, one core's L2 share, reused across every A block of a chunk.</summary>
    internal const int NC = 2048;
    const int MaxMR = 12, MaxNR = 32;

    /// <summary>Below this many multiply-adds a call runs on the calling thread: Parallel.For costs more than it saves.</summary>
    const long ParallelThreshold = 1L << 18;

    /// <summary>The widest kernel this machine runs natively.</summary>
    internal static readonly Kernel Best =
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? Kernel.Avx512
        : Vector256.IsHardwareAccelerated && Avx.IsSupported ? Kernel.Avx256
        : Kernel.Scalar;

    /// <summary>Tests pin a kernel (one the machine supports) to compare them; null means Best.</summary>
    internal static Kernel? ForceKernel;
    /// <summary>Tests set this to check that results do not depend on the thread count; 0 means ProcessorCount.</summary>
    internal static int ThreadCountOverride;

    /// <summary>Micro-tile (rows, columns) of C per kernel call: 6x16 = 12 ymm accumulators, 12x32 = 24 zmm accumulators.</summary>
    static (int Mr, int Nr) TileOf(Kernel kernel) => kernel == Kernel.Avx512 ? (12, 32) : (6, 16);

    /// Row-major: C (m, n) = alpha * op(A) @ op(B) + beta * C.  op(A) is (m, k): A is (m, k) with row stride lda, or with transA A is (k,
    /// m). op(B) is (k, n): B is (k, n) with row stride ldb, or with transB B is (n, k). C has row stride ldc. beta == 0 means C is not
    /// read (may hold NaN). serial: run on the calling thread (for callers that already split their work across threads, e.g. attention per
    /// head). kernel: the micro-kernel a backend pins (WHITTLE_CPU_GEMM=ours-scalar|ours-avx2|ours-avx512, checked supported by
    /// CpuGemmChoice.Resolve); null means ForceKernel, else Best.
    public static void Sgemm(
        bool transA, bool transB, int m, int n, int k, float alpha, float* a, long lda, float* b, long ldb, float beta, float* c, long ldc,
        bool serial = false, Kernel? kernel = null) =>
        Run(Operands.F32, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, serial, kernel);

    /// <summary>
    /// <see cref="Sgemm"/> with bf16 A and B (raw bf16 bits; leading dimensions in elements) and f32 C: the CPU's bf16
    /// GEMM (Model/Precision.cs). Packing widens each bf16 value to the f32 it denotes (exact: a 16-bit shift), so the
    /// panels, and therefore every C element, are bit for bit those of Sgemm on the widened operands with the same
    /// kernel; what changes is that no widened copy of A or B is ever made (half the bytes read from memory).
    /// </summary>
    public static void Bf16Gemm(
        bool transA, bool transB, int m, int n, int k, float alpha, ushort* a, long lda, ushort* b, long ldb, float beta, float* c,
        long ldc, bool serial = false, Kernel? kernel = null) =>
        Run(Operands.Bf16, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, serial, kernel);

    /// <summary>
    /// <see cref="Bf16Gemm"/> on AVX512-BF16 dot products (Avx512Bf16Kernel): the same operands and result contract, f32
    /// accumulation, but each lane adds two exact products per instruction, so C differs from Bf16Gemm's in the last bits
    /// (an f32 summation-order difference). Throws when <see cref="Avx512Bf16Kernel.IsAvailable"/> is false.
    /// </summary>
    public static void Bf16DotGemm(
        bool transA, bool transB, int m, int n, int k, float alpha, ushort* a, long lda, ushort* b, long ldb, float beta, float* c,
        long ldc, bool serial = false)
    {
        if (!Avx512Bf16Kernel.TryGet(out var problem))
            throw new InvalidOperationException($"Bf16DotGemm: the AVX512-BF16 kernel is not available: {problem}");
        Run(Operands.Bf16Pairs, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, serial, Kernel.Avx512);
    }

    /// <summary>How A and B are stored and packed: f32; bf16 bits widened to f32 panels; bf16 bits packed as k pairs
    /// (one 32-bit panel entry holds elements 2q and 2q+1) for the AVX512-BF16 kernel.</summary>
    enum Operands { F32, Bf16, Bf16Pairs }

    static void Run(
        Operands operands, bool transA, bool transB, int m, int n, int k, float alpha, void* a, long lda, void* b, long ldb, float beta,
        float* c, long ldc, bool serial, Kernel? kernel)
    {
        if (m < 0 || n < 0 || k < 0)
            throw new ArgumentOutOfRangeException(nameof(m), $"Sgemm: sizes must be non-negative, got m={m}, n={n}, k={k}");
        if (m == 0 || n == 0) return;
        CheckLeading(nameof(ldc), ldc, n, "C (m, n)");
        if (c == null) throw new ArgumentNullException(nameof(c));
        if (k == 0 || alpha == 0f)
        {
            ScaleC(m, n, beta, c, ldc);
            return;
        }
        CheckLeading(nameof(lda), lda, transA ? m : k, transA ? "A (k, m)" : "A (m, k)");
        CheckLeading(nameof(ldb), ldb, transB ? k : n, transB ? "B (n, k)" : "B (k, n)");
        if (a == null) throw new ArgumentNullException(nameof(a));
        if (b == null) throw new ArgumentNullException(nameof(b));

        var use = kernel ?? ForceKernel ?? Best;
        var (mr, nr) = operands == Operands.Bf16Pairs ? (Avx512Bf16Kernel.MR, Avx512Bf16Kernel.NR) : TileOf(use);
        var job = new Job(use, mr, nr, operands, transA, transB, k, alpha, a, lda, b, ldb, beta, c, ldc);
        int threads = ThreadCountOverride > 0 ? ThreadCountOverride : Environment.ProcessorCount;
        if (serial || threads <= 1 || (long)m * n * k < ParallelThreshold)
        {
            job.Run(0, m, 0, n);
            return;
        }

        // Split the larger side of C into chunks aligned to the micro-tile; more chunks than threads lets a thread that
        // was descheduled (shared machines) fall behind without stalling the call. Each chunk repacks the other operand,
        // so a chunk is kept at least about one A block (MC rows) or 128 columns long.
        bool splitM = m >= n;
        int dim = splitM ? m : n, align = splitM ? mr : nr, minChunk = splitM ? MC : 128;
        int chunks = Math.Clamp(dim / minChunk, 1, 4 * threads);
        // A multiple of the thread count, so that threads running at the same speed finish together (5 chunks on 2
        // threads leave one thread idle for a fifth of the call).
        if (chunks > threads) chunks = chunks / threads * threads;
        int chunk = (dim + chunks - 1) / chunks;
        chunk = (chunk + align - 1) / align * align;
        chunks = (dim + chunk - 1) / chunk;
        if (chunks == 1)
        {
            job.Run(0, m, 0, n);
            return;
        }
        RunChunks(job, m, n, splitM, dim, chunk, chunks, threads);
    }

    /// <summary>
    /// The parallel loop over chunks, in a method of its own: its closure (which copies the Job) would otherwise be
    /// allocated on entry to <see cref="Sgemm"/>, on every call, serial ones included (attention's tiles: 120 bytes each).
    /// </summary>
    static void RunChunks(Job job, int m, int n, bool splitM, int dim, int chunk, int chunks, int threads)
    {
        Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads }, i =>
        {
            int lo = i * chunk, hi = Math.Min(dim, lo + chunk);
            if (splitM) job.Run(lo, hi, 0, n);
            else job.Run(0, m, lo, hi);
        });
    }

    static void CheckLeading(string name, long ld, int columns, string what)
    {
        if (ld < Math.Max(1, columns))
            throw new ArgumentOutOfRangeException(name, $"Sgemm: {name} = {ld} is smaller than the {columns} columns of {what}");
    }

    /// <summary>C = beta * C, with beta == 0 writing zeros (never reading C).</summary>
    static void ScaleC(int m, int n, float beta, float* c, long ldc)
    {
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + i * ldc, n);
            if (beta == 0f) row.Clear();
            else if (beta != 1f) for (int j = 0; j < n; j++) row[j] *= beta;
        }
    }

    /// <summary>One Sgemm call's arguments; Run computes a rectangle of C with this thread's pack buffers.</summary>
    readonly struct Job(
        Kernel kernel, int MR, int NR, Operands operands, bool transA, bool transB, int k, float alpha, void* a, long lda, void* b,
        long ldb, float beta, float* c, long ldc)
    {
        /// <summary>C[m0..m1, n0..n1): jc over nc, pc over kc (pack B once), ic over mc (pack A), then micro-tiles.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int m0, int m1, int n0, int n1)
        {
            var buffers = PackBuffers.ForThisThread();
            float* aPack = buffers.A, bPack = buffers.B, edge = buffers.Edge, widened = buffers.Widened;
            for (int jc = n0; jc < n1; jc += NC)
            {
                int nc = Math.Min(NC, n1 - jc);
                for (int pc = 0; pc < k; pc += KC)
                {
                    int kc = Math.Min(KC, k - pc);
                    // A panel's length along k: kc values, or kc/2 rounded up pairs (a 32-bit entry each, in the same floats).
                    int depth = operands == Operands.Bf16Pairs ? (kc + 1) / 2 : kc;
                    float betaHere = pc == 0 ? beta : 1f;
                    if (operands == Operands.Bf16) PackPanelsBf16(!transB, (ushort*)b, ldb, pc, kc, jc, nc, NR, bPack, widened);
                    else if (operands == Operands.Bf16Pairs) PackPairs(!transB, (ushort*)b, ldb, pc, kc, jc, nc, NR, (uint*)bPack);
                    else PackB(transB, (float*)b, ldb, pc, kc, jc, nc, NR, bPack);
                    for (int ic = m0; ic < m1; ic += MC)
                    {
                        int mc = Math.Min(MC, m1 - ic);
                        if (operands == Operands.Bf16) PackPanelsBf16(transA, (ushort*)a, lda, pc, kc, ic, mc, MR, aPack, widened);
                        else if (operands == Operands.Bf16Pairs) PackPairs(transA, (ushort*)a, lda, pc, kc, ic, mc, MR, (uint*)aPack);
                        else PackA(transA, (float*)a, lda, ic, mc, pc, kc, MR, aPack);
                        // jr outer, ir inner: one B micro-panel (kc, NR) stays in L1 while the A block streams from L2.
                        for (int jr = 0; jr < nc; jr += NR)
                        {
                            int nr = Math.Min(NR, nc - jr);
                            float* bPanel = bPack + (long)jr * depth;
                            for (int ir = 0; ir < mc; ir += MR)
                            {
                                int mr = Math.Min(MR, mc - ir);
                                float* aPanel = aPack + (long)ir * depth;
                                float* cTile = c + (ic + ir) * ldc + jc + jr;
                                if (operands == Operands.Bf16Pairs)
                                {
                                    // The kernel overwrites scratch (12, 32) with the raw sums; alpha and beta are applied here.
                                    Avx512Bf16Kernel.Run(depth, (uint*)aPanel, (uint*)bPanel, edge);
                                    WriteTile(edge, cTile, ldc, mr, nr, alpha, betaHere);
                                    continue;
                                }
                                bool full = mr == MR && nr == NR;
                                // An edge tile is computed into scratch (MR, NR) with beta = 0, then merged element-wise with the
                                // same formula, so its valid elements round exactly as an interior tile's would.
                                float* dst = full ? cTile : edge;
                                long ldDst = full ? ldc : NR;
                                float betaTile = full ? betaHere : 0f;
                                switch (kernel)
                                {
                                    case Kernel.Avx512: Kernel12x32(kc, aPanel, bPanel, dst, ldDst, alpha, betaTile); break;
                                    case Kernel.Avx256: Kernel6x16(kc, aPanel, bPanel, dst, ldDst, alpha, betaTile); break;
                                    default: KernelScalar(kc, MR, NR, aPanel, bPanel, dst, ldDst, alpha, betaTile); break;
                                }
                                if (!full) MergeEdge(edge, NR, cTile, ldc, mr, nr, betaHere);
                            }
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// Packs A's [i0..i0+mc) x [p0..p0+kc) block into ceil(mc/MR) k-major panels (kc, MR). Without transA, A is (m, k) and
    /// a panel gathers MR rows; with transA, A is (k, m) and a panel row is MR contiguous floats.
    /// </summary>
    static void PackA(bool transA, float* a, long lda, int i0, int mc, int p0, int kc, int MR, float* dst) =>
        PackPanels(rowsAlongK: transA, a, lda, p0, kc, i0, mc, MR, dst);

    /// <summary>
    /// Packs B's [p0..p0+kc) x [j0..j0+nc) block into ceil(nc/NR) k-major panels (kc, NR). Without transB, B is (k, n) and a
    /// panel row is NR contiguous floats; with transB, B is (n, k) (a weight) and a panel is the transpose of NR weight rows.
    /// </summary>
    static void PackB(bool transB, float* b, long ldb, int p0, int kc, int j0, int nc, int NR, float* dst) =>
        PackPanels(rowsAlongK: !transB, b, ldb, p0, kc, j0, nc, NR, dst);

    /// <summary>
    /// The one packing routine behind both operands: element (p, i) of the operand, p the reduction index in [p0, p0+kc)
    /// and i the panel index in [i0, i0+count), lies at x[p * ld + i] when <paramref name="rowsAlongK"/> (a panel row is
    /// R contiguous floats) and at x[i * ld + p] otherwise (a panel gathers R strided rows). Writes ceil(count/R) panels
    /// (kc, R), k-major; entries past count are zero. Packing only copies, so the fast paths change no result.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackPanels(bool rowsAlongK, float* x, long ld, int p0, int kc, int i0, int count, int R, float* dst)
    {
        for (int ir = 0; ir < count; ir += R)
        {
            int r = Math.Min(R, count - ir);
            float* panel = dst + (long)ir * kc; // (kc, R)
            bool fullVectorPanel = r == R && R % 8 == 0;
            if (rowsAlongK)
            {
                float* src = x + (long)p0 * ld + i0 + ir;
                if (fullVectorPanel && Vector256.IsHardwareAccelerated)
                {
                    for (int p = 0; p < kc; p++, src += ld)
                        for (int j = 0; j < R; j += 8)
                            Vector256.Store(Vector256.Load(src + j), panel + p * R + j);
                    continue;
                }
                for (int p = 0; p < kc; p++, src += ld)
                {
                    float* d = panel + p * R;
                    int j = 0;
                    for (; j < r; j++) d[j] = src[j];
                    for (; j < R; j++) d[j] = 0f;
                }
            }
            else
            {
                // Full gathered panels of 8 or 12 rows (the A panels of both vector kernels' non-transposed A are 6 or 12)
                if (r == R && R % 4 == 0 && Avx.IsSupported) { PackTransposedFull(x, ld, p0, kc, i0 + ir, R, panel); continue; }
                for (int j = 0; j < R; j++)
                {
                    float* d = panel + j;
                    if (j < r)
                    {
                        float* src = x + (i0 + ir + j) * ld + p0;
                        for (int p = 0; p < kc; p++) d[p * R] = src[p];
                    }
                    else
                    {
                        for (int p = 0; p < kc; p++) d[p * R] = 0f;
                    }
                }
            }
        }
    }

    /// <summary>
    /// <see cref="PackPanels"/> for bf16 bits: the same panels, each value widened to its f32 (exact). A gathered full
    /// panel widens its R rows' kc values into <paramref name="widened"/> (R, kc) first, then transposes them as the f32
    /// path does, so the vectorised transpose serves both.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackPanelsBf16(bool rowsAlongK, ushort* x, long ld, int p0, int kc, int i0, int count, int R, float* dst, float* widened)
    {
        for (int ir = 0; ir < count; ir += R)
        {
            int r = Math.Min(R, count - ir);
            float* panel = dst + (long)ir * kc; // (kc, R)
            if (rowsAlongK)
            {
                ushort* src = x + (long)p0 * ld + i0 + ir;
                for (int p = 0; p < kc; p++, src += ld)
                {
                    float* d = panel + p * R;
                    WidenBf16(src, d, r);
                    for (int j = r; j < R; j++) d[j] = 0f;
                }
            }
            else if (r == R && R % 4 == 0 && Avx.IsSupported)
            {
                for (int j = 0; j < R; j++) WidenBf16(x + (i0 + ir + j) * ld + p0, widened + j * kc, kc);
                PackTransposedFull(widened, kc, 0, kc, 0, R, panel);
            }
            else
            {
                for (int j = 0; j < R; j++)
                {
                    float* d = panel + j;
                    if (j < r)
                    {
                        ushort* src = x + (i0 + ir + j) * ld + p0;
                        for (int p = 0; p < kc; p++) d[p * R] = Bf16.ToFloat(src[p]);
                    }
                    else
                    {
                        for (int p = 0; p < kc; p++) d[p * R] = 0f;
                    }
                }
            }
        }
    }

    /// <summary>
    /// Packs bf16 bits as k pairs: the panels of <see cref="PackPanels"/> with (kc + 1) / 2 rows, entry (q, i) holding
    /// elements (2q, i) in its low and (2q + 1, i) in its high 16 bits (p counted from p0; an odd kc's last pair has a
    /// zero high half, which adds nothing to the dot product). Gathered panels (element (p, i) at x[i * ld + p]) are
    /// 32-bit copies when ld and p0 are even (then a pair is one aligned-to-2 word of the row), so the f32 routine does
    /// them; panels along k (x[p * ld + i]) interleave two rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackPairs(bool rowsAlongK, ushort* x, long ld, int p0, int kc, int i0, int count, int R, uint* dst)
    {
        int pairs = (kc + 1) / 2;
        if (!rowsAlongK && kc % 2 == 0 && ld % 2 == 0 && p0 % 2 == 0)
        {
            PackPanels(rowsAlongK: false, (float*)x, ld / 2, p0 / 2, pairs, i0, count, R, (float*)dst);
            return;
        }
        for (int ir = 0; ir < count; ir += R)
        {
            int r = Math.Min(R, count - ir);
            uint* panel = dst + (long)ir * pairs; // (pairs, R)
            for (int q = 0; q < pairs; q++)
            {
                uint* d = panel + q * R;
                int p = p0 + 2 * q;
                bool hasHigh = 2 * q + 1 < kc;
                if (rowsAlongK)
                {
                    ushort* lo = x + p * ld + i0 + ir, hi = lo + ld;
                    int j = 0;
                    if (hasHigh && Vector256.IsHardwareAccelerated)
                        for (; j + 16 <= r; j += 16)
                        {
                            Vector256<ushort> l = Vector256.Load(lo + j), h = Vector256.Load(hi + j);
                            Vector256.Store(Vector256.WidenLower(l) | Vector256.ShiftLeft(Vector256.WidenLower(h), 16), d + j);
                            Vector256.Store(Vector256.WidenUpper(l) | Vector256.ShiftLeft(Vector256.WidenUpper(h), 16), d + j + 8);
                        }
                    for (; j < r; j++) d[j] = lo[j] | (hasHigh ? (uint)hi[j] << 16 : 0u);
                    for (; j < R; j++) d[j] = 0u;
                }
                else
                {
                    for (int j = 0; j < R; j++)
                    {
                        if (j >= r) { d[j] = 0u; continue; }
                        ushort* row = x + (i0 + ir + j) * ld + p;
                        d[j] = row[0] | (hasHigh ? (uint)row[1] << 16 : 0u);
                    }
                }
            }
        }
    }

    /// <summary>
    /// C's valid (mr, nr) corner = alpha * acc + beta * C (C not read when beta == 0), acc the (12, 32) scratch of the
    /// AVX512-BF16 kernel; full tiles with vectors, the same unfused formula as <see cref="Write(float*, Vector512{float},
    /// Vector512{float}, Vector512{float}, bool)"/> either way.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void WriteTile(float* acc, float* c, long ldc, int mr, int nr, float alpha, float beta)
    {
        const int NR = Avx512Bf16Kernel.NR;
        bool read = beta != 0f;
        if (nr == NR)
        {
            var va = Vector512.Create(alpha);
            var vb = Vector512.Create(beta);
            for (int r = 0; r < mr; r++)
            {
                Write(c + r * ldc, Vector512.Load(acc + r * NR), va, vb, read);
                Write(c + r * ldc + 16, Vector512.Load(acc + r * NR + 16), va, vb, read);
            }
            return;
        }
        for (int r = 0; r < mr; r++)
        {
            float* src = acc + r * NR, dst = c + r * ldc;
            for (int j = 0; j < nr; j++) dst[j] = read ? alpha * src[j] + beta * dst[j] : alpha * src[j];
        }
    }

    /// <summary>dst[0..n) = the f32 values of the bf16 bits src[0..n): zero-extend to 32 bits, shift left by 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void WidenBf16(ushort* src, float* dst, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16)
            {
                var bits = Vector256.Load(src + i);
                Vector256.Store(Vector256.ShiftLeft(Vector256.WidenLower(bits), 16).AsSingle(), dst + i);
                Vector256.Store(Vector256.ShiftLeft(Vector256.WidenUpper(bits), 16).AsSingle(), dst + i + 8);
            }
        for (; i < n; i++) dst[i] = Bf16.ToFloat(src[i]);
    }

    /// <summary>
    /// A full gathered panel: NR rows of b (row stride ldb), columns [p0, p0+kc), into (kc, NR), NR a multiple of 4.
    /// NR/8 in-register 8x8 transposes per 8 values of k, and for a remaining 4 rows (NR = 12: the AVX-512 kernel's A
    /// panel) two 4x4 ones; the k tail (kc % 8) is copied element by element. Attention's tile products, whose A operand
    /// is reused over only 32–64 columns, spent more time packing A element by element than multiplying.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void PackTransposedFull(float* b, long ldb, int p0, int kc, int j0, int NR, float* panel)
    {
        int p = 0;
        for (; p + 8 <= kc; p += 8)
        {
            int j = 0;
            for (; j + 8 <= NR; j += 8)
            {
                float* src = b + (j0 + j) * ldb + p0 + p;
                Transpose8x8(src, ldb, panel + p * NR + j, NR);
            }
            if (j < NR)
            {
                float* src = b + (j0 + j) * ldb + p0 + p;
                Transpose4x4(src, ldb, panel + p * NR + j, NR);
                Transpose4x4(src + 4, ldb, panel + (p + 4) * NR + j, NR);
            }
        }
        for (; p < kc; p++)
        {
            float* d = panel + p * NR;
            float* src = b + (long)j0 * ldb + p0 + p;
            for (int j = 0; j < NR; j++) d[j] = src[j * ldb];
        }
    }

    /// <summary>dst[c * ldDst + r] = src[r * ldSrc + c] for a 4x4 block (SSE unpack and move network).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Transpose4x4(float* src, long ldSrc, float* dst, long ldDst)
    {
        var r0 = Sse.LoadVector128(src);
        var r1 = Sse.LoadVector128(src + ldSrc);
        var r2 = Sse.LoadVector128(src + 2 * ldSrc);
        var r3 = Sse.LoadVector128(src + 3 * ldSrc);
        var t0 = Sse.UnpackLow(r0, r1);    // r0[0] r1[0] r0[1] r1[1]
        var t1 = Sse.UnpackLow(r2, r3);    // r2[0] r3[0] r2[1] r3[1]
        var t2 = Sse.UnpackHigh(r0, r1);   // r0[2] r1[2] r0[3] r1[3]
        var t3 = Sse.UnpackHigh(r2, r3);   // r2[2] r3[2] r2[3] r3[3]
        Sse.Store(dst, Sse.MoveLowToHigh(t0, t1));
        Sse.Store(dst + ldDst, Sse.MoveHighToLow(t1, t0));
        Sse.Store(dst + 2 * ldDst, Sse.MoveLowToHigh(t2, t3));
        Sse.Store(dst + 3 * ldDst, Sse.MoveHighToLow(t3, t2));
    }

    /// <summary>dst[c * ldDst + r] = src[r * ldSrc + c] for an 8x8 block (AVX unpack/shuffle/permute network).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Transpose8x8(float* src, long ldSrc, float* dst, long ldDst)
    {
        var r0 = Avx.LoadVector256(src);
        var r1 = Avx.LoadVector256(src + ldSrc);
        var r2 = Avx.LoadVector256(src + 2 * ldSrc);
        var r3 = Avx.LoadVector256(src + 3 * ldSrc);
        var r4 = Avx.LoadVector256(src + 4 * ldSrc);
        var r5 = Avx.LoadVector256(src + 5 * ldSrc);
        var r6 = Avx.LoadVector256(src + 6 * ldSrc);
        var r7 = Avx.LoadVector256(src + 7 * ldSrc);
        // Interleave pairs of rows, then pairs of pairs: after these two steps each 128-bit lane holds a 4x4 transpose.
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var s0 = Avx.Shuffle(t0, t2, 0x44); var s1 = Avx.Shuffle(t0, t2, 0xEE);
        var s2 = Avx.Shuffle(t1, t3, 0x44); var s3 = Avx.Shuffle(t1, t3, 0xEE);
        var s4 = Avx.Shuffle(t4, t6, 0x44); var s5 = Avx.Shuffle(t4, t6, 0xEE);
        var s6 = Avx.Shuffle(t5, t7, 0x44); var s7 = Avx.Shuffle(t5, t7, 0xEE);
        // Join the low 128-bit halves (rows 0-3 | rows 4-7) for columns 0-3, the high halves for columns 4-7.
        Avx.Store(dst, Avx.Permute2x128(s0, s4, 0x20));
        Avx.Store(dst + ldDst, Avx.Permute2x128(s1, s5, 0x20));
        Avx.Store(dst + 2 * ldDst, Avx.Permute2x128(s2, s6, 0x20));
        Avx.Store(dst + 3 * ldDst, Avx.Permute2x128(s3, s7, 0x20));
        Avx.Store(dst + 4 * ldDst, Avx.Permute2x128(s0, s4, 0x31));
        Avx.Store(dst + 5 * ldDst, Avx.Permute2x128(s1, s5, 0x31));
        Avx.Store(dst + 6 * ldDst, Avx.Permute2x128(s2, s6, 0x31));
        Avx.Store(dst + 7 * ldDst, Avx.Permute2x128(s3, s7, 0x31));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> MulAdd(Vector256<float> x, Vector256<float> y, Vector256<float> acc) =>
        Fma.IsSupported ? Fma.MultiplyAdd(x, y, acc) : acc + x * y;

    /// <summary>
    /// AVX2 micro-kernel: acc (6, 16) = aPanel (kc, 6)^T @ bPanel (kc, 16) in 12 Vector256 accumulators (of 16 ymm
    /// registers), then C = alpha * acc + beta * C (C not read when beta == 0).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel6x16(int kc, float* a, float* b, float* c, long ldc, float alpha, float beta)
    {
        var c00 = Vector256<float>.Zero; var c01 = Vector256<float>.Zero;
        var c10 = Vector256<float>.Zero; var c11 = Vector256<float>.Zero;
        var c20 = Vector256<float>.Zero; var c21 = Vector256<float>.Zero;
        var c30 = Vector256<float>.Zero; var c31 = Vector256<float>.Zero;
        var c40 = Vector256<float>.Zero; var c41 = Vector256<float>.Zero;
        var c50 = Vector256<float>.Zero; var c51 = Vector256<float>.Zero;
        for (int p = 0; p < kc; p++, a += 6, b += 16)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var x = Vector256.Create(a[0]); c00 = MulAdd(x, b0, c00); c01 = MulAdd(x, b1, c01);
            x = Vector256.Create(a[1]); c10 = MulAdd(x, b0, c10); c11 = MulAdd(x, b1, c11);
            x = Vector256.Create(a[2]); c20 = MulAdd(x, b0, c20); c21 = MulAdd(x, b1, c21);
            x = Vector256.Create(a[3]); c30 = MulAdd(x, b0, c30); c31 = MulAdd(x, b1, c31);
            x = Vector256.Create(a[4]); c40 = MulAdd(x, b0, c40); c41 = MulAdd(x, b1, c41);
            x = Vector256.Create(a[5]); c50 = MulAdd(x, b0, c50); c51 = MulAdd(x, b1, c51);
        }
        var va = Vector256.Create(alpha);
        var vb = Vector256.Create(beta);
        bool read = beta != 0f;
        Write(c, c00, va, vb, read); Write(c + 8, c01, va, vb, read);
        Write(c + ldc, c10, va, vb, read); Write(c + ldc + 8, c11, va, vb, read);
        Write(c + 2 * ldc, c20, va, vb, read); Write(c + 2 * ldc + 8, c21, va, vb, read);
        Write(c + 3 * ldc, c30, va, vb, read); Write(c + 3 * ldc + 8, c31, va, vb, read);
        Write(c + 4 * ldc, c40, va, vb, read); Write(c + 4 * ldc + 8, c41, va, vb, read);
        Write(c + 5 * ldc, c50, va, vb, read); Write(c + 5 * ldc + 8, c51, va, vb, read);
    }

    // Not fused on purpose: alpha*acc + beta*c must round the same way in every kernel and in MergeEdge.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Write(float* c, Vector256<float> acc, Vector256<float> alpha, Vector256<float> beta, bool read) =>
        Vector256.Store(read ? alpha * acc + beta * Vector256.Load(c) : alpha * acc, c);

    /// <summary>
    /// AVX-512 micro-kernel: acc (12, 32) = aPanel (kc, 12)^T @ bPanel (kc, 32) in 24 Vector512 accumulators (of 32 zmm
    /// registers), then C = alpha * acc + beta * C (C not read when beta == 0).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Kernel12x32(int kc, float* a, float* b, float* c, long ldc, float alpha, float beta)
    {
        var c00 = Vector512<float>.Zero; var c01 = Vector512<float>.Zero;
        var c10 = Vector512<float>.Zero; var c11 = Vector512<float>.Zero;
        var c20 = Vector512<float>.Zero; var c21 = Vector512<float>.Zero;
        var c30 = Vector512<float>.Zero; var c31 = Vector512<float>.Zero;
        var c40 = Vector512<float>.Zero; var c41 = Vector512<float>.Zero;
        var c50 = Vector512<float>.Zero; var c51 = Vector512<float>.Zero;
        var c60 = Vector512<float>.Zero; var c61 = Vector512<float>.Zero;
        var c70 = Vector512<float>.Zero; var c71 = Vector512<float>.Zero;
        var c80 = Vector512<float>.Zero; var c81 = Vector512<float>.Zero;
        var c90 = Vector512<float>.Zero; var c91 = Vector512<float>.Zero;
        var c100 = Vector512<float>.Zero; var c101 = Vector512<float>.Zero;
        var c110 = Vector512<float>.Zero; var c111 = Vector512<float>.Zero;
        for (int p = 0; p < kc; p++, a += 12, b += 32)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var x = Vector512.Create(a[0]); c00 = Avx512F.FusedMultiplyAdd(x, b0, c00); c01 = Avx512F.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a[1]); c10 = Avx512F.FusedMultiplyAdd(x, b0, c10); c11 = Avx512F.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a[2]); c20 = Avx512F.FusedMultiplyAdd(x, b0, c20); c21 = Avx512F.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a[3]); c30 = Avx512F.FusedMultiplyAdd(x, b0, c30); c31 = Avx512F.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a[4]); c40 = Avx512F.FusedMultiplyAdd(x, b0, c40); c41 = Avx512F.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a[5]); c50 = Avx512F.FusedMultiplyAdd(x, b0, c50); c51 = Avx512F.FusedMultiplyAdd(x, b1, c51);
            x = Vector512.Create(a[6]); c60 = Avx512F.FusedMultiplyAdd(x, b0, c60); c61 = Avx512F.FusedMultiplyAdd(x, b1, c61);
            x = Vector512.Create(a[7]); c70 = Avx512F.FusedMultiplyAdd(x, b0, c70); c71 = Avx512F.FusedMultiplyAdd(x, b1, c71);
            x = Vector512.Create(a[8]); c80 = Avx512F.FusedMultiplyAdd(x, b0, c80); c81 = Avx512F.FusedMultiplyAdd(x, b1, c81);
            x = Vector512.Create(a[9]); c90 = Avx512F.FusedMultiplyAdd(x, b0, c90); c91 = Avx512F.FusedMultiplyAdd(x, b1, c91);
            x = Vector512.Create(a[10]); c100 = Avx512F.FusedMultiplyAdd(x, b0, c100); c101 = Avx512F.FusedMultiplyAdd(x, b1, c101);
            x = Vector512.Create(a[11]); c110 = Avx512F.FusedMultiplyAdd(x, b0, c110); c111 = Avx512F.FusedMultiplyAdd(x, b1, c111);
        }
        var va = Vector512.Create(alpha);
        var vb = Vector512.Create(beta);
        bool read = beta != 0f;
        Write(c, c00, va, vb, read); Write(c + 16, c01, va, vb, read);
        Write(c + ldc, c10, va, vb, read); Write(c + ldc + 16, c11, va, vb, read);
        Write(c + 2 * ldc, c20, va, vb, read); Write(c + 2 * ldc + 16, c21, va, vb, read);
        Write(c + 3 * ldc, c30, va, vb, read); Write(c + 3 * ldc + 16, c31, va, vb, read);
        Write(c + 4 * ldc, c40, va, vb, read); Write(c + 4 * ldc + 16, c41, va, vb, read);
        Write(c + 5 * ldc, c50, va, vb, read); Write(c + 5 * ldc + 16, c51, va, vb, read);
        Write(c + 6 * ldc, c60, va, vb, read); Write(c + 6 * ldc + 16, c61, va, vb, read);
        Write(c + 7 * ldc, c70, va, vb, read); Write(c + 7 * ldc + 16, c71, va, vb, read);
        Write(c + 8 * ldc, c80, va, vb, read); Write(c + 8 * ldc + 16, c81, va, vb, read);
        Write(c + 9 * ldc, c90, va, vb, read); Write(c + 9 * ldc + 16, c91, va, vb, read);
        Write(c + 10 * ldc, c100, va, vb, read); Write(c + 10 * ldc + 16, c101, va, vb, read);
        Write(c + 11 * ldc, c110, va, vb, read); Write(c + 11 * ldc + 16, c111, va, vb, read);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Write(float* c, Vector512<float> acc, Vector512<float> alpha, Vector512<float> beta, bool read) =>
        Vector512.Store(read ? alpha * acc + beta * Vector512.Load(c) : alpha * acc, c);

    /// <summary>
    /// Portable micro-kernel over the same packed layout (MR, NR), for machines without AVX. Where the hardware has FMA
    /// it fuses like the vector kernels (so all kernels agree bit for bit); without FMA it rounds the product separately,
    /// as the Vector256 fallback in MulAdd does.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void KernelScalar(int kc, int MR, int NR, float* a, float* b, float* c, long ldc, float alpha, float beta)
    {
        float* acc = stackalloc float[MaxMR * MaxNR]; // (MR, NR)
        new Span<float>(acc, MR * NR).Clear();
        for (int p = 0; p < kc; p++, a += MR, b += NR)
            for (int r = 0; r < MR; r++)
            {
                float x = a[r];
                float* row = acc + r * NR;
                for (int j = 0; j < NR; j++) row[j] = Fma.IsSupported ? MathF.FusedMultiplyAdd(x, b[j], row[j]) : row[j] + x * b[j];
            }
        for (int r = 0; r < MR; r++)
        {
            float* dst = c + r * ldc;
            for (int j = 0; j < NR; j++)
                dst[j] = beta == 0f ? alpha * acc[r * NR + j] : alpha * acc[r * NR + j] + beta * dst[j];
        }
    }

    /// <summary>Edge tile: scratch (MR, NR) holds alpha * acc; C's valid (mr, nr) corner becomes scratch + beta * C.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void MergeEdge(float* scratch, int NR, float* c, long ldc, int mr, int nr, float beta)
    {
        for (int r = 0; r < mr; r++)
        {
            float* src = scratch + r * NR, dst = c + r * ldc;
            if (beta == 0f) for (int j = 0; j < nr; j++) dst[j] = src[j];
            else for (int j = 0; j < nr; j++) dst[j] = src[j] + beta * dst[j];
        }
    }

    /// <summary>One thread's pack buffers: pinned (POH) arrays, aligned by hand to 64 bytes, kept for the thread's lifetime.</summary>
    sealed class PackBuffers
    {
        [ThreadStatic] static PackBuffers? _current;

        // Sized for the largest blocks; an Sgemm call never needs more, so they are allocated once per thread.
        readonly float[] _a = GC.AllocateUninitializedArray<float>(MC * KC + 16, pinned: true); // MC/MR panels of (KC, MR)
        readonly float[] _b = GC.AllocateUninitializedArray<float>(NC * KC + 16, pinned: true); // NC/NR panels of (KC, NR)
        readonly float[] _edge = GC.AllocateUninitializedArray<float>(MaxMR * MaxNR + 16, pinned: true); // (MR, NR)
        readonly float[] _widened = GC.AllocateUninitializedArray<float>(MaxNR * KC + 16, pinned: true); // (NR, KC) bf16 rows as f32

        public float* A => Aligned(_a);
        public float* B => Aligned(_b);
        public float* Edge => Aligned(_edge);
        public float* Widened => Aligned(_widened);

        public static PackBuffers ForThisThread() => _current ??= new PackBuffers();

        static float* Aligned(float[] array)
        {
            // Pinned arrays never move, so the address is stable for the life of the array.
            nint p = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
            return (float*)((p + 63) & ~(nint)63);
        }
    }
}
