// swiglu.cu: the gated MLP activation of the Llama family, y = silu(gate) * up, silu(g) = g * sigmoid(g), fused
// (one read of gate and up, no silu(gate) tensor), forward and backward.
// Matches CpuBackend.SwiGluForward / SwiGluBackward.
//   forward:  y (n) = silu(gate (n)) * up (n), contiguous.
//   backward: dGate (n) += dy * up * sigmoid(g) (1 + g (1 - sigmoid(g))), dUp (n) += dy * silu(g), g = gate.
// sigmoid(g) = 1 / (1 + exp(-g)): exp overflows to +inf for g < -88, giving 0, the limit, never NaN.
// Launch: 1-D grid, ceil(n / 256) blocks of 256 threads (n counts elements).
#include "common.cuh"

__device__ __forceinline__ float sigmoidf(float g) { return 1.0f / (1.0f + expf(-g)); }

extern "C" __global__ void swiglu_forward(const float* gate, const float* up, float* y, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = gate[i];
    y[i] = g * sigmoidf(g) * up[i];
}

extern "C" __global__ void swiglu_backward(const float* dy, const float* gate, const float* up, float* dGate, float* dUp,
                                           long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = gate[i], s = sigmoidf(g), d = dy[i];
    dGate[i] += d * up[i] * (s * (1.0f + g * (1.0f - s)));
    dUp[i] += d * (g * s);
}
