// racecheck.cpp: a data-race checker for emulated kernels (race mode: SOFTGPU_RACE=1 or softgpu_set_option("race")).
// The race build of each kernel file is compiled with -fsanitize=thread, which makes g++ call __tsan_readN and
// __tsan_writeN before every memory access; this file defines those hooks (ThreadSanitizer's runtime is not linked)
// and applies CUDA's rules instead of an OS thread's happens-before:
//   two accesses to the same bytes by different CUDA threads of one launch, at least one a write and neither atomic,
//   race unless a __syncthreads of their block separates them, or both are in one warp and a warp collective
//   (shuffle, ballot, __syncwarp, mma) separates them. Shared memory (every address a kernel touches that is neither
//   device memory, nor a fiber's stack, nor the argument copies) belongs to one block; device memory is global.
// Policy: shadow state per 2-byte granule, cleared at each launch; the launch runs on one OS thread; a race fails the
// launch (CUDA_ERROR_LAUNCH_FAILED) and is reported with both source lines (addr2line on the instrumented code, which
// carries kernels/<file>.cu line numbers through #line). At most 8 reports per launch.
#include "runtime.h"

#include <cstdio>
#include <cstdlib>
#include <dlfcn.h>
#include <map>
#include <string>
#include <unordered_map>

namespace {
using namespace softgpu;

struct Access { long long block = -1; int thread = -1, warp = -1; unsigned barriers = 0, warpSyncs = 0; const void* pc = nullptr; };
struct Shadow { Access write, read; bool severalReaders = false; };
std::unordered_map<uintptr_t, Shadow> g_shadow;
const char* g_kernel = "";
int g_races = 0;
std::string g_first;   // the first race of the launch, repeated in the summary (the diagnostic the host sees)

// "kernels/attention.cu:123" for a return address inside the instrumented code, else "library+0xoffset".
std::string source_line(const void* pc) {
    static std::map<const void*, std::string> cache;
    auto it = cache.find(pc);
    if (it != cache.end()) return it->second;
    Dl_info info;
    std::string where = "?";
    if (pc && dladdr(pc, &info) && info.dli_fname) {
        unsigned long offset = (unsigned long)((const char*)pc - (const char*)info.dli_fbase) - 1;
        where = format("%s+0x%lx", info.dli_fname, offset);
        std::string cmd = format("addr2line -e '%s' 0x%lx 2>/dev/null", info.dli_fname, offset);
        if (FILE* f = popen(cmd.c_str(), "r")) {
            char line[512];
            if (fgets(line, sizeof line, f) && line[0] != '?') {
                std::string s(line);
                while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
                if (auto d = s.find(" (discriminator"); d != std::string::npos) s.resize(d);
                if (auto k = s.find("kernels/"); k != std::string::npos) s = s.substr(k);
                where = s;
            }
            pclose(f);
        }
    }
    return cache[pc] = where;
}

bool ordered(const Access& before, const Access& now, bool shared) {
    if (before.thread < 0) return true;                                          // no earlier access
    if (before.block != now.block) return shared;                                // another block: its own shared memory
    if (before.thread == now.thread) return true;
    if (before.barriers != now.barriers) return true;                            // a __syncthreads in between
    if (before.warp == now.warp && before.warpSyncs != now.warpSyncs) return true;   // a warp collective in between
    return false;
}

void report(const char* kind, uintptr_t addr, bool shared, const Access& before, const Access& now) {
    if (g_races++ >= 8) return;
    std::string what = format("%s race on %s memory %p in kernel %s: block %lld thread %d at %s, then block %lld thread %d at %s, with no "
         "barrier between", kind, shared ? "shared" : "global", (void*)addr, g_kernel, before.block, before.thread,
         source_line(before.pc).c_str(), now.block, now.thread, source_line(now.pc).c_str());
    diag("%s", what.c_str());
    if (g_first.empty()) g_first = what;
}

void access(const void* addr, size_t n, bool write, const void* pc) {
    if (!options().race) return;
    RaceCtx c;
    if (!race_ctx(&c, addr)) return;
    bool shared = !in_device_memory(addr, 1);
    Access now{c.block, c.thread, c.warp, c.barriers, c.warpSyncs, pc};
    for (uintptr_t g = (uintptr_t)addr >> 1, end = ((uintptr_t)addr + n + 1) >> 1; g < end; g++) {
        Shadow& s = g_shadow[g];
        if (shared && s.write.thread >= 0 && s.write.block != now.block && s.read.block != now.block) s = Shadow{};   // a new block's shared memory
        if (!ordered(s.write, now, shared)) { report(write ? "write-after-write" : "read-after-write", g << 1, shared, s.write, now); return; }
        if (write) {
            // earlier readers of this epoch: the last one, or any of several
            bool readersRace = s.read.thread >= 0 &&
                               (!ordered(s.read, now, shared) || (s.severalReaders && (s.read.barriers == now.barriers || !shared)));
            if (readersRace) { report("write-after-read", g << 1, shared, s.read, now); return; }
            s.write = now; s.read = Access{}; s.severalReaders = false;
        } else {
            bool otherThread = s.read.thread >= 0 && !(s.read.block == now.block && s.read.thread == now.thread);
            if (otherThread) s.severalReaders = s.severalReaders || !ordered(s.read, now, shared);
            if (s.read.thread >= 0 && ordered(s.read, now, shared) && s.read.barriers != now.barriers) s.severalReaders = false;
            s.read = now;
        }
    }
}
} // namespace

