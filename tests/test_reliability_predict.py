"""`samfx predict` never prints a misleading clinical number: provenance and method beside EF, EF withheld
when the sequence is implausible, one area column without spacing, inputs checked before they are measured,
unique output names (docs/temporal.md, "What the clinical numbers mean and when they are withheld")."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samfx.contracts.errors import DataError
from samfx.data.images import read_png
from samfx.data.importers.dicom_read import read_dicom
from samfx.engine.eval.clinical import MAX_EDGE_FRAMES, MIN_CYCLE, edge_frames, withhold_reasons
from samfx.engine.run import checkpoints as ckpt
from samfx.engine.run import rundir
from tests.dicom_us import echo_frames, gray, us_dataset, write
from tests.toy_runs import ellipses


@pytest.fixture(scope="module")
def synthetic_ckpt(toy_run, tmp_path_factory) -> Path:
    """The toy run's checkpoint, its stored recipe saying it was trained on synthetic_echo."""
    obj = ckpt.load(rundir.find_checkpoint(toy_run))
    obj["recipe"]["data"]["source"] = {"name": "synthetic_echo"}
    path = tmp_path_factory.mktemp("syn") / "synthetic.pt"
    ckpt.save(obj, path)
    return path


def mock(monkeypatch, fn) -> None:
    from samfx.deploy import predict as P

    monkeypatch.setattr(P.Predictor, "segment", lambda self, frames, sequence: fn(*frames.shape))


def loop(path: Path, **kw) -> Path:
    return write(path, us_dataset(gray(echo_frames(5)), **kw))


def run_json(cli, *args) -> tuple[object, dict]:
    r = cli("predict", *args)
    assert r.exit_code == 0, r.output
    out = Path(args[args.index("--out") + 1])
    return r, json.loads((out / "predictions.json").read_text())


# -- 1. method and provenance -----------------------------------------------------------------------------

def test_ef_line_names_method_and_provenance(cli, toy_run, tmp_path, monkeypatch):
    mock(monkeypatch, ellipses)
    steps = ckpt.load(rundir.find_checkpoint(toy_run))["progress"]["global_step"]
    r, report = run_json(cli, toy_run, loop(tmp_path / "a.dcm"), "--out", tmp_path / "o")
    assert report["model"] == {"trained_on": "toy/toy_data", "optimizer_steps": steps, "synthetic_only": False,
                               "clinical_use": None}
    assert r.stdout.splitlines()[0] == f"model: trained on toy/toy_data, {steps} optimizer steps"
    rec = report["results"][0]
    assert rec["ef_method"] == "single-plane area-length" and rec["ef_estimate"] is not None
    assert "(single-plane area-length; ED 0, ES 2)" in r.stdout


def test_synthetic_model_says_not_for_clinical_use_once(cli, synthetic_ckpt, tmp_path, monkeypatch):
    mock(monkeypatch, ellipses)
    r, report = run_json(cli, synthetic_ckpt, loop(tmp_path / "a.dcm"), loop(tmp_path / "b.dcm"),
                         "--out", tmp_path / "o")
    assert report["model"]["trained_on"] == "synthetic_echo"
    assert report["model"]["clinical_use"] == "trained only on synthetic data: not for clinical use"
    assert all(x["clinical_use"] == report["model"]["clinical_use"] for x in report["results"])
    assert r.stdout.count("NOT FOR CLINICAL USE") == 1
    assert r.stdout.splitlines()[0].endswith("; TRAINED ONLY ON SYNTHETIC DATA: NOT FOR CLINICAL USE")


# -- 2. plausibility rules --------------------------------------------------------------------------------

BEAT = [100.0, 80.0, 60.0, 80.0, 100.0]


def test_plausible_curve_passes():
    assert withhold_reasons(BEAT, 25.0, [False] * 5) == []


