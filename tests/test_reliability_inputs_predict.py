"""`samfx predict` checks its inputs before it measures them: ``--skip-bad`` reports a bad file in one line and
predicts the rest (without it the first bad file stops the command before any output), MP4/AVI videos are
read directly (frame rate from the container), and an input whose scan sector is a tiny part of the image
is flagged in predictions.json's ``warnings`` (docs/deploying.md)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.dicom_us import echo_frames, gray, us_dataset, write
from tests.test_data_video import T, write_video
from tests.test_reliability_predict import mock
from tests.toy_runs import ellipses


def one_line(r, *parts: str) -> str:
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def predictions(out: Path) -> dict:
    return json.loads((out / "predictions.json").read_text())


def speckle_png(path: Path, h: int = 60, w: int = 80, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(30, 230, (h, w)).astype(np.uint8)).save(path)
    return path


def bad_dicom(path: Path) -> Path:
    raw = write(path, us_dataset(gray(echo_frames(5)))).read_bytes()
    path.write_bytes(raw[: len(raw) - 5000])
    return path


# -- --skip-bad -------------------------------------------------------------------------------------------------

def test_bad_file_stops_before_any_output_without_skip_bad(cli, toy_run, tmp_path):
    folder = tmp_path / "loops"
    write(folder / "a.dcm", us_dataset(gray(echo_frames(3))))
    bad = bad_dicom(folder / "b.dcm")
    one_line(cli("predict", toy_run, folder, "--out", tmp_path / "o"), str(bad))
    garbage = tmp_path / "x.png"
    garbage.write_bytes(b"not a png")
    one_line(cli("predict", toy_run, speckle_png(tmp_path / "ok.png"), garbage, "--out", tmp_path / "o"),
             f"{garbage}: cannot read image")
    assert not (tmp_path / "o").exists()


def test_skip_bad_reports_each_bad_file_and_predicts_the_rest(cli, toy_run, tmp_path, monkeypatch):
    mock(monkeypatch, ellipses)
    folder = tmp_path / "loops"
    write(folder / "a.dcm", us_dataset(gray(echo_frames(3))))
    bad = bad_dicom(folder / "b.dcm")
    garbage = tmp_path / "x.png"
    garbage.write_bytes(b"not a png")
    r = cli("predict", toy_run, folder, speckle_png(tmp_path / "ok.png"), garbage, "--out", tmp_path / "o",
            "--skip-bad")
    assert r.exit_code == 0, r.output
    report = predictions(tmp_path / "o")
    assert [x["name"] for x in report["results"]] == ["loops-a", "ok"]
    assert len(report["skipped"]) == 2 and report["skipped"][0].startswith(f"{bad}: ")
    assert report["skipped"][1].startswith(f"{garbage}: cannot read image")
    assert all("\n" not in s for s in report["skipped"])
    assert f"skipped (bad): {bad}: " in r.stdout
    one_line(cli("predict", toy_run, garbage, "--out", tmp_path / "o2", "--skip-bad"),
             f"{garbage}: cannot read image", "every input was skipped as bad")


# -- videos -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, written", [("clip.mp4", ("mp4", "mpeg4", "yuv420p", 30)),
                                           ("clip.avi", ("avi", "mjpeg", "yuvj420p", 25))])
def test_predict_reads_videos_with_their_frame_rate(cli, toy_run, tmp_path, monkeypatch, name, written):
    mock(monkeypatch, ellipses)
    fmt, codec, pix, rate = written
    write_video(tmp_path / name, fmt, codec, pix, rate=rate)
    r = cli("predict", toy_run, tmp_path / name, "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    rec = predictions(tmp_path / "o")["results"][0]
    assert rec["name"] == "clip" and rec["frames"] == T and rec["fps"] == rate and rec["spacing"] is None
    assert (tmp_path / "o" / "clip" / "frame_000_label.png").is_file()


def test_truncated_video_is_one_line_in_predict(cli, toy_run, tmp_path):
    path = tmp_path / "cut.mp4"
    write_video(path, "mp4", "mpeg4", "yuv420p")
    path.write_bytes(path.read_bytes()[:400])
    one_line(cli("predict", toy_run, path, "--out", tmp_path / "o"), f"{path}: ")
    assert not (tmp_path / "o").exists()


# -- tiny scan sector -------------------------------------------------------------------------------------------

def test_tiny_scan_sector_is_flagged(cli, toy_run, tmp_path, monkeypatch):
    mock(monkeypatch, ellipses)
    tiny = np.zeros((200, 200), np.uint8)
    tiny[80:110, 80:110] = np.random.default_rng(1).integers(30, 230, (30, 30))   # 2.25 % of the image
    Image.fromarray(tiny).save(tmp_path / "tiny.png")
    Image.fromarray(np.zeros((50, 60), np.uint8)).save(tmp_path / "blank.png")
    r = cli("predict", toy_run, tmp_path / "tiny.png", tmp_path / "blank.png", speckle_png(tmp_path / "full.png"),
            write(tmp_path / "loop.dcm", us_dataset(gray(echo_frames(3)))), "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    recs = {x["name"]: x for x in predictions(tmp_path / "o")["results"]}
    assert recs["tiny"]["warnings"] == ["scan sector covers 2.2 % of the image (< 5 %): the input may be "
                                        "mostly screen, not ultrasound; check it before trusting the result"]
    assert recs["blank"]["warnings"] == ["no scan sector found (blank image?)"]
    assert recs["full"]["warnings"] == [] and recs["loop"]["warnings"] == []
    assert "tiny: warning: scan sector covers 2.2 %" in r.stdout
