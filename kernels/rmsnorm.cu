// rmsnorm.cu: RMSNorm over the last dimension (the Llama family's norm, and Qwen3's per-head QK-norm), forward and
// backward. Matches CpuBackend.RmsNormForward / RmsNormBackward.
// Rows: x, dy and dx are (B, T, H, C) views with a unit C stride [strides sB, sT, sH] whose rows run over (b, t, h)
// in that order; a row-dense matrix (N, C) [ld] is the view B = N, T = H = 1, sB = ld (the host passes it so).
//   forward:  y (rows, C) contiguous = weight (C) * (x * rstd), rstd (rows) = 1 / sqrt(mean(x^2) + eps), the sum of
//             squares accumulated in double (as the CPU does). One warp per row, 8 rows per block: rows are short
//             (QK-norm: C = head size) and many, so a block per row would leave most of its threads idle.
//   backward: rmsnorm_backward_input: dx (rows, C) += rstd * (g - xhat * mean(g * xhat)), g = dy * weight, xhat =
//             x * rstd, the row sum in double; one warp per row.
//             rmsnorm_backward_partials: partials (chunks, C) = sum over the rows of a chunk of dy * xhat, grid
//             (ceil(C/256), chunks), one thread per column of a chunk (coalesced reads across the row);
//             rmsnorm_backward_weight: dWeight (C) += sum of the partials in chunk order (double), one thread per
//             column. Two fixed stages and no atomics, so dWeight does not depend on scheduling.
// Launch: forward and backward_input (ceil(rows / 8), 1) blocks of 256; partials (ceil(C / 256), chunks) blocks of
// 256; weight ceil(C / 256) blocks of 256.
#include "common.cuh"

#define ROWS_PER_BLOCK 8

// Row r of a (B, T, H, C) view: the offset of its first element.
__device__ __forceinline__ long long row_at(Bthd s, int T, int H, long long r) {
    int h = (int)(r % H);
    long long bt = r / H;
    return (bt / T) * s.sB + (bt % T) * s.sT + h * s.sH;
}

extern "C" __global__ void rmsnorm_forward(const float* x, const float* weight, float* y, float* rstd,
                                           long long rows, int T, int H, int C, Bthd sx, float eps) {
    int lane = threadIdx.x % WARP;
    long long r = (long long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
    if (r >= rows) return;  // warp-uniform; no block-wide barrier below
    const float* xr = x + row_at(sx, T, H, r);  // (C)
    double sq = 0.0;
    for (int c = lane; c < C; c += WARP) { double v = xr[c]; sq += v * v; }
    float rs = (float)(1.0 / sqrt(warp_sum_d(sq) / C + (double)eps));
    float* yr = y + r * C;                      // (C)
    for (int c = lane; c < C; c += WARP) yr[c] = weight[c] * (xr[c] * rs);
    if (lane == 0) rstd[r] = rs;
}

extern "C" __global__ void rmsnorm_backward_input(const float* dy, const float* x, const float* weight, const float* rstd,
                                                  float* dx, long long rows, int T, int H, int C, Bthd sdy, Bthd sx,
                                                  Bthd sdx) {
    int lane = threadIdx.x % WARP;
    long long r = (long long)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
    if (r >= rows) return;
    const float* dyr = dy + row_at(sdy, T, H, r);  // (C)
    const float* xr = x + row_at(sx, T, H, r);     // (C)
    float rs = rstd[r];
    double gx = 0.0;
    for (int c = lane; c < C; c += WARP) gx += (double)dyr[c] * weight[c] * ((double)xr[c] * rs);
    double meanGx = warp_sum_d(gx) / C;
    float* dxr = dx + row_at(sdx, T, H, r);        // (C)
    for (int c = lane; c < C; c += WARP)
        dxr[c] += (float)(rs * ((double)dyr[c] * weight[c] - (double)xr[c] * rs * meanGx));
}

extern "C" __global__ void rmsnorm_backward_partials(const float* dy, const float* x, const float* rstd, float* partials,
                                                     long long rows, int T, int H, int C, int rowsPerChunk, Bthd sdy,
                                                     Bthd sx) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    long long r0 = (long long)blockIdx.y * rowsPerChunk;
    long long r1 = min(rows, r0 + rowsPerChunk);
    float acc = 0.0f;
    for (long long r = r0; r < r1; r++) acc += dy[row_at(sdy, T, H, r) + c] * (x[row_at(sx, T, H, r) + c] * rstd[r]);
    partials[(long long)blockIdx.y * C + c] = acc;
}

extern "C" __global__ void rmsnorm_backward_weight(const float* partials, float* dWeight, int chunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double acc = 0.0;
    for (int k = 0; k < chunks; k++) acc += partials[(long long)k * C + c];
    dWeight[c] += (float)acc;
}
