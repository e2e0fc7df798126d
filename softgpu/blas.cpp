// blas.cpp: the cuBLAS and cuBLASLt calls the engine makes (Cuda/Native/Cublas.cs), on the CPU.
// Policy:
//  - column-major D = epilogue(alpha op(A) op(B) + beta C) with f32 or bf16 inputs and f32 outputs, products summed
//    in double (at least as accurate as cuBLAS, so parity failures point at our code, not at the emulation); TF32 and
//    bf16 "fast" compute types round the f32 inputs as the tensor cores would (round to nearest even);
//  - every operand must lie inside one live device allocation (leading dimensions and batches included);
//  - cuBLASLt: the heuristic returns one algorithm that records the operand alignment the preference allowed
//    (256 bytes unless told less); cublasLtMatmul refuses pointers less aligned than that, as a real algorithm that
//    relies on alignment would fail. With SOFTGPU_LT_NO_ALGO=1 the heuristic offers nothing, so callers take their
//    fallback path;
//  - work is queued on the handle's stream (cublasSetStream) or the stream passed, like every other device call.
#include "runtime.h"
#include "streams.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#define API extern "C" __attribute__((visibility("default")))
using namespace softgpu;

enum : int { STATUS_SUCCESS = 0, STATUS_INVALID_VALUE = 7, STATUS_EXECUTION_FAILED = 13, STATUS_NOT_SUPPORTED = 15 };
enum : int { R_32F = 0, R_16BF = 14 };
enum : int { COMPUTE_32F = 68, COMPUTE_32F_PEDANTIC = 69, COMPUTE_32F_FAST_16BF = 75, COMPUTE_32F_FAST_TF32 = 77 };
enum : unsigned { EPILOGUE_DEFAULT = 1, EPILOGUE_BIAS = 4, EPILOGUE_GELU = 32, EPILOGUE_GELU_BIAS = 36 };

namespace {
float round_mantissa(float f, int keepBits) {   // round to nearest even, keeping keepBits of the 23 mantissa bits
    unsigned u; std::memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return f;   // Inf, NaN
    int drop = 23 - keepBits;
    u += ((1u << (drop - 1)) - 1) + ((u >> drop) & 1u);
    u &= ~((1u << drop) - 1);
    std::memcpy(&f, &u, 4);
    return f;
}
float load(const void* p, int type, size_t i) {
    if (type == R_16BF) { unsigned u = (unsigned)((const unsigned short*)p)[i] << 16; float f; std::memcpy(&f, &u, 4); return f; }
    return ((const float*)p)[i];
}
size_t element_size(int type) { return type == R_16BF ? 2 : 4; }

struct Operand { const void* p; int type; long ld; bool trans; };

// op(X) as a dense (rows x k) row-major float matrix: row r of op(A), or column c of op(B) (then "rows" = n).
std::vector<float> gather(const Operand& x, int rows, int k, bool isB, int compute) {
    std::vector<float> out((size_t)rows * k);
    int keep = compute == COMPUTE_32F_FAST_TF32 ? 10 : compute == COMPUTE_32F_FAST_16BF ? 7 : 23;
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < k; p++) {
            // A (m x k): op = N reads A[r + p*ld], op = T reads A[p + r*ld]; B (k x n) column r: N reads B[p + r*ld], T B[r + p*ld]
            bool rowIsLeading = isB ? !x.trans : x.trans;
            size_t at = rowIsLeading ? (size_t)r * x.ld + p : (size_t)p * x.ld + r;
            float v = load(x.p, x.type, at);
            out[(size_t)r * k + p] = keep < 23 && x.type == R_32F ? round_mantissa(v, keep) : v;
        }
    return out;
}

void gemm(int m, int n, int k, float alpha, const Operand& a, const Operand& b, float beta, const float* c, long ldc,
          float* d, long ldd, const float* bias, unsigned epilogue, int compute) {
    auto t0 = std::chrono::steady_clock::now();
    struct Done { std::chrono::steady_clock::time_point t0; int m, n, k; ~Done() {
        if (options().trace) fprintf(stderr, "[softgpu] gemm %dx%dx%d took %.2f ms\n", m, n, k,
                                     std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()); } } done{t0, m, n, k};
    std::vector<float> ar = gather(a, m, k, false, compute), bc = gather(b, n, k, true, compute);
    #pragma omp parallel for schedule(static) num_threads(options().threads)
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            const float* x = &ar[(size_t)i * k];
            const float* y = &bc[(size_t)j * k];
            double s = 0;
            for (int p = 0; p < k; p++) s += (double)x[p] * y[p];
            double v = alpha * s + (beta != 0 ? beta * (double)c[(size_t)j * ldc + i] : 0.0);   // beta = 0: C is not read
            if (bias) v += bias[i];
            if (epilogue == EPILOGUE_GELU || epilogue == EPILOGUE_GELU_BIAS)
                v = 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
            d[(size_t)j * ldd + i] = (float)v;
        }
}

