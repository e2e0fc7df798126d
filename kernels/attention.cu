// attention.cu: causal scaled-dot-product attention, forward and backward, never materialising the (T, T) scores.
// Matches CpuBackend.AttentionForward / AttentionBackward.
//   q (B, T, H, D), k, v (B, T, KV, D) strided views [strides sB, sT, sH, 1] (typically inside the fused qkv buffer
//   (B, T, 3*C)); grouped-query attention: KV divides H and query head h reads kv head h / (H / KV) (KV = H: multi-head).
//   out (B, T, H, D) [strides], lse (B, H, T) contiguous = log sum_s exp(scale q_t . k_s), s <= t.
// Launch: every kernel is a grid (ceil(T / BR), B*H) of BR warps (BR = 8, 256 threads), except attention_backward_dkdv
// (grid (ceil(T / BR), B*KV)) and attention_backward_dot (ceil(B*H*T / 8) blocks of 8 warps, one warp per row).
// Forward (online softmax, FlashAttention style): one warp per query row.
//   Keys stream through shared memory 32 at a time (lane j scores key j0 + j, then the warp rescales its running
//   max, sum and output). Each lane keeps D/32 output elements in registers, so D <= MAX_D.
// Backward recomputes probabilities from lse: P = exp(scale q.k - lse), dS = P (dO.v - Dt), Dt = dO_t . O_t.
//   attention_backward_dot: Dt (B, H, T) scratch, one warp per row.
//   attention_backward_dq:  one warp per query row over key tiles (like the forward): dq += scale sum_s dS k_s.
//   attention_backward_dkdv: one warp per key row of a kv head over the query tiles t >= s of each query head of its
//   group in turn: dv += sum_h sum_t P dO_t, dk += scale sum_h sum_t dS q_t.
//   No atomics: every output row is owned by one warp (a kv head's rows sum their group's query heads in a fixed
//   order inside the block), so results are deterministic. dq, dk, dv accumulate (+=).
// Shared memory (dynamic, floats): K/V (or Q/dO) tiles 2 * 32 * (D + 1) (padded: lanes index rows) plus BR rows of D
// per warp-owned vector; the host raises the dynamic shared limit when this passes 48 KB (D > 128).
// The bf16 tensor-core kernels of the bf16 precision mode are in attention_mma.cu; these f32 kernels stay the reference
// the CPU is checked against. BR, BC and MAX_D come from src/Whittle.Native/Tensors/KernelConstants.cs as -D options.
#include "common.cuh"

#define PER_LANE (MAX_D / WARP)


extern "C" __global__ void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse,
                                             int B, int T, int H, int KV, int D, float scale, Bthd sq, Bthd sk, Bthd sv, Bthd so) {
    extern __shared__ float smem[];
    int pad = D + 1;
    float* sK = smem;                  // (BC, D+1)
    float* sV = sK + BC * pad;         // (BC, D+1)
    float* sQ = sV + BC * pad;         // (BR, D)
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int bh = blockIdx.y, b = bh / H, h = bh % H, kvh = h / (H / KV);
    int q0 = blockIdx.x * BR, t = q0 + warp;
    bool active = t < T;
    if (active) for (int d = lane; d < D; d += WARP) sQ[warp * D + d] = q[at(sq, b, t, h) + d];
    float o[PER_LANE];
    for (int i = 0; i < PER_LANE; i++) o[i] = 0.0f;
    float m = NEG_INF, l = 0.0f;
    int lastKey = min(q0 + BR, T) - 1;
    for (int j0 = 0; j0 <= lastKey; j0 += BC) {
        __syncthreads();
        load_tile_pair(k, sk, v, sv, b, kvh, j0, BC, T, D, sK, sV);
        __syncthreads();
        if (!active || j0 > t) continue;  // warp-uniform
        int j = j0 + lane;
        float s = NEG_INF;
        if (j <= t) {
            float dot = 0.0f;
            for (int d = 0; d < D; d++) dot += sQ[warp * D + d] * sK[lane * pad + d];
            s = scale * dot;
        }
        float mNew = fmaxf(m, warp_max(s));
        float p = j <= t ? expf(s - mNew) : 0.0f;
        float corr = expf(m - mNew);
        l = l * corr + warp_sum(p);
        for (int i = 0; i < PER_LANE; i++) o[i] *= corr;
        int count = min(BC, t - j0 + 1);
        for (int jj = 0; jj < count; jj++) {
            float pj = __shfl_sync(FULL_MASK, p, jj);
            for (int i = 0; i < PER_LANE; i++) {
                int d = lane + i * WARP;
                if (d < D) o[i] += pj * sV[jj * pad + d];
            }
        }
        m = mNew;
    }
    if (!active) return;
    float inv = 1.0f / l;
    for (int i = 0; i < PER_LANE; i++) {
        int d = lane + i * WARP;
        if (d < D) out[at(so, b, t, h) + d] = o[i] * inv;
    }
    if (lane == 0) lse[(long long)bh * T + t] = m + logf(l);
}

