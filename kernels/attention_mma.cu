// attention_mma.cu: causal attention on bf16 tensor cores (mma.sync.m16n8k16), for the bf16 precision mode: the
// forward for head sizes 64 and 128, the backward for 64. Same semantics, arguments, (B, T, H, D) strided views and
// grouped-query attention (k, v with KV heads; query head h reads kv head h / (H / KV)) as attention.cu, whose f32
// kernels stay the reference. Matches CpuBackend.AttentionForward / AttentionBackward up to
// bf16 rounding of the mma inputs (the parity harness bounds it); each kernel family's policy comment is with it below.
// MMA_BR and MMA_BC come from src/Whittle.Native/Tensors/KernelConstants.cs as -D options.
#include "common.cuh"

// ---------------------------------------------------------------------------------------------------------------------
// attention_forward_mma_d{64,128}: the forward of attention.cu on bf16 tensor cores (FlashAttention-2 style), for the bf16
// precision mode. Policy: q, k, v are read as f32 (they live in the f32 qkv buffer) and rounded to bf16 (RNE) into
// shared memory; the probabilities P are rounded to bf16 before P·V; every product accumulates in f32, and the
// softmax statistics (running max m, sum l, lse) stay f32. So its results differ from attention_forward by bf16
// rounding (relative ~2^-8), not by algorithm; lse is the f32 log-sum-exp of the bf16-rounded scores, which the f32
// backward kernels of attention.cu accept (they recompute P from q, k and lse).
// Launch: grid (ceil(T / 64), B*H), 128 threads = 4 warps; warp w owns query rows q0 + 16w .. q0 + 16w + 15.
// Per key tile of 64 (only tiles with a key <= the block's last query: causal tiles are skipped):
//   S (16, 64) = Q K^T by mma.m16n8k16 (8 n-tiles x D/16 k-steps), scale + causal mask, online softmax on the rows,
//   O (16, D) += P V by mma (D/8 n-tiles x 4 k-steps), P taken straight from S's accumulator layout (the m16n8
//   C fragment of two adjacent n-tiles is exactly the m16k16 A fragment).
// Shared memory (dynamic, bf16): sQ (64, D+8), sK (64, D+8), sVt (D, 64+8) (V transposed so its B fragments are
// contiguous pairs); the +8 padding staggers rows across banks. D = 128 needs 53 KB (the host raises the limit).
// Fragment layouts (PTX ISA, mma.m16n8k16 .bf16; g = lane / 4, c = lane % 4; a register holds two consecutive
// columns, the lower column in the low half): A (16x16 row): {(g, 2c), (g+8, 2c), (g, 2c+8), (g+8, 2c+8)};
// B (16x8 col): {(k = 2c, n = g), (k = 2c+8, n = g)}; C (16x8): {(g, 2c..2c+1), (g+8, 2c..2c+1)}.


extern __shared__ unsigned short smem16[];  // the dynamic shared memory of the mma kernels, as bf16 bits

__device__ __forceinline__ unsigned int pack_bf16x2(float lo, float hi) {
    unsigned int r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));  // the first source lands in the high half
    return r;
}

