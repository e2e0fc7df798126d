#!/usr/bin/env bash
# The GPU session in one script, run on the lent GPU machine from the repository root with publish/ carried (that
# machine has no .NET and no network: build here with `bash tools/publish.sh`, then `run` with carry ["publish"]).
# Policy: a session may be one 15-minute window of device time (machine start included) and 10 minutes per command,
# so the `first` plan gets the most evidence out of ONE call: an overall deadline (DEADLINE seconds of work, default
# 450, inside a command given 560 s), each step's limit derived from what is left (a step gets its planned time plus
# whatever the steps before it saved, never more than is left; when the call runs behind, the last, least important
# steps are the ones cut; a step whose minimum no longer fits is skipped and says so), `timeout -k` on every step, steps independent (a failure never stops the next), most important first, every
# file written when its step ends (a step that times out or is skipped still leaves its file, marked), at most 8 files
# at the top of $OUT (the device tool returns no more), every whittle call with --verbose (stack traces to session.log).
#
#   bash tools/gpu-session.sh first [--dry-run]   the single-window plan (--dry-run: print it with its budget, run nothing)
#   bash tools/gpu-session.sh STEP...              steps: probe doctor model kernels bench fixtures hf   (all: every step)
#
#   first: probe -> doctor -> model -> fixtures -> eval (ours, then HF eager) -> train+kd (ours, then HF eager)
#          -> kernels -> compile (HF eval under torch.compile, last: the slow, least important part)
#   probe     GPU, driver, torch/transformers versions, the CUDA libraries whittle will load      -> session.log
#   doctor    whittle doctor --json: versions, mapped libraries, kernels compiled, op parity      -> doctor.json
#   model     whittle doctor --model --skip-ops --json: whole-model parity, allocator             -> doctor-model.json
#   fixtures  tools/fixtures/check_with_transformers.py (our fixtures against HF itself)          -> fixtures.log
#   eval      bench/gpu/hf_compare.py --modes eval --no-compile, MODEL then LLAMA_MODEL (ours first) -> hf_compare-eval.json
#   train     bench/gpu/hf_compare.py --modes train,kd --no-compile, both models (ours first)     -> hf_compare-train.json
#   kernels   whittle bench kernels at the model's shape (KERNELS_ARGS adds options)             -> kernels.json
#   compile   bench/gpu/hf_compare.py --modes eval --compile-only --skip-ours                    -> hf_compare-compile.json
#   bench     (not in first) whittle bench eval|train for BENCH_MODELS and kd 410M -> 160M         -> bench.json
#   hf        (not in first) bench/gpu/hf_compare.py $HF_ARGS                                     -> hf_compare*.json/md
#
# Environment: OUT, DEADLINE (first: seconds of work, default 450), COMMAND_LIMIT (the device command's timeout,
# default 560), KILL_GRACE (timeout -k, default 10), MODEL/BATCH/SEQ_LEN (first's shape, default pythia-160m 8 x 2048),
# LLAMA_MODEL (the Llama-family model measured beside it in eval and train, default smollm2-135m; empty: none),
# KD_TEACHER (default pythia-410m), BENCH_STEPS, BENCH_WARMUP, STEP_TIMEOUT (named steps, default 540), BENCH_MODELS,
# KERNELS_ARGS, HF_ARGS, WHITTLE (default ./publish/whittle), PYTHON, LONG_SEQ_LEN (doctor --long-seq-len).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
LOG=$OUT/session.log
WHITTLE=${WHITTLE:-./publish/whittle}
STEP_TIMEOUT=${STEP_TIMEOUT:-540}
DEADLINE=${DEADLINE:-450}
COMMAND_LIMIT=${COMMAND_LIMIT:-560}
KILL_GRACE=${KILL_GRACE:-10}
MODEL=${MODEL:-pythia-160m}
LLAMA_MODEL=${LLAMA_MODEL-smollm2-135m}
KD_TEACHER=${KD_TEACHER:-pythia-410m}
BATCH=${BATCH:-8}
SEQ_LEN=${SEQ_LEN:-2048}
BENCH_STEPS=${BENCH_STEPS:-10}
PRECISION=${PRECISION:-bf16}   # whittle bench --precision for kernels and bench (bf16: like-for-like with HF bf16)
BENCH_WARMUP=${BENCH_WARMUP:-3}
BENCH_MODELS=${BENCH_MODELS:-pythia-70m pythia-160m pythia-410m smollm2-135m qwen3-0.6b}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

