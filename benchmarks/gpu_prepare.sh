#!/usr/bin/env bash
# Run HERE (the CPU machine), before benchmarks/gpu_check.sh runs on a GPU machine: copies the pure-Python
# packages samfx needs that the GPU image lacks (segment_anything, omegaconf and its antlr4 runtime) from this
# venv into .whl/site
# (ignored by git; name `.whl` in the device tool's `carry`). The image has torch, typer, pluggy, rich, yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SITE=$("$PY" -c "import omegaconf, os; print(os.path.dirname(os.path.dirname(omegaconf.__file__)))")
rm -rf .whl/site && mkdir -p .whl/site
for pkg in segment_anything omegaconf antlr4; do
  cp -r "$SITE/$pkg" .whl/site/
done
find .whl/site -name __pycache__ -type d -prune -exec rm -rf {} +
du -sh .whl/site
