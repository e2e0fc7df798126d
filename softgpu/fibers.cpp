// fibers.cpp: every CUDA thread of a block is a fiber on one OS thread; this file switches between them and decides
// when a barrier or a warp collective may complete.
// Policy:
//  - a fiber runs until it exits or reaches a scheduling point (__syncthreads, a shuffle, ballot, __syncwarp, mma);
//    when no fiber can run, every warp whose lanes all wait at one collective is released, else, when every live
//    thread waits at one __syncthreads, the block barrier is released; otherwise the block has deadlocked;
//  - what a GPU leaves undefined is an error here, reported with the kernel, block, threads and source lines: threads
//    of one block at different __syncthreads, a __syncthreads after some threads exited, lanes of one warp at different
//    collectives, a collective that needs a lane which has exited;
//  - the order in which runnable fibers are resumed is an option (in order, reverse, seeded random), so code that
//    silently relies on one order shows different results under another;
//  - dynamic shared memory is NaN-poisoned at the start of every block, static __shared__ on each block's first pass.
#include "runtime.h"

#include <algorithm>
#include <cstdlib>
#include <csignal>
#include <cstdio>
#include <random>
#include <string>
#include <vector>
#include <sys/mman.h>

extern "C" void softgpu_switch(void** save, void* to);
extern "C" void softgpu_fiber_start();
extern "C" __attribute__((visibility("hidden"), used)) void softgpu_fiber_main();

// Cooperative context switch (x86-64 System V): the callee-saved registers. MXCSR and the x87 control word are
// callee-saved too, but neither kernels nor the scheduler change them, and saving them doubled the cost of a switch.
asm(R"(
    .text
    .globl softgpu_switch
    .hidden softgpu_switch
    .type softgpu_switch,@function
softgpu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size softgpu_switch, .-softgpu_switch
    .globl softgpu_fiber_start
    .hidden softgpu_fiber_start
    .type softgpu_fiber_start,@function
softgpu_fiber_start:
    call softgpu_fiber_main
    ud2
    .size softgpu_fiber_start, .-softgpu_fiber_start
)");