# The first plan: "step planned_seconds minimum_seconds output_file". Planned seconds sum to the default DEADLINE;
# the minimum is what makes a step worth starting (below it the step is skipped and its file says so). Estimates
# for an H200 (doctor: 10 kernel files compiled by NVRTC plus ~100 parity cases; eval/train: one whittle bench and one
# eager HF run of 13 steps each per mode and model, GPT-NeoX then the Llama model; fixtures: 6 model directories, each on
# the CPU and the GPU with eager and SDPA attention; compile: one cold torch.compile, 1-4 minutes).
FIRST_PLAN=(
  "probe 20 5 session.log"
  "doctor 60 20 doctor.json"
  "model 45 15 doctor-model.json"
  "fixtures 35 10 fixtures.log"
  "eval 75 30 hf_compare-eval.json"
  "train 105 40 hf_compare-train.json"
  "kernels 35 20 kernels.json"
  "compile 75 60 hf_compare-compile.json"
)

log() { echo "$*" | tee -a "$LOG"; }

# ---------------------------------------------------------------- deadline arithmetic (pure; tested by tools/test-gpu-session.sh)

# step_limit PLANNED MINIMUM LEFT LATER_PLANNED -> the seconds this step may run, or 0 to skip it.
# The step gets its plan plus what the steps before it saved (LEFT - LATER_PLANNED when that exceeds PLANNED), never
# more than LEFT. It never takes time planned for later steps beyond its own plan, so running behind cuts the last
# steps (the least important), never the first. A limit below MINIMUM is not worth starting.
step_limit() {
  local planned=$1 minimum=$2 left=$3 later_planned=$4 limit
  limit=$(( left - later_planned > planned ? left - later_planned : planned ))
  (( limit > left )) && limit=$left
  (( limit < minimum )) && limit=0
  echo "$limit"
}

