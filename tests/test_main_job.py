"""The main job end to end at a toy size: AutoSAMUS + MSFF, clicks then the APG, on synthetic echo."""
from __future__ import annotations

import json

from tests.conftest import run_samfx

TOY = ["data.source.patients=8", "data.source.size=[96,112]", "data.source.frames=4",
       "train.stages.0.max_steps=3", "train.stages.1.max_steps=2", "train.stages.0.epochs=1",
       "train.stages.1.epochs=1", "eval.overlays=2"]


def test_quick_preset_trains_both_stages_and_writes_the_run_folder(tmp_path):
    run = tmp_path / "run"
    env = {"SAMFX_CACHE": str(tmp_path / "cache")}
    res = run_samfx("train", "recipes/autosamus_msff_quick.yaml", *TOY, "--out", str(run), env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("recipe.yaml", "versions.json", "last.pt", "best.pt", "metrics.json", "log.csv", "curves.png"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "overlays").iterdir()) == ["apg", "samus_msff"]
    versions = json.loads((run / "versions.json").read_text())
    assert {"samus", "msff", "apg", "prompts", "losses", "datasets"} <= set(versions["plugins"])
    assert "stage 1/2 'samus_msff'" in res.stdout and "stage 2/2 'apg'" in res.stdout

    ev = run_samfx("eval", str(run), "--json", env=env)
    assert ev.returncode == 0, ev.stderr[-3000:]
    report = json.loads(ev.stdout)
    assert report["prompt"] == "apg" and report["classes"] == ["LV", "MYO", "LA"]
    assert report["distance_unit"] == "mm"
    for cls in report["classes"]:
        assert 0.0 <= report["per_image"][cls]["dice"]["mean"] <= 1.0