namespace softgpu {

enum FiberState { Runnable = 0, AtBarrier = 1, AtCollective = 2, Exited = 3 };
// Fiber i's stack is slot i of the worker's arena: a PROT_NONE guard page at the bottom, the FiberHeader at the top.
static const size_t GuardBytes = 4096, MaxThreads = 1024;

struct WarpState {
    unsigned char slot[2][32][64];   // double-buffered exchange: collective n uses half n % 2
    unsigned syncs;                  // collectives completed by this warp in the current block (race checker)
};

struct Worker {
    std::vector<Fiber> fibers;
    std::vector<WarpState> warps;
    std::vector<unsigned char> dynSmem;
    unsigned char* stacks = nullptr;   // MaxThreads FiberSlotBytes-aligned stack slots
    void* schedulerSp = nullptr;
    BlockCtx ctx{};
    const KernelInfo* kernel = nullptr;
    void** params = nullptr;
    const unsigned char *argLo = nullptr, *argHi = nullptr;   // the launch's copies of the argument values
    std::mt19937 rng;
    unsigned barriers = 0;             // block barriers completed in the current block (race checker)
    long long blockLinear = 0;
    unsigned long long epochs = 0;
    std::vector<std::pair<void*, unsigned long long>> staticShared;   // static __shared__ variable -> block epoch
    std::vector<int> order;            // the order fibers are resumed in this block
};
static thread_local Worker* W;     // the scheduler's (per block, not per switch: fibers use here())

[[noreturn]] static void fatal(const char* what) {
    fprintf(stderr, "[softgpu] FATAL: %s\n", what);
    abort();
}

// An alternate signal stack, so a fault report still runs when a fiber overflowed its stack.
static void ensure_signal_stack() {
    stack_t old{};
    if (sigaltstack(nullptr, &old) == 0 && !(old.ss_flags & SS_DISABLE) && old.ss_sp) return;
    stack_t ss{};
    ss.ss_size = 64 * 1024;
    ss.ss_sp = malloc(ss.ss_size);   // kept for the thread's life
    sigaltstack(&ss, nullptr);
}

Worker& worker_for(const KernelInfo* k, size_t threads, size_t dynSmemBytes, void** params,
                   const unsigned char* argLo, const unsigned char* argHi) {
    if (!W) {
        W = new Worker();
        size_t bytes = (MaxThreads + 1) * FiberSlotBytes;   // one slot more, to align the arena to a slot
        auto map = (unsigned char*)mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (map == MAP_FAILED) fatal("mmap of the fiber stacks failed");
        W->stacks = (unsigned char*)(((uintptr_t)map + FiberSlotBytes - 1) & ~(uintptr_t)(FiberSlotBytes - 1));
        for (size_t i = 0; i < MaxThreads; i++) mprotect(W->stacks + i * FiberSlotBytes, GuardBytes, PROT_NONE);
        ensure_signal_stack();
    }
    Worker& w = *W;
    w.rng.seed(options().seed);
    w.fibers.resize(threads);
    w.warps.resize((threads + 31) / 32);
    if (w.dynSmem.size() < dynSmemBytes) w.dynSmem.resize(dynSmemBytes);
    w.kernel = k; w.params = params; w.argLo = argLo; w.argHi = argHi;
    return w;
}

void release_worker(Worker& w) { w.kernel = nullptr; }

static bool on_fiber_stack(const Worker* w, uintptr_t sp) {
    return w && w->kernel && sp >= (uintptr_t)w->stacks && sp < (uintptr_t)w->stacks + MaxThreads * FiberSlotBytes;
}
const char* current_kernel() { return W && W->kernel ? W->kernel->name : nullptr; }
bool fiber_at(uintptr_t sp, uint3* block, int* thread) {
    if (!on_fiber_stack(W, sp)) return false;
    FiberHeader* h = header_of_slot(sp);
    *block = h->block->block;
    *thread = h->fiber->linear;
    return true;
}
static Worker* worker_here() { return static_cast<Worker*>(here()->worker); }

// ------------------------------------------------------------------------------------------------ scheduling points
void syncthreads_at(const void* key, const char* file, int line) {
    FiberHeader* h = here();
    Fiber* f = h->fiber;
    f->state = AtBarrier;
    f->siteFile = file; f->siteLine = line; f->siteKey = key;
    softgpu_switch(&f->sp, static_cast<Worker*>(h->worker)->schedulerSp);
}
void warp_barrier(const char* file, int line) {
    FiberHeader* h = here();
    Fiber* f = h->fiber;
    f->state = AtCollective;
    f->siteFile = file; f->siteLine = line; f->siteKey = nullptr;
    softgpu_switch(&f->sp, static_cast<Worker*>(h->worker)->schedulerSp);
}
unsigned char* warp_slot(int phase, int lane) {
    FiberHeader* h = here();
    return static_cast<Worker*>(h->worker)->warps[h->fiber->warp].slot[phase][lane];
}
int warp_lanes() { return (int)std::min<size_t>(32, worker_here()->fibers.size() - (size_t)self()->warp * 32); }

unsigned ballot(int pred, const char* file, int line) {
    Fiber* me = self();
    int p = (me->phase ^= 1);
    int v = pred != 0;
    std::memcpy(warp_slot(p, me->lane), &v, 4);
    warp_barrier(file, line);
    unsigned r = 0;
    for (int l = 0, n = warp_lanes(); l < n; l++) {
        int x; std::memcpy(&x, warp_slot(p, l), 4);
        if (x) r |= 1u << l;
    }
    return r;
}

void poison_static_shared(void* p, size_t bytes) {
    FiberHeader* h = here();
    auto w = static_cast<Worker*>(h->worker);
    for (auto& e : w->staticShared)
        if (e.first == p) {
            if (e.second != h->block->epoch) { std::memset(p, 0xff, bytes); e.second = h->block->epoch; }
            return;
        }
    std::memset(p, 0xff, bytes);
    w->staticShared.emplace_back(p, h->block->epoch);
}

} // namespace softgpu

