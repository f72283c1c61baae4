#!/usr/bin/env bash
# What issue 6 still needs from a GPU, as one time-boxed run for a 15-minute device budget
# (see ../shared/gpu/README.md for the wheels and data to carry):
#   1. benchmarks/gpu.py, sections single + overhead (about 4 minutes): the four ways of running
#      steps_per_execution, mixed precision, per-step overhead -> $OUT/gpu.json
#   2. benchmarks/gpu_study.sh: studies/mnist.yaml with 4 workers sharing the GPU for
#      STUDY_TIMEOUT seconds, the best trial evaluated with k = 5000 -> $OUT/eval.json
#   3. benchmarks/gpu.py, sections concurrent + compile, if GPU_EXTRA_TIMEOUT > 0.
#   OUT=$OUT bash benchmarks/gpu_session.sh
set -u
OUT=${OUT:-results}
mkdir -p "$OUT"
OUT_ABS=$(cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT_ABS/card.txt" 2>&1
(cd benchmarks && timeout "${GPU_BENCH_TIMEOUT:-270}" python gpu.py --sections single,overhead --out "$OUT_ABS") \
  > "$OUT_ABS/gpu.log" 2>&1
echo "gpu.py exit $?" >> "$OUT_ABS/gpu.log"
OUT="$OUT_ABS" STUDY_TIMEOUT="${STUDY_TIMEOUT:-240}" bash benchmarks/gpu_study.sh
if [ "${GPU_EXTRA_TIMEOUT:-0}" -gt 0 ]; then
  mkdir -p "$OUT_ABS/extra"
  (cd benchmarks && timeout "$GPU_EXTRA_TIMEOUT" python gpu.py --sections concurrent,compile --levels 1,4,8 --variant "${VARIANT:-fused_device}" \
    --out "$OUT_ABS/extra") > "$OUT_ABS/extra/gpu.log" 2>&1
fi
tail -n 2 "$OUT_ABS/gpu.log"