__device__ __forceinline__ void mma_bf16_16816(float* d, const unsigned int* a, unsigned int b0, unsigned int b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two consecutive bf16 in shared memory as one register (col is even and rows are padded to an even length).
__device__ __forceinline__ unsigned int ld_pair(const unsigned short* row, int col) {
    return *reinterpret_cast<const unsigned int*>(row + col);
}

template <int D>
__device__ void attention_forward_mma(const float* q, const float* k, const float* v, float* out, float* lse,
                                      int B, int T, int H, int KV, float scale, Bthd sq, Bthd sk, Bthd sv, Bthd so) {
    constexpr int QP = D + 8, VP = MMA_BC + 8;
    unsigned short* sQ = smem16;                  // (64, D+8)
    unsigned short* sK = sQ + MMA_BR * QP;        // (64, D+8)
    unsigned short* sVt = sK + MMA_BC * QP;       // (D, 64+8)
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, g = lane / 4, c = lane % 4;
    int bh = blockIdx.y, b = bh / H, h = bh % H, kvh = h / (H / KV);
    int q0 = blockIdx.x * MMA_BR;
    for (int e = threadIdx.x; e < MMA_BR * D; e += blockDim.x) {
        int i = e / D, d = e % D, t = q0 + i;
        sQ[i * QP + d] = f32_to_bf16(t < T ? q[at(sq, b, t, h) + d] : 0.0f);
    }
    __syncthreads();
    unsigned int qa[D / 16][4];                   // this warp's 16 query rows as A fragments, one per k-step
    const unsigned short* q0row = sQ + (warp * 16 + g) * QP;
    const unsigned short* q8row = q0row + 8 * QP;
    for (int kk = 0; kk < D / 16; kk++) {
        qa[kk][0] = ld_pair(q0row, kk * 16 + 2 * c);
        qa[kk][1] = ld_pair(q8row, kk * 16 + 2 * c);
        qa[kk][2] = ld_pair(q0row, kk * 16 + 2 * c + 8);
        qa[kk][3] = ld_pair(q8row, kk * 16 + 2 * c + 8);
    }
    float o[D / 8][4];
    for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    int row0 = q0 + warp * 16 + g, row8 = row0 + 8;      // the two query rows this thread holds
    float m0 = NEG_INF, m8 = NEG_INF, l0 = 0.0f, l8 = 0.0f;  // l: this thread's partial sums (reduced at the end)
    int lastKey = min(q0 + MMA_BR, T) - 1;
    for (int j0 = 0; j0 <= lastKey; j0 += MMA_BC) {
        __syncthreads();                           // the previous tile's sK / sVt are no longer read
        for (int e = threadIdx.x; e < MMA_BC * D; e += blockDim.x) {
            int j = e / D, d = e % D, key = j0 + j;
            sK[j * QP + d] = f32_to_bf16(key < T ? k[at(sk, b, key, kvh) + d] : 0.0f);
            sVt[d * VP + j] = f32_to_bf16(key < T ? v[at(sv, b, key, kvh) + d] : 0.0f);
        }
        __syncthreads();
        if (j0 > q0 + warp * 16 + 15 || q0 + warp * 16 >= T) continue;  // warp-uniform: every key is after every row
        float s[MMA_BC / 8][4];
        for (int n = 0; n < MMA_BC / 8; n++) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
            const unsigned short* krow = sK + (n * 8 + g) * QP;
            for (int kk = 0; kk < D / 16; kk++)
                mma_bf16_16816(s[n], qa[kk], ld_pair(krow, kk * 16 + 2 * c), ld_pair(krow, kk * 16 + 2 * c + 8));
        }
        float mx0 = NEG_INF, mx8 = NEG_INF;
        for (int n = 0; n < MMA_BC / 8; n++)
            for (int e = 0; e < 4; e++) {
                int key = j0 + n * 8 + 2 * c + (e & 1), row = e < 2 ? row0 : row8;
                float x = key <= row ? s[n][e] * scale : NEG_INF;  // key <= row < T for every real row
                s[n][e] = x;
                if (e < 2) mx0 = fmaxf(mx0, x); else mx8 = fmaxf(mx8, x);
            }
        for (int o2 = 1; o2 < 4; o2 <<= 1) {       // the 4 threads of a group hold the same two rows
            mx0 = fmaxf(mx0, __shfl_xor_sync(FULL_MASK, mx0, o2));
            mx8 = fmaxf(mx8, __shfl_xor_sync(FULL_MASK, mx8, o2));
        }
        float n0 = fmaxf(m0, mx0), n8 = fmaxf(m8, mx8);
        float r0 = n0 == NEG_INF ? 0.0f : n0, r8 = n8 == NEG_INF ? 0.0f : n8;  // a fully masked row stays at 0, not NaN
        float corr0 = expf(m0 - r0), corr8 = expf(m8 - r8);
        m0 = n0; m8 = n8;
        l0 *= corr0; l8 *= corr8;
        for (int n = 0; n < D / 8; n++) { o[n][0] *= corr0; o[n][1] *= corr0; o[n][2] *= corr8; o[n][3] *= corr8; }
        for (int n = 0; n < MMA_BC / 8; n++) {
            s[n][0] = expf(s[n][0] - r0); s[n][1] = expf(s[n][1] - r0);
            s[n][2] = expf(s[n][2] - r8); s[n][3] = expf(s[n][3] - r8);
            l0 += s[n][0] + s[n][1]; l8 += s[n][2] + s[n][3];
        }
        for (int kc = 0; kc < MMA_BC / 16; kc++) {
            unsigned int pa[4] = { pack_bf16x2(s[2 * kc][0], s[2 * kc][1]), pack_bf16x2(s[2 * kc][2], s[2 * kc][3]),
                                   pack_bf16x2(s[2 * kc + 1][0], s[2 * kc + 1][1]), pack_bf16x2(s[2 * kc + 1][2], s[2 * kc + 1][3]) };
            for (int n = 0; n < D / 8; n++) {
                const unsigned short* vrow = sVt + (n * 8 + g) * VP;
                mma_bf16_16816(o[n], pa, ld_pair(vrow, kc * 16 + 2 * c), ld_pair(vrow, kc * 16 + 2 * c + 8));
            }
        }
    }
    for (int o2 = 1; o2 < 4; o2 <<= 1) {
        l0 += __shfl_xor_sync(FULL_MASK, l0, o2);
        l8 += __shfl_xor_sync(FULL_MASK, l8, o2);
    }
    float inv0 = 1.0f / l0, inv8 = 1.0f / l8;
    for (int n = 0; n < D / 8; n++) {
        int d = n * 8 + 2 * c;
        if (row0 < T) { float* p = out + at(so, b, row0, h) + d; p[0] = o[n][0] * inv0; p[1] = o[n][1] * inv0; }
        if (row8 < T) { float* p = out + at(so, b, row8, h) + d; p[0] = o[n][2] * inv8; p[1] = o[n][3] * inv8; }
    }
    if (c == 0) {
        if (row0 < T) lse[(long long)bh * T + row0] = m0 + logf(l0);
        if (row8 < T) lse[(long long)bh * T + row8] = m8 + logf(l8);
    }
}

