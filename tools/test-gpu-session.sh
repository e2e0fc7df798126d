#!/usr/bin/env bash
# Unit tests of tools/gpu-session.sh that need no GPU, no .NET and no torch (run by GpuSessionToolsTests in CI):
# the deadline arithmetic, the dry-run budget, partial-result writing for a timed-out / failed / skipped step, and a
# whole `first` run against a stub whittle that checks the promised files, the 8-file limit and --verbose.
#   bash tools/test-gpu-session.sh      -> "N passed, M failed"; exit 1 on any failure
set -uo pipefail
cd "$(dirname "$0")/.."
GPU_SESSION_LIB=1 source tools/gpu-session.sh
PY=/usr/bin/python3
passed=0 failed=0
check() {   # check NAME EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL $1: expected '$2', got '$3'" >&2; fi
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT; [ -n "${KEEP:-}" ] && trap - EXIT && echo "work: $work"

# ---- deadline arithmetic: step_limit PLANNED MINIMUM LEFT LATER_PLANNED
check "on schedule: the planned time"                    60  "$(step_limit 60 20 450 390)"
check "time saved before flows to this step"             100 "$(step_limit 60 20 490 390)"
check "behind schedule: this step keeps its plan"        60  "$(step_limit 60 20 250 390)"
check "never more than is left"                          30  "$(step_limit 85 20 30 0)"
check "below the minimum: skipped"                       0   "$(step_limit 85 60 59 0)"
check "nothing left"                                     0   "$(step_limit 20 5 0 430)"
check "later_planned after doctor (index 1)"             370 "$(later_planned 1)"
check "later_planned after the last step"                0   "$(later_planned $(( ${#FIRST_PLAN[@]} - 1 )))"
# the planned times of the default plan are exactly the default deadline, so on schedule every step gets its plan
total=0; for s in "${FIRST_PLAN[@]}"; do read -r -a f <<<"$s"; total=$((total + f[1])); done
check "the plan sums to the default deadline"            450 "$total"

# ---- dry run
out=$(bash tools/gpu-session.sh first --dry-run); rc=$?
check "dry run fits (exit)" 0 "$rc"
check "dry run says it fits" fits "$(tail -1 <<<"$out")"
check "dry run lists every step" 8 "$(grep -cE '^(probe|doctor|model|fixtures|eval|train|kernels|compile) ' <<<"$out")"
check "eval (ours, then HF) comes before the compile step" "eval compile" "$(grep -oE '^(eval|compile)' <<<"$out" | tr '\n' ' ' | sed 's/ $//')"
out=$(COMMAND_LIMIT=500 bash tools/gpu-session.sh first --dry-run); rc=$?
check "a worst case over the command limit does not fit" 1 "$rc"
check "and says why" 1 "$(grep -c 'exceeds the command limit' <<<"$out")"

# ---- partial results
OUT=$work/partial; mkdir -p "$OUT"; LOG=$OUT/session.log; KILL_GRACE=1
t0=$SECONDS
exec 3>&1 1>/dev/null   # run_bounded logs to stdout too
run_bounded 2 slow "$OUT/slow.json" bash -c 'echo "{\"partial\": "; echo started >&2; sleep 30'
check "a timed-out step is stopped at its limit" 1 "$(( SECONDS - t0 < 10 ))"
check "timeout exit status" 124 "$RC"
mark_json "$OUT/slow.json" slow "$(status_of $RC)" 2 "$RC"
check "timed-out step: valid JSON marker" "slow|timed out|2|124" "$($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["step"], d["status"], d["limit_s"], d["exit"], sep="|")' "$OUT/slow.json")"
check "timed-out step: its partial output is kept" '{"partial": ' "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["partial_output"])' "$OUT/slow.json")"
check "its stderr went to the session log" 1 "$(grep -c '^started$' "$LOG")"
run_bounded 5 term-ignorer "$OUT/stubborn.json" bash -c 'trap "" TERM; sleep 30'
check "a step that ignores SIGTERM is killed (timeout -k)" 137 "$RC"
echo '{"ok": false, "error": "CUDA backend: DllNotFoundException: libcublas"}' >"$OUT/doctor.json"
mark_json "$OUT/doctor.json" doctor "failed (exit 1)" 60 1
check "a failed step's own JSON (doctor's error field) is kept as it is" "CUDA backend: DllNotFoundException: libcublas" \
  "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["error"])' "$OUT/doctor.json")"

exec 1>&3 3>&-
# ---- a whole first plan against a stub whittle (python without torch: HF parts skip)
stub=$work/whittle
cat >"$stub" <<'EOF'
#!/usr/bin/env bash
echo "$*" >>"$(dirname "$0")/calls"
case "$1 $*" in
  *--verbose*) ;;
  *) echo "error: called without --verbose" >&2; exit 3 ;;
