#!/usr/bin/env bash
# The GPU session in one script, run on the lent GPU machine from the repository root with publish/ carried (that
# machine has no .NET and no network: build here with `bash tools/publish.sh`, then `run` with carry ["publish"]).
# Policy: every step is selectable (a device command may run 10 minutes at most, so a session runs a few steps per
# call), each step is time-boxed (STEP_TIMEOUT seconds, default 540) and logged with its wall time, a failed step does
# not stop the next, and everything lands in $OUT (else ./gpu-out): at most 8 files, since the device tool returns no
# more (more are packed into gpu-session.tar.gz).
#
#   bash tools/gpu-session.sh STEP...      steps: probe doctor model kernels bench fixtures hf   (all: every step)
#
#   probe     GPU, driver, torch/transformers versions, the CUDA libraries whittle will load      -> session.log
#   doctor    whittle doctor --json: kernels compiled for the device, op-level CPU/GPU parity     -> doctor.json
#   model     whittle doctor --model --json: whole-model parity, allocator steady state           -> doctor-model.json
#   kernels   whittle bench kernels at Pythia-160M, 8 x 2048 (KERNELS_ARGS adds options)        -> kernels.json
#   bench     whittle bench eval|train for Pythia-70M/160M/410M and kd 410M -> 160M, 8 x 2048     -> bench.json
#   fixtures  tools/fixtures/check_with_transformers.py (our fixtures against HF itself)          -> fixtures.log
#   hf        bench/gpu/hf_compare.py $HF_ARGS (e.g. HF_ARGS="--modes eval --tag eval")          -> hf_compare*.json/md
#
# Environment: OUT, STEP_TIMEOUT, BENCH_STEPS (timed steps, default 10), BENCH_WARMUP (default 3), BENCH_MODELS
# (default "pythia-70m pythia-160m pythia-410m"), KERNELS_ARGS, HF_ARGS, WHITTLE (default ./publish/whittle).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
LOG=$OUT/session.log
WHITTLE=${WHITTLE:-./publish/whittle}
STEP_TIMEOUT=${STEP_TIMEOUT:-540}
BENCH_STEPS=${BENCH_STEPS:-10}
PRECISION=${PRECISION:-bf16}   # whittle bench --precision for kernels and bench (bf16: like-for-like with HF bf16)
BENCH_WARMUP=${BENCH_WARMUP:-3}
BENCH_MODELS=${BENCH_MODELS:-pythia-70m pythia-160m pythia-410m}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

log() { echo "$*" | tee -a "$LOG"; }

