#!/usr/bin/env bash
# The GPU session on one lease (15 minutes of device time, machine start included), as one
# time-boxed call whose sections run in order of importance, so that a call cut short by the
# lease loses the least important figures (docs/gpu.md says what to carry to a machine without network):
#   paper       the paper-grade MNIST likelihood: a short search of benchmarks/gpu_search.yaml
#               (4 workers sharing the GPU for SEARCH_TIMEOUT s), `tuner refit` of its best trial for
#               as many seconds as BUDGET leaves after the later sections' reserves and EVAL_RESERVE s
#               for the test NLL with k = K (5000) -> refit_evaluation.json, refit_config.yaml,
#               refit_metrics.csv, study.txt
#   iwae        the refit's config trained on the ELBO and on IWAE for IWAE_BUDGET s each, val IWAE
#               bound with k = 100 (iwae_equal_time.json)
#   throughput  batch 128: Keras's loop, fused steps, data on device, both, plain Keras (gpu.json)
#   cache       4 workers starting together on one fresh compilation cache, then 4 on the warm
#               one: hits, misses, errors, val ELBO against a no-cache run (compile_workers.json)
# The device command (carry .whl and .data; `python` there must be a wrapper script, not a
# symlink, or python3 leaves its environment behind):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site
#   .whl/*.whl && export PYTHONPATH=$PWD:/tmp/site KERAS_BACKEND=jax TUNER_DATA_DIR=$PWD/.data
#   PYTHONUNBUFFERED=1 || exit; mkdir -p /tmp/bin && printf '#!/bin/sh\nexec python3 "$@"\n' > /tmp/bin/python
#   && chmod +x /tmp/bin/python && export PATH=/tmp/bin:$PATH; OUT=$OUT SECTIONS=paper BUDGET=530 bash benchmarks/gpu_session.sh
# with timeout_s = BUDGET + 65 (the wheels install in ~15 s before the script starts; the refit may
# run to BUDGET + 35 and the watchdog fires at BUDGET + 40). The H200 run: BUDGET=530, timeout_s 595;
# then, on the warm machine, SECTIONS=iwae,throughput,cache PAIR_CONFIG=<the refit's config, carried>
# with a BUDGET that the device time left allows (the H200 run: BUDGET=280, timeout_s 330). Its commands log to $OUT/session.log; it prints only progress
# lines. SMOKE=1 shrinks the data for a CPU rehearsal. Run it as the whole device command,
# never through a pipe (a piped run that overran its call once returned nothing).
set -u
OUT=${OUT:-results}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SECTIONS=${SECTIONS:-paper,iwae,throughput,cache}
BUDGET=${BUDGET:-520}
SEARCH_TIMEOUT=${SEARCH_TIMEOUT:-60}
EVAL_RESERVE=${EVAL_RESERVE:-110}
IWAE_BUDGET=${IWAE_BUDGET:-30}
THROUGHPUT_TIMEOUT=${THROUGHPUT_TIMEOUT:-70}
CACHE_TIMEOUT=${CACHE_TIMEOUT:-90}
K=${K:-5000}
IWAE_ARGS="--n-train 0"  # all 50,000 training images, all 10,000 validation images scored
if [ -n "${SMOKE:-}" ]; then
  K=${SMOKE_K:-3}  # the CPU rehearsal scores 10,000 test images too
  IWAE_ARGS="--quick"
fi
# The iwae section trains the refit's config; a later call (the work folder is made anew)
# names the config that an earlier call's refit saved.
PAIR_CONFIG=${PAIR_CONFIG:-}
# Seconds kept for the sections after paper: the refit trains for what is left.
IWAE_RESERVE=$((2 * IWAE_BUDGET + 70))  # two 3-epoch timing runs, two compilations, the k = 100 scoring
LATER=0
[[ $SECTIONS == *iwae* ]] && LATER=$((LATER + IWAE_RESERVE))
[[ $SECTIONS == *throughput* ]] && LATER=$((LATER + THROUGHPUT_TIMEOUT))
[[ $SECTIONS == *cache* ]] && LATER=$((LATER + CACHE_TIMEOUT))
WORK=${WORK:-/tmp/gpu_session}
LOG="$OUT/session.log"
start=$(date +%s)
elapsed() { echo $(($(date +%s) - start)); }
say() { echo "[$(elapsed) s] $*" | tee -a "$LOG"; }
cap() { local left=$((BUDGET + 30 - $(elapsed))); echo $(($1 < left ? $1 : left)); }  # a timeout within BUDGET
# Every command's output goes to $LOG only, never through a pipe: a pipeline killed at the
# device's time limit returns nothing, and a reader holding a pipe open keeps the call alive.
# The watchdog ends everything this script started (the study's workers run in their own
# sessions) BUDGET + 40 s after the start, so that the call ends and its files come back.
(
  sleep $((BUDGET + 40)) || exit 0  # killed at the end of a run that kept its budget
  echo "[watchdog] budget passed: killing the session's processes" >> "$LOG"
  pkill -KILL -f -- "-m tuner (worker|launch|refit|status)"
  pkill -KILL -f "python[0-9.]* .*(gpu|compile_reuse|model_quality)\.py"
  kill -KILL $$  # the script itself ($$ is its PID in this subshell too)
) > /dev/null 2>&1 &  # no handle on the call's output: its sleep must not keep the call open
watchdog=$!
say "card: $(timeout 30 nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo none, CPU)"
rm -rf "$WORK"  # a warm machine keeps /tmp: an earlier run's study and refit must not count
mkdir -p "$WORK"
export TUNER_STORAGE="sqlite:///$WORK/tuner.db" TUNER_ARTIFACTS="$WORK/artifacts"