esac
case "$1" in
  doctor) case "$*" in *--model*) echo '{"ok": true, "model_parity": []}' ;; *) sleep "${STUB_DOCTOR_SLEEP:-0}"; echo '{"ok": true, "parity": []}' ;; esac ;;
  bench) echo '{"mode": "'"$2"'", "tokens_per_second": 10.0, "loss": 8.3, "loss_check": "ok"}' ;;
esac
EOF
chmod +x "$stub"
OUT=$work/first
OUT=$OUT WHITTLE=$stub PYTHON=$PY STUB_DOCTOR_SLEEP=8 DEADLINE=120 KILL_GRACE=1 MODEL=tiny LLAMA_MODEL=tiny-llama KD_TEACHER=tiny BATCH=1 SEQ_LEN=16 \
  WHITTLE_CUDA_LIB_DIR=/nonexistent bash tools/gpu-session.sh first >/dev/null 2>&1
check "first: 8 files at the top of OUT" 8 "$(find "$OUT" -maxdepth 1 -type f | wc -l)"
for f in session.log doctor.json doctor-model.json fixtures.log hf_compare-eval.json hf_compare-train.json kernels.json hf_compare-compile.json; do
  check "first: $f exists" 1 "$([ -s "$OUT/$f" ] && echo 1 || echo 0)"
done
for f in doctor.json doctor-model.json hf_compare-eval.json hf_compare-train.json kernels.json hf_compare-compile.json; do
  check "first: $f is JSON" 0 "$($PY -c 'import json,sys; json.load(open(sys.argv[1]))' "$OUT/$f" >/dev/null 2>&1; echo $?)"
done
check "first: doctor ran (first steps keep their plan when the deadline is short)" 1 "$(grep -c '^doctor --json --verbose' "$work/calls")"
check "first: every whittle call had --verbose" 0 "$(grep -vc -- --verbose "$work/calls")"
check "first: model runs doctor --model --skip-ops" 1 "$(grep -c -- 'doctor --model --skip-ops' "$work/calls")"
check "first: ours ran in the eval step" "10.0" "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"]["tiny/eval"]["ours"]["tokens_per_second"])' "$OUT/hf_compare-eval.json")"
# the Llama model runs after GPT-NeoX in each step (its train run is the first cut on a loaded machine: eval only here)
check "first: ours ran for tiny-llama/eval" "10.0" "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"]["tiny-llama/eval"]["ours"]["tokens_per_second"])' "$OUT/hf_compare-eval.json")"
check "first: the Llama model's bench eval was called by name" 1 "$(grep -c -- '^bench eval --config tiny-llama ' "$work/calls")"
check "first: HF skipped with the reason (no torch here)" 1 "$($PY -c 'import json,sys; print(int("not importable" in json.load(open(sys.argv[1]))["results"]["tiny/eval"]["hf_eager"]["skipped"]))' "$OUT/hf_compare-eval.json")"
check "first: fixtures skipped with the reason" 1 "$(grep -c '^skipped: torch/transformers not importable' "$OUT/fixtures.log")"
check "first: the plan's summary is logged" 1 "$(grep -c '^== first plan done' "$OUT/session.log")"

# a deadline too short for the later steps: they are skipped, and their files say so
OUT=$work/short
OUT=$OUT WHITTLE=$stub PYTHON=$PY DEADLINE=60 KILL_GRACE=1 MODEL=tiny KD_TEACHER=tiny BATCH=1 SEQ_LEN=16 \
  WHITTLE_CUDA_LIB_DIR=/nonexistent bash tools/gpu-session.sh first >/dev/null 2>&1
check "short deadline: still 8 files" 8 "$(find "$OUT" -maxdepth 1 -type f | wc -l)"
check "short deadline: compile skipped, marked in its file" 1 "$($PY -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["status"].startswith("skipped")))' "$OUT/hf_compare-compile.json")"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
