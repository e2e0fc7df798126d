using Whittle.Native.Cuda.Native;

namespace Whittle.Native.Cuda;

/// <summary>
/// Column-major GEMM through cuBLASLt: D = epilogue(alpha · op(A) op(B) + beta · C), with leading dimensions, optional
/// strided batches, f32 or bf16 inputs (f32 output), f32 or TF32 compute, and the BIAS / GELU / GELU_BIAS epilogues
/// (the bias has one entry per row of D). Policy: descriptors are made per call (cheap next to any GEMM worth fusing);
/// the algorithm comes from cuBLASLt's heuristic within a fixed workspace, asked once per problem (<see cref="ProblemKey"/>:
/// types, transposes, sizes, leading dimensions, batch, epilogue, bias and each pointer's alignment — everything the
/// heuristic sees) and cached for the life of the handle, since a training step repeats the same few shapes thousands of
/// times; when the heuristic offers none (also cached), Run returns false and the caller takes the plain cuBLAS path.
/// CudaBackend.MatMul does the row-major operand swap.
/// </summary>
internal sealed unsafe class CublasLtGemm : IDisposable
{
    public const long WorkspaceBytes = 32L << 20;
    readonly nint _handle;
    readonly nint _workspace;
    readonly long _workspaceBlock;
    readonly DeviceAllocator _allocator;
    readonly Dictionary<ProblemKey, Cublas.LtHeuristicResult?> _algorithms = new();

    /// <summary>Everything cuBLASLt's heuristic is given for one GEMM (alignments included: a less aligned view may need another
    /// algorithm).</summary>
    readonly record struct ProblemKey(
        Operand A, Operand B, ulong Rows, ulong Cols, long Ldc, int ComputeType, uint Epilogue, bool Bias, int Batch, long CBatchStride,
        uint AlignA, uint AlignB, uint AlignC);

    /// <summary>Distinct problems whose algorithm is cached; <see cref="HeuristicQueries"/> counts the heuristic calls made.</summary>
    public int AlgorithmsCached => _algorithms.Count;
    public int HeuristicQueries { get; private set; }

    CublasLtGemm(nint handle, DeviceAllocator allocator)
    {
        _handle = handle; _allocator = allocator;
        (_workspace, _workspaceBlock) = allocator.Allocate(WorkspaceBytes);
    }

    /// <summary>A GEMM engine when libcublasLt loads, else null (MatMul then fuses nothing).</summary>
    public static CublasLtGemm? TryCreate(DeviceAllocator allocator)
    {
        if (CudaLibraries.CublasLt.Handle == 0) return null;
        return Cublas.cublasLtCreate(out var h) == Cublas.CUBLAS_STATUS_SUCCESS ? new CublasLtGemm(h, allocator) : null;
    }

    public readonly record struct Operand(
        nint Pointer, int DataType, ulong Rows, ulong Cols, long Ld, bool Transpose, long BatchStride = 0);

