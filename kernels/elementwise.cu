// elementwise.cu: the small elementwise kernels: add, axpy, scale, fill, bias add, strided copy with f32 <-> bf16.
// Matches CpuBackend.Add / Axpy / Scale / Fill / Copy and the bias step of MatMul.
//   add:      y (n) = a (n) + b (n), contiguous; y may alias a or b (each element is read before it is written).
//   axpy:     y (n) += alpha * x (n).     scale: x (n) *= alpha.
//   axpy_rows: y (M, N) [ldy] += alpha * x (M, N) [ldx]: row-dense views (a sub-network's weight gradient).
//   fill:     x (n) = bits, 32-bit or 16-bit words (the host encodes f32, i32 or bf16 values).
//   add_bias_rows: c (M, N) [ldc] += bias (N) on every row.
//   copy_strided: dst = src over a rank <= 6 shape with element strides for each side; dtype codes 0 = 32-bit word
//             (f32 or i32, bit copy), 1 = bf16; f32 -> bf16 rounds to nearest even, bf16 -> f32 is exact.
// Launch: 1-D grid, ceil(n / 256) blocks of 256 (add_bias_rows: ceil(M*N / 256)).
#include "common.cuh"

extern "C" __global__ void add_f32(const float* a, const float* b, float* y, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a[i] + b[i];
}

extern "C" __global__ void axpy_f32(float alpha, const float* x, float* y, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += alpha * x[i];
}

extern "C" __global__ void axpy_rows_f32(float alpha, const float* x, long long ldx, float* y, long long ldy, int m, int n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)m * n) return;
    long long r = i / n, c = i % n;
    y[r * ldy + c] += alpha * x[r * ldx + c];
}

extern "C" __global__ void scale_f32(float* x, float alpha, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= alpha;
}

extern "C" __global__ void fill_u16(unsigned short* x, unsigned short bits, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = bits;
}

extern "C" __global__ void add_bias_rows(float* c, const float* bias, int M, int N, long long ldc) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)M * N) return;
    int col = (int)(i % N);
    long long row = i / N;
    c[row * ldc + col] += bias[col];
}

struct StridedLayout {
    int rank;
    int shape[6];
    long long srcStride[6];
    long long dstStride[6];
};

extern "C" __global__ void copy_strided(const void* src, void* dst, StridedLayout L, long long n, int srcType, int dstType) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long rest = i, so = 0, d_o = 0;
    for (int d = L.rank - 1; d >= 0; d--) {
        long long k = rest % L.shape[d];
        rest /= L.shape[d];
        so += k * L.srcStride[d];
        d_o += k * L.dstStride[d];
    }
    if (srcType == 0 && dstType == 0) {
        ((unsigned int*)dst)[d_o] = ((const unsigned int*)src)[so];
    } else if (srcType == 1 && dstType == 1) {
        ((unsigned short*)dst)[d_o] = ((const unsigned short*)src)[so];
    } else if (srcType == 0) {
        ((unsigned short*)dst)[d_o] = f32_to_bf16(((const float*)src)[so]);
    } else {
        ((float*)dst)[d_o] = bf16_to_f32(((const unsigned short*)src)[so]);
    }
}
