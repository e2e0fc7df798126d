#!/usr/bin/env bash
# Publishes `whittle` as one self-contained, trimmed linux-x64 file (kernels embedded) into publish/, for machines
# without .NET. Fails on any trim warning (warnings are errors) and when the file exceeds 30 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
rid=${1:-linux-x64}
dotnet publish src/Whittle.Cli -c Release -r "$rid" --self-contained -p:PublishSingleFile=true -p:PublishTrimmed=true -o publish/
exe=publish/whittle; [ -f "$exe" ] || exe=publish/whittle.exe
size=$(stat -c %s "$exe")
echo "$exe: $((size / 1024 / 1024)) MB ($size bytes)"
if [ "$size" -gt $((30 * 1024 * 1024)) ]; then echo "error: $exe is larger than 30 MB" >&2; exit 1; fi
