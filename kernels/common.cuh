// common.cuh: helpers shared by every kernel file (warp/block reductions, bf16 bit conversions, the error word).
// Policy: no includes (NVRTC compiles without the toolkit headers), plain f32 arithmetic, reductions by warp shuffles,
// blocks of a multiple of 32 threads (at most 1024). Kernels that find bad input (an id or target out of range) record
// the first offence in the backend's device error word instead of trapping, so the host can report it by name.
#pragma once

#define WARP 32
#define FULL_MASK 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)
#define QNAN __int_as_float(0x7fc00000)

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

// Sum over the block; every thread gets the result. scratch: at least 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x % WARP, wid = threadIdx.x / WARP, nw = (blockDim.x + WARP - 1) / WARP;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[wid] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x % WARP, wid = threadIdx.x / WARP, nw = (blockDim.x + WARP - 1) / WARP;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[wid] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : NEG_INF;
    return warp_max(v);
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
