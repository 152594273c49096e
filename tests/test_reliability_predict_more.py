"""`samfx predict` withholds EF when the model doubts its own LV (predicted IoU, object score), and a file it
cannot write is one line naming it, with predictions.json written last and atomically (docs/temporal.md,
"What the clinical numbers mean and when they are withheld"; docs/deploying.md)."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from samfx.data import files
from samfx.deploy import predict as P
from samfx.engine.eval.clinical import MAX_ABSENT_FRAMES, MIN_IOU, confidence_summary, withhold_reasons
from samfx.engine.eval.inference import QueryConfidence
from samfx.engine.run import checkpoints as ckpt
from samfx.engine.run import rundir
from tests.dicom_us import echo_frames, gray, us_dataset, write
from tests.toy_runs import ellipses

BEAT = [100.0, 80.0, 60.0, 80.0, 100.0]


def mock(monkeypatch, confidence) -> None:
    """Predictor.segment gives beating ellipses and the model's confidence `confidence`."""
    def segment(self, frames, sequence):
        self.confidence = confidence
        return ellipses(*frames.shape)

    monkeypatch.setattr(P.Predictor, "segment", segment)


def loop(path: Path) -> Path:
    return write(path, us_dataset(gray(echo_frames(5)), frame_time=40.0))


def run_json(cli, *args) -> tuple[object, dict]:
    r = cli("predict", *args)
    assert r.exit_code == 0, r.output
    return r, json.loads((Path(args[args.index("--out") + 1]) / "predictions.json").read_text())


# -- 1. the model's own confidence --------------------------------------------------------------------------

def test_confidence_summary_and_rule():
    assert confidence_summary(None, None) is None and confidence_summary([], None) is None
    assert confidence_summary([0.9, 0.2, 0.8], None) == {"iou_median": pytest.approx(0.8),
                                                          "object_present_share": None}
    assert confidence_summary([float("nan")] * 3, [1.0, -1.0, float("nan"), 2.0]) == {
        "iou_median": 0.0, "object_present_share": 0.5}
    assert withhold_reasons(BEAT, 25.0, None, None) == []
    assert withhold_reasons(BEAT, 25.0, None, {"iou_median": None, "object_present_share": None}) == []
    assert withhold_reasons(BEAT, 25.0, None, {"iou_median": MIN_IOU, "object_present_share":
                                               1 - MAX_ABSENT_FRAMES}) == []
    low = withhold_reasons(BEAT, 25.0, None, {"iou_median": 0.31, "object_present_share": 0.6})
    assert low == ["low model confidence: median predicted IoU of the LV 0.31 (< 0.50)",
                   "low model confidence: the model says the LV is absent on 40 % of the frames (> 25 %)"]


def test_query_confidence_picks_the_lv_query_and_drops_missing_scores():
    iou = torch.tensor([[0.1], [0.9], [0.2], [0.7]])  # 2 frames x K=2, image-major
    score = torch.tensor([[5.0], [-1.0], [5.0], [2.0]])
    conf = QueryConfidence(1)
    conf.add(SimpleNamespace(iou=iou, decoded=SimpleNamespace(object_score=score)), 2, 2)
    assert conf.iou == pytest.approx([0.9, 0.7]) and conf.object_score == [-1.0, 2.0]
    conf.add(SimpleNamespace(iou=iou[:2], decoded=SimpleNamespace(object_score=None)), 1, 2)
    assert conf.iou == pytest.approx([0.9, 0.7, 0.9]) and conf.object_score is None


@pytest.mark.parametrize("sequence", [False, True])
def test_segment_frames_reports_confidence_without_changing_labels(plugins, toy_run, sequence):
    model, recipe, _ = ckpt.load_model(rundir.find_checkpoint(toy_run), plugins.registry, torch.device("cpu"))
    classes = list(recipe.typed.data.classes)
    frames = gray(echo_frames(3))[:, :40, :48]
    plain = P.segment_frames(model, frames, classes, sequence=sequence)
    conf = QueryConfidence(classes.index(1))
    seen = P.segment_frames(model, frames, classes, sequence=sequence, confidence=conf)
    assert np.array_equal(plain, seen) and len(conf.iou) == 3
    assert all(np.isfinite(conf.iou))


