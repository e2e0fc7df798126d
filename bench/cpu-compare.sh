#!/usr/bin/env bash
# CPU side-by-side: Whittle (`whittle bench train|eval --config small --device cpu`) against the same GPT-NeoX in plain
# PyTorch (bench/pytorch/cpu_compare.py, Debian's /usr/bin/python3 with torch on OpenBLAS), interleaved
# (PyTorch, Whittle, PyTorch, Whittle, ...) for ROUNDS rounds so machine noise hits both sides; prints medians and the
# ratio Whittle / PyTorch in tokens/s.
#   bash bench/cpu-compare.sh                    # 3 rounds, 2 threads, Whittle's default GEMM (auto)
#   THREADS=1 ROUNDS=5 GEMM=ours bash bench/cpu-compare.sh --json
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2} ROUNDS=${ROUNDS:-3}
dotnet build src/Whittle.Cli -c Release -v quiet -nologo >/dev/null
args=(--threads "$THREADS" --rounds "$ROUNDS" --whittle "dotnet src/Whittle.Cli/bin/Release/net10.0/whittle.dll")
if [ -n "${GEMM:-}" ]; then args+=(--gemm "$GEMM"); fi
exec /usr/bin/python3 bench/pytorch/cpu_compare.py "${args[@]}" "$@"
