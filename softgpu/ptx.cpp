// ptx.cpp: the inline-PTX instructions the kernels use that need more than one lane (cvt is in cuda_shim.h).
// Policy: each instruction is emulated from the PTX ISA's own description (fragment layout tables), never from how
// our kernels happen to use it, so a kernel that builds its fragments in the wrong layout gives wrong results here as
// it would on hardware. Products of bf16 values are exact in f32; the sum over k is done in f32 in k order (hardware
// uses wider internal accumulation in an unspecified order: a difference within the kernels' bf16 tolerances).
#include "runtime.h"

#include <cstdio>

namespace softgpu {

static float bf16_bits_to_f32(unsigned short h) { return __uint_as_float((unsigned)h << 16); }

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, D = A (16x16, row) x B (16x8, col) + C, C = D.
// PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"; with g = laneid >> 2 and t = laneid % 4:
//   A: four .b32 registers a0..a3, each two bf16 (lower half first): element i of a lane (i = 0..7, register i / 2)
//      is row g + 8 * ((i / 2) % 2), column 2t + (i % 2) + 8 * (i / 4);
//   B: two registers b0, b1: element i (0..3, register i / 2) is row (k) 2t + (i % 2) + 8 * (i / 2), column g;
//   C/D: four f32 c0..c3: element i is row g + 8 * (i / 2), column 2t + (i % 2).
void mma_m16n8k16_bf16(float* d, const unsigned* a, const unsigned* b, const char* file, int line) {
    Fiber* me = self();
    int p = (me->phase ^= 1);
    unsigned* mine = reinterpret_cast<unsigned*>(warp_slot(p, me->lane));
    for (int i = 0; i < 4; i++) mine[i] = a[i];
    mine[4] = b[0]; mine[5] = b[1];
    warp_barrier(file, line);
    auto element = [&](int lane, int reg, int half) {
        unsigned w = reinterpret_cast<const unsigned*>(warp_slot(p, lane))[reg];
        return bf16_bits_to_f32((unsigned short)(half ? w >> 16 : w & 0xffffu));
    };
    // A(r, k): the lane with g = r % 8 and t = (k % 8) / 2; register (r >= 8) + 2 * (k >= 8); half k % 2
    auto A = [&](int r, int k) { return element((r & 7) * 4 + ((k & 7) >> 1), (r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0), k & 1); };
    // B(k, n): the lane with g = n and t = (k % 8) / 2; register 4 + (k >= 8); half k % 2
    auto B = [&](int k, int n) { return element(n * 4 + ((k & 7) >> 1), 4 + (k >= 8 ? 1 : 0), k & 1); };
    int g = me->lane >> 2, t = me->lane & 3;
    for (int i = 0; i < 4; i++) {
        int r = g + (i >= 2 ? 8 : 0), n = 2 * t + (i & 1);
        float acc = d[i];
        for (int k = 0; k < 16; k++) acc += A(r, k) * B(k, n);
        d[i] = acc;
    }
    // no second barrier: the next collective of this warp writes the other half of the double buffer
}

[[noreturn]] void ptx_template_mismatch(const char* got, const char* expected) {
    fprintf(stderr, "[softgpu] FATAL: inline PTX \"%s\" is not the emulated form \"%s\"\n", got, expected);
    abort();
}

} // namespace softgpu
