#!/usr/bin/env bash
# CPU side-by-side: Whittle (`whittle bench train|eval --config small --device cpu`) against the same GPT-NeoX in plain
# PyTorch (bench/pytorch/cpu_compare.py, Debian's /usr/bin/python3 with torch on OpenBLAS), interleaved
# (per round: the GEMM ceiling, then each case PyTorch then Whittle) for ROUNDS rounds so machine noise hits both sides.
# Cases: train step and eval at 8×256, eval at 1×512, 1×1024, 1×2048. Prints a markdown table (date, CPU, load): medians
# and ranges of tokens/s, Whittle / PyTorch, each side's fraction of the measured GEMM ceiling, peak RSS of each process.
#   bash bench/cpu-compare.sh                    # 3 rounds, 2 threads, Whittle's default GEMM (auto)
#   THREADS=1 ROUNDS=5 GEMM=ours bash bench/cpu-compare.sh --json
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2} ROUNDS=${ROUNDS:-3}
dotnet build src/Whittle.Cli -c Release -v quiet -nologo >/dev/null
args=(--threads "$THREADS" --rounds "$ROUNDS" --whittle "dotnet src/Whittle.Cli/bin/Release/net10.0/whittle.dll")
if [ -n "${GEMM:-}" ]; then args+=(--gemm "$GEMM"); fi
exec /usr/bin/python3 bench/pytorch/cpu_compare.py "${args[@]}" "$@"
