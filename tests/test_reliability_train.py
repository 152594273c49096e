"""Reliability of training runs: a long run says how long at its start (samfx.engine.train.estimate),
and SIGTERM during validation with loader workers stops at a consistent point with last.pt written."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from samfx.engine.train import estimate
from samfx.engine.train.estimate import RunEstimate, sized_for_gpu
from tests.conftest import ROOT
from tests.test_faults_rundir import TOY, _state


def _loud_toy_trainer(run_dir, *overrides):
    from samfx.config.recipe import load_recipe
    from samfx.engine.testing import toy_plugins
    from samfx.engine.train.trainer import Trainer

    plugins = toy_plugins()
    recipe = load_recipe(str(ROOT / "tests" / "recipes" / "toy.yaml"), [*TOY, *overrides], plugins.registry)
    return Trainer(recipe, run_dir, registry=plugins.registry, plugin_versions=plugins.versions(), quiet=False)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("estimated time for the whole run")]


@pytest.mark.parametrize("large_image, hint", [(1024, False), (32, True)])
def test_a_long_run_prints_its_estimate_once_at_the_start(tmp_path, monkeypatch, capsys, large_image, hint):
    monkeypatch.setattr(estimate, "THRESHOLD_S", 0.0)       # every run counts as long
    monkeypatch.setattr(estimate, "LARGE_IMAGE", large_image)  # 32: the toy encoder counts as large
    _loud_toy_trainer(tmp_path / "run").fit()
    lines = _lines(capsys.readouterr().out)
    assert len(lines) == 1, lines
    assert lines[0].startswith("estimated time for the whole run: ~") and " h on cpu (8 steps at " in lines[0]
    assert lines[0].endswith("; this recipe is sized for a GPU") == hint
    assert lines[0].endswith(" s/step)") != hint


def test_a_short_run_prints_no_estimate(tmp_path, capsys):
    _loud_toy_trainer(tmp_path / "run").fit()
    assert _lines(capsys.readouterr().out) == []


def _fake_trainer(total: int, device: str = "cpu", image_size: int = 32):
    model = SimpleNamespace(image_encoder=nn.Linear(2, 2), image_size=image_size)
    return SimpleNamespace(progress=SimpleNamespace(global_step=0), clock=SimpleNamespace(total=total),
                           model=model, device=torch.device(device))


def _drive(est: RunEstimate, trainer, seconds: list[float]) -> None:
    """One "step" event per entry of `seconds` (the clock's reading after that step), "epoch" between."""
    times = iter(seconds)
    est.clock = lambda: next(times)
    for _ in seconds:
        trainer.progress.global_step += 1
        est(trainer, "step")
        est(trainer, "epoch")


def test_the_estimate_leaves_out_the_first_step_and_uses_all_stages_steps():
    said: list[str] = []
    trainer = _fake_trainer(total=3600, image_size=1024)
    est = RunEstimate(said.append)
    _drive(est, trainer, [100.0, 102.0, 104.0, 106.0, 200.0, 300.0])  # step 1 took long: warm-up
    assert est.seconds == pytest.approx(3600 * 2.0)
    assert said == []  # 2 h exactly: not above the threshold
    trainer.clock.total = 3601
    est = RunEstimate(said.append)
    trainer.progress.global_step = 0
    _drive(est, trainer, [100.0, 102.0, 104.0, 106.0, 200.0])
    assert said == ["estimated time for the whole run: ~2.0 h on cpu (3601 steps at 2 s/step); "
                    "this recipe is sized for a GPU"]


def test_no_gpu_hint_on_a_gpu_and_a_resumed_run_times_its_own_steps():
    said: list[str] = []
    trainer = _fake_trainer(total=10_000, device="cuda", image_size=1024)
    trainer.progress.global_step = 500  # resumed: its first step here is step 501
    _drive(RunEstimate(said.append), trainer, [0.0, 1.0, 2.0, 3.0])
    assert said == ["estimated time for the whole run: ~2.8 h on cuda (10000 steps at 1 s/step)"]


def test_sized_for_gpu():
    assert not sized_for_gpu(nn.Linear(10, 10), 512)
    assert sized_for_gpu(nn.Linear(10, 10), 1024)
    big = nn.Module()
    big.w = nn.Parameter(torch.empty(0).new_empty((50_000_001,)), requires_grad=False)
    assert sized_for_gpu(big, 256)


# -- SIGTERM during validation, loader workers running -------------------------------------------------------

_VALIDATION_KILL = """
import os, signal, sys
from torch.utils.data import get_worker_info
from samfx.config.recipe import load_recipe
from samfx.engine.testing import ToyShapes, toy_plugins
from samfx.engine.train.interrupt import Interrupted
from samfx.engine.train.trainer import Trainer

class SignalsInValidation(ToyShapes):
    '''Validation images; the first one a loader worker loads (the validation's) sends SIGTERM to the whole
    process group, as Slurm does, and marks that it did.'''
    def __getitem__(self, index):
        mark = sys.argv[2] + ".sent"
        if get_worker_info() is not None and not os.path.exists(mark):
            open(mark, "w").close()
            os.killpg(os.getpgid(0), signal.SIGTERM)
        return super().__getitem__(index)

plugins = toy_plugins()
recipe = load_recipe(sys.argv[1], sys.argv[3:], plugins.registry)
datasets = {"train": ToyShapes(16, 32, seed=1, augment=True), "val": SignalsInValidation(4, 32, seed=2)}
try:
    Trainer(recipe, sys.argv[2], registry=plugins.registry, plugin_versions=plugins.versions(),
            datasets=datasets, quiet=True).fit()
except Interrupted as exc:
    print(exc, file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def test_sigterm_during_validation_with_loader_workers_saves_last_pt_after_the_epoch(tmp_path):
    """The validation loader's workers ignore the signal; the parent finishes the validation and
    the epoch (best.pt, last.pt) and stops there: exit 143, resumable from step 4 (end of epoch 1)."""
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-c", _VALIDATION_KILL, str(ROOT / "tests" / "recipes" / "toy.yaml"),
                        str(run), *TOY, "data.num_workers=2", "eval.batch_size=2"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, start_new_session=True)
    assert (tmp_path / "run.sent").exists(), r.stderr[-3000:]
    assert r.returncode == 143, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1] == (f"interrupted (SIGTERM) after step 4, saved in {run / 'last.pt'}; "
                                                 f"continue with `samfx train --resume {run}`")
    p = _state(run / "last.pt")["progress"]
    assert (p["epoch"], p["batch"], p["global_step"], p["finished"]) == (1, 0, 4, False)
    assert p["history"][0]["last"]["val/dice"] >= 0  # the validation completed
    assert (run / "best.pt").is_file()
