// gelu.cu: GELU activation, forward and backward, exact (erf) or tanh approximation.
// Matches CpuBackend.GeluForward / GeluBackward.
//   forward:  y (n) = gelu(x (n)), contiguous.
//   backward: dx (n) += dy (n) * gelu'(x (n)).
// Launch: 1-D grid, ceil(n / 256) blocks of 256 threads (n counts elements, up to 2^31 - 1 per launch).
#include "common.cuh"

#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f
#define SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_C 0.044715f

__device__ __forceinline__ float gelu_exact(float x) { return 0.5f * x * (1.0f + erff(x * INV_SQRT2)); }
__device__ __forceinline__ float gelu_exact_grad(float x) {
    return 0.5f * (1.0f + erff(x * INV_SQRT2)) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
}
__device__ __forceinline__ float gelu_tanh(float x) {
    float u = SQRT_2_OVER_PI * (x + GELU_C * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}
__device__ __forceinline__ float gelu_tanh_grad(float x) {
    float u = SQRT_2_OVER_PI * (x + GELU_C * x * x * x);
    float th = tanhf(u);
    float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_C * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

extern "C" __global__ void gelu_forward(const float* x, float* y, long long n, int tanhApprox) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    y[i] = tanhApprox ? gelu_tanh(v) : gelu_exact(v);
}

extern "C" __global__ void gelu_backward(const float* dy, const float* x, float* dx, long long n, int tanhApprox) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    dx[i] += dy[i] * (tanhApprox ? gelu_tanh_grad(v) : gelu_exact_grad(v));
}
