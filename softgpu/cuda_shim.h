// cuda_shim.h: what kernels/*.cu need from CUDA, for g++ on the CPU (the software GPU's kernel side).
// Policy:
//  - the kernels are compiled unchanged: prep.pl only rewrites `extern __shared__`, static `__shared__` and inline
//    `asm(...)` mechanically (line numbers kept), and this header supplies everything else CUDA C++ provides;
//  - every CUDA thread is a fiber (fibers.cpp); barriers and warp collectives are the only scheduling points, so
//    everything between two of them runs uninterrupted in one fiber;
//  - inline PTX is emulated instruction by instruction (ptx.cpp); one this header does not know is a compile error that
//    names it (softgpu_ptx::<mnemonic> does not exist);
//  - helpers have internal linkage (anonymous namespace), so the plain and the race-checking copy of a kernel file each
//    get their own and the linker never swaps an instrumented copy for a plain one.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace softgpu {

// One CUDA thread. Fields the scheduler and the race checker read; the state machine is in fibers.cpp.
struct Fiber {
    void* sp;              // saved stack pointer while switched out
    uint3 tid;
    int linear, lane, warp;
    int state;
    int phase;             // which half of the warp's double-buffered exchange slots the next collective uses
    const char* siteFile;  // the barrier or collective this fiber waits at (for diagnostics)
    int siteLine;
    const void* siteKey;   // __syncthreads: the address of its static marker
};

struct BlockCtx {
    uint3 block;                // blockIdx
    dim3 blockSize, gridSize;   // blockDim, gridDim
    unsigned char* dynSmem;     // (dynSmemBytes) dynamic shared memory, NaN-poisoned at block start
    size_t dynSmemBytes;
    unsigned long long epoch;   // unique per block run on this OS thread (static shared memory poisoning)
};

// Each fiber's stack is a FiberSlotBytes-aligned slot whose top holds a FiberHeader, so code running on a fiber finds
// its thread and block from its own stack pointer. (A thread_local in a shared object costs a call to
// __tls_get_addr per read: a tenth of all the time when threadIdx and shuffles read it.)
// The header and the stack top sit (slot number % 64) cache lines below the slot's end: slots are 128 KiB apart, so
// without this colouring every fiber's hot stack lines map to the same cache sets (a 3x slower switch).
constexpr size_t FiberSlotBytes = 128 * 1024;
struct FiberHeader { Fiber* fiber; BlockCtx* block; void* worker; };
inline FiberHeader* header_of_slot(uintptr_t slotAddress) {
    uintptr_t slot = slotAddress & ~(uintptr_t)(FiberSlotBytes - 1), colour = (slot / FiberSlotBytes % 64) * 64;
    return reinterpret_cast<FiberHeader*>(slot + FiberSlotBytes - 64 - colour);
}
inline FiberHeader* here() {
    uintptr_t sp;
    asm("mov %%rsp, %0" : "=r"(sp));
    return header_of_slot(sp);
}
inline Fiber* self() { return here()->fiber; }

// Scheduling points: out of line, so the compiler reloads whatever another fiber may have changed.
void syncthreads_at(const void* key, const char* file, int line);
void warp_barrier(const char* file, int line);
unsigned char* warp_slot(int phase, int lane);   // this warp's 64-byte exchange slot of one lane
int warp_lanes();                                // lanes in this fiber's warp (the last warp may be partial)
void poison_static_shared(void* p, size_t bytes);   // first pass of a block over a static __shared__ declaration

// Kernel registry: each kernel file registers its extern "C" __global__ functions (prep.pl lists them).
using Trampoline = void (*)(void* fn, void** params);
struct KernelInfo {
    const char* name;
    void* fn;
    Trampoline tramp;
    int nparams;
    const unsigned* sizes;    // (nparams) sizeof each parameter, as the kernel declares it
    const unsigned* aligns;   // (nparams) alignof each parameter
    const bool* isPtr;        // (nparams) which parameters are pointers (checked against live device memory)
};
void register_kernel(const KernelInfo& k, bool raceBuild);

