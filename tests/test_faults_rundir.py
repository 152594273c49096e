"""Run folders cannot be corrupted: every check before any write, one `samfx train` per folder,
default names that cannot collide, SIGTERM like Ctrl-C, one-line errors for a damaged last.pt."""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import ROOT

TINY = ROOT / "tests" / "recipes" / "tiny_sam.yaml"
# toy runs: 16 images, global batch 2, grad_accum 2: 4 optimizer steps per epoch, 2 epochs; last.pt
# only at epoch ends, so a mid-epoch last.pt can only come from the stop
TOY = ["data.source.train=16", "data.batch_size=2", "train.grad_accum=2", "train.save_every=0",
       "train.stages.0.optimizer.name=adamw"]


def _cli(*args):
    from samfx.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _toy_trainer(run_dir, *overrides, resume=False, callbacks=()):
    from samfx.config.recipe import load_recipe
    from samfx.engine.testing import toy_plugins
    from samfx.engine.train.trainer import Trainer

    plugins = toy_plugins()
    recipe = load_recipe(str(ROOT / "tests" / "recipes" / "toy.yaml"), [*TOY, *overrides], plugins.registry)
    return Trainer(recipe, run_dir, registry=plugins.registry, plugin_versions=plugins.versions(), resume=resume,
                   callbacks=list(callbacks), quiet=True)


def _rows(run_dir: Path) -> list[dict[str, str]]:
    try:
        with open(run_dir / "log.csv", newline="") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        return []


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished one-step tiny_sam run; tests work on copies."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    r = _cli("train", TINY, "train.stages.0.max_steps=1", "--out", run, "--quiet")
    assert r.exit_code == 0, r.output
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


# -- 1: a rejected --resume changes nothing -------------------------------------------------------------

def test_rejected_resume_leaves_the_folder_byte_for_byte(tiny_run, tmp_path, monkeypatch):
    run = _copy(tiny_run, tmp_path)
    before = _hashes(run)
    with monkeypatch.context() as m:
        m.setenv("SAMFX_CACHE", str(tmp_path / "cache"))
        r = _cli("train", ROOT / "recipes" / "samus_quick.yaml", "--resume", run)
        assert not (tmp_path / "cache").exists()  # rejected before any data was opened
    assert r.exit_code == 2
    line = _error_line(r.stderr)
    assert line.startswith(f"error: --resume {run}: the recipe differs from the run's at ")
    assert line.endswith(f"resume with the run's recipe (`samfx train --resume {run}`) or start a new run")
    assert _hashes(run) == before
    r = _cli("train", "--resume", run, "--quiet")  # the command the message suggests
    assert r.exit_code == 0, r.output


def test_resume_of_a_missing_folder_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMFX_CACHE", str(tmp_path / "cache"))
    missing = tmp_path / "runs" / "missing"
    r = _cli("train", TINY, "--resume", missing)
    assert r.exit_code == 2
    assert _error_line(r.stderr) == (f"error: {missing}: nothing to resume (no such folder); check the path, or "
                                     f"start a new run without --resume")
    r = _cli("train", "--resume", missing)  # no RECIPE: the run's recipe.yaml is looked for first
    assert r.exit_code == 2
    assert _error_line(r.stderr) == f"error: --resume {missing}: no such run folder; check the path"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


# -- 10 (resume half): a damaged last.pt is a one-line error ---------------------------------------------

def _truncate(run: Path) -> None:
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])


def _best_over_last(run: Path) -> None:
    shutil.copyfile(run / "best.pt", run / "last.pt")


def _drop_weights(run: Path) -> None:
    obj = _state(run / "last.pt")
    obj["model"] = dict(list(obj["model"].items())[:32])
    torch.save(obj, run / "last.pt")


@pytest.mark.parametrize("damage, what, todo", [
    (_truncate, "last.pt: cannot read checkpoint",
     "restore last.pt from a copy, or start a new run from its weights (model.checkpoint={run}/best.pt)"),
    (_best_over_last, "last.pt holds weights but no training state (a copy of best.pt?)",
     "put back the last.pt that `samfx train` wrote, or start a new run from its weights"),
    (_drop_weights, "last.pt: weights do not fit the model rebuilt from its recipe (170 missing, 0 unexpected",
     "restore last.pt from a copy, or start a new run"),
], ids=["truncated", "best.pt-copied-over", "weights-missing"])
def test_resume_from_a_damaged_last_pt_is_one_line_and_changes_nothing(tiny_run, tmp_path, damage, what, todo):
    run = _copy(tiny_run, tmp_path)
    damage(run)
    before = _hashes(run)
    r = _cli("train", "--resume", run)
    assert r.exit_code == 2, r.output
    line = _error_line(r.stderr)
    assert what in line and todo.format(run=run) in line, line
    assert _hashes(run) == before


# -- 2: one trainer per folder; default names -------------------------------------------------------------

