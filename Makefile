# Two commands do all set-up on a fresh clone: `make demo` and `make test` (lint, type check, tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_RECIPE ?= recipes/autosamus_msff_quick.yaml

.PHONY: setup demo lint test test-fast test-slow bench clean

setup: $(STAMP)

# Reinstall when the package metadata changes; torch comes from pip (never uv/poetry, see README).
# sam2 (the `sam2` plugin) is an sdist whose build imports torch and compiles an optional CUDA extension:
# installed after torch, pure Python (SAM2_BUILD_CUDA=0), without build isolation (so setuptools must be in
# the venv first: Python >= 3.12 venvs have none); not in pyproject, where pip would build it in isolation.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet 'setuptools>=61'
	SAM2_BUILD_CUDA=0 $(BIN)/python -m pip install --quiet --no-build-isolation 'sam2==1.1.0'
	touch $(STAMP)

# The main job's quick preset on synthetic echo (generated on first use), then a per-class table on
# the held-out test patients and the HTML run report (its path is the last line printed; docs/report.md).
# A finished demo run is replaced: the demo always trains from scratch.
demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/samfx train $(DEMO_RECIPE) --out runs/demo
	$(BIN)/samfx eval runs/demo --split test --report

# ruff (style, imports, likely bugs), import-linter (the layers and the plugin surface,
# docs/architecture.md), then mypy over samfx and the plugins (pyproject.toml configures all three).
# mypy sees plugins/ as samfx_plugins through a link, as the package-dir mapping does.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	mkdir -p .cache/typecheck && ln -sfn ../../plugins .cache/typecheck/samfx_plugins
	$(BIN)/mypy

# The whole suite on every core (pytest-xdist; each worker has its own temporary folder).
test: lint
	$(BIN)/python -m pytest -q -n auto

# The inner loop (under a minute): layers, contracts and their pinned numbers, recipes, the registry and
# plugins, a tiny train and a tiny eval.
FAST_TESTS := tests/test_layers.py tests/test_contract_v2.py tests/test_contract_pins.py tests/test_recipe.py \
	tests/test_registry.py tests/test_plugins.py tests/test_describe.py tests/test_engine_train.py tests/test_engine_eval.py
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n auto $(FAST_TESTS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .cache/typecheck .cache/mypy .cache/ruff