template <class... A> struct Signature {
    template <size_t... I> static void call(void* fn, void** p, std::index_sequence<I...>) {
        reinterpret_cast<void (*)(A...)>(fn)(*reinterpret_cast<std::remove_cv_t<A>*>(p[I])...);
    }
    static void tramp(void* fn, void** p) { call(fn, p, std::index_sequence_for<A...>{}); }
    static constexpr unsigned sizes[sizeof...(A) + 1] = {unsigned(sizeof(A))..., 0u};
    static constexpr unsigned aligns[sizeof...(A) + 1] = {unsigned(alignof(A))..., 0u};
    static constexpr bool isPtr[sizeof...(A) + 1] = {std::is_pointer<A>::value..., false};
};
template <class... A> KernelInfo kernel_info(const char* name, void (*fn)(A...)) {
    return KernelInfo{name, reinterpret_cast<void*>(fn), &Signature<A...>::tramp, int(sizeof...(A)),
                      Signature<A...>::sizes, Signature<A...>::aligns, Signature<A...>::isPtr};
}
struct Registrar {
    template <class F> Registrar(const char* name, F* fn, bool raceBuild) { register_kernel(kernel_info(name, fn), raceBuild); }
};

void mma_m16n8k16_bf16(float* d, const unsigned* a, const unsigned* b, const char* file, int line);
unsigned ballot(int pred, const char* file, int line);
[[noreturn]] void ptx_template_mismatch(const char* got, const char* expected);
} // namespace softgpu

#ifdef SOFTGPU_RACE_BUILD
#define SOFTGPU_IS_RACE_BUILD true
#else
#define SOFTGPU_IS_RACE_BUILD false
#endif
#define SOFTGPU_REGISTER(ns, name) static softgpu::Registrar softgpu_reg_##name(#name, &ns::name, SOFTGPU_IS_RACE_BUILD);

// ------------------------------------------------------------------------------------------------ built-in variables
#ifndef SOFTGPU_RUNTIME   // the emulator's own files use these names for themselves
#define threadIdx (softgpu::self()->tid)
#define blockIdx (softgpu::here()->block->block)
#define blockDim (softgpu::here()->block->blockSize)
#define gridDim (softgpu::here()->block->gridSize)
#define warpSize 32
#endif

// Each __syncthreads in the source owns a static marker; its address identifies the barrier, so two different
// barriers reached by one block are "divergent" even when the compiler duplicated the code around them.
#define __syncthreads() ({ static const char softgpu_barrier_site = 0; softgpu::syncthreads_at(&softgpu_barrier_site, __FILE__, __LINE__); })
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
// A static __shared__ variable is one per OS thread, which runs one block at a time; prep.pl adds a call that
// NaN-poisons it on the first pass of each block (real shared memory starts with whatever the last block left).
#define __shared__ static thread_local
#define __threadfence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define __threadfence_block() __atomic_thread_fence(__ATOMIC_SEQ_CST)

