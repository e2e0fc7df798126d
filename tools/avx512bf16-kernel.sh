#!/usr/bin/env bash
# Assembles src/Whittle.Native/Cpu/Avx512Bf16Kernel.S with GNU as and writes its machine code into
# src/Whittle.Native/Cpu/Avx512Bf16Kernel.cs, between the lines "// machine code: begin" and "// machine code: end".
#   bash tools/avx512bf16-kernel.sh          # regenerate the bytes
#   bash tools/avx512bf16-kernel.sh --print  # print them (hex, one line) and change nothing
# Needs binutils (as, objcopy). Avx512Bf16KernelTests checks that the committed bytes are this file's.
set -euo pipefail
cd "$(dirname "$0")/.."
src=src/Whittle.Native/Cpu/Avx512Bf16Kernel.S
cs=src/Whittle.Native/Cpu/Avx512Bf16Kernel.cs
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
as --64 -o "$tmp/k.o" "$src"
objcopy -O binary -j .text "$tmp/k.o" "$tmp/k.bin"
if [[ ${1:-} == --print ]]; then
  od -An -v -tx1 "$tmp/k.bin" | tr -d ' \n'; echo
  exit 0
fi
# 16 bytes a line, as C# hex literals, indented for the array initializer.
od -An -v -tx1 "$tmp/k.bin" | sed -E 's/ ([0-9a-f]{2})/0x\1, /g; s/, $/,/; s/^/        /' >"$tmp/bytes"
awk -v bytes="$tmp/bytes" '
  /\/\/ machine code: end/ { skipping = 0 }
  !skipping { print }
  /\/\/ machine code: begin/ { while ((getline line < bytes) > 0) print line; skipping = 1 }
' "$cs" >"$tmp/out.cs"
mv "$tmp/out.cs" "$cs"
echo "wrote $(wc -c <"$tmp/k.bin") bytes into $cs"
