// embedding.cu: token embedding lookup and its gradient.
// Matches CpuBackend.EmbeddingForward / EmbeddingBackward.
//   forward:  output (N, C) [row stride ldo] = weight (V, C) [row stride ldw, a row-dense view] at row ids[n].
//   backward: dWeight (V, C) [ldw] += dOutput (N, C) [ldo] row by row; repeated ids accumulate through atomicAdd
//             (summation order is not fixed, so results agree with the CPU to rounding, not bit for bit).
// Launch: one block per row n (grid N), 256 threads striding over C. An id outside [0, V) is reported in err and its
// output row is filled with NaN.
#include "common.cuh"

extern "C" __global__ void embedding_forward(const int* ids, const float* weight, float* output,
                                             int N, int C, int V, long long ldw, long long ldo, int* err) {
    int n = blockIdx.x;
    if (n >= N) return;
    int id = ids[n];                               // ids (N)
    float* out = output + (long long)n * ldo;      // (C)
    if (id < 0 || id >= V) {
        if (threadIdx.x == 0) report_error(err, ERR_EMBEDDING_ID, n, id);
        for (int c = threadIdx.x; c < C; c += blockDim.x) out[c] = QNAN;
        return;
    }
    const float* w = weight + (long long)id * ldw; // (C)
    for (int c = threadIdx.x; c < C; c += blockDim.x) out[c] = w[c];
}

extern "C" __global__ void embedding_backward(const int* ids, const float* dOutput, float* dWeight,
                                              int N, int C, int V, long long ldw, long long ldo, int* err) {
    int n = blockIdx.x;
    if (n >= N) return;
    int id = ids[n];
    if (id < 0 || id >= V) {
        if (threadIdx.x == 0) report_error(err, ERR_EMBEDDING_ID, n, id);
        return;
    }
    const float* d = dOutput + (long long)n * ldo;  // (C)
    float* dw = dWeight + (long long)id * ldw;      // (C)
    for (int c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(dw + c, d[c]);
}
