using System.Runtime.InteropServices;

namespace Whittle.Native.Cuda.Native;

/// <summary>
/// cuBLAS (v2 API) and the version/handle calls of cuBLASLt. GEMMs are column-major; <see cref="CudaBackend.MatMul"/>
/// does the row-major swap. Same binding policy as <see cref="CuDriver"/>.
/// </summary>
internal static unsafe partial class Cublas
{
    const string Lib = CudaLibraries.CublasName;
    const string LtLib = CudaLibraries.CublasLtName;
    static Cublas() => CudaLibraries.InstallResolver();

    public const int CUBLAS_STATUS_SUCCESS = 0;
    public const int CUBLAS_OP_N = 0, CUBLAS_OP_T = 1;
    public const int CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2, CUBLAS_TF32_TENSOR_OP_MATH = 3;
    // cudaDataType_t
    public const int CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14;
    // cublasComputeType_t
    public const int CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_PEDANTIC = 69, CUBLAS_COMPUTE_32F_FAST_16BF = 75,
        CUBLAS_COMPUTE_32F_FAST_TF32 = 77;
    public const int CUBLAS_GEMM_DEFAULT = -1;

    [LibraryImport(Lib, EntryPoint = "cublasCreate_v2")] public static partial int cublasCreate(out nint handle);
    [LibraryImport(Lib, EntryPoint = "cublasDestroy_v2")] public static partial int cublasDestroy(nint handle);
    [LibraryImport(Lib, EntryPoint = "cublasGetVersion_v2")] public static partial int cublasGetVersion(nint handle, out int version);
    [LibraryImport(Lib, EntryPoint = "cublasSetStream_v2")] public static partial int cublasSetStream(nint handle, nint stream);
    [LibraryImport(Lib)] public static partial int cublasSetMathMode(nint handle, int mode);
    [LibraryImport(Lib)] public static partial int cublasSetWorkspace_v2(nint handle, nint workspace, nuint bytes);

    [LibraryImport(Lib, EntryPoint = "cublasSgemm_v2")]
    public static partial int cublasSgemm(nint handle, int transA, int transB, int m, int n, int k,
        float* alpha, nint a, int lda, nint b, int ldb, float* beta, nint c, int ldc);

    [LibraryImport(Lib)]
    public static partial int cublasGemmEx(nint handle, int transA, int transB, int m, int n, int k,
        void* alpha, nint a, int aType, int lda, nint b, int bType, int ldb, void* beta, nint c, int cType, int ldc,
            int computeType, int algo);

    [LibraryImport(Lib)]
    public static partial int cublasGemmStridedBatchedEx(nint handle, int transA, int transB, int m, int n, int k,
        void* alpha, nint a, int aType, int lda, long strideA, nint b, int bType, int ldb, long strideB,
        void* beta, nint c, int cType, int ldc, long strideC, int batchCount, int computeType, int algo);

    [LibraryImport(LtLib)] public static partial int cublasLtCreate(out nint handle);
    [LibraryImport(LtLib)] public static partial int cublasLtDestroy(nint handle);
    [LibraryImport(LtLib)] public static partial nuint cublasLtGetVersion();

    // cuBLASLt matmul (enum values from cublasLt.h, stable since CUDA 11)
    public const int CUBLASLT_MATMUL_DESC_TRANSA = 3, CUBLASLT_MATMUL_DESC_TRANSB = 4, CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
        CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8;
    public const int CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6;
    public const uint CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4, CUBLASLT_EPILOGUE_GELU = 32,
        CUBLASLT_EPILOGUE_GELU_BIAS = 36;
    public const int CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8;

    /// <summary>cublasLtMatmulHeuristicResult_t: algo (8 × u64), workspace size, status, waves count, 4 reserved ints (96 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct LtHeuristicResult
    {
        public fixed ulong Algo[8];
        public nuint WorkspaceSize;
        public int State;
        public float WavesCount;
        public fixed int Reserved[4];
    }

    [LibraryImport(LtLib)] public static partial int cublasLtMatmulDescCreate(out nint desc, int computeType, int scaleType);
    [LibraryImport(LtLib)] public static partial int cublasLtMatmulDescDestroy(nint desc);
    [LibraryImport(LtLib)] public static partial int cublasLtMatmulDescSetAttribute(nint desc, int attribute, void* value, nuint bytes);
    [LibraryImport(LtLib)] public static partial int cublasLtMatrixLayoutCreate(out nint layout, int type, ulong rows, ulong cols, long ld);
    [LibraryImport(LtLib)] public static partial int cublasLtMatrixLayoutDestroy(nint layout);
    [LibraryImport(LtLib)] public static partial int cublasLtMatrixLayoutSetAttribute(nint layout, int attribute, void* value, nuint bytes);
    [LibraryImport(LtLib)] public static partial int cublasLtMatmulPreferenceCreate(out nint preference);
    [LibraryImport(LtLib)] public static partial int cublasLtMatmulPreferenceDestroy(nint preference);
    [LibraryImport(LtLib)] public static partial int cublasLtMatmulPreferenceSetAttribute(
        nint preference, int attribute, void* value, nuint bytes);
    [LibraryImport(LtLib)]
    public static partial int cublasLtMatmulAlgoGetHeuristic(nint handle, nint desc, nint aLayout, nint bLayout, nint cLayout, nint dLayout,
        nint preference, int requested, LtHeuristicResult* results, out int returned);
    [LibraryImport(LtLib)]
    public static partial int cublasLtMatmul(nint handle, nint desc, void* alpha, nint a, nint aLayout, nint b, nint bLayout, void* beta,
        nint c, nint cLayout, nint d, nint dLayout, ulong* algo, nint workspace, nuint workspaceBytes, nint stream);

    /// <summary>cublasStatus_t names (cublasGetStatusName only exists from 11.4; this table works with any version).</summary>
    public static string StatusName(int status) => status switch
    {
        0 => "CUBLAS_STATUS_SUCCESS",
        1 => "CUBLAS_STATUS_NOT_INITIALIZED",
        3 => "CUBLAS_STATUS_ALLOC_FAILED",
        7 => "CUBLAS_STATUS_INVALID_VALUE",
        8 => "CUBLAS_STATUS_ARCH_MISMATCH",
        11 => "CUBLAS_STATUS_MAPPING_ERROR",
        13 => "CUBLAS_STATUS_EXECUTION_FAILED",
        14 => "CUBLAS_STATUS_INTERNAL_ERROR",
        15 => "CUBLAS_STATUS_NOT_SUPPORTED",
        16 => "CUBLAS_STATUS_LICENSE_ERROR",
        _ => $"CUBLAS_STATUS_{status}",
    };
}