// The column-major matrix as stored: (trans ? cols x rows : rows x cols) elements with leading dimension ld.
bool check_matrix(const void* p, int type, bool trans, long rows, long cols, long ld, const char* what) {
    long r = trans ? cols : rows, c = trans ? rows : cols;
    if (r <= 0 || c <= 0) return true;
    if (ld < r) return diag("%s: leading dimension %ld is smaller than the %ld rows stored", what, ld, r);
    return check_device_range(p, ((size_t)(c - 1) * ld + r) * element_size(type), what);
}
bool supported(int type, const char* what) {
    return type == R_32F || type == R_16BF || diag("%s: data type %d is not emulated (f32 and bf16 are)", what, type);
}
bool supported_compute(int c) {
    return c == COMPUTE_32F || c == COMPUTE_32F_PEDANTIC || c == COMPUTE_32F_FAST_16BF || c == COMPUTE_32F_FAST_TF32 ||
           diag("compute type %d is not emulated", c);
}

struct Handle { void* stream = nullptr; };
} // namespace

// ------------------------------------------------------------------------------------------------ cuBLAS
API int cublasCreate_v2(void** h) { *h = new Handle(); return STATUS_SUCCESS; }
API int cublasDestroy_v2(void* h) { delete (Handle*)h; return STATUS_SUCCESS; }
API int cublasGetVersion_v2(void*, int* v) { *v = 120800; return STATUS_SUCCESS; }
API int cublasSetStream_v2(void* h, void* s) { ((Handle*)h)->stream = s; return STATUS_SUCCESS; }
API int cublasSetMathMode(void*, int) { return STATUS_SUCCESS; }
API int cublasSetWorkspace_v2(void*, void*, size_t) { return STATUS_SUCCESS; }

API int cublasGemmStridedBatchedEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, const void* A, int at,
                                   int lda, long long sa, const void* B, int bt, int ldb, long long sb, const void* beta,
                                   void* C, int ct, int ldc, long long sc, int batch, int compute, int) {
    if (m < 0 || n < 0 || k < 0 || batch < 0) return STATUS_INVALID_VALUE;
    if (!supported(at, "cublasGemmEx A") || !supported(bt, "cublasGemmEx B") || at != bt || ct != R_32F || !supported_compute(compute))
        return STATUS_NOT_SUPPORTED;
    float al = *(const float*)alpha, be = *(const float*)beta;   // host pointer mode: read at the call
    for (int i = 0; i < batch; i++) {
        auto Ai = (const char*)A + i * sa * (long long)element_size(at), Bi = (const char*)B + i * sb * (long long)element_size(bt);
        auto Ci = (float*)C + i * sc;
        if (!check_matrix(Ai, at, ta, m, k, lda, "cublasGemmEx A") || !check_matrix(Bi, bt, tb, k, n, ldb, "cublasGemmEx B") ||
            !check_matrix(Ci, R_32F, false, m, n, ldc, "cublasGemmEx C")) return STATUS_INVALID_VALUE;
    }
    if (m == 0 || n == 0) return STATUS_SUCCESS;
    int r = submit(((Handle*)h)->stream, [=] {
        for (int i = 0; i < batch; i++) {
            Operand a{(const char*)A + i * sa * (long long)element_size(at), at, lda, ta != 0};
            Operand b{(const char*)B + i * sb * (long long)element_size(bt), bt, ldb, tb != 0};
            float* Ci = (float*)C + i * sc;
            gemm(m, n, k, al, a, b, be, Ci, ldc, Ci, ldc, nullptr, EPILOGUE_DEFAULT, compute);
        }
        return 0;
    });
    return r ? STATUS_EXECUTION_FAILED : STATUS_SUCCESS;
}
API int cublasGemmEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, const void* A, int at, int lda,
                     const void* B, int bt, int ldb, const void* beta, void* C, int ct, int ldc, int compute, int algo) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0, 1, compute, algo);
}
API int cublasSgemm_v2(void* h, int ta, int tb, int m, int n, int k, const float* alpha, const float* A, int lda,
                       const float* B, int ldb, const float* beta, float* C, int ldc) {
    return cublasGemmEx(h, ta, tb, m, n, k, alpha, A, R_32F, lda, B, R_32F, ldb, beta, C, R_32F, ldc, COMPUTE_32F, -1);
}

