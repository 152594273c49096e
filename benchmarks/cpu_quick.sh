#!/usr/bin/env bash
# The CPU numbers of docs/performance.md: training steps of the quick preset (eager/compiled x fp32/bf16
# x 1/2 threads), its inference, activation-checkpointing memory, and SAMUS vit_b for reference.
# Usage: benchmarks/cpu_quick.sh [OUT_DIR]        (default benchmarks/results/cpu)
# Takes 1-2 hours on a busy 2-core CPU, most of it torch.compile (inductor's C++ compile; its FX graph
# cache makes the second thread setting cheaper). Summary: python benchmarks/summarize.py OUT_DIR/*.json
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/cpu}
SAMFX=${SAMFX:-.venv/bin/samfx}
Q=recipes/autosamus_msff_quick.yaml
mkdir -p "$OUT"
run() { echo "+ $*" >&2; "$@"; }

for t in 1 2; do   # eager, both stages, fp32 and bf16
  OMP_NUM_THREADS=$t run $SAMFX bench $Q --device cpu --threads $t --only train --mode eager \
    --precision fp32 --precision bf16 --steps 5 --warmup 1 --out "$OUT/quick_eager_t$t.json" >/dev/null
done
# train.channels_last: conv weights channels-last too (the SAM/SAMUS maps already are)
OMP_NUM_THREADS=2 run $SAMFX bench $Q train.channels_last=true --device cpu --threads 2 --only train --mode eager \
  --precision fp32 --steps 5 --warmup 1 --out "$OUT/quick_eager_t2_channels_last.json" >/dev/null
# the reference path (segment-anything's modules) for comparison
OMP_NUM_THREADS=2 run $SAMFX bench $Q model.image_encoder.fast_attention=false --device cpu --threads 2 --only train \
  --mode eager --precision fp32 --steps 5 --warmup 1 --out "$OUT/quick_eager_t2_reference.json" >/dev/null
# inference at the preset's eval batch, fully automatic (APG)
OMP_NUM_THREADS=2 run $SAMFX bench $Q --device cpu --threads 2 --only infer --infer-batch 16 --mode eager \
  --precision fp32 --precision bf16 --steps 5 --warmup 1 --out "$OUT/quick_infer_t2.json" >/dev/null
for t in 2 1; do   # compiled, stage 1 (the heavy one), fp32 and bf16
  OMP_NUM_THREADS=$t run $SAMFX bench $Q --device cpu --threads $t --only train --stage samus_msff \
    --mode compiled --precision fp32 --precision bf16 --steps 3 --warmup 1 --out "$OUT/quick_compiled_t$t.json" >/dev/null
done
# activation checkpointing: peak RSS of separate processes, SAMUS vit_b at batch 2
for ac in false true; do
  OMP_NUM_THREADS=2 run $SAMFX bench recipes/samus.yaml train.activation_checkpointing=$ac --device cpu --threads 2 \
    --batch 2 --only train --mode eager --precision fp32 --steps 2 --warmup 1 --out "$OUT/vit_b_ac_$ac.json" >/dev/null
done
# SAMUS vit_b for reference: fast path vs segment-anything's numerics (reference path), train + inference
for fast in true false; do
  OMP_NUM_THREADS=2 run $SAMFX bench recipes/samus.yaml model.image_encoder.fast_attention=$fast --device cpu \
    --threads 2 --batch 2 --infer-batch 2 --mode eager --precision fp32 --steps 3 --warmup 1 \
    --out "$OUT/vit_b_fast_$fast.json" >/dev/null
done
.venv/bin/python benchmarks/summarize.py "$OUT"/*.json