extern "C" void softgpu_fiber_main() {
    softgpu::FiberHeader* h = softgpu::here();
    auto w = static_cast<softgpu::Worker*>(h->worker);
    w->kernel->tramp(w->kernel->fn, w->params);
    h->fiber->state = softgpu::Exited;
    softgpu_switch(&h->fiber->sp, w->schedulerSp);
    __builtin_unreachable();
}

namespace softgpu {

static void init_fiber(Worker& w, Fiber& f, size_t i, dim3 block) {
    // the header is near the top of slot i (header_of_slot), the stack grows down from just below it; the first switch
    // "returns" into softgpu_fiber_start
    FiberHeader* header = header_of_slot((uintptr_t)(w.stacks + i * FiberSlotBytes));
    *header = FiberHeader{&f, &w.ctx, &w};
    uint64_t* s = reinterpret_cast<uint64_t*>(header);   // 64-byte aligned
    s[-3] = reinterpret_cast<uint64_t>(&softgpu_fiber_start);   // after the ret, rsp = top - 16: aligned for the call
    for (int r = 4; r <= 9; r++) s[-r] = 0;                     // rbp rbx r12 r13 r14 r15
    f.sp = s - 9;
    f.state = Runnable;
    f.phase = 0;
    f.siteFile = nullptr; f.siteLine = 0; f.siteKey = nullptr;
    f.linear = (int)i; f.lane = (int)(i % 32); f.warp = (int)(i / 32);
    f.tid = uint3{unsigned(i % block.x), unsigned(i / block.x % block.y), unsigned(i / ((size_t)block.x * block.y))};
}

static std::string site(const Fiber& f) {
    return std::string(f.siteFile ? f.siteFile : "?") + ":" + std::to_string(f.siteLine);
}
static bool same_site(const Fiber& a, const Fiber& b) {
    return a.siteKey == b.siteKey && a.siteLine == b.siteLine && a.siteFile == b.siteFile;
}
static bool block_error(const Worker& w, const std::string& what) {
    return diag("%s in kernel %s, block (%u,%u,%u)", what.c_str(), w.kernel->name, w.ctx.block.x, w.ctx.block.y,
                w.ctx.block.z);
}

// Releases every warp whose live lanes all wait at one collective. Returns how many were released; ok turns false
// on a divergent collective or one that needs an exited lane.
static int release_warps(Worker& w, bool& ok) {
    int released = 0;
    size_t n = w.fibers.size();
    for (size_t w0 = 0; w0 < n; w0 += 32) {
        size_t w1 = std::min(n, w0 + 32), waiting = 0, exited = 0;
        for (size_t i = w0; i < w1; i++) { waiting += w.fibers[i].state == AtCollective; exited += w.fibers[i].state == Exited; }
        if (waiting == 0 || waiting + exited != w1 - w0) continue;
        const Fiber* first = nullptr;
        for (size_t i = w0; i < w1 && !first; i++) if (w.fibers[i].state == AtCollective) first = &w.fibers[i];
        if (exited > 0) {
            ok = block_error(w, "warp collective at " + site(*first) + " in warp " + std::to_string(w0 / 32) + " while " +
                                    std::to_string(exited) + " of its lanes have exited (a full-mask collective needs every lane)");
        }
        for (size_t i = w0; i < w1; i++) {
            const Fiber& f = w.fibers[i];
            if (f.state == AtCollective && !same_site(f, *first)) {
                ok = block_error(w, "divergent warp collective: lane " + std::to_string(f.lane) + " at " + site(f) + ", lane " +
                                        std::to_string(first->lane) + " at " + site(*first));
                break;
            }
        }
        for (size_t i = w0; i < w1; i++) if (w.fibers[i].state == AtCollective) w.fibers[i].state = Runnable;
        w.warps[w0 / 32].syncs++;
        released++;
    }
    return released;
}

// Releases the block barrier when every live thread waits at it; ok turns false on divergence or earlier exits.
static bool release_block(Worker& w, bool& ok) {
    size_t atBarrier = 0, exited = 0;
    for (auto& f : w.fibers) { atBarrier += f.state == AtBarrier; exited += f.state == Exited; }
    if (atBarrier == 0 || atBarrier + exited != w.fibers.size()) return false;
    const Fiber* first = nullptr;
    for (auto& f : w.fibers) if (f.state == AtBarrier) { first = &f; break; }
    for (auto& f : w.fibers)
        if (f.state == AtBarrier && !same_site(f, *first)) {
            ok = block_error(w, "divergent __syncthreads: thread " + std::to_string(f.linear) + " at " + site(f) + ", thread " +
                                    std::to_string(first->linear) + " at " + site(*first));
            break;
        }
    if (exited > 0)
        ok = block_error(w, "__syncthreads at " + site(*first) + " after " + std::to_string(exited) + " of " +
                                std::to_string(w.fibers.size()) + " threads exited");
    for (auto& f : w.fibers) if (f.state == AtBarrier) f.state = Runnable;
    w.barriers++;
    return true;
}

bool run_block(Worker& w, uint3 bid, dim3 grid, dim3 block, size_t dynSmemBytes) {
    w.ctx.block = bid; w.ctx.blockSize = block; w.ctx.gridSize = grid;
    w.ctx.dynSmem = dynSmemBytes ? w.dynSmem.data() : nullptr;
    w.ctx.dynSmemBytes = dynSmemBytes;
    w.ctx.epoch = ++w.epochs;
    if (dynSmemBytes) std::memset(w.dynSmem.data(), 0xff, dynSmemBytes);   // reads of unwritten shared memory see NaN
    w.barriers = 0;
    w.blockLinear = bid.x + (long long)grid.x * (bid.y + (long long)grid.y * bid.z);
    for (auto& ws : w.warps) ws.syncs = 0;
    size_t n = w.fibers.size();
    for (size_t i = 0; i < n; i++) init_fiber(w, w.fibers[i], i, block);
    FiberOrder fiberOrder = options().order;
    w.order.resize(n);
    for (size_t i = 0; i < n; i++) w.order[i] = fiberOrder == FiberOrder::Reverse ? int(n - 1 - i) : int(i);
    bool ok = true;
    for (;;) {
        if (fiberOrder == FiberOrder::Random) std::shuffle(w.order.begin(), w.order.end(), w.rng);
        for (int i : w.order) {
            Fiber& f = w.fibers[i];
            if (f.state != Runnable) continue;
            softgpu_switch(&w.schedulerSp, f.sp);
        }
        size_t exited = 0;
        for (auto& f : w.fibers) exited += f.state == Exited;
        if (exited == n) return ok;
        if (release_warps(w, ok) > 0 || release_block(w, ok)) continue;
        std::string d = "deadlock:";
        for (auto& f : w.fibers) {
            if (f.state == Exited) continue;
            d += " thread " + std::to_string(f.linear) + (f.state == AtBarrier ? " at __syncthreads " : " at a warp collective ") + site(f) + ";";
            if (d.size() > 300) { d += " ..."; break; }
        }
        block_error(w, d);
        return false;   // the fibers are abandoned; their stacks are reused by the next block
    }
}

// ------------------------------------------------------------------------------------------------ race checker hook
bool race_ctx(RaceCtx* c, const void* addr) {
    uintptr_t sp;
    asm("mov %%rsp, %0" : "=r"(sp));
    if (!on_fiber_stack(W, sp)) return false;   // not kernel code (e.g. a kernel file's static initialisers)
    auto a = (const unsigned char*)addr;
    if (a >= W->stacks && a < W->stacks + MaxThreads * FiberSlotBytes) return false;   // a fiber's locals
    if (a >= W->argLo && a < W->argHi) return false;                                   // kernel arguments
    Fiber* f = self();
    c->kernel = W->kernel->name;
    c->block = W->blockLinear;
    c->thread = f->linear;
    c->warp = f->warp;
    c->barriers = W->barriers;
    c->warpSyncs = W->warps[f->warp].syncs;
    return true;
}

} // namespace softgpu
