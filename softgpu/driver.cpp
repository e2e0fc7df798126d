// driver.cpp: the CUDA driver API entry points that src/Whittle.Native/Cuda/Native/CuDriver.cs binds, on the CPU.
// Policy:
//  - one device, reported as an sm_90-like GPU (the limits of an H100) named "Whittle software GPU (CPU emulation)";
//  - cuModuleLoadData reads only the entry names out of NVRTC's PTX or CUBIN and maps each to the kernel of the same
//    name that g++ compiled from the same kernels/*.cu (a name without a twin is refused: rebuild the software GPU);
//  - a launch is checked before it runs: block size, grid limits, dynamic shared memory against the limit set with
//    cuFuncSetAttribute (48 KiB by default, as on hardware), every pointer argument inside live device memory, the
//    argument block's layout (launch.cpp);
//  - streams: by default every call completes before it returns; with SOFTGPU_DEFER=1 copies, memsets, launches,
//    GEMMs and event records are queued per stream and run only at a synchronisation point (cuStreamSynchronize,
//    cuCtxSynchronize, cuEventSynchronize, a copy to pageable host memory, cuMemFree), so a host that reads results
//    without synchronising reads stale memory, as it could on hardware. Copies from pageable host memory are staged
//    at the call (CUDA's rule); copies from and to pinned memory (cuMemAllocHost) happen when the queue runs.
#include "runtime.h"
#include "streams.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <elf.h>
#include <map>
#include <string>
#include <vector>

#define API extern "C" __attribute__((visibility("default")))
typedef int CUresult;
enum : int {
    SUCCESS = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, INVALID_IMAGE = 200, INVALID_HANDLE = 400, NOT_FOUND = 500,
    NOT_READY = 600, ILLEGAL_ADDRESS = 700, LAUNCH_FAILED = 719,
};
using namespace softgpu;

static const size_t TotalMemory = 80ull << 30;
static const int SharedOptIn = 227 * 1024, SharedDefault = 48 * 1024;

// ------------------------------------------------------------------------------------------------ memory
API CUresult cuMemAlloc_v2(uintptr_t* dptr, size_t bytes) {
    if (!dptr || bytes == 0) return INVALID_VALUE;
    if (device_bytes_in_use() + bytes > TotalMemory) return OUT_OF_MEMORY;
    unsigned char* p = device_alloc(bytes, false);
    if (!p) return OUT_OF_MEMORY;
    if (options().trace) fprintf(stderr, "[softgpu] cuMemAlloc %zu bytes -> %p\n", bytes, p);
    *dptr = (uintptr_t)p;
    return SUCCESS;
}
API CUresult cuMemFree_v2(uintptr_t dptr) {
    synchronize_all();   // cuMemFree synchronises: queued work may still use the block
    if (!device_free((void*)dptr, false)) {
        diag("cuMemFree(%p): not a live device allocation (%s)", (void*)dptr, describe_address((void*)dptr).c_str());
        return INVALID_VALUE;
    }
    return SUCCESS;
}
API CUresult cuMemAllocHost_v2(void** p, size_t bytes) {
    unsigned char* m = device_alloc(bytes, true);
    if (!m) return OUT_OF_MEMORY;
    *p = m;
    return SUCCESS;
}
API CUresult cuMemFreeHost(void* p) {
    synchronize_all();
    return device_free(p, true) ? SUCCESS : INVALID_VALUE;
}
static bool pinned(const void* p, size_t bytes) {
    Allocation a;
    return find_allocation(p, &a) && a.host && (const unsigned char*)p + bytes <= a.base + a.bytes;
}
API CUresult cuMemcpyHtoDAsync_v2(uintptr_t dst, const void* src, size_t n, void* stream) {
    if (!check_device_range((void*)dst, n, "cuMemcpyHtoDAsync destination")) return INVALID_VALUE;
    if (pinned(src, n)) return submit(stream, [=] { std::memcpy((void*)dst, src, n); return 0; });
    std::vector<unsigned char> staged((const unsigned char*)src, (const unsigned char*)src + n);
    return submit(stream, [dst, staged = std::move(staged)] { std::memcpy((void*)dst, staged.data(), staged.size()); return 0; });
}
API CUresult cuMemcpyDtoHAsync_v2(void* dst, uintptr_t src, size_t n, void* stream) {
    if (!check_device_range((void*)src, n, "cuMemcpyDtoHAsync source")) return INVALID_VALUE;
    if (pinned(dst, n)) return submit(stream, [=] { std::memcpy(dst, (void*)src, n); return 0; });
    int r = synchronize(stream);   // to pageable memory the copy is synchronous
    std::memcpy(dst, (void*)src, n);
    return r;
}
API CUresult cuMemcpyDtoDAsync_v2(uintptr_t dst, uintptr_t src, size_t n, void* stream) {
    if (!check_device_range((void*)src, n, "cuMemcpyDtoDAsync source") ||
        !check_device_range((void*)dst, n, "cuMemcpyDtoDAsync destination")) return INVALID_VALUE;
    return submit(stream, [=] { std::memmove((void*)dst, (void*)src, n); return 0; });
}
API CUresult cuMemsetD32Async(uintptr_t dst, unsigned v, size_t count, void* stream) {
    if (count > SIZE_MAX / 4 || !check_device_range((void*)dst, count * 4, "cuMemsetD32Async")) return INVALID_VALUE;
    return submit(stream, [=] {
        auto p = (unsigned*)dst;
        for (size_t i = 0; i < count; i++) p[i] = v;
        return 0;
    });
}
API CUresult cuMemGetInfo_v2(size_t* free, size_t* total) {
    *total = TotalMemory;
    *free = TotalMemory - device_bytes_in_use();
    return SUCCESS;
}

