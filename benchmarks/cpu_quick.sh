#!/usr/bin/env bash
# The CPU numbers of docs/performance.md. Usage: benchmarks/cpu_quick.sh [OUT_DIR]  (default benchmarks/results/cpu)
# About 40 minutes on a 2-core CPU (most of it torch.compile). The machine is shared, so settings are compared
# interleaved within one process (benchmarks/cpu_matrix.py); memory is compared between separate processes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/cpu}
PY=${PYTHON:-.venv/bin/python}
SAMFX=${SAMFX:-.venv/bin/samfx}
Q=recipes/autosamus_msff_quick.yaml
mkdir -p "$OUT"
run() { echo "+ $*" >&2; "$@"; }

# 1. quick preset, stage 1 (clicks; encoder + decoder + MSFF train): eager/compiled x fp32/bf16 x 1/2 threads,
#    and the reference path (segment-anything's modules), interleaved over 5 rounds
run $PY benchmarks/cpu_matrix.py $Q --stage samus_msff --reference --rounds 5 --out "$OUT/matrix_quick_stage1.json"
# 2. quick preset, stage 2 (APG + decoder train), eager
run $PY benchmarks/cpu_matrix.py $Q --stage apg --no-compile --rounds 5 --out "$OUT/matrix_quick_apg.json"
# 3. SAMUS vit_b at batch 2: fast path vs reference path, 2 threads
run $PY benchmarks/cpu_matrix.py recipes/samus.yaml --batch 2 --threads 2 --precision fp32 --no-compile --reference \
  --rounds 3 --out "$OUT/matrix_vit_b.json"
# 4. samfx bench on the quick preset (both stages, inference at the eval batch), eager fp32, 2 threads
OMP_NUM_THREADS=2 run $SAMFX bench $Q --device cpu --threads 2 --mode eager --precision fp32 --infer-batch 16 \
  --steps 5 --warmup 1 --out "$OUT/bench_quick.json" >/dev/null
# 5. activation checkpointing: peak RSS of separate processes, SAMUS vit_b training at batch 2
for ac in false true; do
  OMP_NUM_THREADS=2 run $SAMFX bench recipes/samus.yaml train.activation_checkpointing=$ac --device cpu --threads 2 \
    --batch 2 --only train --mode eager --precision fp32 --steps 2 --warmup 1 --out "$OUT/bench_vit_b_ac_$ac.json" >/dev/null
done
$PY benchmarks/summarize.py "$OUT"/bench_*.json
