"""Two gloo DDP processes (torchrun) follow the single-process trajectory for the same global batch."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# global batch 4 = 2 ranks x 2; no prompt noise (each rank would draw its own)
OVERRIDES = ["data.batch_size=4", "model.prompt.noise=0", "train.stages.0.epochs=2", "train.save_every=0"]


def _losses(run_dir):
    with open(run_dir / "log.csv", newline="") as fh:
        return [(int(r["global_step"]), r["key"], float(r["value"])) for r in csv.DictReader(fh)]


def test_two_process_gloo_matches_single_process(tmp_path):
    from samfx.engine.testing import main

    single, ddp = tmp_path / "single", tmp_path / "ddp"
    threads = torch.get_num_threads()
    try:
        main([str(single), "--memory", *OVERRIDES])
    finally:
        torch.set_num_threads(threads)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "samfx.engine.testing", str(ddp), "--memory", *OVERRIDES]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    a, b = _losses(single), _losses(ddp)
    assert [(s, k) for s, k, _ in a] == [(s, k) for s, k, _ in b]
    steps = [v for s, k, v in a if k == "train/step_loss"]
    assert len(steps) == 8  # 16 images / 4 per step x 2 epochs
    for (s, k, va), (_, _, vb) in zip(a, b):
        assert abs(va - vb) <= 1e-5 * max(1.0, abs(va)), (s, k, va, vb)
    wa = torch.load(single / "last.pt", weights_only=True)["model"]
    wb = torch.load(ddp / "last.pt", weights_only=True)["model"]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-5, rtol=1e-4)
    # only rank 0 wrote the run folder (one header line, no duplicated rows)
    assert len(b) == len(set((s, k) for s, k, _ in b))