# ---------------------------------------------------------------- CUDA libraries
# whittle searches WHITTLE_CUDA_LIB_DIR alone when it is set (the driver too), else CUDA_HOME, /usr/local/cuda/lib64,
# the system loader, then python's site-packages/nvidia/*/lib of VIRTUAL_ENV and a few fixed prefixes (not
# /opt/torch/.venv unless VIRTUAL_ENV names it). To load exactly one known set, link the driver, NVRTC (with its
# builtins) and cuBLAS/cuBLASLt into one folder and point the override at it; the toolkit's copies come first because
# they match the driver's CUDA version.
setup_libs() {
  local dirs=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib)
  local py_dirs
  py_dirs=$("$PY" -c 'import os, nvidia
for p in nvidia.__path__:
    for d in sorted(os.listdir(p)):
        if os.path.isdir(os.path.join(p, d, "lib")): print(os.path.join(p, d, "lib"))' 2>/dev/null)
  [ -n "$py_dirs" ] && mapfile -t -O ${#dirs[@]} dirs <<<"$py_dirs"
  first() { for d in "${dirs[@]}"; do compgen -G "$d/$1" >/dev/null && { echo "$d"; return; }; done; }
  local nvrtc cublas driver
  nvrtc=$(first 'libnvrtc.so.1[0-9]*'); cublas=$(first 'libcublasLt.so.1[0-9]*')
  driver=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 /{print $NF; exit}')
  for f in /usr/local/nvidia/lib64/libcuda.so.1 /usr/lib/x86_64-linux-gnu/libcuda.so.1 /usr/lib64/libcuda.so.1; do
    [ -z "$driver" ] && [ -e "$f" ] && driver=$f
  done
  if [ -n "$nvrtc" ] && [ -n "$cublas" ] && [ -n "$driver" ]; then
    local farm=/tmp/whittle-cuda-libs
    rm -rf "$farm"; mkdir -p "$farm"
    ln -s "$driver" "$farm/libcuda.so.1"
    for f in "$nvrtc"/libnvrtc.so.* "$nvrtc"/libnvrtc-builtins.so.* "$cublas"/libcublas.so.* "$cublas"/libcublasLt.so.*; do
      [ -e "$f" ] && ln -sf "$f" "$farm/$(basename "$f")"
    done
    export WHITTLE_CUDA_LIB_DIR=$farm
    log "CUDA libraries: driver $driver, NVRTC from $nvrtc, cuBLAS from $cublas -> WHITTLE_CUDA_LIB_DIR=$farm"
  else
    log "CUDA libraries: could not find all of driver ($driver), NVRTC ($nvrtc), cuBLAS ($cublas); leaving whittle's own search"
  fi
}

# ---------------------------------------------------------------- steps

# run_step NAME OUTFILE COMMAND...: time-boxed, stdout to OUTFILE (or the log), stderr to the log
run_step() {
  local name=$1 out=$2; shift 2
  log "== $name: $*"
  local t0=$SECONDS rc
  if [ -n "$out" ]; then timeout "$STEP_TIMEOUT" "$@" >"$out" 2>>"$LOG"; rc=$?
  else timeout "$STEP_TIMEOUT" "$@" 2>&1 | tee -a "$LOG"; rc=${PIPESTATUS[0]}; fi
  [ "$rc" = 124 ] && log "   $name TIMED OUT after $STEP_TIMEOUT s"
  log "   $name: exit $rc, $((SECONDS - t0)) s"
  return 0
}

need_whittle() {
  [ -x "$WHITTLE" ] && return 0
  log "error: $WHITTLE is missing: run 'bash tools/publish.sh' on the build machine and carry publish/"; return 1
}

step_probe() {
  log "== probe $(date -u '+%Y-%m-%d %H:%M UTC')"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv 2>&1 | tee -a "$LOG"
  "$PY" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' 2>&1 | tee -a "$LOG"
  ls -l "${WHITTLE_CUDA_LIB_DIR:-/nonexistent}" 2>/dev/null | tee -a "$LOG"
  need_whittle && "$WHITTLE" doctor 2>&1 | head -12 | tee -a "$LOG"
}

step_doctor() { need_whittle && run_step doctor "$OUT/doctor.json" "$WHITTLE" doctor --json; }
step_model() { need_whittle && run_step model "$OUT/doctor-model.json" "$WHITTLE" doctor --model --json; }

step_kernels() {
  # shellcheck disable=SC2086
  need_whittle && run_step kernels "$OUT/kernels.json" "$WHITTLE" bench kernels --config pythia-160m --batch-size 8 --seq-len 2048 \
    --steps 20 --warmup 3 --device cuda --precision "$PRECISION" --json ${KERNELS_ARGS:-}
}

step_bench() {
  need_whittle || return 0
  local tmp; tmp=$(mktemp -d)
  local i=0 m mode
  for m in $BENCH_MODELS; do
    for mode in eval train; do
      i=$((i + 1)); run_step "bench $mode $m" "$tmp/$i.json" "$WHITTLE" bench "$mode" --config "$m" --batch-size 8 --seq-len 2048 \
        --steps "$BENCH_STEPS" --warmup "$BENCH_WARMUP" --device cuda --precision "$PRECISION" --json
    done
  done
  i=$((i + 1)); run_step "bench kd pythia-160m <- pythia-410m" "$tmp/$i.json" "$WHITTLE" bench kd --config pythia-160m --teacher-config pythia-410m \
    --batch-size 8 --seq-len 2048 --steps "$BENCH_STEPS" --warmup "$BENCH_WARMUP" --device cuda --precision "$PRECISION" --json
  # one file: a JSON array of every run that printed JSON
  "$PY" - "$tmp" "$OUT/bench.json" <<'EOF'
import glob, json, os, sys
runs = []
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.json")), key=lambda p: int(os.path.basename(p)[:-5])):
    try:
        runs.append(json.load(open(f)))
    except ValueError:
        runs.append({"error": "no JSON (see session.log)", "file": os.path.basename(f)})
json.dump(runs, open(sys.argv[2], "w"), indent=1)
for r in runs:
    print(f"{r.get('mode', '?'):<6} {r.get('config', '?'):<12} {r.get('tokens_per_second', '-'):>12} tok/s  mfu {r.get('mfu', '-')}  peak {r.get('peak_bytes', '-')}")
EOF
  rm -rf "$tmp"
}

step_fixtures() { run_step fixtures "$OUT/fixtures.log" "$PY" tools/fixtures/check_with_transformers.py; }

step_hf() {
  # shellcheck disable=SC2086
  run_step hf "" "$PY" bench/gpu/hf_compare.py --out "$OUT" --whittle "$WHITTLE" ${HF_ARGS:-}
}

# ---------------------------------------------------------------- main

[ $# -gt 0 ] || { sed -n '2,25p' "$0"; exit 2; }
steps=("$@")
[ "${steps[0]}" = all ] && steps=(probe doctor model kernels bench fixtures hf)
setup_libs
for s in "${steps[@]}"; do
  case "$s" in
    probe|doctor|model|kernels|bench|fixtures|hf) "step_$s" ;;
    *) log "unknown step '$s' (probe doctor model kernels bench fixtures hf all)" ;;
  esac
done

# The device tool returns at most 8 files from $OUT: pack when there are more.
n=$(find "$OUT" -maxdepth 1 -type f | wc -l)
if [ "$n" -gt 8 ]; then
  (cd "$OUT" && tar czf gpu-session.tar.gz --exclude gpu-session.tar.gz --exclude session.log ./* && find . -maxdepth 1 -type f ! -name gpu-session.tar.gz ! -name session.log -delete)
  log "packed $n files into $OUT/gpu-session.tar.gz"
fi
