// runtime.h: what the software GPU's own files share (not seen by kernels, which see only cuda_shim.h).
// Policy: options are read once from the environment (SOFTGPU_*) and may be changed at run time through the exported
// softgpu_set_option (tests use it); every problem the emulator finds is a diagnostic line on stderr AND the "last
// diagnostic" that softgpu_last_diagnostic returns, so the host can put it into its own error message.
#pragma once
#define SOFTGPU_RUNTIME
#include "cuda_shim.h"
#include <cstdarg>
#include <string>
#include <vector>

namespace softgpu {

enum class FiberOrder { InOrder = 0, Reverse = 1, Random = 2 };

struct Options {
    int threads;          // OS threads running blocks (SOFTGPU_THREADS, default: the CPU count)
    FiberOrder order;     // in which order runnable fibers are resumed (SOFTGPU_ORDER=inorder|reverse|random)
    unsigned seed;        // random order's seed (SOFTGPU_SEED)
    bool guard;           // device allocations end at a guard page, freed memory is unmapped (SOFTGPU_GUARD=1)
    bool race;            // race-check every launch with the instrumented kernels (SOFTGPU_RACE=1)
    bool deferred;        // streams run queued work only at synchronisation points (SOFTGPU_DEFER=1)
    bool ltNoAlgorithm;   // cuBLASLt's heuristic offers no algorithm, so callers take their fallback (SOFTGPU_LT_NO_ALGO=1)
    bool trace;           // one stderr line per launch and allocation (SOFTGPU_TRACE=1)
};
Options& options();

// Records and prints one diagnostic ("[softgpu] ..."); returns false so callers can `return diag(...)`.
bool diag(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string vformat(const char* fmt, va_list ap);
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// kernels
const KernelInfo* find_kernel(const char* name, bool raceBuild);
size_t kernel_count(bool raceBuild);

// launches (launch.cpp)
bool check_launch(const KernelInfo* k, dim3 block, void** params);   // block size and argument layout, with a diagnostic
struct ArgumentCopy {                // the argument values of one launch, owned (the host may reuse its own block)
    std::vector<uint64_t> values;    // parameter i at byte 16 * i.. (each padded to a multiple of 16 bytes)
    std::vector<size_t> offsets;     // (nparams) byte offset of each parameter in values
    ArgumentCopy(const KernelInfo* k, void** params);
};
// Runs every block; returns a CUresult: 0, or 700 (illegal address) / 719 (launch failed) after a diagnostic.
int launch(const KernelInfo* k, dim3 grid, dim3 block, size_t dynSmemBytes, ArgumentCopy& args);

// scheduler (fibers.cpp): runs one block on this OS thread; false when it found an error (already reported).
struct Worker;
Worker& worker_for(const KernelInfo* k, size_t threadsPerBlock, size_t dynSmemBytes, void** params,
                   const unsigned char* argLo, const unsigned char* argHi);
bool run_block(Worker& w, uint3 blockIdx, dim3 grid, dim3 block, size_t dynSmemBytes);
void release_worker(Worker& w);
const char* current_kernel();                              // this OS thread's kernel; null outside one
bool fiber_at(uintptr_t sp, uint3* block, int* thread);    // the CUDA thread whose stack holds sp (this OS thread's)

// device memory (memory.cpp)
unsigned char* device_alloc(size_t bytes, bool host);  // null when out of memory
bool device_free(void* p, bool host);                  // false: not a live allocation of that kind
size_t device_bytes_in_use();
struct Allocation { unsigned char* base; size_t bytes; bool host; };
bool find_allocation(const void* p, Allocation* out);   // the live allocation containing p
bool in_device_memory(const void* p, size_t bytes);     // [p, p+bytes) inside one live device allocation
bool check_device_range(const void* p, size_t bytes, const char* what);   // as above, with a diagnostic when not
std::string describe_address(const void* p);            // "12 bytes past the end of device allocation [...]"
bool check_canaries(const char* kernel);                // guard mode: the slack after each allocation is untouched

// race checker (racecheck.cpp)
struct RaceCtx {
    const char* kernel; long long block; int thread, warp; unsigned barriers, warpSyncs;
};
bool race_ctx(RaceCtx* c, const void* addr);   // false: not an access to check (fiber stack, argument copies)
void race_begin_launch(const char* kernel);
bool race_end_launch();                        // true when the launch raced (already reported)

} // namespace softgpu