namespace softgpu {
void race_begin_launch(const char* kernel) { g_shadow.clear(); g_kernel = kernel; g_races = 0; g_first.clear(); }
bool race_end_launch() {
    if (g_races) diag("%d racing accesses in kernel %s (race mode); the first: %s", g_races, g_kernel, g_first.c_str());
    g_shadow.clear();
    return g_races != 0;
}
} // namespace softgpu

#define PC __builtin_return_address(0)
extern "C" {
void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_read1(void* a) { access(a, 1, false, PC); }
void __tsan_read2(void* a) { access(a, 2, false, PC); }
void __tsan_read4(void* a) { access(a, 4, false, PC); }
void __tsan_read8(void* a) { access(a, 8, false, PC); }
void __tsan_read16(void* a) { access(a, 16, false, PC); }
void __tsan_write1(void* a) { access(a, 1, true, PC); }
void __tsan_write2(void* a) { access(a, 2, true, PC); }
void __tsan_write4(void* a) { access(a, 4, true, PC); }
void __tsan_write8(void* a) { access(a, 8, true, PC); }
void __tsan_write16(void* a) { access(a, 16, true, PC); }
void __tsan_unaligned_read2(void* a) { access(a, 2, false, PC); }
void __tsan_unaligned_read4(void* a) { access(a, 4, false, PC); }
void __tsan_unaligned_read8(void* a) { access(a, 8, false, PC); }
void __tsan_unaligned_write2(void* a) { access(a, 2, true, PC); }
void __tsan_unaligned_write4(void* a) { access(a, 4, true, PC); }
void __tsan_unaligned_write8(void* a) { access(a, 8, true, PC); }
void __tsan_read_range(void* a, unsigned long n) { access(a, n, false, PC); }
void __tsan_write_range(void* a, unsigned long n) { access(a, n, true, PC); }
void __tsan_vptr_update(void**, void*) {}
// atomics never race with atomics and are not tracked; they are performed for real
#define SOFTGPU_TSAN_ATOMICS(bits, T)                                                                                       \
    T __tsan_atomic##bits##_load(const volatile T* a, int) { return __atomic_load_n(a, __ATOMIC_SEQ_CST); }                 \
    void __tsan_atomic##bits##_store(volatile T* a, T v, int) { __atomic_store_n(a, v, __ATOMIC_SEQ_CST); }                 \
    T __tsan_atomic##bits##_exchange(volatile T* a, T v, int) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); }       \
    T __tsan_atomic##bits##_fetch_add(volatile T* a, T v, int) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }       \
    T __tsan_atomic##bits##_fetch_sub(volatile T* a, T v, int) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); }       \
    T __tsan_atomic##bits##_fetch_and(volatile T* a, T v, int) { return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); }       \
    T __tsan_atomic##bits##_fetch_or(volatile T* a, T v, int) { return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); }         \
    int __tsan_atomic##bits##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {                                 \
        return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); }                           \
    int __tsan_atomic##bits##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {                                   \
        return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); }                            \
    T __tsan_atomic##bits##_compare_exchange_val(volatile T* a, T c, T v, int, int) {                                       \
        __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); return c; }
SOFTGPU_TSAN_ATOMICS(32, int)
SOFTGPU_TSAN_ATOMICS(64, long long)
void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) {}
}
