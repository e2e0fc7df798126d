#!/usr/bin/env bash
# Eval at one long sequence (B = 1) for T = 512, 1024, 2048 on the `small` config: tokens/s, peak tensor memory (whittle's
# counter) and the process's peak resident set (GNU time's %M, which also sees the attention kernels' managed scratch).
# With a second whittle binary as $1 (e.g. one built from an older commit), each T runs both, interleaved, so the two
# share the machine's load. Usage: bash bench/eval-long-context.sh [OTHER_WHITTLE]   (STEPS=3 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build -c Release src/Whittle.Cli -v q -nologo >/dev/null
new=src/Whittle.Cli/bin/Release/net10.0/whittle
binaries=("$new")
[[ $# -ge 1 ]] && binaries+=("$1")
steps=${STEPS:-3}
printf '%-6s %-10s %10s %14s %14s\n' T binary 'tok/s' 'peak tensor MiB' 'max RSS MiB'
for t in 512 1024 2048; do
    for bin in "${binaries[@]}"; do
        label=$([[ $bin == "$new" ]] && echo this || echo other)
        out=$( { /usr/bin/time -f 'maxrss_kb %M' "$bin" bench eval --config small --batch-size 1 --seq-len "$t" --steps "$steps" \
            --warmup 1 --json; } 2>&1 )
        tps=$(grep -o '"tokens_per_second": [0-9.]*' <<<"$out" | awk '{print $2}')
        peak=$(grep -o '"peak_bytes": [0-9]*' <<<"$out" | awk '{printf "%.1f", $2 / 1048576}')
        rss=$(grep -o 'maxrss_kb [0-9]*' <<<"$out" | awk '{printf "%.1f", $2 / 1024}')
        printf '%-6s %-10s %10s %14s %14s\n' "$t" "$label" "$tps" "$peak" "$rss"
    done
done
