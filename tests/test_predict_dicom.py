"""`samfx predict` straight from DICOM files and folders: masks, LV area curve, ED/ES and an EF estimate."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samfx.data.importers.dicom import import_dicom
from samfx.engine.eval.clinical import analyze_clip
from tests.dicom_us import echo_frames, gray, us_dataset, write


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    screen = echo_frames(5)
    write(root / "loops" / "IM_0001", us_dataset(screen, jpeg=True))
    write(root / "still.dcm", us_dataset(gray(screen)[:1]))
    return root


def beating(t: int, h: int, w: int) -> np.ndarray:
    """LV label maps (t,h,w): an ellipse whose area shrinks to frame 2 then grows again."""
    rows, cols = np.mgrid[:h, :w]
    scale = [1.0, 0.8, 0.6, 0.8, 1.0, 0.9][:t]
    return np.stack([(((rows - h / 2) / (0.35 * h)) ** 2 + ((cols - w / 2) / (0.2 * w * s)) ** 2 < 1)
                     for s in scale]).astype(np.uint8)


def test_predict_on_a_dicom_folder_gives_ef_from_the_predicted_lv(cli, toy_run, export, tmp_path, monkeypatch):
    from samfx.deploy import predict as P

    monkeypatch.setattr(P.Predictor, "segment", lambda self, frames, sequence: beating(*frames.shape))
    out = tmp_path / "out"
    r = cli("predict", toy_run, export, "--out", out)
    assert r.exit_code == 0, r.output
    report = json.loads((out / "predictions.json").read_text())
    by_name = {x["name"]: x for x in report["results"]}
    assert sorted(by_name) == [f"{export.name}-loops_IM_0001", f"{export.name}-still"]
    cine = by_name[f"{export.name}-loops_IM_0001"]
    truth = analyze_clip(beating(5, 64, 80), (0.3, 0.25))
    assert cine["frames"] == 5 and cine["spacing"] == pytest.approx([0.3, 0.25])
    assert (cine["ed"], cine["es"]) == (0, 2) == (truth.ed, truth.es)
    assert cine["ef_estimate"] == pytest.approx(truth.ef, abs=0.01) and 30 < cine["ef_estimate"] < 80
    assert cine["edv_ml"] == pytest.approx(truth.edv, abs=1e-3) and cine["ef_method"] == "single-plane area-length"
    line = next(x for x in r.stdout.splitlines() if x.startswith(f"{export.name}-loops_IM_0001: 5 frame(s) -> "))
    assert line.endswith(f"_lv_area.csv; EF {truth.ef:.1f} % (single-plane area-length; ED 0, ES 2)")
    rows = list(csv.DictReader(open(out / f"{export.name}-loops_IM_0001_lv_area.csv", newline="")))
    assert [float(x["lv_area_mm2"]) for x in rows] == pytest.approx(truth.areas.tolist(), abs=1e-3)
    assert by_name[f"{export.name}-still"]["frames"] == 1 and "ef_estimate" not in by_name[f"{export.name}-still"]


def test_predict_real_model_on_dicom_file_and_imported_store(plugins, toy_run, export, tmp_path):
    from samfx.deploy.predict import predict

    store = tmp_path / "cine.h5"
    import_dicom([export], store)
    out = tmp_path / "o"
    report = predict(toy_run, [str(export / "loops" / "IM_0001"), str(store)], out, registry=plugins.registry)
    names = [x["name"] for x in report["results"]]
    assert names == ["IM_0001", "cine-loops_IM_0001", "cine-still"]
    for rec in report["results"][:2]:
        labels = np.stack([np.asarray(Image.open(out / rec["name"] / f"frame_{t:03d}_label.png")) for t in range(5)])
        assert labels.shape == (5, 64, 80)
        c = analyze_clip(labels, (0.3, 0.25))          # the EF of the masks it wrote
        if rec.get("withheld"):  # a barely trained model's masks fail the plausibility rules: no numbers
            assert (rec["ed"], rec["es"], rec["ef_estimate"], rec["edv_ml"]) == (None, None, None, None)
            continue
        assert (rec["ed"], rec["es"]) == (c.ed, c.es)
        assert rec["ef_estimate"] == (None if np.isnan(c.ef) else pytest.approx(c.ef, abs=0.01))
    assert report["results"][2]["frames"] == 1 and "ef_estimate" not in report["results"][2]  # one frame: no EF


def test_predict_folder_without_dicom_is_one_line(cli, toy_run, tmp_path):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.txt").write_text("x")
    r = cli("predict", toy_run, tmp_path / "pics", "--out", tmp_path / "o")
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'pics'}: no DICOM file in this folder (files are recognised by the 'DICM' marker, "
        f"at any depth); is it the export folder?"]