extern "C" __global__ void attention_backward_dot(const float* dOut, const float* out, float* dt, int B, int T, int H, int D,
                                                  Bthd sdo, Bthd so) {
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    long long row = (long long)blockIdx.x * (blockDim.x / WARP) + warp;  // row = (b*H + h)*T + t
    if (row >= (long long)B * H * T) return;
    int t = (int)(row % T), bh = (int)(row / T), b = bh / H, h = bh % H;
    float acc = 0.0f;
    for (int d = lane; d < D; d += WARP) acc += dOut[at(sdo, b, t, h) + d] * out[at(so, b, t, h) + d];
    acc = warp_sum(acc);
    if (lane == 0) dt[row] = acc;
}

extern "C" __global__ void attention_backward_dq(const float* dOut, const float* q, const float* k, const float* v,
                                                 const float* lse, const float* dt, float* dq,
                                                 int B, int T, int H, int KV, int D, float scale,
                                                 Bthd sdo, Bthd sq, Bthd sk, Bthd sv, Bthd sdq) {
    extern __shared__ float smem[];
    int pad = D + 1;
    float* sK = smem;                  // (BC, D+1)
    float* sV = sK + BC * pad;         // (BC, D+1)
    float* sQ = sV + BC * pad;         // (BR, D)
    float* sdO = sQ + BR * D;          // (BR, D)
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int bh = blockIdx.y, b = bh / H, h = bh % H, kvh = h / (H / KV);
    int q0 = blockIdx.x * BR, t = q0 + warp;
    bool active = t < T;
    float lseT = 0.0f, dT = 0.0f;
    if (active) {
        for (int d = lane; d < D; d += WARP) {
            sQ[warp * D + d] = q[at(sq, b, t, h) + d];
            sdO[warp * D + d] = dOut[at(sdo, b, t, h) + d];
        }
        lseT = lse[(long long)bh * T + t];
        dT = dt[(long long)bh * T + t];
    }
    float acc[PER_LANE];
    for (int i = 0; i < PER_LANE; i++) acc[i] = 0.0f;
    int lastKey = min(q0 + BR, T) - 1;
    for (int j0 = 0; j0 <= lastKey; j0 += BC) {
        __syncthreads();
        load_tile_pair(k, sk, v, sv, b, kvh, j0, BC, T, D, sK, sV);
        __syncthreads();
        if (!active || j0 > t) continue;
        int j = j0 + lane;
        float ds = 0.0f;
        if (j <= t) {
            float sc = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; d++) {
                sc += sQ[warp * D + d] * sK[lane * pad + d];
                dp += sdO[warp * D + d] * sV[lane * pad + d];
            }
            float p = expf(scale * sc - lseT);
            ds = p * (dp - dT);
        }
        int count = min(BC, t - j0 + 1);
        for (int jj = 0; jj < count; jj++) {
            float dsj = __shfl_sync(FULL_MASK, ds, jj);
            for (int i = 0; i < PER_LANE; i++) {
                int d = lane + i * WARP;
                if (d < D) acc[i] += dsj * sK[jj * pad + d];
            }
        }
    }
    if (!active) return;
    for (int i = 0; i < PER_LANE; i++) {
        int d = lane + i * WARP;
        if (d < D) dq[at(sdq, b, t, h) + d] += scale * acc[i];
    }
}