@pytest.mark.parametrize(("areas", "fps", "edge", "reason"), [
    ([100, 80, 0, 80, 100], 25.0, None, "LV area is 0 on 1 frame(s) (2)"),
    ([100, 97, 95, 97, 100], 25.0, None, "no cardiac cycle: the LV area changes by 5.0 % (< 10 %)"),
    ([100] * 5, 25.0, None, "no cardiac cycle: the LV area changes by 0.0 % (< 10 %)"),
    (BEAT, float("nan"), None, "frame rate unknown"),
    (BEAT, None, None, "frame rate unknown"),
    (BEAT, 25.0, [True, True, False, False, False],
     "LV mask reaches the image or sector edge on 2 of 5 frames (> 25 %)"),
    ([100], 25.0, None, "fewer than 2 frames: no sequence to measure"),
])
def test_each_rule_withholds(areas, fps, edge, reason):
    assert withhold_reasons(areas, fps, edge) == [reason]


def test_rule_thresholds_are_inclusive_limits():
    assert MIN_CYCLE == 0.10 and MAX_EDGE_FRAMES == 0.25
    assert withhold_reasons([100, 90], 25.0, [True, False, False, False]) == []   # exactly 10 %, exactly 25 %


def test_edge_frames_border_and_sector():
    m = np.zeros((3, 10, 10), np.uint8)
    m[0, 0, 4] = 1                      # image border
    m[1, 4:6, 4:6] = 1                  # inside
    m[2, 4:6, 4:8] = 1                  # half of it outside the sector
    fov = np.zeros((10, 10), bool)
    fov[:, :6] = True
    assert edge_frames(m).tolist() == [True, False, False]
    assert edge_frames(m, fov).tolist() == [True, False, True]


def vanishing(t, h, w):
    out = ellipses(t, h, w)
    out[2] = 0
    return out


def whole_image(t, h, w):
    return np.ones((t, h, w), np.uint8) * ellipses(t, h, w).any(0)[None] | (np.arange(t)[:, None, None] < 3)


@pytest.mark.parametrize(("segment", "frame_time", "reason"), [
    (vanishing, 40.0, "LV area is 0 on 1 frame(s) (2)"),
    (lambda t, h, w: np.stack([ellipses(1, h, w)[0]] * t), 40.0, "no cardiac cycle"),
    (ellipses, None, "frame rate unknown"),
    (whole_image, 40.0, "LV mask reaches the image or sector edge on 3 of 5 frames"),
])
def test_implausible_sequence_withholds_ef(cli, toy_run, tmp_path, monkeypatch, segment, frame_time, reason):
    mock(monkeypatch, segment)
    r, report = run_json(cli, toy_run, loop(tmp_path / "a.dcm", frame_time=frame_time), "--out", tmp_path / "o")
    rec = report["results"][0]
    assert (rec["ef_estimate"], rec["ed"], rec["es"], rec["edv_ml"], rec["esv_ml"]) == (None,) * 5
    assert reason in rec["withheld"]
    line = next(x for x in r.stdout.splitlines() if x.startswith("a: 5 frame(s)"))
    assert "EF, volumes, ED/ES withheld: " in line and reason in line and "EF " not in line.split("withheld")[0][-8:]


# -- 3. one area column without spacing ------------------------------------------------------------------

def test_area_csv_without_spacing_has_one_pixel_column(cli, toy_run, tmp_path, monkeypatch):
    mock(monkeypatch, ellipses)
    _, report = run_json(cli, toy_run, loop(tmp_path / "a.dcm", regions=False), "--out", tmp_path / "o")
    rec = report["results"][0]
    assert rec["spacing"] is None and rec["area_unit"] == "px2"
    rows = list(csv.reader(open(rec["lv_area_csv"], newline="")))
    assert rows[0] == ["frame", "lv_area_px"] and all(len(x) == 2 for x in rows)
    _, report = run_json(cli, toy_run, loop(tmp_path / "b.dcm"), "--out", tmp_path / "p")
    assert next(csv.reader(open(report["results"][0]["lv_area_csv"]))) == ["frame", "lv_area_px", "lv_area_mm2"]


# -- 4. inputs checked before they are measured -----------------------------------------------------------

