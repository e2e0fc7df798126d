// launch.cpp: the kernel registry and the launcher: argument checks, blocks spread over OS threads, fault recovery.
// Policy:
//  - a launch is refused (CUDA_ERROR_INVALID_VALUE, with a diagnostic) when the host's argument block does not have
//    the layout the kernel's signature implies: KernelArgs packs values back to back with natural alignment, so the
//    offset of each argument from the first must be the offset the kernel's parameter list gives it. (A size
//    mismatch hidden by padding, or in the last argument, cannot be seen from cuLaunchKernel's arguments.)
//  - blocks are claimed from a shared counter by SOFTGPU_THREADS OS threads (one in race mode: the checker is serial);
//  - a fault inside a kernel (guard page, unmapped or freed memory) does not kill the process: the fiber is abandoned,
//    the launch returns CUDA_ERROR_ILLEGAL_ADDRESS and the diagnostic names the kernel, block, thread and address.
//    Other faults go to the handler that was installed before (the .NET runtime's).
#include "runtime.h"

#include <algorithm>
#include <atomic>
#include <csetjmp>
#include <csignal>
#include <ucontext.h>
#include <cstdio>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unistd.h>
#include <vector>

namespace softgpu {

// ------------------------------------------------------------------------------------------------ registry
static std::unordered_map<std::string, KernelInfo>& registry(bool race) {
    static std::unordered_map<std::string, KernelInfo> plain, raced;
    return race ? raced : plain;
}
void register_kernel(const KernelInfo& k, bool raceBuild) {
    if (!registry(raceBuild).emplace(k.name, k).second) {
        fprintf(stderr, "[softgpu] kernel %s is defined by two kernel files\n", k.name);
        abort();
    }
}
const KernelInfo* find_kernel(const char* name, bool raceBuild) {
    auto& r = registry(raceBuild);
    auto it = r.find(name);
    return it == r.end() ? nullptr : &it->second;
}
size_t kernel_count(bool raceBuild) { return registry(raceBuild).size(); }

// ------------------------------------------------------------------------------------------------ argument layout
static bool check_argument_layout(const KernelInfo* k, void** params) {
    // Only a block packed in one buffer says anything about sizes: every argument within 4 KiB after the first.
    auto base = (const unsigned char*)params[0];
    for (int i = 1; i < k->nparams; i++) {
        auto p = (const unsigned char*)params[i];
        if (p <= base || p - base > 4096) return true;
    }
    size_t offset = 0;
    for (int i = 0; i < k->nparams; i++) {
        offset = (offset + k->aligns[i] - 1) / k->aligns[i] * k->aligns[i];
        size_t actual = (size_t)((const unsigned char*)params[i] - base);
        if (actual != offset) {
            int prev = i - 1;
            return diag("launch of %s refused: argument %d is at byte %zu of the argument block, but the kernel's "
                        "parameter list puts it at byte %zu: argument %d is %u bytes in the kernel, and the host packed "
                        "%zu bytes for it (wrong type or argument count)",
                        k->name, i, actual, offset, prev, k->sizes[prev],
                        actual - (size_t)((const unsigned char*)params[prev] - base));
        }
        offset += k->sizes[i];
    }
    return true;
}

// ------------------------------------------------------------------------------------------------ faults
static thread_local sigjmp_buf* t_faultJump;   // set while this OS thread runs blocks
static thread_local char t_faultReport[512];
static struct sigaction g_previousSegv, g_previousBus;

static void on_fault(int sig, siginfo_t* si, void* uc) {
    uint3 b; int t;
    auto sp = (uintptr_t)static_cast<ucontext_t*>(uc)->uc_mcontext.gregs[REG_RSP];   // the faulting code's stack
    if (t_faultJump && fiber_at(sp, &b, &t)) {
        snprintf(t_faultReport, sizeof t_faultReport, "%s at address %p in kernel %s, block (%u,%u,%u), thread %d: %s",
                 sig == SIGSEGV ? "segmentation fault" : "bus error", si->si_addr, current_kernel(), b.x, b.y, b.z, t,
                 describe_address(si->si_addr).c_str());
        siglongjmp(*t_faultJump, 1);
    }
    struct sigaction* previous = sig == SIGSEGV ? &g_previousSegv : &g_previousBus;
    if (previous->sa_flags & SA_SIGINFO) { previous->sa_sigaction(sig, si, uc); return; }
    if (previous->sa_handler == SIG_DFL || previous->sa_handler == SIG_IGN) { signal(sig, SIG_DFL); return; }   // re-fault
    previous->sa_handler(sig);
}
__attribute__((constructor)) static void install_fault_handlers() {
    struct sigaction sa{};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_previousSegv);
    sigaction(SIGBUS, &sa, &g_previousBus);
}

