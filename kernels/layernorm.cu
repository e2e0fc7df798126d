// layernorm.cu: LayerNorm over the last dimension, forward and backward.
// Matches CpuBackend.LayerNormForward / LayerNormBackward.
//   forward:  x (N, C) [ldx] -> y (N, C) [ldy] = (x - mean) * rstd * weight (C) + bias (C);
//             mean (N), rstd (N) = 1 / sqrt(biased var + eps). Two passes over the row (mean, then centred variance)
//             so large offsets do not cancel. Launch: one block of 256 threads per row (grid N).
//   backward: dx (N, C) [lddx] += rstd * (dy w - mean_c(dy w) - xhat * mean_c(dy w xhat)), one block per row;
//             dWeight (C) += sum_n dy xhat and dBias (C) += sum_n dy by layernorm_backward_params: grid
//             (ceil(C/256), row chunks), each thread owns a column over a chunk of rows (coalesced reads), then one
//             atomicAdd per column per chunk.
#include "common.cuh"

extern "C" __global__ void layernorm_forward(const float* x, const float* weight, const float* bias, float* y,
                                             float* mean, float* rstd, int N, int C, long long ldx, long long ldy, float eps) {
    __shared__ float scratch[32];
    int n = blockIdx.x;
    if (n >= N) return;
    const float* xr = x + (long long)n * ldx;  // (C)
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += xr[c];
    float m = block_sum(s, scratch) / C;
    float v = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { float d = xr[c] - m; v += d * d; }
    float r = rsqrtf(block_sum(v, scratch) / C + eps);
    float* yr = y + (long long)n * ldy;        // (C)
    for (int c = threadIdx.x; c < C; c += blockDim.x) yr[c] = (xr[c] - m) * r * weight[c] + bias[c];
    if (threadIdx.x == 0) { mean[n] = m; rstd[n] = r; }
}

extern "C" __global__ void layernorm_backward_input(const float* dy, const float* x, const float* weight,
                                                    const float* mean, const float* rstd, float* dx,
                                                    int N, int C, long long lddy, long long ldx, long long lddx) {
    __shared__ float scratch[32];
    int n = blockIdx.x;
    if (n >= N) return;
    const float* dyr = dy + (long long)n * lddy;  // (C)
    const float* xr = x + (long long)n * ldx;     // (C)
    float m = mean[n], r = rstd[n];
    float a = 0.0f, b = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float g = dyr[c] * weight[c];
        a += g;
        b += g * (xr[c] - m) * r;
    }
    float meanG = block_sum(a, scratch) / C;
    float meanGX = block_sum(b, scratch) / C;
    float* dxr = dx + (long long)n * lddx;        // (C)
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float xhat = (xr[c] - m) * r;
        dxr[c] += r * (dyr[c] * weight[c] - meanG - xhat * meanGX);
    }
}

extern "C" __global__ void layernorm_backward_params(const float* dy, const float* x, const float* mean, const float* rstd,
                                                     float* dWeight, float* dBias, int N, int C, int rowsPerChunk,
                                                     long long lddy, long long ldx) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int n0 = blockIdx.y * rowsPerChunk;
    int n1 = min(N, n0 + rowsPerChunk);
    float gw = 0.0f, gb = 0.0f;
    for (int n = n0; n < n1; n++) {
        float d = dy[(long long)n * lddy + c];
        gw += d * (x[(long long)n * ldx + c] - mean[n]) * rstd[n];
        gb += d;
    }
    if (n1 > n0) {
        atomicAdd(dWeight + c, gw);
        if (dBias) atomicAdd(dBias + c, gb);
    }
}
