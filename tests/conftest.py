"""Shared test set-up: few threads (CI has 2 cores), a private samfx cache per session, and the toy
plugins, a one-step toy run and an in-process CLI for modules that do not define their own."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SAMFX_CACHE", str(ROOT / ".cache" / "test-cache"))


def pytest_configure(config):
    try:
        import torch

        # tiny models: one thread is as fast and does not fight parallel test processes
        torch.set_num_threads(int(os.environ.get("SAMFX_TEST_THREADS", "1")))
    except ImportError:
        pass


def pytest_sessionstart(session):
    import shutil
    import tempfile

    free = shutil.disk_usage(tempfile.gettempdir()).free / 2**30
    if free < 4:  # a full disk shows up as torch.save failing in some fixture's set-up
        sys.stderr.write(f"warning: only {free:.1f} GiB free in {tempfile.gettempdir()}; the suite writes up "
                         f"to ~1 GiB there at once (random checkpoints); free some space if tests fail "
                         f"writing files\n")


def run_samfx(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 600):
    """Run the CLI in a subprocess (fresh interpreter, as a user would)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "samfx.cli.main", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=timeout)


@pytest.fixture
def samfx_cli():
    return run_samfx


@pytest.fixture(scope="module")
def plugins():
    """samfx.engine.testing's toy plugins (with the installed ones)."""
    from samfx.engine.testing import toy_plugins

    return toy_plugins()


@pytest.fixture(scope="module")
def toy_run(plugins, tmp_path_factory):
    """A toy run trained for one step (tests/toy_runs.py), once per module."""
    from tests.toy_runs import train_toy

    return train_toy(tmp_path_factory.mktemp("toy") / "run", plugins,
                     "train.stages.0.max_steps=1", "train.stages.0.epochs=1")


@pytest.fixture
def cli(plugins, monkeypatch):
    """``cli(*args)``: samfx's CLI in-process (typer's runner) with the toy plugins loaded."""
    from typer.testing import CliRunner

    from samfx.cli.main import app
    from samfx.contracts import plugins as pluginmanager

    monkeypatch.setattr(pluginmanager, "_CACHE", plugins)
    return lambda *args: CliRunner().invoke(app, [str(a) for a in args])
