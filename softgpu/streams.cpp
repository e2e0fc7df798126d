// streams.cpp: per-stream work queues for the deferred mode (SOFTGPU_DEFER=1). Policy: work of one stream runs in
// the order it was submitted; an error from deferred work is kept and returned by the next synchronisation of that
// stream (as a kernel fault surfaces on hardware); a recursive lock serialises submission and execution, since the
// host may submit from any thread and work (a launch) may take long.
#include "streams.h"
#include "runtime.h"

#include <deque>
#include <mutex>
#include <set>

namespace softgpu {

namespace {
struct Stream {
    std::deque<Work> queue;
    int error = 0;
};
std::recursive_mutex g_lock;
Stream g_legacy;                        // stream handle 0
std::set<Stream*> g_streams{&g_legacy};

Stream* of(void* handle) { return handle ? (Stream*)handle : &g_legacy; }

bool run_one(Stream* s) {
    if (s->queue.empty()) return false;
    Work w = std::move(s->queue.front());
    s->queue.pop_front();
    int r = w();
    if (r && !s->error) s->error = r;
    return true;
}
int take_error(Stream* s) { int e = s->error; s->error = 0; return e; }
} // namespace

int submit(void* stream, Work work) {
    std::lock_guard<std::recursive_mutex> l(g_lock);
    if (!options().deferred) return work();
    of(stream)->queue.push_back(std::move(work));
    return 0;
}

int synchronize(void* stream) {
    std::lock_guard<std::recursive_mutex> l(g_lock);
    Stream* s = of(stream);
    while (run_one(s)) {}
    return take_error(s);
}

int synchronize_all() {
    std::lock_guard<std::recursive_mutex> l(g_lock);
    int first = 0;
    for (Stream* s : g_streams) {
        while (run_one(s)) {}
        int e = take_error(s);
        if (!first) first = e;
    }
    return first;
}

int synchronize_until(void* stream, const std::function<bool()>& done) {
    std::lock_guard<std::recursive_mutex> l(g_lock);
    Stream* s = of(stream);
    while (!done() && run_one(s)) {}
    return take_error(s);
}

void* new_stream() {
    std::lock_guard<std::recursive_mutex> l(g_lock);
    auto s = new Stream();
    g_streams.insert(s);
    return s;
}

void delete_stream(void* handle) {
    std::lock_guard<std::recursive_mutex> l(g_lock);
    if (!handle) return;
    g_streams.erase((Stream*)handle);
    delete (Stream*)handle;
}

} // namespace softgpu
