// options.cpp: the software GPU's knobs and its diagnostics, and the few functions it exports besides the CUDA API.
// Policy: every knob has an environment variable read once at load (SOFTGPU_*) and can be changed later through
// softgpu_set_option; diagnostics go to stderr as "[softgpu] ..." lines and the most recent one is kept for
// softgpu_last_diagnostic, which the host appends to its CUDA error messages.
#include "runtime.h"
#include "streams.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unistd.h>

namespace softgpu {

static int env_int(const char* name, int fallback) {
    const char* v = getenv(name);
    return v && *v ? atoi(v) : fallback;
}
static FiberOrder env_order() {
    const char* v = getenv("SOFTGPU_ORDER");
    if (!v || !*v || !strcmp(v, "inorder") || !strcmp(v, "0")) return FiberOrder::InOrder;
    if (!strcmp(v, "reverse") || !strcmp(v, "1")) return FiberOrder::Reverse;
    if (!strcmp(v, "random") || !strcmp(v, "2")) return FiberOrder::Random;
    fprintf(stderr, "[softgpu] SOFTGPU_ORDER=%s is not inorder, reverse or random; using inorder\n", v);
    return FiberOrder::InOrder;
}

Options& options() {
    static Options o = [] {
        Options r{};
        r.threads = env_int("SOFTGPU_THREADS", (int)sysconf(_SC_NPROCESSORS_ONLN));
        if (r.threads < 1) r.threads = 1;
        r.order = env_order();
        r.seed = (unsigned)env_int("SOFTGPU_SEED", 1);
        r.guard = env_int("SOFTGPU_GUARD", 0) != 0;
        r.race = env_int("SOFTGPU_RACE", 0) != 0;
        r.deferred = env_int("SOFTGPU_DEFER", 0) != 0;
        r.ltNoAlgorithm = env_int("SOFTGPU_LT_NO_ALGO", 0) != 0;
        r.trace = env_int("SOFTGPU_TRACE", 0) != 0;
        return r;
    }();
    return o;
}

static std::mutex g_diagLock;
static std::string g_lastDiagnostic;

std::string vformat(const char* fmt, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    std::string s(n > 0 ? (size_t)n : 0, '\0');
    if (n > 0) vsnprintf(s.data(), (size_t)n + 1, fmt, ap);
    return s;
}
std::string format(const char* fmt, ...) {
    va_list ap; va_start(ap, fmt);
    std::string s = vformat(fmt, ap);
    va_end(ap);
    return s;
}
bool diag(const char* fmt, ...) {
    va_list ap; va_start(ap, fmt);
    std::string s = vformat(fmt, ap);
    va_end(ap);
    std::lock_guard<std::mutex> l(g_diagLock);
    fprintf(stderr, "[softgpu] %s\n", s.c_str());
    g_lastDiagnostic = s;
    return false;
}

} // namespace softgpu

#define EXPORT extern "C" __attribute__((visibility("default")))

// The software GPU's version; the host checks for this symbol to know it is not on real hardware.
EXPORT int softgpu_version() { return 1; }

// The most recent diagnostic (empty when none); the pointer stays valid until the next call.
EXPORT const char* softgpu_last_diagnostic() {
    static thread_local std::string copy;
    std::lock_guard<std::mutex> l(softgpu::g_diagLock);
    copy = softgpu::g_lastDiagnostic;
    return copy.c_str();
}
EXPORT void softgpu_clear_diagnostic() {
    std::lock_guard<std::mutex> l(softgpu::g_diagLock);
    softgpu::g_lastDiagnostic.clear();
}

// Changes a knob at run time: "order" (0 in order, 1 reverse, 2 random), "seed", "threads", "guard", "race",
// "deferred", "lt_no_algo", "trace". Returns 0, or -1 for an unknown name or a value out of range. Guard pages apply to
// allocations made after the change; changing "deferred" first runs everything queued.
EXPORT int softgpu_set_option(const char* name, int value) {
    auto& o = softgpu::options();
    if (!strcmp(name, "order")) { if (value < 0 || value > 2) return -1; o.order = (softgpu::FiberOrder)value; }
    else if (!strcmp(name, "seed")) o.seed = (unsigned)value;
    else if (!strcmp(name, "threads")) { if (value < 1) return -1; o.threads = value; }
    else if (!strcmp(name, "guard")) o.guard = value != 0;
    else if (!strcmp(name, "race")) o.race = value != 0;
    else if (!strcmp(name, "deferred")) { softgpu::synchronize_all(); o.deferred = value != 0; }
    else if (!strcmp(name, "lt_no_algo")) o.ltNoAlgorithm = value != 0;
    else if (!strcmp(name, "trace")) o.trace = value != 0;
    else return -1;
    return 0;
}

// The current value of a knob (as softgpu_set_option takes it), or -1 for an unknown name.
EXPORT int softgpu_get_option(const char* name) {
    auto& o = softgpu::options();
    if (!strcmp(name, "order")) return (int)o.order;
    if (!strcmp(name, "seed")) return (int)o.seed;
    if (!strcmp(name, "threads")) return o.threads;
    if (!strcmp(name, "guard")) return o.guard;
    if (!strcmp(name, "race")) return o.race;
    if (!strcmp(name, "deferred")) return o.deferred;
    if (!strcmp(name, "lt_no_algo")) return o.ltNoAlgorithm;
    if (!strcmp(name, "trace")) return o.trace;
    return -1;
}
