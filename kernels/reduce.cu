// reduce.cu: reductions: sum and sum of squares of a flat buffer (read back in double), and column sums.
// Matches CpuBackend.Sum / SumOfSquares / SumRows.
//   reduce_partials: x (n) contiguous -> partials (gridDim.x) in double, each block summing a grid-stride slice
//             (squares when squared != 0); reduce_final: one block sums the partials into out (1), double.
//             Two fixed stages, so the result does not depend on scheduling.
//   column_sums: dBias (N) += sum over rows of dy (M, N) [ld], grid (ceil(N/256), row chunks), one atomicAdd per
//             column per chunk.
// Launch: reduce_partials at most 1024 blocks of 256, reduce_final one block of 256, column_sums blocks of 256.
#include "common.cuh"

extern "C" __global__ void reduce_partials(const float* x, long long n, int squared, double* partials) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        double v = x[i];
        acc += squared ? v * v : v;
    }
    acc = block_sum_d(acc, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

extern "C" __global__ void reduce_final(const double* partials, int count, double* out) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
    acc = block_sum_d(acc, scratch);
    if (threadIdx.x == 0) out[0] = acc;
}

extern "C" __global__ void column_sums(const float* dy, float* dBias, int M, int N, int rowsPerChunk, long long ld) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= N) return;
    int r0 = blockIdx.y * rowsPerChunk, r1 = min(M, r0 + rowsPerChunk);
    float acc = 0.0f;
    for (int r = r0; r < r1; r++) acc += dy[(long long)r * ld + c];
    if (r1 > r0) atomicAdd(dBias + c, acc);
}
