"""EchoNet-Dynamic importer on a tiny tree with AVIs written by PyAV."""
import json

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from samfx.cli.main import app
from samfx.contracts.errors import DataError
from samfx.data.datasets import ImageDataset
from samfx.data.importers.echonet import import_echonet, read_avi, trace_mask
from samfx.data.store import open_store, read_frames, read_index

N, S = 8, 32


def write_avi(path, n=N, size=S):
    c = av.open(str(path), "w", format="avi")
    s = c.add_stream("mjpeg", rate=25)
    s.width, s.height, s.pix_fmt = size, size, "yuvj420p"
    for t in range(n):
        for pkt in s.encode(av.VideoFrame.from_ndarray(np.full((size, size, 3), 20 * t, np.uint8), format="rgb24")):
            c.mux(pkt)
    for pkt in s.encode():
        c.mux(pkt)
    c.close()


def chords(cx, half, top=6, bottom=26):
    """Tracing rows: a long axis, then horizontal chords of half-width `half` from top to bottom."""
    rows = [[cx, top, cx, bottom]]
    rows += [[cx - half, y, cx + half, y] for y in np.linspace(top + 1, bottom - 1, 10)]
    return rows


def make_echonet(root):
    (root / "Videos").mkdir(parents=True)
    files = [("0XA", 61.0, "TRAIN"), ("0XB", 35.5, "VAL"), ("0XC", 50.0, "TEST"), ("0XMISSING", 50.0, "TRAIN")]
    with (root / "FileList.csv").open("w") as fh:
        fh.write("FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split\n")
        for name, ef, split in files:
            fh.write(f"{name},{ef},1,2,{S},{S},50,{N},{split}\n")
    with (root / "VolumeTracings.csv").open("w") as fh:
        fh.write("FileName,X1,Y1,X2,Y2,Frame\n")
        for name, _, _ in files[:3]:
            # small (ES) trace listed first at frame 5, large (ED) at frame 2
            for frame, half in ((5, 4), (2, 9)):
                for x1, y1, x2, y2 in chords(16, half):
                    fh.write(f"{name}.avi,{x1},{y1},{x2},{y2},{frame}\n")
    for name, _, _ in files[:3]:
        write_avi(root / "Videos" / f"{name}.avi")
    return root


def test_import(tmp_path):
    root = make_echonet(tmp_path / "e")
    report = import_echonet(root, tmp_path / "e.h5")
    assert report.counts == {"sequences": 3, "labeled_frames": 6}
    assert report.missing == ["Videos/0XMISSING.avi"]
    idx = read_index(tmp_path / "e.h5")
    assert idx.classes == [1] and idx.class_names == ["LV"]
    q = idx.items["0XA"]
    assert q.shape == (N, S, S) and (q.ed, q.es, q.ef) == (2, 5, 61.0) and q.attrs["fps"] == 50.0
    assert q.labeled == tuple(i in (2, 5) for i in range(N)) and np.isnan(q.spacing[0])
    assert [it.id for it in idx.in_split("val")] == ["0XB"] and [it.id for it in idx.in_split("test")] == ["0XC"]
    with open_store(tmp_path / "e.h5") as f:
        frames, labels = read_frames(f, "0XA")
    assert np.abs(frames[:, 0, 0].astype(int) - 20 * np.arange(N)).max() <= 3  # lossy codec
    ed, es = labels[2], labels[5]
    assert set(np.unique(ed)) == {0, 1} and ed.sum() > es.sum() > 0
    assert labels[[0, 1, 3, 4, 6, 7]].sum() == 0
    rows, cols = np.nonzero(ed)  # filled between x = 16 -/+ 9 and y = 7..25
    assert cols.min() == 7 and cols.max() == 25 and rows.min() == 7 and rows.max() == 25
    assert ed[16, 8:25].all()
    ds = ImageDataset(tmp_path / "e.h5", "train", 16)
    assert [(e[1], e[2]) for e in ds.entries] == [(2, "ED"), (5, "ES")]


def test_trace_mask_polygon_order():
    m = trace_mask(np.asarray(chords(10, 3, top=2, bottom=12), float), (16, 20))
    assert m.shape == (16, 20) and m[7, 7:14].all() and m[7, :6].sum() == 0 and m[:3].sum() == 0


def test_undecodable_avi(tmp_path):
    root = make_echonet(tmp_path / "e")
    good = (root / "Videos/0XB.avi").read_bytes()
    (root / "Videos/0XB.avi").write_bytes(good[: len(good) // 2])  # truncated download
    with pytest.raises(DataError, match=r"0XB.avi: cannot decode video"):
        import_echonet(root, tmp_path / "e.h5")
    assert not (tmp_path / "e.h5").exists()
    (tmp_path / "junk.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage")
    with pytest.raises(DataError, match=r"junk.avi: (cannot decode video|no video stream)"):
        read_avi(tmp_path / "junk.avi")
    report = import_echonet(root, tmp_path / "e.h5", skip_bad=True)
    assert report.counts["sequences"] == 2 and "0XB.avi" in report.skipped[0]


def test_bad_csv(tmp_path):
    root = tmp_path / "e"
    root.mkdir()
    with pytest.raises(DataError, match=r"FileList.csv: not found; expected the EchoNet-Dynamic layout"):
        import_echonet(root, tmp_path / "e.h5")
    (root / "FileList.csv").write_text("Name,EF\nx,1\n")
    (root / "VolumeTracings.csv").write_text("FileName,X1,Y1,X2,Y2,Frame\n")
    with pytest.raises(DataError, match=r"FileList.csv: missing column\(s\) \['FileName', 'Split'\]"):
        import_echonet(root, tmp_path / "e.h5")


def test_cli_limit(tmp_path):
    root = make_echonet(tmp_path / "e")
    r = CliRunner().invoke(app, ["data", "echonet", str(root), "--out", str(tmp_path / "e.h5"), "--limit", "2",
                                 "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["counts"] == {"sequences": 2, "labeled_frames": 4}