extern "C" __global__ void attention_backward_dkdv(const float* dOut, const float* q, const float* k, const float* v,
                                                   const float* lse, const float* dt, float* dk, float* dv,
                                                   int B, int T, int H, int KV, int D, float scale,
                                                   Bthd sdo, Bthd sq, Bthd sk, Bthd sv, Bthd sdk, Bthd sdv) {
    extern __shared__ float smem[];
    int pad = D + 1;
    float* sQ = smem;                  // (BC, D+1) query tile
    float* sdO = sQ + BC * pad;        // (BC, D+1)
    float* sK = sdO + BC * pad;        // (BR, D) this block's key rows
    float* sV = sK + BR * D;           // (BR, D)
    float* sL = sV + BR * D;           // (BC) lse of the query tile
    float* sD = sL + BC;               // (BC) Dt of the query tile
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int bg = blockIdx.y, b = bg / KV, kvh = bg % KV, group = H / KV;
    int k0 = blockIdx.x * BR, s = k0 + warp;
    bool active = s < T;
    if (active)
        for (int d = lane; d < D; d += WARP) {
            sK[warp * D + d] = k[at(sk, b, s, kvh) + d];
            sV[warp * D + d] = v[at(sv, b, s, kvh) + d];
        }
    float gk[PER_LANE], gv[PER_LANE];
    for (int i = 0; i < PER_LANE; i++) { gk[i] = 0.0f; gv[i] = 0.0f; }
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {  // the query heads reading this kv head, in order
        long long bh = (long long)b * H + h;
        for (int i0 = (k0 / BC) * BC; i0 < T; i0 += BC) {
            __syncthreads();
            load_tile_pair(q, sq, dOut, sdo, b, h, i0, BC, T, D, sQ, sdO);
            for (int i = threadIdx.x; i < BC; i += blockDim.x) {
                int t = i0 + i;
                sL[i] = t < T ? lse[bh * T + t] : 0.0f;
                sD[i] = t < T ? dt[bh * T + t] : 0.0f;
            }
            __syncthreads();
            if (!active || i0 + BC - 1 < s) continue;  // warp-uniform: every query of this tile precedes key s
            int t = i0 + lane;
            float p = 0.0f, ds = 0.0f;
            if (t < T && t >= s) {
                float sc = 0.0f, dp = 0.0f;
                for (int d = 0; d < D; d++) {
                    sc += sQ[lane * pad + d] * sK[warp * D + d];
                    dp += sdO[lane * pad + d] * sV[warp * D + d];
                }
                p = expf(scale * sc - sL[lane]);
                ds = p * (dp - sD[lane]);
            }
            for (int ii = 0; ii < BC; ii++) {
                float pi = __shfl_sync(FULL_MASK, p, ii);
                float dsi = __shfl_sync(FULL_MASK, ds, ii);
                for (int i = 0; i < PER_LANE; i++) {
                    int d = lane + i * WARP;
                    if (d < D) {
                        gv[i] += pi * sdO[ii * pad + d];
                        gk[i] += dsi * sQ[ii * pad + d];
                    }
                }
            }
        }
    }
    if (!active) return;
    for (int i = 0; i < PER_LANE; i++) {
        int d = lane + i * WARP;
        if (d < D) {
            dk[at(sdk, b, s, kvh) + d] += scale * gk[i];
            dv[at(sdv, b, s, kvh) + d] += gv[i];
        }
    }
}
