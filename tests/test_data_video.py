"""`samfx data video`: MP4 / AVI written with PyAV, per-frame masks from a folder, --fps / --spacing."""
from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from samfx.data.importers.video import frame_masks, read_video
from samfx.data.store import open_store, read_frames, read_index
from tests.cli_inprocess import cli, one_line

T, H, W = 6, 32, 48



def write_video(path: Path, fmt: str, codec: str, pix_fmt: str, rate: int = 30) -> np.ndarray:
    """A video of T flat gray frames (level 30 t + 20); returns the levels written."""
    levels = np.array([30 * t + 20 for t in range(T)], np.uint8)
    c = av.open(str(path), "w", format=fmt)
    s = c.add_stream(codec, rate=rate)
    s.width, s.height, s.pix_fmt = W, H, pix_fmt
    for v in levels:
        frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), v, np.uint8), format="rgb24")
        for pkt in s.encode(frame):
            c.mux(pkt)
    for pkt in s.encode():
        c.mux(pkt)
    c.close()
    return levels


@pytest.fixture
def videos(tmp_path) -> Path:
    write_video(tmp_path / "clip_p1.mp4", "mp4", "mpeg4", "yuv420p", rate=30)
    write_video(tmp_path / "clip_p2.avi", "avi", "mjpeg", "yuvj420p", rate=25)
    for t in (0, 4):
        m = np.zeros((H, W), np.uint8)
        m[8:20, 10:30] = 255
        (tmp_path / "masks" / "clip_p1").mkdir(parents=True, exist_ok=True)
        Image.fromarray(m).save(tmp_path / "masks" / "clip_p1" / f"frame_{t:03d}.png")
    return tmp_path


def test_mp4_and_avi_with_masks_fps_and_spacing(videos, tmp_path):
    out = tmp_path / "v.h5"
    r = cli("data", "video", videos / "clip_p1.mp4", videos / "clip_p2.avi", "--out", out,
            "--masks", videos / "masks", "--spacing", "0.4,0.5", "--patient-regex", r"_(p\d)")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == f"wrote {out}: 2 sequences, 12 frames, 2 labeled_frames, 2 patients"
    assert "1 video(s) without masks (unlabeled): clip_p2.avi" in r.stdout
    index = read_index(out)
    assert index.class_names == ["foreground"]
    one = index.items["clip_p1"]
    assert one.patient == "p1" and one.spacing == (0.4, 0.5) and one.labeled == (True, False, False, False, True, False)
    with open_store(out) as f:
        frames, labels = read_frames(f, "clip_p1")
        fps = {k: float(f[f"sequences/{k}"].attrs["fps"]) for k in ("clip_p1", "clip_p2")}
    assert frames.shape == (T, H, W)
    assert np.abs(frames.mean((1, 2)) - [30 * t + 20 for t in range(T)]).max() < 3   # gray levels kept
    assert labels[0, 8:20, 10:30].all() and labels[0].sum() == 12 * 20 and not labels[1].any()
    assert fps == pytest.approx({"clip_p1": 30.0, "clip_p2": 25.0})
    forced = tmp_path / "f.h5"
    assert cli("data", "video", videos / "clip_p2.avi", "--out", forced, "--fps", "50").exit_code == 0
    with open_store(forced) as f:
        assert f["sequences/clip_p2"].attrs["fps"] == 50.0
        assert math.isnan(f["sequences/clip_p2"].attrs["spacing"][0])


def test_frame_masks_use_the_last_number(tmp_path):
    for name in ("a_2_0007.png", "12.png", "notes.txt", "x.png"):
        (tmp_path / name).write_bytes(b"")
    assert {k: p.name for k, p in frame_masks(tmp_path).items()} == {7: "a_2_0007.png", 12: "12.png"}


def test_bad_videos_and_masks_name_the_file(videos, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0" * 300)
    one_line(cli("data", "video", bad, "--out", tmp_path / "x.h5", "--json"), f"{bad}: cannot decode video")
    one_line(cli("data", "video", tmp_path / "none.mp4", "--out", tmp_path / "x.h5"), "none.mp4: video not found")
    one_line(cli("data", "video", videos / "clip_p1.mp4", "--out", tmp_path / "x.h5", "--masks", tmp_path / "nope"),
             f"--masks {tmp_path / 'nope'}: folder not found")
    one_line(cli("data", "video", videos / "clip_p1.mp4", "--out", tmp_path / "x.h5", "--fps", "0"),
             "--fps 0.0: must be a positive frame rate")
    Image.fromarray(np.zeros((H, W + 1), np.uint8)).save(videos / "masks" / "clip_p1" / "frame_002.png")
    one_line(cli("data", "video", videos / "clip_p1.mp4", "--out", tmp_path / "x.h5", "--masks", videos / "masks",
                 "--json"), "frame_002.png: mask shape (32, 49) does not match the frames of clip_p1.mp4 (32, 48)")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(videos / "masks" / "clip_p1" / "frame_002.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(videos / "masks" / "clip_p1" / "frame_009.png")
    one_line(cli("data", "video", videos / "clip_p1.mp4", "--out", tmp_path / "x.h5", "--masks", videos / "masks",
                 "--json"), "frame_009.png: frame 9 is beyond the 6 frames of clip_p1.mp4")
    r = cli("data", "video", videos / "clip_p1.mp4", bad, "--out", tmp_path / "y.h5", "--skip-bad", "--json")
    assert r.exit_code == 0 and '"sequences": 1' in r.stdout and "bad.mp4: cannot decode video" in r.stdout
    frames, rate = read_video(videos / "clip_p2.avi")
    assert frames.shape == (T, H, W) and rate == 25.0
