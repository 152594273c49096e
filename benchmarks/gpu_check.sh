#!/usr/bin/env bash
# GPU performance check of SAMUS / AutoSAMUS vit_b at 256² (docs/performance.md). Runs ON the GPU machine.
#
#   here:   bash benchmarks/gpu_prepare.sh           # once: pure-Python deps into .whl/site
#   device: run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
#
# Writes to $OUT (default benchmarks/results/gpu): summary.md (table + targets), log.txt, env.txt and
# gpu_check.tgz (every bench JSON and torch.profiler table). Under 8 minutes on an H100: eager runs first,
# compiled ones last and skipped when the time budget (BUDGET_S, default 420 s of bench time) is spent.
# Local dry run on CPU (tiny shapes, checks the script itself): DRY=1 PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-$([ "${DRY:-0}" = 1 ] && echo 300 || echo 420)}
WORK=$(mktemp -d)
mkdir -p "$OUT" "$WORK/prof"
export PYTHONUNBUFFERED=1
exec > >(tee "$OUT/log.txt") 2>&1
TEE_PID=$!

# -- environment: samfx importable with its plugin entry points, without network --------------------------
export PYTHONPATH="$PWD:$PWD/.whl/site${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(not m.entry_points(group='samfx.plugins'))" 2>/dev/null; then
  SITE=$WORK/site
  "$PY" - "$SITE" <<'EOF'
import pathlib, sys, tomllib
site = pathlib.Path(sys.argv[1]); info = site / "samfx-0.0.dist-info"; info.mkdir(parents=True)
proj = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: samfx\nVersion: {proj['version']}\n")
eps = "".join(f"{k} = {v}\n" for k, v in proj["entry-points"]["samfx.plugins"].items())
(info / "entry_points.txt").write_text(f"[samfx.plugins]\n{eps}")
(site / "samfx_plugins").symlink_to(pathlib.Path.cwd() / "plugins")
EOF
  export PYTHONPATH="$PYTHONPATH:$SITE"
fi
{ date -u; nvidia-smi 2>/dev/null || echo "no nvidia-smi"; "$PY" -c "import torch, sys; print(sys.version); \
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); \
print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
"$PY" -m samfx.cli.main list-plugins || { echo "samfx does not import; did benchmarks/gpu_prepare.sh run and .whl travel?"; exit 1; }

if [ "${DRY:-0}" = 1 ]; then   # tiny CPU shapes: exercise every command of this script quickly
  DEV=cpu; S=(recipes/samus.yaml model.image_encoder.size=tiny model.image_encoder.image_size=128)
  A=(recipes/autosamus.yaml model.image_encoder.size=tiny model.image_encoder.image_size=128)
  SHAPE=(--batch 2 --infer-batch 2); STEPS=(--steps 1 --warmup 1); CSTEPS=(--steps 1 --warmup 1)
else
  DEV=cuda; S=(recipes/samus.yaml); A=(recipes/autosamus.yaml)
  SHAPE=(--batch 8 --infer-batch 32); STEPS=(--steps 20 --warmup 5); CSTEPS=(--steps 20 --warmup 3)
fi
bench() {  # bench NAME TIMEOUT_S ARGS...: one samfx bench process, its JSON into $WORK
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET_S - SECONDS))
  if [ "$left" -lt 30 ]; then echo "== skip $name: bench time budget spent"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s, ${SECONDS}s used): samfx bench $*"
  timeout "$limit" "$PY" -m samfx.cli.main bench "$@" --device "$DEV" --out "$WORK/$name.json" \
    || echo "== $name: exit $?"
}

# 0. the fused attention kernels run under bf16 (flash for rel-pos fold, memory-efficient for the bias)
echo "== pytest: CUDA kernel checks"
timeout 120 "$PY" -m pytest tests/test_fast_path.py -q -k cuda -p no:cacheprovider -rs 2>&1 | tail -15 \
  | tee "$WORK/cuda_kernel_tests.txt"
# 1. fast path, eager: the issue's shapes (train batch 8, inference batch 32 and 1), fp32 and bf16, profiled
bench samus_eager 150 "${S[@]}" --mode eager --precision fp32 --precision bf16 "${SHAPE[@]}" \
  --infer-batch 1 "${STEPS[@]}" --profile "$WORK/prof"
# 2. reference path (segment-anything's modules and numerics; the authors' code is slower still)
bench samus_reference 90 "${S[@]}" model.image_encoder.fast_attention=false --mode eager \
  --precision fp32 --precision bf16 "${SHAPE[@]}" "${STEPS[@]}"
# 3. levers one at a time, eager bf16 training: rel-pos as an additive bias (auto = fold on CUDA),
#    activation checkpointing (memory), channels_last for the non-SAM convs
SAMFX_REL_POS=bias bench samus_relpos_bias 60 "${S[@]}" --only train --mode eager --precision bf16 "${SHAPE[@]}" "${STEPS[@]}"
bench samus_act_ckpt 60 "${S[@]}" train.activation_checkpointing=true --only train --mode eager --precision bf16 \
  "${SHAPE[@]}" "${STEPS[@]}"
bench samus_channels_last 60 "${S[@]}" train.channels_last=true --only train --mode eager --precision bf16 \
  "${SHAPE[@]}" "${STEPS[@]}"
# 4. AutoSAMUS: the APG stage (SAMUS frozen), eager
bench autosamus_apg_eager 60 "${A[@]}" --stage apg --mode eager --precision fp32 --precision bf16 "${SHAPE[@]}" "${STEPS[@]}"
# 5. torch.compile (the first step holds the compile time): bf16 first, fp32 if time is left
bench samus_compiled_bf16 240 "${S[@]}" --mode compiled --precision bf16 "${SHAPE[@]}" "${CSTEPS[@]}" --profile "$WORK/prof"
bench samus_compiled_fp32 200 "${S[@]}" --mode compiled --precision fp32 "${SHAPE[@]}" "${CSTEPS[@]}"

"$PY" benchmarks/summarize.py --targets "$WORK"/*.json > "$OUT/summary.md"
{ echo; echo "CUDA kernel checks (tests/test_fast_path.py -k cuda):"; cat "$WORK/cuda_kernel_tests.txt"; } >> "$OUT/summary.md"
cat "$OUT/summary.md"
tar czf "$OUT/gpu_check.tgz" -C "$WORK" --exclude site .
echo "== done in ${SECONDS}s; files in $OUT"
exec >&- 2>&-
wait "$TEE_PID"