def test_a_locked_folder_is_refused_at_once_naming_the_holder(tmp_path, monkeypatch):
    from samfx.engine.run.lock import RunLock

    monkeypatch.setenv("SAMFX_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    run.mkdir()
    lock = RunLock.acquire(run)  # this process holds it
    try:
        for args in (["--out", run], ["--resume", run]):
            r = _cli("train", TINY, *args)
            assert r.exit_code == 2
            assert _error_line(r.stderr) == (f"error: {run}: another `samfx train` is using this run folder "
                                             f"(PID {os.getpid()}); wait for it to finish or stop it, or choose "
                                             f"another --out")
        assert [p.name for p in run.iterdir()] == [".lock"] and not (tmp_path / "cache").exists()
    finally:
        lock.release()
    assert list(run.iterdir()) == []


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    """Its holder was SIGKILLed while a child it forked (like a DataLoader worker) lived on."""
    run = tmp_path / "run"
    run.mkdir()
    code = ("import os, signal, sys, time\nfrom pathlib import Path\nfrom samfx.engine.run.lock import RunLock\n"
            "RunLock.acquire(Path(sys.argv[1]))\nchild = os.fork()\n"
            "if child == 0:\n    time.sleep(120)\n    os._exit(0)\n"
            "Path(sys.argv[2]).write_text(str(child))\nos.kill(os.getpid(), signal.SIGKILL)\n")
    r = subprocess.run([sys.executable, "-c", code, str(run), str(tmp_path / "child")], cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    assert r.returncode == -signal.SIGKILL
    child = int((tmp_path / "child").read_text())
    try:
        dead = (run / ".lock").read_text().split()[0]
        seen = []
        trainer = _toy_trainer(run, "train.stages.0.max_steps=1",
                               callbacks=[lambda t, event: seen.append((run / ".lock").read_text().split()[0])])
        trainer.fit()
    finally:
        os.kill(child, signal.SIGKILL)
    assert dead != str(os.getpid()) and set(seen) == {str(os.getpid())}  # the lock file names the holder
    assert (run / "last.pt").is_file() and not (run / ".lock").exists()


def test_default_run_names_of_runs_started_in_the_same_second_differ(tmp_path, monkeypatch):
    real = time.strftime
    monkeypatch.setattr(time, "strftime", lambda fmt, *t: "20250102-030405" if fmt == "%Y%m%d-%H%M%S"
                        else real(fmt, *t))
    runs = []
    for _ in range(2):
        trainer = _toy_trainer(None, f"train.out_dir={tmp_path}", "train.stages.0.max_steps=1")
        trainer.fit()
        runs.append(trainer.run_dir)
    assert [r.name for r in runs] == ["toy-20250102-030405", "toy-20250102-030405-2"]
    assert all(_state(r / "last.pt")["progress"]["finished"] for r in runs)


# -- 4: SIGTERM behaves like Ctrl-C -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def toy_full(tmp_path_factory):
    """An uninterrupted toy run."""
    full = tmp_path_factory.mktemp("toy") / "full"
    _toy_trainer(full).fit()
    return full


@pytest.mark.parametrize("sig, step", [("TERM", 3), ("INT", 4)])
def test_a_stop_signal_writes_last_pt_at_the_step_and_the_resumed_run_is_exact(toy_full, tmp_path, sig, step):
    """Step 3 is mid-epoch, step 4 the last of epoch 1 (before its validation)."""
    full, stopped = toy_full, tmp_path / "stopped"
    r = subprocess.run([sys.executable, "-m", "samfx.engine.testing", str(stopped), *TOY, "--kill-at-step", str(step),
                        "--kill-signal", sig], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert f"interrupted (SIG{sig}) after step {step}, saved in {stopped / 'last.pt'}" in r.stderr, r.stderr[-2000:]
    p = _state(stopped / "last.pt")["progress"]
    assert (p["epoch"], p["batch"], p["global_step"], p["finished"]) == (0, 2 * step, step, False)
    _toy_trainer(stopped, resume=True).fit()
    a, b = _state(full / "last.pt"), _state(stopped / "last.pt")
    assert a["progress"]["global_step"] == b["progress"]["global_step"] == 8 and b["progress"]["finished"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [(r["global_step"], r["key"], r["value"]) for r in _rows(full)] == \
           [(r["global_step"], r["key"], r["value"]) for r in _rows(stopped)]


def _wait_for(condition, proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no progress within {timeout} s"
        time.sleep(0.2)


def test_cli_sigterm_exits_143_resumably_and_a_concurrent_run_is_refused(tmp_path):
    """SIGTERM goes to the whole process group, loader workers included, as Slurm and a terminal do."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "samfx.cli.main", "train", str(TINY), "--out", str(run), "--quiet",
           "train.stages.0.epochs=1000", "train.stages.0.max_steps=100000", "data.num_workers=2"]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        _wait_for(lambda: any(r["key"] == "train/step_loss" for r in _rows(run)), first, timeout=300)
        second = _cli("train", TINY, "--out", run, "train.stages.0.max_steps=1")  # from this process
        assert second.exit_code == 2
        assert f"error: {run}: another `samfx train` is using this run folder (PID {first.pid});" in \
            _error_line(second.stderr)
        os.killpg(first.pid, signal.SIGTERM)
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 143, err[-3000:]
    step = _state(run / "last.pt")["progress"]["global_step"]
    assert "Traceback" not in err, err
    assert err.strip().splitlines() == [f"interrupted (SIGTERM) after step {step}, saved in {run / 'last.pt'}; "
                                        f"continue with `samfx train --resume {run}`"]  # a stop, not an error
    assert not (run / ".lock").exists()
    r = _cli("train", "--resume", run, f"train.stages.0.max_steps={step + 1}", "eval.overlays=0",
             "data.num_workers=0", "--quiet")
    assert r.exit_code == 0, r.output
    p = _state(run / "last.pt")["progress"]
    assert p["finished"] and p["global_step"] == step + 1