// ------------------------------------------------------------------------------------------------ cuBLASLt
namespace {
struct LtDesc { int compute, scale; int transA = 0, transB = 0; unsigned epilogue = EPILOGUE_DEFAULT; const float* bias = nullptr; };
struct LtLayout { int type; unsigned long long rows, cols; long long ld; int batch = 1; long long stride = 0; };
struct LtPreference { unsigned long long workspace = 0; unsigned align[4] = {256, 256, 256, 256}; };   // A, B, C, D
const unsigned AlgoMagic = 0x50475053;   // "SPGP": marks an algorithm this heuristic returned
unsigned alignment_of(const void* p) {
    auto a = (uintptr_t)p;
    return a == 0 ? 256u : (unsigned)std::min<uintptr_t>(256, a & (~a + 1));
}
} // namespace

API int cublasLtCreate(void** h) { *h = new Handle(); return STATUS_SUCCESS; }
API int cublasLtDestroy(void* h) { delete (Handle*)h; return STATUS_SUCCESS; }
API size_t cublasLtGetVersion() { return 120800; }
API int cublasLtMatmulDescCreate(void** d, int compute, int scale) {
    if (!supported_compute(compute) || scale != R_32F) return STATUS_NOT_SUPPORTED;
    *d = new LtDesc{compute, scale};
    return STATUS_SUCCESS;
}
API int cublasLtMatmulDescDestroy(void* d) { delete (LtDesc*)d; return STATUS_SUCCESS; }
API int cublasLtMatmulDescSetAttribute(void* dp, int attribute, const void* v, size_t) {
    auto d = (LtDesc*)dp;
    switch (attribute) {
        case 3: d->transA = *(const int*)v; return STATUS_SUCCESS;
        case 4: d->transB = *(const int*)v; return STATUS_SUCCESS;
        case 7:
            d->epilogue = *(const unsigned*)v;
            if (d->epilogue == EPILOGUE_DEFAULT || d->epilogue == EPILOGUE_BIAS || d->epilogue == EPILOGUE_GELU || d->epilogue == EPILOGUE_GELU_BIAS)
                return STATUS_SUCCESS;
            diag("cublasLtMatmulDescSetAttribute: epilogue %u is not emulated", d->epilogue);
            return STATUS_NOT_SUPPORTED;
        case 8: d->bias = *(const float* const*)v; return STATUS_SUCCESS;
        default: diag("cublasLtMatmulDescSetAttribute: attribute %d is not emulated", attribute); return STATUS_NOT_SUPPORTED;
    }
}
API int cublasLtMatrixLayoutCreate(void** l, int type, unsigned long long rows, unsigned long long cols, long long ld) {
    if (!supported(type, "cublasLtMatrixLayoutCreate")) return STATUS_NOT_SUPPORTED;
    *l = new LtLayout{type, rows, cols, ld};
    return STATUS_SUCCESS;
}
API int cublasLtMatrixLayoutDestroy(void* l) { delete (LtLayout*)l; return STATUS_SUCCESS; }
API int cublasLtMatrixLayoutSetAttribute(void* lp, int attribute, const void* v, size_t) {
    auto l = (LtLayout*)lp;
    if (attribute == 5) { l->batch = *(const int*)v; return STATUS_SUCCESS; }
    if (attribute == 6) { l->stride = *(const long long*)v; return STATUS_SUCCESS; }
    diag("cublasLtMatrixLayoutSetAttribute: attribute %d is not emulated", attribute);
    return STATUS_NOT_SUPPORTED;
}
API int cublasLtMatmulPreferenceCreate(void** p) { *p = new LtPreference(); return STATUS_SUCCESS; }
API int cublasLtMatmulPreferenceDestroy(void* p) { delete (LtPreference*)p; return STATUS_SUCCESS; }
API int cublasLtMatmulPreferenceSetAttribute(void* pp, int attribute, const void* v, size_t) {
    auto p = (LtPreference*)pp;
    if (attribute == 1) { p->workspace = *(const unsigned long long*)v; return STATUS_SUCCESS; }
    if (attribute >= 5 && attribute <= 8) {   // MIN_ALIGNMENT_A/B/C/D_BYTES
        unsigned a = *(const unsigned*)v;
        if (a == 0 || (a & (a - 1))) return STATUS_INVALID_VALUE;
        p->align[attribute - 5] = a;
        return STATUS_SUCCESS;
    }
    diag("cublasLtMatmulPreferenceSetAttribute: attribute %d is not emulated", attribute);
    return STATUS_NOT_SUPPORTED;
}
// cublasLtMatmulHeuristicResult_t is 96 bytes: the algorithm (8 x u64) first. Ours: magic, then the four alignments.
API int cublasLtMatmulAlgoGetHeuristic(void*, void*, void*, void*, void*, void*, void* pref, int requested, void* results, int* returned) {
    if (requested < 1) return STATUS_INVALID_VALUE;
    std::memset(results, 0, 96);
    *returned = 0;
    if (options().ltNoAlgorithm) return STATUS_NOT_SUPPORTED;   // as cuBLASLt answers when no algorithm fits
    auto algo = (unsigned long long*)results;
    auto p = (const LtPreference*)pref;
    algo[0] = AlgoMagic;
    for (int i = 0; i < 4; i++) algo[1 + i] = p ? p->align[i] : 256;
    *returned = 1;
    return STATUS_SUCCESS;
}
API int cublasLtMatmul(void* h, void* dp, const void* alpha, const void* A, void* la, const void* B, void* lb, const void* beta,
                       const void* C, void* lc, void* D, void* ld, const unsigned long long* algo, void* workspace,
                       size_t workspaceBytes, void* stream) {
    (void)h;
    auto d = (LtDesc*)dp; auto a = (LtLayout*)la; auto b = (LtLayout*)lb; auto c = (LtLayout*)lc; auto o = (LtLayout*)ld;
    if (!algo || algo[0] != AlgoMagic) { diag("cublasLtMatmul: an algorithm not returned by cublasLtMatmulAlgoGetHeuristic"); return STATUS_INVALID_VALUE; }
    const void* ptrs[4] = {A, B, C, D};
    const char* names[4] = {"A", "B", "C", "D"};
    for (int i = 0; i < 4; i++)
        if (alignment_of(ptrs[i]) < algo[1 + i]) {
            diag("cublasLtMatmul: %s at %p is %u-byte aligned, but the algorithm was chosen for %llu-byte alignment (set "
                 "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_%s_BYTES)", names[i], ptrs[i], alignment_of(ptrs[i]), algo[1 + i], names[i]);
            return STATUS_INVALID_VALUE;
        }
    long long m = (long long)o->rows, n = (long long)o->cols, k = (long long)(d->transA ? a->rows : a->cols);
    if ((long long)(d->transA ? a->cols : a->rows) != m || (long long)(d->transB ? b->rows : b->cols) != n ||
        (long long)(d->transB ? b->cols : b->rows) != k || c->rows != o->rows || c->cols != o->cols || c->type != R_32F || o->type != R_32F ||
        a->type != b->type || m > INT32_MAX || n > INT32_MAX || k > INT32_MAX) {
        diag("cublasLtMatmul: the layouts of A (%llux%llu), B (%llux%llu), C and D (%llux%llu) do not agree", a->rows, a->cols, b->rows, b->cols, o->rows, o->cols);
        return STATUS_INVALID_VALUE;
    }
    if (workspaceBytes && !check_device_range(workspace, workspaceBytes, "cublasLtMatmul workspace")) return STATUS_INVALID_VALUE;
    bool useBias = d->epilogue == EPILOGUE_BIAS || d->epilogue == EPILOGUE_GELU_BIAS;
    if (useBias && (!d->bias || !check_device_range(d->bias, (size_t)m * 4, "cublasLtMatmul bias"))) return STATUS_INVALID_VALUE;
    int batch = o->batch;
    auto at = [](const void* base, const LtLayout* l, int i) {
        return (const char*)base + (l->batch > 1 ? i * l->stride * (long long)element_size(l->type) : 0);
    };
    for (int i = 0; i < batch; i++)
        if (!check_matrix(at(A, a, i), a->type, false, (long)a->rows, (long)a->cols, a->ld, "cublasLtMatmul A") ||
            !check_matrix(at(B, b, i), b->type, false, (long)b->rows, (long)b->cols, b->ld, "cublasLtMatmul B") ||
            !check_matrix(at(C, c, i), R_32F, false, m, n, c->ld, "cublasLtMatmul C") ||
            !check_matrix(at(D, o, i), R_32F, false, m, n, o->ld, "cublasLtMatmul D")) return STATUS_INVALID_VALUE;
    float al = *(const float*)alpha, be = *(const float*)beta;
    LtDesc desc = *d; LtLayout al_ = *a, bl = *b, cl = *c, ol = *o;
    int r = submit(stream, [=] {
        for (int i = 0; i < batch; i++) {
            Operand opA{at(A, &al_, i), al_.type, (long)al_.ld, desc.transA != 0}, opB{at(B, &bl, i), bl.type, (long)bl.ld, desc.transB != 0};
            gemm((int)m, (int)n, (int)k, al, opA, opB, be, (const float*)at(C, &cl, i), (long)cl.ld, (float*)at(D, &ol, i), (long)ol.ld,
                 useBias ? desc.bias : nullptr, desc.epilogue, desc.compute);
        }
        return 0;
    });
    return r ? STATUS_EXECUTION_FAILED : STATUS_SUCCESS;
}
