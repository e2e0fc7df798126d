# The bf16 GEMM micro-kernel of Cpu/Avx512Bf16Kernel.cs, which embeds its machine code: after editing this file, run
# tools/avx512bf16-kernel.sh to regenerate the bytes there (a test assembles this file and compares them).
#
# acc (12, 32) f32 = Σ_q aPanel[q, 0..12)ᵀ · bPanel[q, 0..32), over q in [0, pairs): one k *pair* per q. Each panel
# entry is 32 bits holding two bf16 values: element 2q in the low half, element 2q+1 in the high half. vdpbf16ps adds
# both products of a lane's pair to its f32 accumulator (AVX512-BF16).
#
# Calling convention: System V x86-64 (Linux), a leaf function; it touches only caller-saved registers.
#   rdi = pairs (≥ 0), rsi = aPanel (pairs, 12) u32, rdx = bPanel (pairs, 32) u32, rcx = acc (12, 32) f32, written.
# Registers: zmm0..23 accumulate (row r in zmm 2r and 2r+1), zmm24/25 hold the 32 B pairs of q, zmm26 one A pair
# broadcast: per q, 2 loads and 12 broadcasts feed 24 dot products (the register plan of Gemm.cs's 12x32 f32 kernel).
    .intel_syntax noprefix
    .text
    .globl whittle_bf16_dot_12x32

# One row of the tile: broadcast A pair number \row of this q, dot it into the row's two accumulators.
.macro ROW row, acc0, acc1
    vpbroadcastd zmm26, dword ptr [rsi + 4*\row]
    vdpbf16ps zmm\acc0, zmm24, zmm26
    vdpbf16ps zmm\acc1, zmm25, zmm26
.endm

whittle_bf16_dot_12x32:
    .irp r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23
    vpxord zmm\r, zmm\r, zmm\r
    .endr
    test rdi, rdi
    jz 2f
1:
    vmovups zmm24, [rdx]
    vmovups zmm25, [rdx + 64]
    ROW 0, 0, 1
    ROW 1, 2, 3
    ROW 2, 4, 5
    ROW 3, 6, 7
    ROW 4, 8, 9
    ROW 5, 10, 11
    ROW 6, 12, 13
    ROW 7, 14, 15
    ROW 8, 16, 17
    ROW 9, 18, 19
    ROW 10, 20, 21
    ROW 11, 22, 23
    add rsi, 48
    add rdx, 128
    dec rdi
    jnz 1b
2:
    .irp r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23
    vmovups [rcx + 64*\r], zmm\r
    .endr
    # Leave the upper halves clean for any SSE code the runtime runs next.
    vzeroupper
    ret
