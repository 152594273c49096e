"""A component that builds but cannot run fails in `show` and at the start of `train`, before any stage
trained; the check leaves training bit-identical (issue #20, item 4)."""
from __future__ import annotations

import random

import numpy as np
import torch

from samfx.config.recipe import load_recipe
from samfx.model.build import build_model
from samfx.model.forward_check import check_forward
from tests.conftest import ROOT, run_samfx
from tests.test_plugin_errors import FLAKY
from tests.test_plugins import fake_dist

TINY = ROOT / "tests" / "recipes" / "tiny_sam.yaml"


def _one_line(res) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def test_show_runs_the_prompt_generator_once():
    # builds fine; only a forward on 3-class data finds the missing task-token set
    res = run_samfx("show", str(TINY), "model.prompt={name: apg, tasks: 2}")
    assert _one_line(res) == ("error: prompt 'apg': class id 3 has no task-token set (tasks: 2, ids 1..2); set "
                              "model.prompt.tasks to the largest class id")
    assert run_samfx("show", str(TINY), "model.prompt={name: apg, tasks: 2}", "--no-check").returncode == 0


def test_train_fails_before_stage_one_when_stage_two_cannot_run(tmp_path):
    (tmp_path / "site").mkdir()
    cache = tmp_path / "cache"
    env = {**fake_dist(tmp_path / "site", "flaky", FLAKY), "SAMFX_CACHE": str(cache)}
    stages = ("train.stages=[{name: one, trainable: [mask_decoder], max_steps: 1}, "
              "{name: two, trainable: [mask_decoder], max_steps: 1, prompt: {name: flaky, fail: forward}}]")
    res = run_samfx("train", str(TINY), "--out", str(tmp_path / "run"), stages, env=env)
    assert _one_line(res) == (
        "error: train: one forward of a dummy 64² batch with prompt 'flaky': plugin 'flaky', prompt_generator "
        "'flaky/flaky' failed while running: ValueError: expected 3 classes, got 2; set SAMFX_DEBUG=1 for the "
        "traceback")
    assert not (tmp_path / "run" / "last.pt").exists()  # stage one did not train


def test_the_check_leaves_random_state_and_modes_alone():
    model = build_model(load_recipe(TINY, ["model.prompt={name: boxes}"]), load_checkpoint=False)
    model.train()
    model.prompt_encoder.eval()
    modes = [m.training for m in model.modules()]
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    check_forward(model, [1, 2, 3], torch.device("cpu"))
    after = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    assert torch.equal(after[0], torch.rand(3)) and after[1:] == (random.random(), np.random.rand())
    assert [m.training for m in model.modules()] == modes
