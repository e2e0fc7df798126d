// streams.h: CUDA streams of the software GPU (see driver.cpp's policy): immediate by default, queues with SOFTGPU_DEFER=1.
#pragma once
#include <functional>

namespace softgpu {
using Work = std::function<int()>;        // returns a CUresult
int submit(void* stream, Work work);      // immediate: runs it and returns its result; deferred: queues it, returns 0
int synchronize(void* stream);            // runs the stream's queue; returns the first error since the last sync
int synchronize_all();
int synchronize_until(void* stream, const std::function<bool()>& done);   // runs the stream's work until done()
void* new_stream();
void delete_stream(void* stream);
} // namespace softgpu