// ------------------------------------------------------------------------------------------------ device, context
API CUresult cuInit(unsigned) { return SUCCESS; }
API CUresult cuDriverGetVersion(int* v) { *v = 12080; return SUCCESS; }
API CUresult cuGetErrorName(CUresult e, const char** s) {
    static const std::map<int, const char*> names = {
        {0, "CUDA_SUCCESS"}, {1, "CUDA_ERROR_INVALID_VALUE"}, {2, "CUDA_ERROR_OUT_OF_MEMORY"},
        {3, "CUDA_ERROR_NOT_INITIALIZED"}, {4, "CUDA_ERROR_DEINITIALIZED"}, {34, "CUDA_ERROR_STUB_LIBRARY"},
        {35, "CUDA_ERROR_INSUFFICIENT_DRIVER"}, {100, "CUDA_ERROR_NO_DEVICE"}, {101, "CUDA_ERROR_INVALID_DEVICE"},
        {200, "CUDA_ERROR_INVALID_IMAGE"}, {201, "CUDA_ERROR_INVALID_CONTEXT"}, {209, "CUDA_ERROR_NO_BINARY_FOR_GPU"},
        {218, "CUDA_ERROR_INVALID_PTX"}, {400, "CUDA_ERROR_INVALID_HANDLE"}, {500, "CUDA_ERROR_NOT_FOUND"},
        {600, "CUDA_ERROR_NOT_READY"}, {700, "CUDA_ERROR_ILLEGAL_ADDRESS"}, {701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"},
        {719, "CUDA_ERROR_LAUNCH_FAILED"}, {999, "CUDA_ERROR_UNKNOWN"}};
    auto it = names.find(e);
    if (it == names.end()) { *s = nullptr; return INVALID_VALUE; }
    *s = it->second;
    return SUCCESS;
}
API CUresult cuDeviceGetCount(int* n) { *n = 1; return SUCCESS; }
API CUresult cuDeviceGet(int* d, int ordinal) {
    if (ordinal != 0) return 101;   // CUDA_ERROR_INVALID_DEVICE
    *d = 0;
    return SUCCESS;
}
API CUresult cuDeviceGetName(char* name, int length, int) {
    snprintf(name, (size_t)length, "Whittle software GPU (CPU emulation)");
    return SUCCESS;
}
API CUresult cuDeviceGetAttribute(int* v, int attribute, int) {
    static const std::map<int, int> values = {
        {1, 1024}, {2, 1024}, {3, 1024}, {4, 64}, {5, 2147483647}, {6, 65535}, {7, 65535},   // block and grid limits
        {8, SharedDefault}, {9, 65536}, {10, 32}, {12, 65536}, {16, 132},                      // smem, const, warp, regs, SMs
        {75, 9}, {76, 0}, {81, 228 * 1024}, {97, SharedOptIn}};                                // sm_90, smem per SM, opt-in
    auto it = values.find(attribute);
    if (it == values.end()) {
        diag("cuDeviceGetAttribute(%d): an attribute the software GPU does not model", attribute);
        return INVALID_VALUE;
    }
    *v = it->second;
    return SUCCESS;
}
API CUresult cuDeviceTotalMem_v2(size_t* bytes, int) { *bytes = TotalMemory; return SUCCESS; }
static int g_context;
API CUresult cuDevicePrimaryCtxRetain(void** c, int) { *c = &g_context; return SUCCESS; }
API CUresult cuDevicePrimaryCtxRelease_v2(int) { return SUCCESS; }
API CUresult cuCtxSetCurrent(void*) { return SUCCESS; }
API CUresult cuCtxSynchronize() { return synchronize_all(); }

// ------------------------------------------------------------------------------------------------ modules
struct Function { std::string name; int maxDynamicShared = SharedDefault; };
struct Module { std::map<std::string, Function> functions; };

static std::vector<std::string> ptx_entries(const char* ptx) {
    std::vector<std::string> names;
    for (const char* p = strstr(ptx, ".entry"); p; p = strstr(p + 6, ".entry")) {
        const char* s = p + 6;
        while (*s == ' ' || *s == '\t') s++;
        const char* e = s;
        while (*e && *e != '(' && *e != ' ' && *e != '\n') e++;
        names.emplace_back(s, e);
    }
    return names;
}
static std::vector<std::string> cubin_entries(const unsigned char* image) {   // global FUNC symbols of the symbol table
    std::vector<std::string> names;
    auto eh = (const Elf64_Ehdr*)image;
    auto sh = (const Elf64_Shdr*)(image + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_SYMTAB) continue;
        auto sym = (const Elf64_Sym*)(image + sh[i].sh_offset);
        auto str = (const char*)(image + sh[sh[i].sh_link].sh_offset);
        for (size_t j = 0; j < sh[i].sh_size / sizeof(Elf64_Sym); j++)
            if (ELF64_ST_TYPE(sym[j].st_info) == STT_FUNC && ELF64_ST_BIND(sym[j].st_info) == STB_GLOBAL && sym[j].st_shndx != 0)
                names.emplace_back(str + sym[j].st_name);
    }
    return names;
}
API CUresult cuModuleLoadData(void** module, const void* image) {
    auto img = (const unsigned char*)image;
    bool elf = std::memcmp(img, ELFMAG, SELFMAG) == 0;
    auto names = elf ? cubin_entries(img) : ptx_entries((const char*)img);
    if (names.empty()) { diag("cuModuleLoadData: no kernel entry in the %s image", elf ? "CUBIN" : "PTX"); return INVALID_IMAGE; }
    auto m = new Module();
    for (auto& n : names) {
        if (!find_kernel(n.c_str(), false)) {
            diag("cuModuleLoadData: kernel %s (compiled by NVRTC) has no g++-compiled twin: rebuild the software GPU "
                 "from these kernels (softgpu/build.sh)", n.c_str());
            delete m;
            return INVALID_IMAGE;
        }
        m->functions[n].name = n;
    }
    *module = m;
    return SUCCESS;
}
API CUresult cuModuleUnload(void* module) {
    synchronize_all();
    delete (Module*)module;
    return SUCCESS;
}
API CUresult cuModuleGetFunction(void** f, void* module, const char* name) {
    auto m = (Module*)module;
    auto it = m->functions.find(name);
    if (it == m->functions.end()) return NOT_FOUND;
    *f = &it->second;
    return SUCCESS;
}
API CUresult cuFuncSetAttribute(void* fp, int attribute, int value) {
    if (attribute != 8) { diag("cuFuncSetAttribute(%d): an attribute the software GPU does not model", attribute); return INVALID_VALUE; }
    if (value < 0 || value > SharedOptIn) return INVALID_VALUE;   // MAX_DYNAMIC_SHARED_SIZE_BYTES
    ((Function*)fp)->maxDynamicShared = value;
    return SUCCESS;
}

