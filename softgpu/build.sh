#!/usr/bin/env bash
# build.sh: builds the software GPU into softgpu/build/lib/, a folder to give WHITTLE_CUDA_LIB_DIR.
# It holds libsoftgpu.so (the CUDA driver, cuBLAS and cuBLASLt entry points the engine binds, and every kernel of
# kernels/*.cu compiled by g++, twice: plain and race-instrumented) under the names the engine looks for
# (libcuda.so.1, libcublas.so.12, libcublasLt.so.12), beside links to this machine's NVRTC, which still compiles the
# kernels to PTX exactly as for a GPU. The test tree's deliberately broken kernels
# (tests/Whittle.Native.Tests/SoftGpu/kernels/*.cu) are compiled in too, so the tests can launch them by name.
# Needs g++, perl and addr2line (installed with apt when missing and running as root) and NVRTC (tools/install-nvrtc.sh).
# Rebuilds only when a source is newer than the library. Usage: bash softgpu/build.sh [--force]
set -euo pipefail
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"   # ldconfig (and dpkg, under apt) live there; a bare PATH may lack them
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${SOFTGPU_BUILD_DIR:-$here/build}
lib=$out/lib

if ! command -v g++ >/dev/null || ! command -v addr2line >/dev/null || ! command -v perl >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ binutils perl >/dev/null
  else
    echo "softgpu: needs g++, binutils (addr2line) and perl" >&2; exit 1
  fi
fi
# awk reads to the end: an early exit would SIGPIPE ldconfig (its list is ~64 KiB, a pipe's size) and, under pipefail,
# fail this line silently on some runs
nvrtc=$(ldconfig -p | awk '/libnvrtc\.so\.[0-9]/ && !found {print $NF; found = 1}')
if [ -z "$nvrtc" ]; then echo "softgpu: NVRTC not found (run tools/install-nvrtc.sh)" >&2; exit 1; fi

kernels=("$root"/kernels/*.cu "$root"/tests/Whittle.Native.Tests/SoftGpu/kernels/*.cu)
headers=("$root"/kernels/*.cuh)
constants=$root/src/Whittle.Native/Tensors/KernelConstants.cs
# the kernels' -D constants, exactly as KernelCompiler passes them to NVRTC (KernelConstants.cs is their one source)
mapfile -t defines < <(perl -ne 'print "-D$1=$2\n" if /\[KernelDefine\("(\w+)"\)\]\s*public const \w+ \w+ = ([-+.\w]+);/' "$constants")
[ "${#defines[@]}" -gt 0 ] || { echo "softgpu: no kernel constants found in $constants" >&2; exit 1; }
sources=(options fibers launch ptx memory streams driver blas racecheck)
if [ "${1:-}" != "--force" ] && [ -f "$lib/libsoftgpu.so" ] && \
   [ -z "$(find "${kernels[@]}" "${headers[@]}" "$constants" "$here"/*.cpp "$here"/*.h "$here"/prep.pl "$0" -newer "$lib/libsoftgpu.so" 2>/dev/null)" ]; then
  echo "softgpu: up to date ($lib)"; exit 0
fi

mkdir -p "$out/obj" "$out/src" "$lib"
rm -f "$out"/obj/*.o "$out"/src/*
flags=(-std=c++17 -fPIC -fopenmp -fno-strict-aliasing -fvisibility=hidden -Wall -Wno-unused-function -Wno-unused-variable -I"$here" -I"$out/src" "${defines[@]}")
jobs=$(nproc); pids=()
run() {   # run CMD... in the background, at most $jobs at a time; finish waits for all and fails if any failed
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 0.1; done
  "$@" & pids+=($!)
}
finish() { local failed=0; for p in "${pids[@]}"; do wait "$p" || failed=1; done; pids=(); return $failed; }
for h in "${headers[@]}"; do "$here/prep.pl" "$h" > "$out/src/$(basename "$h")"; done
for f in "${kernels[@]}"; do
  [ -f "$f" ] || continue
  n=$(basename "$f" .cu); rel=${f#"$root"/}
  for variant in plain race; do
    src=$out/src/${variant}_$n.cpp
    { [ $variant = race ] && echo '#define SOFTGPU_RACE_BUILD'
      echo '#include "cuda_shim.h"'; echo "namespace softgpu_${variant}_$n {"; echo "#line 1 \"$rel\""; "$here/prep.pl" "$f"; echo "}"
      for k in $("$here/prep.pl" -k "$f"); do echo "SOFTGPU_REGISTER(softgpu_${variant}_$n, $k)"; done; } > "$src"
    if [ $variant = race ]; then run g++ "${flags[@]}" -O1 -g -fsanitize=thread -c "$src" -o "$out/obj/${variant}_$n.o"
    else run g++ "${flags[@]}" -O2 -c "$src" -o "$out/obj/${variant}_$n.o"; fi
  done
done
for s in "${sources[@]}"; do run g++ "${flags[@]}" -O2 -g -c "$here/$s.cpp" -o "$out/obj/$s.o"; done
finish || { echo "softgpu: compilation failed" >&2; exit 1; }
g++ -shared -fopenmp -o "$lib/libsoftgpu.so.tmp" "$out"/obj/*.o -Wl,-soname,libsoftgpu.so -Wl,--no-undefined
mv "$lib/libsoftgpu.so.tmp" "$lib/libsoftgpu.so"
for n in libcuda.so.1 libcublas.so.12 libcublasLt.so.12; do ln -sfn libsoftgpu.so "$lib/$n"; done
ln -sfn "$(readlink -f "$nvrtc")" "$lib/$(basename "$nvrtc")"
for b in $(dirname "$(readlink -f "$nvrtc")")/libnvrtc-builtins.so*; do ln -sfn "$b" "$lib/$(basename "$b")"; done
echo "softgpu: built $lib ($(ls "$out"/obj/plain_*.o | wc -l) kernel files, plain and race builds)"