def test_low_confidence_withholds_ef_and_is_reported(cli, toy_run, tmp_path, monkeypatch):
    mock(monkeypatch, {"iou_median": 0.2, "object_present_share": 0.4})
    r, report = run_json(cli, toy_run, loop(tmp_path / "a.dcm"), "--out", tmp_path / "o")
    rec = report["results"][0]
    assert rec["confidence"] == {"iou_median": 0.2, "object_present_share": 0.4}
    assert (rec["ef_estimate"], rec["ed"], rec["es"]) == (None,) * 3
    assert "median predicted IoU of the LV 0.20 (< 0.50)" in rec["withheld"]
    assert "absent on 60 % of the frames" in rec["withheld"] and "low model confidence" in r.stdout


def test_confident_or_silent_model_keeps_ef(cli, toy_run, tmp_path, monkeypatch):
    mock(monkeypatch, {"iou_median": 0.9, "object_present_share": None})
    _, report = run_json(cli, toy_run, loop(tmp_path / "a.dcm"), "--out", tmp_path / "o")
    assert report["results"][0]["ef_estimate"] is not None and not report["results"][0].get("withheld")
    mock(monkeypatch, None)  # the onnx engine: no confidence, the rule does not apply
    _, report = run_json(cli, toy_run, loop(tmp_path / "a.dcm"), "--out", tmp_path / "p")
    assert report["results"][0]["confidence"] is None and report["results"][0]["ef_estimate"] is not None


def test_real_model_reports_its_confidence(cli, toy_run, tmp_path):
    _, report = run_json(cli, toy_run, loop(tmp_path / "a.dcm"), "--out", tmp_path / "o")
    conf = report["results"][0]["confidence"]
    assert set(conf) == {"iou_median", "object_present_share"} and isinstance(conf["iou_median"], float)


# -- 2. full disk / unwritable output ------------------------------------------------------------------------

def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(("target", "name"), [
    ("samfx.deploy.predict.save_overlay", "a/frame_000_overlay.png"),
    ("PIL.Image.Image.save", "a/frame_000_label.png"),
    ("samfx.deploy.caveats.write_text", "a_lv_area.csv"),
    ("matplotlib.figure.Figure.savefig", "a_lv_area.png"),
    ("report", "predictions.json"),
])
def test_full_disk_is_one_line_and_keeps_the_old_report(cli, toy_run, tmp_path, monkeypatch, target, name):
    mock(monkeypatch, None)
    out = tmp_path / "o"
    _, old = run_json(cli, toy_run, loop(tmp_path / "a.dcm"), "--out", out)
    before = (out / "predictions.json").read_bytes()
    if target == "report":  # the disk fills while predictions.json itself is written (after every other file)
        def write_json(path, obj):
            monkeypatch.setattr("samfx.data.files.os.fsync", full)
            files.write_json(path, obj)

        monkeypatch.setattr(P, "write_json", write_json)
    else:
        monkeypatch.setattr(target, full)
    r = cli("predict", toy_run, loop(tmp_path / "a.dcm"), "--out", out)
    assert r.exit_code != 0 and "Traceback" not in r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and str(out / name) in lines[0], r.output
    assert (out / "predictions.json").read_bytes() == before  # never a report of files that are not there
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_failure_in_a_new_folder_writes_no_report(cli, toy_run, tmp_path, monkeypatch):
    mock(monkeypatch, None)
    monkeypatch.setattr("samfx.deploy.predict.save_overlay", full)
    out = tmp_path / "new"
    r = cli("predict", toy_run, loop(tmp_path / "a.dcm"), "--out", out)
    assert r.exit_code != 0 and "No space left on device" in r.output
    assert not (out / "predictions.json").exists()
