// memory.cpp: device memory of the software GPU is host memory, with checks a GPU does not make.
// Policy:
//  - every allocation is 256-byte aligned (as cuMemAlloc guarantees) and filled with 0xff bytes, so a read of memory
//    nothing wrote gives NaN (f32) or -1 (ints) and shows up in results;
//  - copies, memsets, GEMM operands and kernel pointer arguments must lie inside one live device allocation;
//  - guard mode (SOFTGPU_GUARD=1): each allocation gets its own pages, ends where a PROT_NONE page begins (less the
//    slack that 256-byte alignment of the start leaves, at most 255 bytes, which holds a canary pattern checked after
//    every launch), has a PROT_NONE page before it, and is unmapped when freed, so use after free faults too;
//  - the last 256 freed ranges are remembered, to name "memory freed by cuMemFree" in fault reports.
#include "runtime.h"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sys/mman.h>

namespace softgpu {

namespace {
struct Block {
    unsigned char* base; size_t bytes; bool host;
    unsigned char* map; size_t mapBytes;   // guard mode: the whole mapping, else null
    size_t slack;                          // guard mode: canary bytes after the allocation, before the guard page
};
std::mutex g_lock;
std::map<uintptr_t, Block> g_blocks;       // live allocations by base address
std::vector<std::pair<uintptr_t, size_t>> g_freed(256);
size_t g_freedNext = 0, g_inUse = 0;
const unsigned char Canary = 0xa5;
const size_t Page = 4096;

const Block* find_locked(const void* p) {
    auto it = g_blocks.upper_bound((uintptr_t)p);
    if (it == g_blocks.begin()) return nullptr;
    --it;
    const Block& b = it->second;
    return (const unsigned char*)p < b.base + b.bytes ? &b : nullptr;
}
} // namespace

size_t device_bytes_in_use() { std::lock_guard<std::mutex> l(g_lock); return g_inUse; }

unsigned char* device_alloc(size_t bytes, bool host) {
    Block b{};
    b.bytes = bytes; b.host = host;
    if (options().guard && !host) {
        size_t body = (bytes + 255) / 256 * 256, pages = (body + Page - 1) / Page + 2;
        b.map = (unsigned char*)mmap(nullptr, pages * Page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b.map == MAP_FAILED) return nullptr;
        b.mapBytes = pages * Page;
        mprotect(b.map, Page, PROT_NONE);
        mprotect(b.map + (pages - 1) * Page, Page, PROT_NONE);
        b.base = b.map + (pages - 1) * Page - body;
        b.slack = body - bytes;
        std::memset(b.base + bytes, Canary, b.slack);
    } else {
        void* p = nullptr;
        if (posix_memalign(&p, host ? Page : 256, bytes ? bytes : 1)) return nullptr;
        b.base = (unsigned char*)p;
    }
    if (!host) std::memset(b.base, 0xff, bytes);
    std::lock_guard<std::mutex> l(g_lock);
    g_blocks[(uintptr_t)b.base] = b;
    if (!host) g_inUse += bytes;
    return b.base;
}

bool device_free(void* p, bool host) {
    Block b;
    {
        std::lock_guard<std::mutex> l(g_lock);
        auto it = g_blocks.find((uintptr_t)p);
        if (it == g_blocks.end() || it->second.host != host) return false;
        b = it->second;
        g_blocks.erase(it);
        if (!host) g_inUse -= b.bytes;
        g_freed[g_freedNext++ % g_freed.size()] = {(uintptr_t)b.base, b.bytes};
    }
    if (b.map) munmap(b.map, b.mapBytes);
    else free(b.base);
    return true;
}

bool find_allocation(const void* p, Allocation* out) {
    std::lock_guard<std::mutex> l(g_lock);
    const Block* b = find_locked(p);
    if (!b) return false;
    *out = Allocation{b->base, b->bytes, b->host};
    return true;
}

bool in_device_memory(const void* p, size_t bytes) {
    std::lock_guard<std::mutex> l(g_lock);
    const Block* b = find_locked(p);
    return b && !b->host && (const unsigned char*)p + bytes <= b->base + b->bytes;
}

bool check_device_range(const void* p, size_t bytes, const char* what) {
    if (in_device_memory(p, bytes)) return true;
    return diag("%s: [%p, +%zu) is not inside one live device allocation (%s)", what, p, bytes, describe_address(p).c_str());
}

std::string describe_address(const void* p) {
    auto a = (uintptr_t)p;
    std::lock_guard<std::mutex> l(g_lock);
    if (const Block* b = find_locked(p))
        return format("byte %zu of %s allocation [%p, +%zu)", (size_t)(a - (uintptr_t)b->base), b->host ? "pinned host" : "device",
                      (void*)b->base, b->bytes);
    auto it = g_blocks.upper_bound(a);
    if (it != g_blocks.begin()) {
        const Block& b = std::prev(it)->second;
        size_t past = a - ((uintptr_t)b.base + b.bytes);
        if (past < 2 * Page) return format("%zu bytes past the end of device allocation [%p, +%zu)", past, (void*)b.base, b.bytes);
    }
    if (it != g_blocks.end() && it->first - a < 2 * Page)
        return format("%zu bytes before device allocation [%p, +%zu)", (size_t)(it->first - a), (void*)it->second.base, it->second.bytes);
    for (auto& f : g_freed)
        if (f.second && a >= f.first && a < f.first + f.second)
            return format("byte %zu of [%p, +%zu), freed by cuMemFree", (size_t)(a - f.first), (void*)f.first, f.second);
    return "not device memory";
}

bool check_canaries(const char* kernel) {
    std::string what;
    {
        std::lock_guard<std::mutex> l(g_lock);
        for (auto& [base, b] : g_blocks) {
            size_t i = 0;
            while (i < b.slack && b.base[b.bytes + i] == Canary) i++;
            if (i == b.slack) continue;
            what = format("kernel %s wrote byte %zu past the end of device allocation [%p, +%zu) (found by the guard-mode "
                          "canary after the launch, so the thread is unknown; with a size that is a multiple of 256 bytes the "
                          "store itself faults)", kernel, i, (void*)b.base, b.bytes);
            std::memset(b.base + b.bytes, Canary, b.slack);
            break;
        }
    }
    return what.empty() || diag("%s", what.c_str());
}

} // namespace softgpu
