// distillation.cu: fused distillation loss (CE + temperature-scaled KL to a teacher), loss and student dlogits per row,
// never storing a probability. Matches CpuBackend.Distillation; the math is IBackend.Distillation's doc comment.
//   student (N, V) [lds]; teacher either full logits (N, V) [ldt] (k == 0), or top-k (k > 0): topLogProbs (N, k),
//   topIds (N, k) i32, tail (N) = teacher mass outside the k ids; targets (N) i32 -> losses (N, 2) = (CE, tau^2 D);
//   when dStudent (N, V) [ldd] is not null: dStudent += gradScale (alpha dCE + beta dKD). kind: 0 forward KL,
//   1 reverse KL, 2 symmetric (mean of both), 3 Jensen-Shannon (0.5 KL(q||m) + 0.5 KL(p||m), m = (p + q)/2).
//   Rows whose target is ignoreIndex get (0, 0) and no gradient; a bad target or top-k id is reported in err and the
//   row gets NaN losses.
// Launch: one block of 256 threads per row (grid N); dynamic shared memory ceil(V/32) words for top-k (a bitmap of
// the k ids, so the tail is summed exactly instead of as 1 - sum of the top, which cancels), 0 otherwise.
// Pass 1 keeps per-thread online (max, sum of exp) for s, s/tau and t/tau, plus the exp-weighted sums of (t-s)/tau
// under each softmax, so both KL directions are known after one read:
//   KL(q||p) = E_q[b - a] - lse(b) + lse(a), KL(p||q) = E_p[a - b] - lse(a) + lse(b)   (a = s/tau, b = t/tau).
// Pass 2 re-reads the row to write the gradient (reverse KL needs its own value for that).
// Jensen-Shannon has no such identity (log m needs both normalisers), so with full teacher logits it reads the row once
// more between the two passes; with a top-k teacher its k + 1 buckets need only the k ids and the tail masses.
// JS terms come from log-probabilities (u = log(p/m) = ln 2 - softplus(log q - log p)), never from log(p + q), so an
// underflowed p or q costs nothing; a bucket with zero mass on one side is handled exactly.
#include "common.cuh"

// KIND_JS (DistillKind.JensenShannon) and TAIL_FLOOR come from src/Whittle.Native/Tensors/KernelConstants.cs as -D options.
#define LN2 0.69314718055994531f

// Rescales a per-thread exp-sum taken relative to m to the block maximum M (an empty thread has m = -inf).
__device__ __forceinline__ float rebase(float z, float m, float M) { return m == NEG_INF ? 0.0f : z * expf(m - M); }

__device__ __forceinline__ float mix(int kind, float fwd, float rev) {
    return kind == 0 ? fwd : kind == 1 ? rev : 0.5f * (fwd + rev);
}

// One bucket's Jensen-Shannon terms: *pt = p log(p/m), *qt = q log(q/m); returns u = log(p/m) (0 when p = 0: no member
// of the bucket then has a gradient).
__device__ __forceinline__ float js_bucket(float lp, float lq, float p, float q, float* pt, float* qt) {
    if (p == 0.0f) { *pt = 0.0f; *qt = q * LN2; return 0.0f; }
    if (q == 0.0f) { *pt = p * LN2; *qt = 0.0f; return LN2; }
    float delta = lq - lp, u = LN2 - (fmaxf(delta, 0.0f) + log1pf(expf(-fabsf(delta))));
    *pt = p * u; *qt = q * (u + delta);
    return u;
}

