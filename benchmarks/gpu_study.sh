#!/usr/bin/env bash
# The paper-grade MNIST result on the offline GPU machine (docs/gpu.md):
# a time-boxed run of studies/mnist.yaml with 4 workers sharing one GPU, then the best trial
# evaluated on the test set with k = 5000 importance samples, and the HTML report.
#   OUT=results STUDY_TIMEOUT=150 bash benchmarks/gpu_study.sh
set -u
OUT=${OUT:-results}
STUDY=${STUDY:-studies/mnist.yaml}
NAME=${NAME:-mnist}
WORKERS=${WORKERS:-4}
mkdir -p "$OUT"
export TUNER_STORAGE="sqlite:///$OUT/study/tuner.db" TUNER_ARTIFACTS="$OUT/study/artifacts"
gpu_flag=""
command -v nvidia-smi >/dev/null && gpu_flag="--gpus 0 --trials-per-gpu $WORKERS"
start=$(date +%s)
python -m tuner launch "$STUDY" --workers "$WORKERS" $gpu_flag --timeout "${STUDY_TIMEOUT:-150}" \
  --log-dir "$OUT/logs" > "$OUT/launch.log" 2>&1
echo "launch exit $? after $(( $(date +%s) - start )) s" >> "$OUT/launch.log"
python -m tuner status --study "$NAME" > "$OUT/status.txt" 2>&1
python -m tuner export --study "$NAME" -o "$OUT/best.yaml" --weights > "$OUT/export.txt" 2>&1
t0=$(date +%s)
python -m tuner evaluate "$OUT/best.yaml" --split test --k "${K:-5000}" --json "$OUT/eval.json" > "$OUT/eval.txt" 2>&1
echo "evaluate took $(( $(date +%s) - t0 )) s" >> "$OUT/eval.txt"
python -m tuner report --study "$NAME" -o "$OUT/report.html" > "$OUT/report.txt" 2>&1
echo "total $(( $(date +%s) - start )) s" >> "$OUT/status.txt"
tail -n 3 "$OUT/launch.log" "$OUT/status.txt" "$OUT/eval.txt"