extern "C" __global__ __launch_bounds__(128) void attention_forward_mma_d64(const float* q, const float* k, const float* v,
        float* out, float* lse, int B, int T, int H, int KV, int D, float scale, Bthd sq, Bthd sk, Bthd sv, Bthd so) {
    attention_forward_mma<64>(q, k, v, out, lse, B, T, H, KV, scale, sq, sk, sv, so);
}

extern "C" __global__ __launch_bounds__(128) void attention_forward_mma_d128(const float* q, const float* k, const float* v,
        float* out, float* lse, int B, int T, int H, int KV, int D, float scale, Bthd sq, Bthd sk, Bthd sv, Bthd so) {
    attention_forward_mma<128>(q, k, v, out, lse, B, T, H, KV, scale, sq, sk, sv, so);
}

// ---------------------------------------------------------------------------------------------------------------------
// attention_backward_dq_mma_d64 / attention_backward_dkdv_mma_d64: the backward on bf16 tensor cores, head size 64 only
// (the dkdv kernel holds four (16, 64) f32 tiles per warp; at D = 128 they would spill). Same policy as the mma
// forward: q, k, v, dO, P and dS are rounded to bf16 at each mma's input, everything accumulates in f32, lse and
// Dt = rowsum(dO ⊙ O) (attention_backward_dot) are f32. Same split as the f32 kernels, so no atomics:
//   dq:   grid (ceil(T/64), B*H), warp w owns query rows q0+16w..+15, over key tiles j0 <= last row:
//         S = Q K^T, dP = dO V^T, P = exp(scale S - lse), dS = P (dP - Dt), dQ += dS K          (K^T tile for the B side)
//   dkdv: grid (ceil(T/64), B*KV), warp w owns key rows k0+16w..+15 of a kv head, over the query tiles i0 >= first key
//         of each query head of its group in turn (a fixed order inside the block: no atomics for GQA either):
//         S^T = K Q^T, dP^T = V dO^T, P^T, dS^T = P^T (dP^T - Dt), dV += P^T dO, dK += dS^T Q   (Q^T, dO^T tiles)
// Shared memory (bf16, rows padded by 8): dq: Q, dO, K, V (64, 72) and K^T (64, 72) = 46 KB;
// dkdv: K, V, Q, dO (64, 72), Q^T, dO^T (64, 72) and lse, Dt (64) f32 = 55.8 KB (the host raises the limit).