extern "C" __global__ void distillation(const float* student, long long lds, const float* teacher, long long ldt,
                                        const float* topLogProbs, const int* topIds, const float* tail, int k,
                                        const int* targets, float* losses, float* dStudent, long long ldd, int N, int V,
                                        int kind, float tau, float alpha, float beta, int ignoreIndex, float gradScale, int* err) {
    extern __shared__ unsigned int inK[];  // (ceil(V/32)) bitmap, top-k only
    __shared__ float scratch[32];
    __shared__ int bad;
    int n = blockIdx.x;
    if (n >= N) return;
    int target = targets[n];
    if (target == ignoreIndex) { if (threadIdx.x == 0) { losses[2 * n] = 0.0f; losses[2 * n + 1] = 0.0f; } return; }
    if (target < 0 || target >= V) {
        if (threadIdx.x == 0) { report_error(err, ERR_CE_TARGET, n, target); losses[2 * n] = QNAN; losses[2 * n + 1] = QNAN; }
        return;
    }
    const float* s = student + (long long)n * lds;                 // (V)
    const float* t = k == 0 ? teacher + (long long)n * ldt : 0;    // (V), full teacher only
    const float* lq = topLogProbs + (long long)n * k;              // (k)
    const int* ids = topIds + (long long)n * k;                    // (k)
    if (k > 0) {
        if (threadIdx.x == 0) bad = 0;
        for (int w = threadIdx.x; w < (V + 31) / 32; w += blockDim.x) inK[w] = 0u;
        __syncthreads();
        for (int i = threadIdx.x; i < k; i += blockDim.x) {
            int id = ids[i];
            bool ok = id >= 0 && id < V;
            if (ok) ok = (atomicOr(&inK[id >> 5], 1u << (id & 31)) & (1u << (id & 31))) == 0u;
            if (!ok) { report_error(err, ERR_KD_TOPK_ID, n, id); bad = 1; }
        }
        __syncthreads();
        if (bad) { if (threadIdx.x == 0) { losses[2 * n] = QNAN; losses[2 * n + 1] = QNAN; } return; }
    }
    float invTau = 1.0f / tau;

    // pass 1: online log-sum-exps (and for a full teacher the weighted sums giving both KLs; for top-k the student tail)
    float m1 = NEG_INF, z1 = 0.0f;                       // s
    float ma = NEG_INF, za = 0.0f, wa = 0.0f, zt = 0.0f; // a = s/tau; wa = sum e^(a-ma) (a-b); zt = tail part of za
    float mb = NEG_INF, zb = 0.0f, wb = 0.0f;            // b = t/tau; wb = sum e^(b-mb) (b-a)
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float x = s[j], a = x * invTau;
        if (x > m1) { z1 = z1 * expf(m1 - x) + 1.0f; m1 = x; } else { z1 += expf(x - m1); }
        float b = k == 0 ? t[j] * invTau : 0.0f;
        bool tailId = k > 0 && (inK[j >> 5] & (1u << (j & 31))) == 0u;
        float ea;
        if (a > ma) { float r = expf(ma - a); za *= r; wa *= r; zt *= r; ma = a; ea = 1.0f; } else { ea = expf(a - ma); }
        za += ea;
        if (k == 0) {
            wa += ea * (a - b);
            float eb;
            if (b > mb) { float r = expf(mb - b); zb *= r; wb *= r; mb = b; eb = 1.0f; } else { eb = expf(b - mb); }
            zb += eb; wb += eb * (b - a);
        } else if (tailId) {
            zt += ea;
        }
    }
    float M1 = block_max(m1, scratch);
    float Z1 = block_sum(rebase(z1, m1, M1), scratch);
    float MA = block_max(ma, scratch);
    float ZA = block_sum(rebase(za, ma, MA), scratch);
    float lse1 = M1 + logf(Z1), lseA = MA + logf(ZA);
    float fwd, rev, Q;                 // KL(q||p), KL(p||q), total teacher mass over the buckets
    float jsQ = 0.0f, jsP = 0.0f;      // JS: KL(q||m), KL(p||m)
    float lseB = 0.0f, lpTail = 0.0f, lqTail = 0.0f, pTail = 0.0f, qTail = 0.0f, uTail = 0.0f;
    if (k == 0) {
        float WA = block_sum(rebase(wa, ma, MA), scratch);
        float MB = block_max(mb, scratch);
        float ZB = block_sum(rebase(zb, mb, MB), scratch);
        float WB = block_sum(rebase(wb, mb, MB), scratch);
        lseB = MB + logf(ZB);
        fwd = WB / ZB - lseB + lseA;
        rev = WA / ZA - lseA + lseB;
        Q = 1.0f;
        if (kind == KIND_JS) {   // the extra read: per-element JS terms need the normalised log-probabilities
            float fq = 0.0f, fp = 0.0f;
            for (int j = threadIdx.x; j < V; j += blockDim.x) {
                float lp = s[j] * invTau - lseA, lqj = t[j] * invTau - lseB, pt, qt;
                js_bucket(lp, lqj, expf(lp), expf(lqj), &pt, &qt);
                fp += pt; fq += qt;
            }
            jsP = block_sum(fp, scratch); jsQ = block_sum(fq, scratch);
        }
    } else {
        pTail = block_sum(rebase(zt, ma, MA), scratch) / ZA;
        float f = 0.0f, r = 0.0f, q = 0.0f, fq = 0.0f, fp = 0.0f;
        for (int i = threadIdx.x; i < k; i += blockDim.x) {
            float lqi = lq[i], lp = s[ids[i]] * invTau - lseA, qi = expf(lqi), pt, qt;
            q += qi; f += qi * (lqi - lp); r += expf(lp) * (lp - lqi);
            if (kind == KIND_JS) { js_bucket(lp, lqi, expf(lp), qi, &pt, &qt); fp += pt; fq += qt; }
        }
        fwd = block_sum(f, scratch); rev = block_sum(r, scratch); Q = block_sum(q, scratch);
        if (kind == KIND_JS) { jsP = block_sum(fp, scratch); jsQ = block_sum(fq, scratch); }
        qTail = tail[n];
        lqTail = logf(fmaxf(qTail, TAIL_FLOOR)); lpTail = logf(pTail);
        if (qTail > 0.0f) fwd += qTail * (lqTail - lpTail);
        if (pTail > 0.0f) rev += pTail * (lpTail - lqTail);
        Q += qTail;
        if (kind == KIND_JS) {
            float pt, qt;
            uTail = js_bucket(pTail > 0.0f ? lpTail : NEG_INF, qTail > 0.0f ? logf(qTail) : NEG_INF, pTail, qTail, &pt, &qt);
            jsP += pt; jsQ += qt;
        }
    }
    float div = kind == KIND_JS ? 0.5f * (jsQ + jsP) : mix(kind, fwd, rev);
    if (threadIdx.x == 0) { losses[2 * n] = lse1 - s[target]; losses[2 * n + 1] = tau * tau * div; }
    if (!dStudent) return;

    // pass 2: the gradient, d[j] += gradScale (alpha (softmax(s)_j - [j = target]) + beta tau dD/da_j), where for an
    // element of bucket B: forward p_j Q - (p_j / p_B) q_B, reverse p_j (log p_B - log q_B - KL(p||q)),
    // Jensen-Shannon 0.5 p_j (log(p_B/m_B) - KL(p||m)).
    float ce = gradScale * alpha, kd = gradScale * beta * tau;
    float* d = dStudent + (long long)n * ldd;  // (V)
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float x = s[j], lp = x * invTau - lseA, pj = expf(lp);
        float g = ce * (expf(x - lse1) - (j == target ? 1.0f : 0.0f));
        if (k == 0) {
            float lqj = t[j] * invTau - lseB;
            if (kind == KIND_JS) { float pt, qt; g += kd * 0.5f * pj * (js_bucket(lp, lqj, pj, expf(lqj), &pt, &qt) - jsP); }
            else g += kd * mix(kind, pj - expf(lqj), pj * (lp - lqj - rev));
        } else if ((inK[j >> 5] & (1u << (j & 31))) == 0u) {
            float share = pTail > 0.0f ? pj / pTail : 0.0f;
            g += kd * (kind == KIND_JS ? 0.5f * pj * (uTail - jsP) : mix(kind, pj * Q - share * qTail, pj * (lpTail - lqTail - rev)));
        }
        d[j] += g;
    }
    if (k > 0) {
        __syncthreads();  // the k ids' elements were written above by other threads
        for (int i = threadIdx.x; i < k; i += blockDim.x) {
            int j = ids[i];
            float lqi = lq[i], lp = s[j] * invTau - lseA, pj = expf(lp), pt, qt;
            d[j] += kd * (kind == KIND_JS ? 0.5f * pj * (js_bucket(lp, lqi, pj, expf(lqi), &pt, &qt) - jsP)
                                          : mix(kind, pj * Q - expf(lqi), pj * (lp - lqi - rev)));
        }
    }
}