def test_non_ultrasound_dicom_is_refused_unless_any_modality(cli, toy_run, tmp_path, monkeypatch):
    mock(monkeypatch, ellipses)
    ds = us_dataset(gray(echo_frames(5)))
    ds.Modality = "MR"
    path = write(tmp_path / "brain.dcm", ds)
    r = cli("predict", toy_run, path, "--out", tmp_path / "o")
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [
        f"error: {path}: DICOM Modality (0008,0060) is 'MR', not US (ultrasound); the model reads ultrasound "
        f"only (--any-modality overrides this)"]
    assert not (tmp_path / "o" / "predictions.json").exists()
    run_json(cli, toy_run, path, "--any-modality", "--out", tmp_path / "o")


def test_multipage_tiff_is_refused_not_read_as_page_one(cli, toy_run, tmp_path):
    pages = [Image.fromarray(np.full((16, 16), v, np.uint8)) for v in (10, 20, 30)]
    path = tmp_path / "loop.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    with pytest.raises(DataError, match=r"holds 3 pages/frames; samfx reads one image per file, not page 1"):
        read_png(path)
    r = cli("predict", toy_run, path, "--out", tmp_path / "o")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "holds 3 pages" in r.stderr


def test_palette_png_is_converted_by_its_colours(tmp_path):
    idx = np.arange(64, dtype=np.uint8).reshape(8, 8) % 4
    im = Image.fromarray(idx, "P")
    im.putpalette([0, 0, 0, 200, 200, 200, 90, 90, 90, 255, 255, 255] + [0] * 756)
    im.save(tmp_path / "p.png")
    assert read_png(tmp_path / "p.png").tolist() == np.array([0, 200, 90, 255], np.uint8)[idx].tolist()


def test_palette_colour_dicom_is_converted_not_refused(tmp_path):
    frames = gray(echo_frames(3))
    ds = us_dataset(frames)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ramp = np.arange(256, dtype=np.uint16) * 257   # 16-bit gray ramp: index i -> gray i
    for c in ("Red", "Green", "Blue"):
        setattr(ds, f"{c}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{c}PaletteColorLookupTableData", ramp.tobytes())
    path = write(tmp_path / "pal.dcm", ds)
    expected = read_dicom(write(tmp_path / "gray.dcm", us_dataset(frames))).frames
    assert np.array_equal(read_dicom(path).frames, expected)


# -- 5. unique output names -------------------------------------------------------------------------------

def test_same_file_name_from_two_folders_writes_both(cli, toy_run, tmp_path, monkeypatch):
    mock(monkeypatch, ellipses)
    a, b = loop(tmp_path / "x" / "echo.dcm"), loop(tmp_path / "y" / "echo.dcm", frame_time=20.0)
    _, report = run_json(cli, toy_run, a, b, "--out", tmp_path / "o")
    names = [x["name"] for x in report["results"]]
    assert names == ["x-echo", "y-echo"]
    assert len({x["lv_area_csv"] for x in report["results"]}) == 2
    assert all(Path(x["folder"]).is_dir() and Path(x["lv_area_png"]).is_file() for x in report["results"])
    _, again = run_json(cli, toy_run, a, b, "--out", tmp_path / "p")
    assert [x["name"] for x in again["results"]] == names           # deterministic
    from samfx.deploy.caveats import unique_names
    assert unique_names(["e", "e", "f"], ["d/e.png", "d/e.png", "g/f.png"]) == ["d-e", "d-e-2", "f"]


def test_a_qualified_synthetic_source_still_warns():
    from samfx.deploy.caveats import NOT_CLINICAL, provenance

    for name in ("synthetic_echo", "datasets/synthetic_echo"):
        prov = provenance({"recipe": {"data": {"source": {"name": name}}}})
        assert prov["clinical_use"] == NOT_CLINICAL and prov["synthetic_only"] is True
    assert provenance({"recipe": {"data": {"source": {"name": "datasets/camus"}}}})["clinical_use"] is None
