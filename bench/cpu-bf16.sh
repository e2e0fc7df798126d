#!/usr/bin/env bash
# The CPU's bf16 GEMM against its f32 GEMM, side by side (bench/RESULTS.md, "CPU bf16 GEMM"):
#  1. GEMM level: `Whittle.Native.Bench gemm-bf16-quick` (the small config's forward shapes, every variant interleaved);
#  2. eval tokens/s: `whittle bench eval --config small --device cpu` with --precision fp32 | bf16 and --gemm ours |
#     openblas (and ours-avx512, whose bf16 GEMM is the widened-panel one, where the CPU has AVX-512F), interleaved for
#     ROUNDS rounds (each round runs every combination once), medians and ratios to fp32 ours. bf16 with --gemm ours
#     runs the AVX512-BF16 kernel where the CPU reports avx512_bf16 (the printed bf16_gemm says which).
# Prints the CPU's model name, its bf16-related flags, the date and the load average before and after.
#   bash bench/cpu-bf16.sh                 # 3 rounds of eval, 15 of GEMM
#   ROUNDS=5 GEMM_ROUNDS=25 bash bench/cpu-bf16.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} GEMM_ROUNDS=${GEMM_ROUNDS:-15}
dotnet build src/Whittle.Cli -c Release -v quiet -nologo >/dev/null
dotnet build bench/Whittle.Native.Bench -c Release -v quiet -nologo >/dev/null
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(lscpu | grep -m1 'Model name' | tr -s ' '); $(nproc) CPUs"
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx512f|avx512_bf16|amx_bf16|amx_tile)$' | tr '\n' ' ')
echo "bf16-related CPU flags: $flags"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
dotnet bench/Whittle.Native.Bench/bin/Release/net10.0/Whittle.Native.Bench.dll gemm-bf16-quick "$GEMM_ROUNDS"
combos=("fp32 ours" "bf16 ours" "fp32 openblas" "bf16 openblas")
if [[ " $flags " == *" avx512f "* ]]; then combos+=("bf16 ours-avx512"); fi
declare -A runs names
for ((r = 0; r < ROUNDS; r++)); do
  for combo in "${combos[@]}"; do
    read -r precision gemm <<<"$combo"
    tps=$(dotnet src/Whittle.Cli/bin/Release/net10.0/whittle.dll bench eval --config small --device cpu --precision "$precision" \
      --gemm "$gemm" --steps 5 --warmup 2 --json | /usr/bin/python3 -c 'import json,sys; d = json.load(sys.stdin)
print(d["tokens_per_second"], d.get("bf16_gemm", "-"))')
    read -r tps bf16gemm <<<"$tps"
    names[$combo]=$bf16gemm
    runs[$combo]+="$tps "
  done
done
echo "eval, small 8×256, tokens/s over $ROUNDS interleaved rounds (median; ratio to fp32 ours):"
base=$(printf '%s\n' ${runs["fp32 ours"]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
for combo in "${combos[@]}"; do
  med=$(printf '%s\n' ${runs[$combo]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '  %-17s %-17s %8s  (%s)  runs: %s\n' "$combo" "${names[$combo]}" "$med" \
    "$(awk -v m="$med" -v b="$base" 'BEGIN {printf "%.2f", m / b}')" "${runs[$combo]}"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
