// common.cuh: helpers shared by the kernel files (warp/block reductions, (B, T, H, D) views and their shared-memory
// tiles, bf16 bit conversions, the error word).
// Policy: no includes (NVRTC compiles without the toolkit headers), plain f32 arithmetic, reductions by warp shuffles,
// blocks of a multiple of 32 threads (at most 1024). Kernels that find bad input (an id or target out of range) record
// the first offence in the backend's device error word instead of trapping, so the host can report it by name.
#pragma once

#define WARP 32
#define FULL_MASK 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)
#define QNAN __int_as_float(0x7fc00000)

// Butterfly reductions over the warp; every lane gets the result. One template for f32 and f64 sums alike.
template <typename T> __device__ __forceinline__ T warp_sum_of(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}
__device__ __forceinline__ float warp_sum(float v) { return warp_sum_of(v); }
__device__ __forceinline__ double warp_sum_d(double v) { return warp_sum_of(v); }

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Sum over the block (fixed order: lanes, then warps); every thread gets the result. scratch: at least 32 elements of
// shared memory. f32 (block_sum) and f64 (block_sum_d, reduce.cu's read-back sums) alike.
template <typename T> __device__ __forceinline__ T block_sum_of(T v, T* scratch) {
    int lane = threadIdx.x % WARP, wid = threadIdx.x / WARP, nw = (blockDim.x + WARP - 1) / WARP;
    v = warp_sum_of(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[wid] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : T(0);
    return warp_sum_of(v);
}
__device__ __forceinline__ float block_sum(float v, float* scratch) { return block_sum_of(v, scratch); }
__device__ __forceinline__ double block_sum_d(double v, double* scratch) { return block_sum_of(v, scratch); }

__device__ __forceinline__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x % WARP, wid = threadIdx.x / WARP, nw = (blockDim.x + WARP - 1) / WARP;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[wid] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : NEG_INF;
    return warp_max(v);
}

// Element strides of a (B, T, H, D) view (attention's q, k, v inside the fused qkv buffer); the D stride is 1.
struct Bthd { long long sB, sT, sH; };

__device__ __forceinline__ long long at(Bthd s, int b, int t, int h) { return b * s.sB + t * s.sT + h * s.sH; }

// Rows r0 .. r0+rows-1 of head h of batch b of two (B, T, H, D) views into two (rows, D+1) shared tiles (the +1
// staggers rows across banks when lanes index rows), zeros past T. The whole block takes part.
__device__ __forceinline__ void load_tile_pair(const float* x, Bthd sx, const float* y, Bthd sy, int b, int h, int r0, int rows, int T,
                                               int D, float* tx, float* ty) {
    int pad = D + 1;
    for (int e = threadIdx.x; e < rows * D; e += blockDim.x) {
        int r = e / D, d = e % D, t = r0 + r;
        tx[r * pad + d] = t < T ? x[at(sx, b, t, h) + d] : 0.0f;
        ty[r * pad + d] = t < T ? y[at(sy, b, t, h) + d] : 0.0f;
    }
}

// bfloat16 as raw bits: round to nearest even, NaN kept quiet (the same rule as Bf16.FromFloat on the host).
__device__ __forceinline__ float bf16_to_f32(unsigned short b) { return __int_as_float(((unsigned int)b) << 16); }
__device__ __forceinline__ unsigned short f32_to_bf16(float f) {
    unsigned int u = (unsigned int)__float_as_int(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

// Error word (int[4]): code, row, value, spare. First offence wins. The codes (ERR_*) come from
// src/Whittle.Native/Tensors/KernelConstants.cs as -D options, so the host names them with the same numbers.
__device__ __forceinline__ void report_error(int* err, int code, int row, int value) {
    if (atomicCAS(err, 0, code) == 0) { err[1] = row; err[2] = value; }
}