    /// <summary>Runs D (in place over C when c == d) on <paramref name="stream"/>; false when cuBLASLt has no algorithm for this
    /// case.</summary>
    public bool Run(
        Operand a, Operand b, nint c, ulong rows, ulong cols, long ldc, float alpha, float beta, int computeType, uint epilogue, nint bias,
        int batch, long cBatchStride, nint stream, string op)
    {
        nint desc = 0, la = 0, lb = 0, lc = 0, pref = 0;
        try
        {
            Check(Cublas.cublasLtMatmulDescCreate(out desc, computeType, Cublas.CUDA_R_32F), "cublasLtMatmulDescCreate", op);
            int ta = a.Transpose ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N, tb = b.Transpose ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N;
            Check(Cublas.cublasLtMatmulDescSetAttribute(desc, Cublas.CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(int)),
                "cublasLtMatmulDescSetAttribute(TRANSA)", op);
            Check(Cublas.cublasLtMatmulDescSetAttribute(desc, Cublas.CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(int)),
                "cublasLtMatmulDescSetAttribute(TRANSB)", op);
            Check(Cublas.cublasLtMatmulDescSetAttribute(desc, Cublas.CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(uint)),
                "cublasLtMatmulDescSetAttribute(EPILOGUE)", op);
            if (bias != 0)
                Check(Cublas.cublasLtMatmulDescSetAttribute(desc, Cublas.CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, (nuint)sizeof(nint)),
                "cublasLtMatmulDescSetAttribute(BIAS_POINTER)", op);
            la = Layout(a.DataType, a.Rows, a.Cols, a.Ld, batch, a.BatchStride, op);
            lb = Layout(b.DataType, b.Rows, b.Cols, b.Ld, batch, b.BatchStride, op);
            lc = Layout(Cublas.CUDA_R_32F, rows, cols, ldc, batch, cBatchStride, op);
            Check(Cublas.cublasLtMatmulPreferenceCreate(out pref), "cublasLtMatmulPreferenceCreate", op);
            ulong ws = WorkspaceBytes;
            Check(Cublas.cublasLtMatmulPreferenceSetAttribute(pref, Cublas.CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ulong)),
                "cublasLtMatmulPreferenceSetAttribute", op);
            // The heuristic assumes 256-byte aligned operands unless told otherwise; views into flat parameter buffers
            // (bf16 copies, sub-network weights) can be less aligned, and an algorithm relying on more would fail.
            foreach (var (attribute, pointer) in new[] { (Cublas.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, a.Pointer),
                (Cublas.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, b.Pointer),
                         (Cublas.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, c), (Cublas.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, c) })
            {
                uint alignment = Alignment(pointer);
                Check(Cublas.cublasLtMatmulPreferenceSetAttribute(pref, attribute, &alignment, sizeof(uint)),
                    "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT)", op);
            }
            var key = new ProblemKey(
                a with { Pointer = 0 }, b with { Pointer = 0 }, rows, cols, ldc, computeType, epilogue, bias != 0, batch, cBatchStride,
                Alignment(a.Pointer), Alignment(b.Pointer), Alignment(c));
            if (!_algorithms.TryGetValue(key, out var cached))
            {
                Cublas.LtHeuristicResult found1;
                HeuristicQueries++;
                int status = Cublas.cublasLtMatmulAlgoGetHeuristic(_handle, desc, la, lb, lc, lc, pref, 1, &found1, out int found);
                _algorithms[key] = cached = status == Cublas.CUBLAS_STATUS_SUCCESS && found > 0 ? found1 : null;
            }
            if (cached is not { } result) return false;
            Check(Cublas.cublasLtMatmul(
                _handle, desc, &alpha, a.Pointer, la, b.Pointer, lb, &beta, c, lc, c, lc, result.Algo, _workspace,
                (nuint)WorkspaceBytes, stream),
                "cublasLtMatmul", op);
            return true;
        }
        finally
        {
            if (pref != 0) Cublas.cublasLtMatmulPreferenceDestroy(pref);
            if (lc != 0) Cublas.cublasLtMatrixLayoutDestroy(lc);
            if (lb != 0) Cublas.cublasLtMatrixLayoutDestroy(lb);
            if (la != 0) Cublas.cublasLtMatrixLayoutDestroy(la);
            if (desc != 0) Cublas.cublasLtMatmulDescDestroy(desc);
        }
    }

    /// <summary>The largest power of two (up to 256) dividing a device address.</summary>
    internal static uint Alignment(nint pointer) => pointer == 0 ? 256u : (uint)Math.Min(256L, (long)pointer & -(long)pointer);

    static nint Layout(int type, ulong rows, ulong cols, long ld, int batch, long stride, string op)
    {
        Check(Cublas.cublasLtMatrixLayoutCreate(out var l, type, rows, cols, ld), "cublasLtMatrixLayoutCreate", op);
        if (batch > 1)
        {
            Check(Cublas.cublasLtMatrixLayoutSetAttribute(l, Cublas.CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(int)),
                "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)", op);
            Check(Cublas.cublasLtMatrixLayoutSetAttribute(l, Cublas.CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(long)),
                "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)", op);
        }
        return l;
    }

    static void Check(int status, string call, string op) => CudaException.CheckCublas(status, call, op);

    public void Dispose()
    {
        _allocator.Free(_workspace, _workspaceBlock);
        Cublas.cublasLtDestroy(_handle);
    }
}