// Scores tile (16, 64) of this warp: a (16, 64) = A rows x B rows^T, A from `arow0` (row g; row g+8 is 8 rows further),
// B rows (keys or queries) from `brows` with row pitch `pitch`, accumulated over D = 64 in 4 k-steps.
__device__ __forceinline__ void mma_rows_rows_d64(float (*acc)[4], const unsigned short* arow0, const unsigned short* brows,
                                                  int pitch, int g, int c) {
    for (int n = 0; n < 8; n++) {
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
        const unsigned short* brow = brows + (n * 8 + g) * pitch;
        for (int kk = 0; kk < 4; kk++) {
            unsigned int a[4] = { ld_pair(arow0, kk * 16 + 2 * c), ld_pair(arow0 + 8 * pitch, kk * 16 + 2 * c),
                                  ld_pair(arow0, kk * 16 + 2 * c + 8), ld_pair(arow0 + 8 * pitch, kk * 16 + 2 * c + 8) };
            mma_bf16_16816(acc[n], a, ld_pair(brow, kk * 16 + 2 * c), ld_pair(brow, kk * 16 + 2 * c + 8));
        }
    }
}

// acc (16, 64) += X (16, 64 inner) @ Y (64 inner, 64): X given as f32 C fragments x[8][4] (rounded to bf16 here),
// Y through its transpose `yt` (64 output columns x 64 inner, row pitch `pitch`), so B pairs are contiguous.
__device__ __forceinline__ void mma_frag_t_d64(float (*acc)[4], float (*x)[4], const unsigned short* yt, int pitch, int g, int c) {
    for (int kc = 0; kc < 4; kc++) {
        unsigned int a[4] = { pack_bf16x2(x[2 * kc][0], x[2 * kc][1]), pack_bf16x2(x[2 * kc][2], x[2 * kc][3]),
                              pack_bf16x2(x[2 * kc + 1][0], x[2 * kc + 1][1]), pack_bf16x2(x[2 * kc + 1][2], x[2 * kc + 1][3]) };
        for (int n = 0; n < 8; n++) {
            const unsigned short* row = yt + (n * 8 + g) * pitch;
            mma_bf16_16816(acc[n], a, ld_pair(row, kc * 16 + 2 * c), ld_pair(row, kc * 16 + 2 * c + 8));
        }
    }
}

// Loads a (64, 64) f32 tile of rows r0.. of a (B, T, H, 64) view into bf16 `rows` (64, 72) and optionally its
// transpose into `cols` (64, 72); rows past T are zero.
__device__ __forceinline__ void load_tile_d64(const float* x, Bthd s, int b, int h, int r0, int T,
                                              unsigned short* rows, unsigned short* cols) {
    for (int e = threadIdx.x; e < 64 * 64; e += blockDim.x) {
        int i = e / 64, d = e % 64, r = r0 + i;
        unsigned short val = f32_to_bf16(r < T ? x[at(s, b, r, h) + d] : 0.0f);
        if (rows) rows[i * 72 + d] = val;
        if (cols) cols[d * 72 + i] = val;
    }
}

