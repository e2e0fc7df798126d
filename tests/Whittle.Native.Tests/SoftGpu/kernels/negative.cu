// negative.cu: deliberately broken kernels that the software GPU must catch (SoftGpu/SoftGpuNegativeTests.cs).
// Policy: test-only; never in kernels/. softgpu/build.sh compiles this folder into the software GPU beside the engine's
// kernels so the tests can launch them by name, and the tests compile it with NVRTC like any kernel file.

// Divides x by its sum over the block (n <= blockDim.x <= 256). The barrier between thread 0 storing the total and the
// other threads reading it is missing: threads resumed in order (thread 0 first) still get the right answer, so a
// parity check passes; the race checker, or another resumption order, does not.
extern "C" __global__ void softgpu_test_missing_barrier(const float* x, float* y, int n) {
    __shared__ float partial[256];
    __shared__ float total;
    int t = threadIdx.x;
    partial[t] = t < n ? x[t] : 0.0f;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) partial[t] += partial[t + s];
        __syncthreads();
    }
    if (t == 0) total = partial[0];
    // __syncthreads();   <- the removed barrier
    if (t < n) y[t] = x[t] / total;
}

// y = 2x with the classic off-by-one bound: thread n stores one element past the end of y.
extern "C" __global__ void softgpu_test_off_by_one(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = 2.0f * x[i < n ? i : n - 1];
}

// y[i] *= alpha for i < n, with n a 64-bit count: a host that packs n as a 32-bit int misplaces alpha.
extern "C" __global__ void softgpu_test_scale(float* y, long long n, float alpha) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] *= alpha;
}

// One warp computes D (16x8, row-major f32) = A (16x16, row-major bf16 bits) x B (16x8, row-major bf16 bits) with one
// mma.m16n8k16, each lane loading its fragments by the PTX ISA layout (g = lane / 4, t = lane % 4):
//   a0 = A[g][2t..2t+1], a1 = A[g+8][2t..2t+1], a2 = A[g][2t+8..2t+9], a3 = A[g+8][2t+8..2t+9] (lower column in the low half)
//   b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g];  d0..d3 = D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1].
// swapA = 1 loads a1 and a2 the other way round (rows 8-15 and columns 8-15 confused), the classic mistake.
extern "C" __global__ void softgpu_test_mma_tile(const unsigned short* A, const unsigned short* B, float* D, int swapA) {
    int lane = threadIdx.x, g = lane / 4, t = lane % 4;
    auto pair = [](unsigned short lo, unsigned short hi) { return (unsigned int)lo | ((unsigned int)hi << 16); };
    unsigned int a[4] = {pair(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]),
                         pair(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]),
                         pair(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]),
                         pair(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9])};
    if (swapA) { unsigned int s = a[1]; a[1] = a[2]; a[2] = s; }
    unsigned int b0 = pair(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]), b1 = pair(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    D[g * 8 + 2 * t] = d[0];
    D[g * 8 + 2 * t + 1] = d[1];
    D[(g + 8) * 8 + 2 * t] = d[2];
    D[(g + 8) * 8 + 2 * t + 1] = d[3];
}
