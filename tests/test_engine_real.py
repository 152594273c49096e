"""The engine with the real built-in components: SAM tiny at 64², simulated clicks, synthetic echo."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "tests" / "recipes" / "tiny_sam.yaml"


def test_tiny_sam_train_eval_predict(tmp_path):
    from samfx.cli.main import app

    runner = CliRunner()
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", str(RECIPE), "--out", str(run), "--quiet"])
    assert r.exit_code == 0, r.output
    versions = json.loads((run / "versions.json").read_text())
    assert {"sam", "prompts", "losses", "datasets"} <= set(versions["plugins"])
    rows = list(csv.DictReader(open(run / "log.csv", newline="")))
    assert [r["global_step"] for r in rows if r["key"] == "train/step_loss"] == ["1", "2", "3"]
    r = runner.invoke(app, ["eval", str(run), "--split", "val", "--json", "--compat-row-hd"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["prompt"] == "none" and report["distance_unit"] == "mm"  # eval.prompt of the recipe
    assert "row_hd_compat" in report["per_image"]["LV"]
    # clicks at eval: the stage's prompt, simulated from the ground truth
    r = runner.invoke(app, ["eval", str(run), "--split", "val", "--prompt", "clicks", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["prompt"] == "clicks"
    store = report["store"]
    r = runner.invoke(app, ["predict", str(run), store, "--out", str(tmp_path / "pred"), "--json"])
    assert r.exit_code == 0, r.output
    seqs = [x for x in json.loads(r.stdout)["results"] if "lv_area_csv" in x]
    assert seqs and all(x["frames"] == 4 for x in seqs)
    r = runner.invoke(app, ["predict", str(run), store, "--out", str(tmp_path / "p2"), "--prompt", "clicks"])
    assert r.exit_code == 2 and "simulates a user from ground truth (clicks, boxes, masks)" in r.stderr


@pytest.mark.slow
def test_cli_nproc_per_node_runs_ddp(tmp_path):
    run = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "samfx.cli.main", "train", str(RECIPE), "--out", str(run),
                        "--nproc-per-node", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "run folder:" in r.stdout and r.stdout.count("stage 1/1") == 1  # rank 0 speaks
    rows = list(csv.DictReader(open(run / "log.csv", newline="")))
    assert [r["global_step"] for r in rows if r["key"] == "train/step_loss"] == ["1", "2", "3"]
