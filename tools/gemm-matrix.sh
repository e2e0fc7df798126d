#!/usr/bin/env bash
# Runs the numerics-sensitive tests (NUnit category GemmSensitive) once per CPU GEMM path this machine supports, so a
# tolerance that only holds for one GEMM kernel fails here rather than on someone else's CPU (issue 14). Paths:
#   WHITTLE_CPU_GEMM=ours-scalar | ours-avx2 | ours-avx512   our GEMM on one micro-kernel (Cpu/Gemm.cs)
#   WHITTLE_CPU_GEMM=openblas                               OpenBLAS with the kernel it picks for this CPU. OPENBLAS_CORETYPE is
#                                                           left as the machine has it: some machines of this workplace pin it
#                                                           because older OpenBLAS builds are wrong or crash on their CPUs, so
#                                                           neither tests nor CI may change it (to reproduce the AVX2-only
#                                                           EPYC numerics by hand: OPENBLAS_CORETYPE=Haswell)
# A path is run only when /proc/cpuinfo has the instructions (and DOTNET_EnableAVX512=0 is not set); whittle itself
# refuses a forced path the CPU lacks (exit 1), so a wrong guess here fails loudly rather than testing something else.
# Needs a build: `dotnet build -c Release tests/Whittle.Native.Tests` (CI's test run does it). Prints, per run, the path
# and `dotnet test`'s summary line; exits non-zero when any run fails or prints no summary.
set -uo pipefail
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"   # ldconfig (and dpkg, under apt) live there; a bare PATH may lack them
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $flags " == *" $1 "* ]]; }
avx512_off() { [ "${DOTNET_EnableAVX512:-1}" = 0 ] || [ "${DOTNET_EnableAVX512F:-1}" = 0 ]; }
# no `ldconfig -p | grep -q`: grep's early exit SIGPIPEs ldconfig and pipefail turns that into a false "not installed"
openblas() { [[ $(ldconfig -p 2>/dev/null) == *libopenblas.so.0* ]] || [ -n "${WHITTLE_OPENBLAS:-}" ]; }

runs=("WHITTLE_CPU_GEMM=ours-scalar")
if has avx && has avx2; then runs+=("WHITTLE_CPU_GEMM=ours-avx2"); fi
if has avx512f && ! avx512_off; then runs+=("WHITTLE_CPU_GEMM=ours-avx512"); fi
if openblas; then
  runs+=("WHITTLE_CPU_GEMM=openblas")
else
  echo "note: OpenBLAS is not installed (tools/install-openblas.sh); its paths are not run"
fi

status=0
summaries=()
for run in "${runs[@]}"; do
  echo "== $run"
  log=$(mktemp)
  env $run dotnet test tests/Whittle.Native.Tests -c Release --no-build --filter TestCategory=GemmSensitive >"$log" 2>&1
  rc=$?
  grep -E '^\s+Failed [^:]' "$log" | head -20
  summary=$(grep -Eo '(Passed|Failed)! +- Failed: *[0-9]+, Passed: *[0-9]+, Skipped: *[0-9]+.*' "$log" | tail -1)
  if [ -z "$summary" ]; then tail -20 "$log"; summary="no test summary (exit $rc)"; [ "$rc" -eq 0 ] && rc=1; fi
  rm -f "$log"
  echo "$summary"
  summaries+=("$run: $summary")
  if [ "$rc" -ne 0 ]; then status=1; fi
done
echo "== GEMM matrix (${#runs[@]} paths)"
printf '%s\n' "${summaries[@]}"
exit "$status"