if [[ $SECTIONS == *paper* ]]; then
  python - "$WORK/search.yaml" <<'PY'
import os, sys, yaml
study = yaml.safe_load(open("benchmarks/gpu_search.yaml"))
if os.environ.get("SMOKE"):
    study["data"].update(n_train=512, n_val=256)
    study["training"]["epochs"] = 3
    study["model"]["filters"] = [8, 16]
yaml.safe_dump(study, open(sys.argv[1], "w"))
PY
  gpu_flag=""
  command -v nvidia-smi >/dev/null && gpu_flag="--gpus 0 --trials-per-gpu 4"
  say "search: 4 workers for $SEARCH_TIMEOUT s"
  # Optuna's timeout stops new trials; the hard cap (TERM, then KILL 15 s later) ends a
  # launcher waiting on a stuck worker, and pkill the workers it may leave behind.
  timeout -k 15 $((SEARCH_TIMEOUT + 60)) python -m tuner launch "$WORK/search.yaml" --workers 4 $gpu_flag \
    --timeout "$SEARCH_TIMEOUT" --log-dir "$WORK/logs" >> "$LOG" 2>&1
  say "search: exit $?"
  pkill -KILL -f "tuner worker"
  tail -n 30 "$WORK"/logs/worker-0.log >> "$LOG" 2>/dev/null
  timeout 30 python -m tuner status --study mnist_gpu > "$OUT/study.txt" 2>&1
  grep -m 3 -i "best\|complete" "$OUT/study.txt"
  budget=$((BUDGET - LATER - $(elapsed) - EVAL_RESERVE))
  if ((budget < 60)); then
    say "refit: skipped, the search left $budget s of training"
  else
    say "refit: training budget $budget s"
    timeout -k 10 $((BUDGET - LATER + 35 - $(elapsed))) python -m tuner refit --study mnist_gpu --time-budget "$budget" \
      --patience 30 --k "$K" --max-memory 8 --out "$WORK/refit" >> "$LOG" 2>&1
    say "refit: exit $?"
  fi
  grep "planned\|stopped after\|test NLL (IWAE" "$LOG" | tail -n 3
  cp "$WORK/refit/evaluation.json" "$OUT/refit_evaluation.json"
  cp "$WORK/refit/config.yaml" "$OUT/refit_config.yaml"
  cp "$WORK/refit/metrics.csv" "$OUT/refit_metrics.csv"
fi

if [[ $SECTIONS == *iwae* ]]; then
  pair=${PAIR_CONFIG:-$WORK/refit/config.yaml}
  if [ -f "$pair" ]; then
    say "iwae: $pair on the ELBO and on IWAE, $IWAE_BUDGET s each"
    # shellcheck disable=SC2086  # IWAE_ARGS holds several words
    timeout -k 10 "$(cap "$IWAE_RESERVE")" python benchmarks/model_quality.py --pair "$pair" \
      --budget "$IWAE_BUDGET" $IWAE_ARGS --k 100 --out "$OUT/iwae_equal_time.json" >> "$LOG" 2>&1
    say "iwae: exit $?"
    grep -h '"iwae_gain_nats"\|"val_iwae_k100"\|"epochs"' "$OUT/iwae_equal_time.json" 2>/dev/null
  else
    say "iwae: skipped, no refit config"
  fi
fi

if [[ $SECTIONS == *throughput* ]]; then
  n=50000
  [ -n "${SMOKE:-}" ] && n=1024
  say "throughput: batch 128, four ways and plain Keras"
  (cd benchmarks && timeout -k 10 "$(cap "$THROUGHPUT_TIMEOUT")" python gpu.py --sections single --batches 128 --epochs 3 --n "$n" \
    --out "$OUT" >> "$LOG" 2>&1)
  say "throughput: exit $?"
  grep -h '"images_per_s"\|fastest' "$OUT/gpu.json" 2>/dev/null | head -n 8
fi

if [[ $SECTIONS == *cache* ]]; then
  say "cache: 4 workers on one fresh cache, then 4 on the warm one"
  (cd benchmarks && timeout -k 10 "$(cap "$CACHE_TIMEOUT")" python compile_reuse.py --n 4096 --epochs 2 --batch 128 \
    --trials 2 --workers 4 --out "$OUT/compile_workers.json" >> "$LOG" 2>&1)
  say "cache: exit $?"
  grep -h '"cache_hits"\|"cache_misses"\|max_val_elbo_diff\|"errors": \[\]' "$OUT/compile_workers.json" 2>/dev/null
fi
pkill -P "$watchdog" 2>/dev/null
kill "$watchdog" 2>/dev/null
say "session done"