extern "C" __global__ __launch_bounds__(128) void attention_backward_dq_mma_d64(const float* dOut, const float* q, const float* k,
        const float* v, const float* lse, const float* dt, float* dq, int B, int T, int H, int KV, int D, float scale,
        Bthd sdo, Bthd sq, Bthd sk, Bthd sv, Bthd sdq) {
    unsigned short* sQ = smem16;          // (64, 72) query rows
    unsigned short* sdO = sQ + 64 * 72;   // (64, 72)
    unsigned short* sK = sdO + 64 * 72;   // (64, 72) key rows
    unsigned short* sV = sK + 64 * 72;    // (64, 72)
    unsigned short* sKt = sV + 64 * 72;   // (64 dims, 72) K^T
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, g = lane / 4, c = lane % 4;
    int bh = blockIdx.y, b = bh / H, h = bh % H, kvh = h / (H / KV), q0 = blockIdx.x * 64;
    load_tile_d64(q, sq, b, h, q0, T, sQ, nullptr);
    load_tile_d64(dOut, sdo, b, h, q0, T, sdO, nullptr);
    int row0 = q0 + warp * 16 + g, row8 = row0 + 8;
    float lse0 = row0 < T ? lse[(long long)bh * T + row0] : 0.0f, lse8 = row8 < T ? lse[(long long)bh * T + row8] : 0.0f;
    float dt0 = row0 < T ? dt[(long long)bh * T + row0] : 0.0f, dt8 = row8 < T ? dt[(long long)bh * T + row8] : 0.0f;
    float acc[8][4];
    for (int n = 0; n < 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    int lastKey = min(q0 + 64, T) - 1;
    for (int j0 = 0; j0 <= lastKey; j0 += 64) {
        __syncthreads();
        load_tile_d64(k, sk, b, kvh, j0, T, sK, sKt);
        load_tile_d64(v, sv, b, kvh, j0, T, sV, nullptr);
        __syncthreads();
        if (j0 > q0 + warp * 16 + 15 || q0 + warp * 16 >= T) continue;  // warp-uniform
        float s[8][4], dp[8][4];
        mma_rows_rows_d64(s, sQ + (warp * 16 + g) * 72, sK, 72, g, c);
        mma_rows_rows_d64(dp, sdO + (warp * 16 + g) * 72, sV, 72, g, c);
        for (int n = 0; n < 8; n++)
            for (int e = 0; e < 4; e++) {
                int key = j0 + n * 8 + 2 * c + (e & 1), row = e < 2 ? row0 : row8;
                float p = key <= row && row < T ? expf(scale * s[n][e] - (e < 2 ? lse0 : lse8)) : 0.0f;
                s[n][e] = p * (dp[n][e] - (e < 2 ? dt0 : dt8));   // dS
            }
        mma_frag_t_d64(acc, s, sKt, 72, g, c);
    }
    for (int n = 0; n < 8; n++) {
        int d = n * 8 + 2 * c;
        if (row0 < T) { float* p = dq + at(sdq, b, row0, h) + d; p[0] += scale * acc[n][0]; p[1] += scale * acc[n][1]; }
        if (row8 < T) { float* p = dq + at(sdq, b, row8, h) + d; p[0] += scale * acc[n][2]; p[1] += scale * acc[n][3]; }
    }
}

extern "C" __global__ __launch_bounds__(128) void attention_backward_dkdv_mma_d64(const float* dOut, const float* q, const float* k,
        const float* v, const float* lse, const float* dt, float* dk, float* dv, int B, int T, int H, int KV, int D, float scale,
        Bthd sdo, Bthd sq, Bthd sk, Bthd sv, Bthd sdk, Bthd sdv) {
    unsigned short* sK = smem16;          // (64, 72) this block's key rows
    unsigned short* sV = sK + 64 * 72;    // (64, 72)
    unsigned short* sQ = sV + 64 * 72;    // (64, 72) query rows of the current tile
    unsigned short* sdO = sQ + 64 * 72;   // (64, 72)
    unsigned short* sQt = sdO + 64 * 72;  // (64 dims, 72) Q^T
    unsigned short* sdOt = sQt + 64 * 72; // (64 dims, 72) dO^T
    float* sL = reinterpret_cast<float*>(sdOt + 64 * 72);  // (64) lse of the query tile
    float* sD = sL + 64;                                   // (64) Dt of the query tile
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, g = lane / 4, c = lane % 4;
    int bg = blockIdx.y, b = bg / KV, kvh = bg % KV, group = H / KV, k0 = blockIdx.x * 64;
    load_tile_d64(k, sk, b, kvh, k0, T, sK, nullptr);
    load_tile_d64(v, sv, b, kvh, k0, T, sV, nullptr);
    int key0 = k0 + warp * 16 + g, key8 = key0 + 8;
    float gk[8][4], gv[8][4];
    for (int n = 0; n < 8; n++) for (int e = 0; e < 4; e++) { gk[n][e] = 0.0f; gv[n][e] = 0.0f; }
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {  // the query heads reading this kv head, in order
        long long bh = (long long)b * H + h;
        for (int i0 = k0; i0 < T; i0 += 64) {     // k0 is a multiple of 64: earlier query tiles precede every key here
            __syncthreads();
            load_tile_d64(q, sq, b, h, i0, T, sQ, sQt);
            load_tile_d64(dOut, sdo, b, h, i0, T, sdO, sdOt);
            for (int i = threadIdx.x; i < 64; i += blockDim.x) {
                int t = i0 + i;
                sL[i] = t < T ? lse[bh * T + t] : 0.0f;
                sD[i] = t < T ? dt[bh * T + t] : 0.0f;
            }
            __syncthreads();
            if (i0 + 63 < k0 + warp * 16 || k0 + warp * 16 >= T) continue;  // warp-uniform: every query precedes every key
            float s[8][4], dp[8][4];
            mma_rows_rows_d64(s, sK + (warp * 16 + g) * 72, sQ, 72, g, c);    // S^T (16 keys, 64 queries)
            mma_rows_rows_d64(dp, sV + (warp * 16 + g) * 72, sdO, 72, g, c);  // dP^T
            for (int n = 0; n < 8; n++)
                for (int e = 0; e < 4; e++) {
                    int qi = n * 8 + 2 * c + (e & 1), t = i0 + qi, key = e < 2 ? key0 : key8;
                    float p = t >= key && t < T && key < T ? expf(scale * s[n][e] - sL[qi]) : 0.0f;
                    s[n][e] = p;                          // P^T
                    dp[n][e] = p * (dp[n][e] - sD[qi]);   // dS^T
                }
            mma_frag_t_d64(gv, s, sdOt, 72, g, c);
            mma_frag_t_d64(gk, dp, sQt, 72, g, c);
        }
    }
    for (int n = 0; n < 8; n++) {
        int d = n * 8 + 2 * c;
        if (key0 < T) {
            float* pk = dk + at(sdk, b, key0, kvh) + d; pk[0] += scale * gk[n][0]; pk[1] += scale * gk[n][1];
            float* pv = dv + at(sdv, b, key0, kvh) + d; pv[0] += gv[n][0]; pv[1] += gv[n][1];
        }
        if (key8 < T) {
            float* pk = dk + at(sdk, b, key8, kvh) + d; pk[0] += scale * gk[n][2]; pk[1] += scale * gk[n][3];
            float* pv = dv + at(sdv, b, key8, kvh) + d; pv[0] += gv[n][2]; pv[1] += gv[n][3];
        }
    }
}
