// crossentropy.cu: fused softmax cross-entropy, loss and dlogits from one row read, never storing probabilities.
// Matches CpuBackend.CrossEntropy.
//   logits (N, V) [ldl], targets (N) i32 -> losses (N) = logsumexp(row) - row[target];
//   when dLogits (N, V) [ldd] is not null: dLogits += gradScale * (softmax(row) - onehot(target)).
//   Rows whose target is ignoreIndex get loss 0 and no gradient; any other target outside [0, V) is reported in err
//   and gets a NaN loss.
// Launch: one block of 256 threads per row (grid N). Pass 1 keeps a running (max, sum of exp) per thread (online
// softmax) merged across the block; pass 2 (only with dLogits) re-reads the row to write the gradient.
#include "common.cuh"

extern "C" __global__ void cross_entropy(const float* logits, const int* targets, float* losses, float* dLogits,
                                         int N, int V, long long ldl, long long ldd, int ignoreIndex, float gradScale, int* err) {
    __shared__ float scratch[32];
    int n = blockIdx.x;
    if (n >= N) return;
    int target = targets[n];
    if (target == ignoreIndex) { if (threadIdx.x == 0) losses[n] = 0.0f; return; }
    if (target < 0 || target >= V) {
        if (threadIdx.x == 0) { report_error(err, ERR_CE_TARGET, n, target); losses[n] = QNAN; }
        return;
    }
    const float* row = logits + (long long)n * ldl;  // (V)
    float m = NEG_INF, s = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float x = row[i];
        if (x > m) { s = s * expf(m - x) + 1.0f; m = x; } else { s += expf(x - m); }
    }
    float bm = block_max(m, scratch);
    float part = m == NEG_INF ? 0.0f : s * expf(m - bm);
    float bs = block_sum(part, scratch);
    float lse = bm + logf(bs);
    if (threadIdx.x == 0) losses[n] = lse - row[target];
    if (dLogits) {
        float* d = dLogits + (long long)n * ldd;     // (V)
        for (int i = threadIdx.x; i < V; i += blockDim.x) {
            float p = expf(row[i] - lse);
            d[i] += gradScale * (p - (i == target ? 1.0f : 0.0f));
        }
    }
}
