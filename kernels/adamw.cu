// adamw.cu: one fused AdamW step over a flat parameter buffer.
// Matches CpuBackend.AdamW.
//   param, grad, m, v (P) contiguous f32. g = grad * gradScale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//   param -= lr * ((m / bc1) / (sqrt(v / bc2) + eps) + wd * param), wd = weightDecay for i < decayCount else 0
//   (decoupled decay; biases and norms sit after the decayed block). bc1 = 1 - b1^step, bc2 = 1 - b2^step come from the
//   host so every element uses the same rounded values.
// Launch: 1-D grid, ceil(P / 256) blocks of 256.
#include "common.cuh"

extern "C" __global__ void adamw_step(float* param, const float* grad, float* m, float* v, long long P, long long decayCount,
                                      float lr, float b1, float b2, float eps, float weightDecay, float bc1, float bc2, float gradScale) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= P) return;
    float g = grad[i] * gradScale;
    float mi = b1 * m[i] + (1.0f - b1) * g;
    float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float wd = i < decayCount ? weightDecay : 0.0f;
    float p = param[i];
    param[i] = p - lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * p);
}
