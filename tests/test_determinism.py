"""Bit-reproducible CPU training: the same recipe and seed give the same weights, run after run."""
from __future__ import annotations

import pytest
import torch

from samfx.engine.run.seeding import set_deterministic
from tests.conftest import run_samfx
from tests.test_main_job import TOY


def _weights(run):
    return torch.load(run / "last.pt", weights_only=True)["model"]


@pytest.mark.slow
def test_main_job_two_runs_give_bitwise_equal_weights(tmp_path):
    """Both stages of the quick preset (clicks, then the APG with per-class task tokens) on the
    machine's default thread count; the APG stage used to differ by ~1e-7 between runs.

    Slow, not default: it passed in 10 of 11 runs, and the one failure (inside a full suite on a
    heavily loaded machine) diverged already in stage 1, for a reason not yet found (docs/engine.md)."""
    env = {"SAMFX_CACHE": str(tmp_path / "cache")}
    toy = [o for o in TOY if "max_steps" not in o and "overlays" not in o]
    args = [*toy, "train.stages.0.max_steps=2", "train.stages.1.max_steps=6", "eval.overlays=0"]
    for name in ("a", "b"):
        res = run_samfx("train", "recipes/autosamus_msff_quick.yaml", *args, "--out", str(tmp_path / name),
                        "--quiet", env=env)
        assert res.returncode == 0, res.stderr[-3000:]
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_deterministic_mode_makes_index_accumulation_reproducible():
    """train.deterministic switches torch to its deterministic kernels: the backward of advanced
    indexing (index_put_ with accumulate), thread-order dependent on CPU, then sums in a fixed order."""
    x = torch.randn(3, 55, 64, requires_grad=True)
    idx = torch.arange(48) % 3
    g = torch.randn(48, 55, 64)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    set_deterministic(True)
    try:
        assert torch.are_deterministic_algorithms_enabled()
        grads = []
        for _ in range(8):
            x.grad = None
            x[idx].backward(g)
            grads.append(x.grad.clone())
    finally:
        set_deterministic(False)
        torch.set_num_threads(threads)
    assert not torch.are_deterministic_algorithms_enabled()
    assert all(torch.equal(gr, grads[0]) for gr in grads[1:])


def test_runs_saved_before_a_schema_key_existed_resume_at_its_default():
    """A run's stored recipe lacks keys added to the schema later (train.deterministic): absent equals
    the default on resume, anything else is still a conflict."""
    import copy

    from samfx.config.recipe import load_recipe
    from samfx.engine.run.rundir import resume_conflicts

    new = load_recipe("tests/recipes/tiny_sam.yaml").config
    stored = copy.deepcopy(new)
    del stored["train"]["deterministic"]
    del stored["train"]["stages"][0]["area_change_weight"]
    assert resume_conflicts(stored, new) == []
    changed = copy.deepcopy(new)
    changed["train"]["deterministic"] = True
    assert resume_conflicts(stored, changed) == ["train.deterministic"]