// ------------------------------------------------------------------------------------------------ launches
static long long g_launches;
API CUresult cuLaunchKernel(void* fp, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                            unsigned shared, void* stream, void** params, void** extra) {
    auto f = (Function*)fp;
    const KernelInfo* k = find_kernel(f->name.c_str(), options().race);
    if (!k) { diag("%s: no race-instrumented build of this kernel", f->name.c_str()); return NOT_FOUND; }
    if (extra) { diag("launch of %s: the 'extra' argument form is not emulated", k->name); return INVALID_VALUE; }
    if (gx == 0 || gy == 0 || gz == 0 || gy > 65535 || gz > 65535 || gx > 2147483647u) {
        diag("launch of %s refused: grid (%u,%u,%u)", k->name, gx, gy, gz);
        return INVALID_VALUE;
    }
    if ((int)shared > f->maxDynamicShared) {
        diag("launch of %s refused: %u bytes of dynamic shared memory, above the function's limit of %d (raise it with "
             "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES) first)", k->name, shared, f->maxDynamicShared);
        return INVALID_VALUE;
    }
    if (k->nparams > 0 && !params) { diag("launch of %s refused: no arguments for %d parameters", k->name, k->nparams); return INVALID_VALUE; }
    for (int i = 0; i < k->nparams; i++)
        if (k->isPtr[i]) {
            void* p = *(void**)params[i];
            if (p && !check_device_range(p, 1, format("launch of %s: pointer argument %d", k->name, i).c_str())) return ILLEGAL_ADDRESS;
        }
    if (!check_launch(k, dim3(bx, by, bz), params)) return INVALID_VALUE;
    g_launches++;
    if (options().trace)
        fprintf(stderr, "[softgpu] launch %s grid (%u,%u,%u) block (%u,%u,%u) shared %u\n", k->name, gx, gy, gz, bx, by, bz, shared);
    ArgumentCopy args(k, params);   // the host may reuse its argument block as soon as this call returns
    return submit(stream, [k, grid = dim3(gx, gy, gz), block = dim3(bx, by, bz), shared, args = std::move(args)]() mutable {
        auto t0 = std::chrono::steady_clock::now();
        int r = launch(k, grid, block, shared, args);
        if (options().trace)
            fprintf(stderr, "[softgpu] %s took %.2f ms\n", k->name, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        return r;
    });
}

// ------------------------------------------------------------------------------------------------ streams, events
struct Event { double ms = 0; bool done = true; void* stream = nullptr; };
API CUresult cuStreamCreate(void** s, unsigned) { *s = new_stream(); return SUCCESS; }
API CUresult cuStreamDestroy_v2(void* s) {
    int r = synchronize(s);
    delete_stream(s);
    return r;
}
API CUresult cuStreamSynchronize(void* s) { return synchronize(s); }
API CUresult cuEventCreate(void** e, unsigned) { *e = new Event(); return SUCCESS; }
API CUresult cuEventRecord(void* ep, void* stream) {
    auto e = (Event*)ep;
    e->done = false;
    e->stream = stream;
    return submit(stream, [e] {
        e->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
        e->done = true;
        return 0;
    });
}
API CUresult cuEventSynchronize(void* ep) {
    auto e = (Event*)ep;
    return synchronize_until(e->stream, [e] { return e->done; });
}
API CUresult cuEventElapsedTime(float* ms, void* a, void* b) {
    auto s = (Event*)a, e = (Event*)b;
    if (!s->done || !e->done) return NOT_READY;
    *ms = (float)(e->ms - s->ms);
    return SUCCESS;
}
API CUresult cuEventDestroy_v2(void* e) { delete (Event*)e; return SUCCESS; }

__attribute__((destructor)) static void report_launches() {
    if (options().trace) fprintf(stderr, "[softgpu] %lld kernel launches\n", g_launches);
}