// ------------------------------------------------------------------------------------------------ launch
bool check_launch(const KernelInfo* k, dim3 block, void** params) {
    size_t threads = (size_t)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.z > 64)
        return diag("launch of %s refused: a block of (%u,%u,%u) threads (at most 1024, z at most 64)", k->name, block.x, block.y, block.z);
    return k->nparams == 0 || check_argument_layout(k, params);
}

ArgumentCopy::ArgumentCopy(const KernelInfo* k, void** params) : offsets(k->nparams) {
    size_t total = 0;
    for (int i = 0; i < k->nparams; i++) { offsets[i] = total; total += (k->sizes[i] + 15) / 16 * 16; }
    values.resize(total / 8 + 2);
    for (int i = 0; i < k->nparams; i++) std::memcpy((unsigned char*)values.data() + offsets[i], params[i], k->sizes[i]);
}

int launch(const KernelInfo* k, dim3 grid, dim3 block, size_t dynSmemBytes, ArgumentCopy& args) {
    size_t threads = (size_t)block.x * block.y * block.z;
    std::vector<void*> pointers(args.offsets.size() + 1);
    for (size_t i = 0; i < args.offsets.size(); i++) pointers[i] = (unsigned char*)args.values.data() + args.offsets[i];
    auto argLo = (const unsigned char*)args.values.data(), argHi = (const unsigned char*)(args.values.data() + args.values.size());
    long long blocks = (long long)grid.x * grid.y * grid.z;
    std::atomic<long long> next{0};
    std::atomic<bool> failed{false}, faulted{false};
    std::mutex reportLock;
    std::string faultReport;
    int osThreads = (int)std::max(1LL, std::min<long long>(options().race ? 1 : options().threads, blocks));
    if (options().race) race_begin_launch(k->name);
    auto body = [&]() {
        Worker& w = worker_for(k, threads, dynSmemBytes, pointers.data(), argLo, argHi);
        sigjmp_buf jump;
        if (sigsetjmp(jump, 1) == 0) {
            t_faultJump = &jump;
            for (long long b; !faulted && (b = next.fetch_add(1)) < blocks;) {
                uint3 bid{unsigned(b % grid.x), unsigned(b / grid.x % grid.y), unsigned(b / ((long long)grid.x * grid.y))};
                if (!run_block(w, bid, grid, block, dynSmemBytes)) failed = true;
            }
        } else {
            std::lock_guard<std::mutex> l(reportLock);
            if (!faulted.exchange(true)) faultReport = t_faultReport;
        }
        t_faultJump = nullptr;
        release_worker(w);
    };
    if (osThreads <= 1) body();
    else {
        #pragma omp parallel num_threads(osThreads)
        body();
    }
    bool raced = options().race && race_end_launch();
    if (faulted) { diag("%s", faultReport.c_str()); return 700; }   // CUDA_ERROR_ILLEGAL_ADDRESS
    if (options().guard && !check_canaries(k->name)) return 700;
    return failed || raced ? 719 : 0;                                // CUDA_ERROR_LAUNCH_FAILED
}

} // namespace softgpu