# later_planned INDEX -> the planned seconds of the first plan's steps after INDEX
later_planned() {
  local i=$1 j p=0 f
  for (( j = i + 1; j < ${#FIRST_PLAN[@]}; j++ )); do read -r -a f <<<"${FIRST_PLAN[$j]}"; p=$(( p + f[1] )); done
  echo "$p"
}

# The worst case of a whole call: every step runs to its limit, then is killed KILL_GRACE later.
worst_case() { echo $(( DEADLINE + ${#FIRST_PLAN[@]} * KILL_GRACE )); }

dry_run() {
  local i f total=0 cum=0 ok=0
  printf '%-9s %8s %8s %10s  %s\n' step planned minimum cumulative "output file"
  for (( i = 0; i < ${#FIRST_PLAN[@]}; i++ )); do
    read -r -a f <<<"${FIRST_PLAN[$i]}"
    cum=$(( cum + f[1] ))
    printf '%-9s %7ss %7ss %9ss  %s\n' "${f[0]}" "${f[1]}" "${f[2]}" "$cum" "\$OUT/${f[3]}"
  done
  total=$cum
  local files; files=$(printf '%s\n' "${FIRST_PLAN[@]}" | awk '{print $4}' | sort -u | wc -l)
  echo "shape: $MODEL${LLAMA_MODEL:+ and $LLAMA_MODEL}, batch $BATCH x seq $SEQ_LEN, KD teacher $KD_TEACHER"
  echo "budget: plan $total s of work, deadline $DEADLINE s; worst case with a ${KILL_GRACE} s kill grace per step $(worst_case) s; command limit $COMMAND_LIMIT s; $files output files (at most 8)"
  (( total <= DEADLINE )) || { echo "DOES NOT FIT: the plan needs $total s, the deadline is $DEADLINE s"; ok=1; }
  (( $(worst_case) <= COMMAND_LIMIT )) || { echo "DOES NOT FIT: the worst case $(worst_case) s exceeds the command limit $COMMAND_LIMIT s"; ok=1; }
  (( files <= 8 )) || { echo "DOES NOT FIT: $files files, the device tool returns 8"; ok=1; }
  (( ok == 0 )) && echo "fits"
  return $ok
}

# ---------------------------------------------------------------- partial results

json_ok() { "$PY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$1" 2>/dev/null; }

# mark_json FILE STEP STATUS LIMIT EXIT: FILE becomes (or stays) valid JSON. A valid file is kept, with nothing added
# (doctor's own JSON says ok/error; hf_compare rewrites its file after every pair). Otherwise what the step printed is
# kept inside a marker object: {"step", "status" (timed out | failed | skipped ...), "limit_s", "exit", "partial_output"}.
mark_json() {
  local file=$1 step=$2 status=$3 limit=$4 rc=$5
  [ -s "$file" ] && json_ok "$file" && return 0
  local partial=""; [ -f "$file" ] && partial=$(cat "$file")
  if ! "$PY" - "$file" "$step" "$status" "$limit" "$rc" "$partial" <<'EOF' 2>/dev/null
import json, sys
f, step, status, limit, rc, partial = sys.argv[1:7]
json.dump({"step": step, "status": status, "limit_s": int(limit), "exit": int(rc), "partial_output": partial[-20000:]}, open(f, "w"), indent=1)
EOF
  then printf '{"step": "%s", "status": "%s", "limit_s": %s, "exit": %s}\n' "$step" "$status" "$limit" "$rc" >"$file"; fi
}

# mark_text FILE STEP STATUS: a text file that must exist (fixtures.log) gets the status as its last line.
mark_text() { echo "gpu-session: $2 $3" >>"$1"; }

# ---------------------------------------------------------------- CUDA libraries
# whittle searches WHITTLE_CUDA_LIB_DIR alone when it is set (the driver too), else CUDA_HOME, /usr/local/cuda/lib64,
# the system loader, then python's site-packages/nvidia/*/lib of VIRTUAL_ENV and a few fixed prefixes (not
# /opt/torch/.venv unless VIRTUAL_ENV names it). To load exactly one known set, link the driver, NVRTC (with its
# builtins) and cuBLAS/cuBLASLt into one folder and point the override at it; the toolkit's copies come first because
# they match the driver's CUDA version. An override already set (the software GPU on the CPU machine) is kept.
setup_libs() {
  if [ -n "${WHITTLE_CUDA_LIB_DIR:-}" ]; then log "CUDA libraries: WHITTLE_CUDA_LIB_DIR=$WHITTLE_CUDA_LIB_DIR (set by the caller)"; return; fi
  local dirs=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib)
  local py_dirs
  py_dirs=$(timeout -k 2 20 "$PY" -c 'import os, nvidia
for p in nvidia.__path__:
    for d in sorted(os.listdir(p)):
        if os.path.isdir(os.path.join(p, d, "lib")): print(os.path.join(p, d, "lib"))' 2>/dev/null)
  [ -n "$py_dirs" ] && mapfile -t -O ${#dirs[@]} dirs <<<"$py_dirs"
  first_dir() { for d in "${dirs[@]}"; do compgen -G "$d/$1" >/dev/null && { echo "$d"; return; }; done; }
  local nvrtc cublas driver
  nvrtc=$(first_dir 'libnvrtc.so.1[0-9]*'); cublas=$(first_dir 'libcublasLt.so.1[0-9]*')
  driver=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 / && !found {print $NF; found = 1}')   # no early exit: see softgpu/build.sh
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

# ---------------------------------------------------------------- running a step

# run_bounded LIMIT NAME OUTFILE COMMAND...: time-boxed with timeout -k; stdout to OUTFILE (or the log), stderr to the
# log. Sets RC; logs the exit status and wall time.
run_bounded() {
  local limit=$1 name=$2 out=$3; shift 3
  log "== $name (limit $limit s): $*"
  local t0=$SECONDS
  if [ -n "$out" ]; then timeout -k "$KILL_GRACE" "$limit" "$@" >"$out" 2>>"$LOG"; RC=$?
  else timeout -k "$KILL_GRACE" "$limit" "$@" >>"$LOG" 2>&1; RC=$?; fi
  case $RC in 124|137) log "   $name TIMED OUT after $limit s" ;; esac
  log "   $name: exit $RC, $((SECONDS - t0)) s"
}

status_of() { case $1 in 0) echo ok ;; 124|137) echo "timed out" ;; *) echo "failed (exit $1)" ;; esac; }

need_whittle() {
  [ -x "$WHITTLE" ] && return 0
  log "error: $WHITTLE is missing: run 'bash tools/publish.sh' on the build machine and carry publish/"; return 1
}

# hf_available: torch and transformers import (else the HF parts are skipped, naming why)
hf_available() {
  HF_PROBLEM=$(timeout -k 2 60 "$PY" -c 'import torch, transformers' 2>&1 | tail -1)
  [ -z "$HF_PROBLEM" ]
}

long_seq_args() { [ -n "${LONG_SEQ_LEN:-}" ] && echo "--long-seq-len $LONG_SEQ_LEN"; }

# first-plan steps: do_STEP LIMIT FILE (FILE under $OUT)
do_probe() {
  local limit=$1
  log "== probe $(date -u '+%Y-%m-%d %H:%M UTC') (limit $limit s)"
  timeout -k 2 "$(( limit / 3 + 1 ))" nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv >>"$LOG" 2>&1 \
    || log "   nvidia-smi: not available (exit $?)"
  timeout -k 2 "$(( limit / 3 + 1 ))" "$PY" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' >>"$LOG" 2>&1 \
    || log "   torch/transformers: not importable (HF steps will be skipped)"
  ls -l "${WHITTLE_CUDA_LIB_DIR:-/nonexistent}" >>"$LOG" 2>&1
  [ -x "$WHITTLE" ] && log "   whittle: $WHITTLE ($(stat -c %s "$WHITTLE" 2>/dev/null) bytes)"
}

do_doctor() {
  need_whittle || { mark_json "$2" doctor "skipped: $WHITTLE missing" "$1" 127; return; }
  # shellcheck disable=SC2046
  run_bounded "$1" doctor "$2" "$WHITTLE" doctor --json --verbose $(long_seq_args)
  mark_json "$2" doctor "$(status_of $RC)" "$1" $RC
}

do_model() {
  need_whittle || { mark_json "$2" model "skipped: $WHITTLE missing" "$1" 127; return; }
  run_bounded "$1" model "$2" "$WHITTLE" doctor --model --skip-ops --json --verbose
  mark_json "$2" model "$(status_of $RC)" "$1" $RC
}

do_fixtures() {
  if ! hf_available; then echo "skipped: torch/transformers not importable ($HF_PROBLEM)" >"$2"; log "   fixtures skipped: $HF_PROBLEM"; return; fi
  run_bounded "$1" fixtures "$2" "$PY" tools/fixtures/check_with_transformers.py
  mark_text "$2" fixtures "$(status_of $RC)"
}

# hf_step NAME LIMIT FILE TAG MODELS ARGS...: hf_compare with its own deadline a little inside the step's limit, so it
# ends itself (and its JSON says what was cut) before timeout kills it. MODELS: comma-separated, in run order.
hf_step() {
  local name=$1 limit=$2 file=$3 tag=$4 models=$5; shift 5
  run_bounded "$limit" "$name" "" "$PY" bench/gpu/hf_compare.py --out "$OUT" --tag "$tag" --no-markdown --whittle "$WHITTLE" \
    --models "$models" --batch "$BATCH" --seq-len "$SEQ_LEN" --kd-teacher "$KD_TEACHER" --kd-student "$MODEL" \
    --steps "$BENCH_STEPS" --warmup "$BENCH_WARMUP" --deadline "$(( limit > 20 ? limit - 10 : limit ))" "$@"
  mark_json "$file" "$name" "$(status_of $RC)" "$limit" $RC
}

# GPT-NeoX first (the longer-standing comparison), then the Llama-family model; kd runs once, GPT-NeoX teacher -> MODEL.
both_models() { echo "$MODEL${LLAMA_MODEL:+,$LLAMA_MODEL}"; }
do_eval() { hf_step eval "$1" "$2" eval "$(both_models)" --modes eval --no-compile; }
do_train() { hf_step train "$1" "$2" train "$(both_models)" --modes train,kd --no-compile; }
do_compile() { hf_step compile "$1" "$2" compile "$(both_models)" --modes eval --compile-only --skip-ours; }

do_kernels() {
  need_whittle || { mark_json "$2" kernels "skipped: $WHITTLE missing" "$1" 127; return; }
  # shellcheck disable=SC2086
  run_bounded "$1" kernels "$2" "$WHITTLE" bench kernels --config "$MODEL" --batch-size "$BATCH" --seq-len "$SEQ_LEN" \
    --steps "$BENCH_STEPS" --warmup "$BENCH_WARMUP" --device cuda --precision "$PRECISION" --json --verbose ${KERNELS_ARGS:-}
  mark_json "$2" kernels "$(status_of $RC)" "$1" $RC
}

run_first() {
  local t0=$SECONDS i f limit later summary=()
  log "== first plan: deadline $DEADLINE s of work, command limit $COMMAND_LIMIT s, model $MODEL $BATCH x $SEQ_LEN"
  for (( i = 0; i < ${#FIRST_PLAN[@]}; i++ )); do
    read -r -a f <<<"${FIRST_PLAN[$i]}"
    later=$(later_planned "$i")
    local left=$(( DEADLINE - (SECONDS - t0) ))
    limit=$(step_limit "${f[1]}" "${f[2]}" "$left" "$later")
    local file=$OUT/${f[3]} s0=$SECONDS
    if (( limit == 0 )); then
      log "== ${f[0]}: SKIPPED, $left s left of the deadline, needs ${f[2]} s"
      case ${f[3]} in *.json) mark_json "$file" "${f[0]}" "skipped: $left s left of the deadline" 0 0 ;; *.log) [ "${f[3]}" = session.log ] || echo "skipped: $left s left of the deadline" >"$file" ;; esac
      summary+=("${f[0]}: skipped ($left s left)")
      continue
    fi
    "do_${f[0]}" "$limit" "$file"
    summary+=("${f[0]}: $((SECONDS - s0)) s of $limit s")
  done
  log "== first plan done in $((SECONDS - t0)) s: ${summary[*]/%/;}"
  log "files: $(cd "$OUT" && ls | tr '\n' ' ')"
}

# ---------------------------------------------------------------- named steps (several calls; STEP_TIMEOUT each)

step_probe() { do_probe "$STEP_TIMEOUT"; }
step_doctor() { do_doctor "$STEP_TIMEOUT" "$OUT/doctor.json"; }
step_model() { need_whittle && { run_bounded "$STEP_TIMEOUT" model "$OUT/doctor-model.json" "$WHITTLE" doctor --model --json --verbose; mark_json "$OUT/doctor-model.json" model "$(status_of $RC)" "$STEP_TIMEOUT" $RC; }; }
step_kernels() { do_kernels "$STEP_TIMEOUT" "$OUT/kernels.json"; }

step_bench() {
  need_whittle || return 0
  local tmp; tmp=$(mktemp -d)
  local i=0 m mode
  for m in $BENCH_MODELS; do
    for mode in eval train; do
      i=$((i + 1)); run_bounded "$STEP_TIMEOUT" "bench $mode $m" "$tmp/$i.json" "$WHITTLE" bench "$mode" --config "$m" --batch-size 8 --seq-len 2048 \
        --steps "$BENCH_STEPS" --warmup "$BENCH_WARMUP" --device cuda --precision "$PRECISION" --json --verbose
    done
  done
  i=$((i + 1)); run_bounded "$STEP_TIMEOUT" "bench kd pythia-160m <- pythia-410m" "$tmp/$i.json" "$WHITTLE" bench kd --config pythia-160m --teacher-config pythia-410m \
    --batch-size 8 --seq-len 2048 --steps "$BENCH_STEPS" --warmup "$BENCH_WARMUP" --device cuda --precision "$PRECISION" --json --verbose
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
    print(f"{r.get('mode', '?'):<6} {r.get('config', '?'):<12} {r.get('tokens_per_second', '-'):>12} tok/s  loss {r.get('loss', '-')} ({r.get('loss_check', '-')})  mfu {r.get('mfu', '-')}  peak {r.get('peak_bytes', '-')}")
EOF
  rm -rf "$tmp"
}

step_fixtures() { do_fixtures "$STEP_TIMEOUT" "$OUT/fixtures.log"; }

step_hf() {
  # shellcheck disable=SC2086
  run_bounded "$STEP_TIMEOUT" hf "" "$PY" bench/gpu/hf_compare.py --out "$OUT" --whittle "$WHITTLE" --deadline "$(( STEP_TIMEOUT - 10 ))" ${HF_ARGS:-}
}

# ---------------------------------------------------------------- main

main() {
  [ $# -gt 0 ] || { sed -n '2,30p' "$0"; exit 2; }
  if [ "$1" = first ]; then
    if [ "${2:-}" = --dry-run ]; then dry_run; exit $?; fi
    mkdir -p "$OUT"
    setup_libs
    run_first
  else
    mkdir -p "$OUT"
    local steps=("$@")
    [ "${steps[0]}" = all ] && steps=(probe doctor model kernels bench fixtures hf)
    setup_libs
    for s in "${steps[@]}"; do
      case "$s" in
        probe|doctor|model|kernels|bench|fixtures|hf) "step_$s" ;;
        *) log "unknown step '$s' (first, or: probe doctor model kernels bench fixtures hf all)" ;;
      esac
    done
  fi
  # The device tool returns at most 8 files from $OUT: pack when there are more.
  local n; n=$(find "$OUT" -maxdepth 1 -type f | wc -l)
  if [ "$n" -gt 8 ]; then
    (cd "$OUT" && tar czf gpu-session.tar.gz --exclude gpu-session.tar.gz --exclude session.log ./* && find . -maxdepth 1 -type f ! -name gpu-session.tar.gz ! -name session.log -delete)
    log "packed $n files into $OUT/gpu-session.tar.gz"
  fi
}

# Sourced with GPU_SESSION_LIB=1 (the tests), only the functions are defined.
[ "${GPU_SESSION_LIB:-}" = 1 ] || main "$@"
