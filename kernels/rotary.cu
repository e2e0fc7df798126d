// rotary.cu: GPT-NeoX rotary position embedding ("rotate half"), in place, forward and backward.
// Matches CpuBackend.RotaryForward / RotaryBackward.
//   x (B, T, H, D) strided view [strides sB, sT, sH, 1], e.g. q or k inside the fused qkv buffer (B, T, 3*C).
//   cos, sin (T, R/2) [row stride ldt]. With h = R/2, for i < h:
//     x'[i] = x[i] cos - x[i+h] sin,  x'[i+h] = x[i+h] cos + x[i] sin      (forward, sign = +1)
//   backward applies the transpose (sign = -1: rotation by -angle). Dims R..D-1 are untouched.
// Launch: one thread per (b, t, hd, i) pair, 1-D grid of ceil(B*T*H*h / 256) blocks of 256.
#include "common.cuh"

extern "C" __global__ void rotary_apply(float* x, const float* cosT, const float* sinT, int B, int T, int H, int half,
                                        long long sB, long long sT, long long sH, long long ldt, float sign) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)B * T * H * half;
    if (idx >= total) return;
    int i = (int)(idx % half);
    long long r = idx / half;
    int h = (int)(r % H); r /= H;
    int t = (int)(r % T);
    int b = (int)(r / T);
    float* p = x + b * sB + t * sT + h * sH;
    float c = cosT[(long long)t * ldt + i];
    float s = sign * sinT[(long long)t * ldt + i];
    float x1 = p[i], x2 = p[i + half];
    p[i] = x1 * c - x2 * s;
    p[i + half] = x2 * c + x1 * s;
}
