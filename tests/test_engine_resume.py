"""Crash-resume is exact; checkpoints are atomic; a NaN loss stops cleanly."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# 16 train images, global batch 2, grad_accum 2: 8 micro-batches = 4 optimizer steps per epoch, 2 epochs.
# last.pt at steps 3 (mid-epoch), 4 (epoch end), 6 (mid-epoch 2); the kill after step 7 loses step 7.
OVERRIDES = ["data.source.train=16", "data.batch_size=2", "train.grad_accum=2", "train.save_every=3",
             "train.stages.0.optimizer.name=adamw"]


def _train(run_dir, *extra):
    """In a subprocess (as a user would run it; needed to SIGKILL it)."""
    cmd = [sys.executable, "-m", "samfx.engine.testing", str(run_dir), *OVERRIDES, *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _train_here(run_dir, *extra):
    """In this process (saves an interpreter start); one thread like the subprocess."""
    from samfx.engine.testing import main

    threads = torch.get_num_threads()
    try:
        main([str(run_dir), *OVERRIDES, *extra])
    finally:
        torch.set_num_threads(threads)


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _rows(run_dir):
    with open(run_dir / "log.csv", newline="") as fh:
        return [(r["global_step"], r["key"], r["value"]) for r in csv.DictReader(fh)]


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    full, crashed = tmp_path / "full", tmp_path / "crashed"
    _train_here(full)
    r = _train(crashed, "--kill-at-step", "7")
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    last = _state(crashed / "last.pt")
    p = last["progress"]
    assert (p["stage"], p["epoch"], p["batch"], p["global_step"], p["finished"]) == (0, 1, 4, 6, False)
    _train_here(crashed, "--resume")

    a, b = _state(full / "last.pt"), _state(crashed / "last.pt")
    assert a["progress"]["finished"] and b["progress"]["finished"]
    assert a["progress"]["global_step"] == b["progress"]["global_step"] == 8
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["train_state"]["rng"][0], b["train_state"]["rng"][0]
    assert torch.equal(sa["torch"], sb["torch"])
    # the log of the resumed run is the uninterrupted run's log, row for row
    assert _rows(full) == _rows(crashed)
    best_a, best_b = _state(full / "best.pt"), _state(crashed / "best.pt")
    assert best_a["metric"] == best_b["metric"]


def test_resume_refuses_missing_and_existing_runs(tmp_path):
    from samfx.contracts.errors import SamfxError

    with pytest.raises(SamfxError, match=r"nothing to resume \(no such folder\); check the path"):
        _train_here(tmp_path / "nothing", "--resume")
    run = tmp_path / "run"
    _train_here(run, "train.stages.0.max_steps=1")
    with pytest.raises(SamfxError, match="already holds a run \\(last.pt\\); continue it with `--resume"):
        _train_here(run)
    # resuming a finished run is a no-op that keeps the weights
    before = _state(run / "last.pt")
    _train_here(run, "--resume")
    after = _state(run / "last.pt")
    assert after["progress"] == before["progress"]
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    from samfx.engine.train.trainer import TrainingError

    run = tmp_path / "nan"
    # steps 1..3 fine (save_every=3 writes last.pt at step 3), the 7th micro-batch (step 4) is NaN
    with pytest.raises(TrainingError) as err:
        _train_here(run, "train.stages.0.loss.nan_at_call=7")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("train.stages.0 'all' epoch 1 step 4: loss is nan; training stopped, last good "
                          f"checkpoint kept: {run / 'last.pt'}; lower the learning rate")
    last = _state(run / "last.pt")
    assert last["progress"]["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert not list(run.glob(".*.tmp"))


def _save_forever(path, ready):
    from samfx.checkpoints.files import atomic_save

    big = {"format": "samfx", "model": {"w": torch.randn(1_500_000)}, "step": 0}
    while True:
        atomic_save(big, path)
        big["step"] += 1
        ready.set()


def test_checkpoint_writes_are_atomic_under_sigkill(tmp_path):
    """A writer SIGKILLed at arbitrary moments never leaves a partial file under the final name."""
    import multiprocessing as mp

    target = tmp_path / "ckpt.pt"
    ctx = mp.get_context("fork")
    for delay in (0.003, 0.011, 0.029, 0.047):
        ready = ctx.Event()
        proc = ctx.Process(target=_save_forever, args=(target, ready), daemon=True)
        proc.start()
        assert ready.wait(60)  # one complete write, then kill during later ones
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
        assert proc.exitcode == -signal.SIGKILL
        obj = torch.load(target, map_location="cpu", weights_only=True)
        assert obj["model"]["w"].shape == (1_500_000,) and obj["step"] >= 0
    # a killed writer leaves its temp file behind: proof that kills landed mid-write
    assert list(tmp_path.glob(".ckpt.pt.*.tmp"))


def test_checkpoint_error_during_write_leaves_previous_file(tmp_path, monkeypatch):
    from samfx.engine.run import checkpoints as checkpointing

    target = tmp_path / "last.pt"
    checkpointing.save({"format": "samfx", "model": {"w": torch.ones(3)}, "step": 1}, target)

    def broken(obj, fh):
        fh.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        checkpointing.save({"format": "samfx", "model": {"w": torch.zeros(3)}, "step": 2}, target)
    monkeypatch.undo()
    obj = torch.load(target, weights_only=True)
    assert obj["step"] == 1 and torch.equal(obj["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_step_values_drain_in_order_with_positions():
    from samfx.engine.train.stepvalues import StepValue, StepValues

    v = StepValues()
    v.add("loss", torch.tensor(0.5), epoch=0, step=1)
    v.add("gradient norm", torch.tensor([float("inf")]), epoch=0, step=1)
    v.add("loss", torch.tensor(0.25, dtype=torch.float64), epoch=1, step=2)
    assert len(v) == 3
    assert v.drain() == [StepValue("loss", 0, 1, 0.5), StepValue("gradient norm", 0, 1, float("inf")),
                         StepValue("loss", 1, 2, 0.25)]
    assert len(v) == 0 and v.drain() == []


def test_losses_are_read_back_once_per_log_window_not_per_step(tmp_path, monkeypatch):
    """4 steps (8 micro-batches) per epoch, log_every 2: two read-backs per epoch, each of 2 steps' values."""
    from samfx.engine.train.stepvalues import StepValues

    sizes = []
    drain = StepValues.drain

    def counting(self):
        sizes.append(len(self))
        return drain(self)

    monkeypatch.setattr(StepValues, "drain", counting)
    _train_here(tmp_path / "r", "train.log_every=2", "train.save_every=0")
    reads = [n for n in sizes if n]
    assert reads == [6, 6, 6, 6]  # per window: 4 micro-batch losses + 2 gradient norms
    steps = [r for r in _rows(tmp_path / "r") if r[1] == "train/step_loss"]
    assert [int(s) for s, _, _ in steps] == [2, 4, 6, 8]


def test_persistent_workers_see_each_epochs_augmentation(tmp_path):
    """Two loader workers that live across both epochs train to the same weights as no workers:
    the sampler hands each item's epoch to the worker's copy of the (augmenting) dataset."""
    aug = ["train.save_every=0"]  # augmentation is on by default
    _train_here(tmp_path / "w0", *aug, "data.num_workers=0")
    _train_here(tmp_path / "w2", *aug, "data.num_workers=2")
    a, b = _state(tmp_path / "w0" / "last.pt")["model"], _state(tmp_path / "w2" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