namespace {
// A collective's site is the source line of its call (__builtin_FILE/__builtin_LINE as default arguments).
#define SOFTGPU_SITE const char* file = __builtin_FILE(), int line = __builtin_LINE()

template <class T> __attribute__((noinline, no_sanitize_thread)) T shfl_from(T v, int src, const char* file, int line) {
    static_assert(sizeof(T) <= 8, "a shuffle moves at most 8 bytes");
    softgpu::Fiber* me = softgpu::self();
    int p = (me->phase ^= 1);
    std::memcpy(softgpu::warp_slot(p, me->lane), &v, sizeof(T));
    softgpu::warp_barrier(file, line);
    T r;
    std::memcpy(&r, softgpu::warp_slot(p, src & 31), sizeof(T));
    return r;
}

template <class T> inline T __shfl_xor_sync(unsigned, T v, int laneMask, int width = 32, SOFTGPU_SITE) {
    int l = softgpu::self()->lane, s = l ^ laneMask;
    return shfl_from(v, (s & ~(width - 1)) == (l & ~(width - 1)) ? s : l, file, line);
}
template <class T> inline T __shfl_sync(unsigned, T v, int src, int width = 32, SOFTGPU_SITE) {
    int base = softgpu::self()->lane & ~(width - 1);
    return shfl_from(v, base + (src & (width - 1)), file, line);
}
template <class T> inline T __shfl_down_sync(unsigned, T v, unsigned d, int width = 32, SOFTGPU_SITE) {
    int l = softgpu::self()->lane;
    return shfl_from(v, (l & (width - 1)) + int(d) < width ? l + int(d) : l, file, line);
}
template <class T> inline T __shfl_up_sync(unsigned, T v, unsigned d, int width = 32, SOFTGPU_SITE) {
    int l = softgpu::self()->lane;
    return shfl_from(v, (l & (width - 1)) >= int(d) ? l - int(d) : l, file, line);
}
inline unsigned __ballot_sync(unsigned, int pred, SOFTGPU_SITE) { return softgpu::ballot(pred, file, line); }
inline int __any_sync(unsigned m, int p, SOFTGPU_SITE) { return __ballot_sync(m, p, file, line) != 0; }
inline int __all_sync(unsigned m, int p, SOFTGPU_SITE) {
    unsigned lanes = softgpu::warp_lanes(), full = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
    return __ballot_sync(m, p, file, line) == full;
}
inline void __syncwarp(unsigned = 0xffffffffu, SOFTGPU_SITE) { softgpu::warp_barrier(file, line); }

// ------------------------------------------------------------------------------------------------ bit casts and math
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
inline long long __double_as_longlong(double d) { long long i; std::memcpy(&i, &d, 8); return i; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0 ? 0 : x > 1 ? 1 : x; }
template <class T> inline T __ldg(const T* p) { return *p; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }

// ------------------------------------------------------------------------------------------------ atomics
// Real atomics: blocks of one grid run on several OS threads. Floating-point ones are compare-and-swap loops.
template <class T, class Op> inline T cas_loop(T* p, Op op) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomic of 4 or 8 bytes");
    using Bits = std::conditional_t<sizeof(T) == 4, unsigned, unsigned long long>;
    Bits* b = reinterpret_cast<Bits*>(p);
    Bits old = __atomic_load_n(b, __ATOMIC_RELAXED);
    for (;;) {
        T o; std::memcpy(&o, &old, sizeof(T));
        T n = op(o); Bits nb; std::memcpy(&nb, &n, sizeof(T));
        if (__atomic_compare_exchange_n(b, &old, nb, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) return o;
    }
}
inline float atomicAdd(float* p, float v) { return cas_loop(p, [v](float o) { return o + v; }); }
inline double atomicAdd(double* p, double v) { return cas_loop(p, [v](double o) { return o + v; }); }
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline int atomicSub(int* p, int v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
template <class T> inline T atomicCAS(T* p, T cmp, T v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}
inline int atomicOr(int* p, int v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicOr(unsigned* p, unsigned v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
inline int atomicAnd(int* p, int v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicAnd(unsigned* p, unsigned v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }
inline int atomicExch(int* p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicExch(unsigned* p, unsigned v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
inline float atomicExch(float* p, float v) { return cas_loop(p, [v](float) { return v; }); }
inline int atomicMax(int* p, int v) { return cas_loop(p, [v](int o) { return o > v ? o : v; }); }
inline int atomicMin(int* p, int v) { return cas_loop(p, [v](int o) { return o < v ? o : v; }); }
} // namespace

// ------------------------------------------------------------------------------------------------ inline PTX
// prep.pl turns  asm [volatile] ("mnemonic ..." : outputs : inputs)  into
// softgpu_ptx::<mnemonic, dots as underscores>("template", outputs..., inputs...). Each emulation checks the template
// too: the same mnemonic with operands in another order is not the instruction emulated.
namespace softgpu_ptx {
namespace {
inline void expect_template(const char* got, const char* expected) {
    auto squash = [](const char* s, char* out, size_t cap) {
        size_t n = 0;
        for (; *s && n + 1 < cap; s++) if (*s != ' ' && *s != '\t' && *s != '\n') out[n++] = *s;
        out[n] = 0;
    };
    char a[256], b[256];
    squash(got, a, sizeof a); squash(expected, b, sizeof b);
    if (std::strcmp(a, b) != 0) softgpu::ptx_template_mismatch(got, expected);
}

// f32 -> bf16, round to nearest even, NaN -> the canonical 0x7fff (PTX ISA, cvt with .rn and a .bf16 destination)
inline unsigned short f32_to_bf16_rn(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

// cvt.rn.bf16x2.f32 d, a, b: a lands in the upper half of d, b in the lower (PTX ISA, cvt)
inline void cvt_rn_bf16x2_f32(const char* tmpl, unsigned& d, float a, float b) {
    expect_template(tmpl, "cvt.rn.bf16x2.f32 %0, %1, %2;");
    d = ((unsigned)f32_to_bf16_rn(a) << 16) | f32_to_bf16_rn(b);
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 with C = D (the accumulating form the kernels use).
// A warp collective: every lane deposits its fragments, then computes its own four elements of D (ptx.cpp).
inline void mma_sync_aligned_m16n8k16_row_col_f32_bf16_bf16_f32(
        const char* tmpl, float& d0, float& d1, float& d2, float& d3, unsigned a0, unsigned a1, unsigned a2,
        unsigned a3, unsigned b0, unsigned b1, SOFTGPU_SITE) {
    expect_template(tmpl, "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};");
    float d[4] = {d0, d1, d2, d3};
    unsigned a[4] = {a0, a1, a2, a3}, b[2] = {b0, b1};
    softgpu::mma_m16n8k16_bf16(d, a, b, file, line);
    d0 = d[0]; d1 = d[1]; d2 = d[2]; d3 = d[3];
}
} // namespace
} // namespace softgpu_ptx
