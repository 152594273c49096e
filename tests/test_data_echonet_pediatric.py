"""EchoNet-Pediatric importer on a tiny A4C/ + PSAX/ tree: outline-point tracings, fold splits,
FileList attributes, the "No Systolic" marker, and damaged inputs."""
import json

import numpy as np
import pytest

from samfx.contracts.errors import DataError
from samfx.data.importers.echonet import POINT_COLUMNS, read_tracings
from samfx.data.importers.echonet_pediatric import import_echonet_pediatric
from samfx.data.store import open_store, read_frames, read_index
from tests.conftest import run_samfx
from tests.test_data_echonet import N, S, write_avi


def outline(cx, half, top=6, bottom=26):
    """Points around a rectangle-ish LV outline: down the left side, up the right side."""
    ys = np.linspace(top, bottom, 6)
    return [(cx - half, y) for y in ys] + [(cx + half, y) for y in ys[::-1]]


VIDEOS = {"A4C": [("CR1-a", 60.5, 0), ("CR2-a", 45.0, 1), ("CR3-a", 70.0, 2), ("CR4-a", 55.0, 3)],
          "PSAX": [("CR1-p", 61.0, 0), ("CR5-p", 50.0, 4)]}


def make_pediatric(root):
    for view, files in VIDEOS.items():
        d = root / view
        (d / "Videos").mkdir(parents=True)
        with (d / "FileList.csv").open("w") as fh:
            fh.write("FileName,EF,Sex,Age,Weight,Height,Split\n")
            for k, (name, ef, fold) in enumerate(files):
                fh.write(f"{name}{'.avi' if k % 2 else ''},{ef},{'MF'[k % 2]},{k + 3},{20 + k}.5,{110 + k},{fold}\n")
        with (d / "VolumeTracings.csv").open("w") as fh:
            fh.write("FileName,X,Y,Frame\n")
            for name, _, _ in files:
                for frame, half in ((6, 4), (1, 9)):   # ES listed first, ED (larger) second
                    for x, y in outline(16, half):
                        fh.write(f"{name}.avi,{x},{y},{frame}\n")
            fh.write(f"{files[0][0]}.avi,,,No Systolic\n")
        for name, _, _ in files:
            write_avi(d / "Videos" / f"{name}.avi")
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = make_pediatric(tmp_path_factory.mktemp("ped"))
    out = root / "ped.h5"
    return root, out, import_echonet_pediatric(root, out, val_fold=1, test_fold=0)


def test_counts_views_and_attributes(imported):
    _, out, report = imported
    assert report.counts == {"sequences": 6, "labeled_frames": 12, "A4C": 4, "PSAX": 2}
    idx = read_index(out)
    assert idx.classes == [1] and idx.class_names == ["LV"] and idx.source == "echonet-pediatric"
    q = idx.items["A4C_CR2-a"]
    assert (q.view, q.patient, q.shape, q.ed, q.es, q.ef) == ("A4C", "CR2-a", (N, S, S), 1, 6, 45.0)
    assert q.attrs["sex"] == "F" and q.attrs["age"] == 4.0 and q.attrs["weight"] == 21.5 and q.attrs["fold"] == 1
    assert q.labeled == tuple(i in (1, 6) for i in range(N)) and np.isnan(q.spacing[0])
    assert idx.items["PSAX_CR5-p"].view == "PSAX"
    assert report.stats["ef_patients"] == 6 and report.stats["ef_range"] == [45.0, 70.0]


def test_outline_mask(imported):
    _, out, _ = imported
    with open_store(out) as f:
        _, labels = read_frames(f, "A4C_CR1-a")
    ed, es = labels[1], labels[6]
    rows, cols = np.nonzero(ed)  # inside x = 16 -/+ 9, y = 6..26
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (7, 25, 6, 26)
    assert ed[16, 7:26].all() and ed.sum() > es.sum() > 0 and labels[[0, 2, 3, 4, 5, 7]].sum() == 0


def test_fold_splits(imported):
    _, out, _ = imported
    idx = read_index(out)
    ids = {n: sorted(it.id for it in idx.in_split(n)) for n in ("train", "val", "test", "fold0", "fold4")}
    assert ids["test"] == ids["fold0"] == ["A4C_CR1-a", "PSAX_CR1-p"]
    assert ids["val"] == ["A4C_CR2-a"] and ids["fold4"] == ["PSAX_CR5-p"]
    assert ids["train"] == ["A4C_CR3-a", "A4C_CR4-a", "PSAX_CR5-p"]


def test_one_view_folder_and_limit(tmp_path):
    root = make_pediatric(tmp_path / "p")
    report = import_echonet_pediatric(root / "PSAX", tmp_path / "o.h5", limit=1)
    assert report.counts == {"sequences": 1, "labeled_frames": 2, "PSAX": 1}


def test_read_tracings_skips_no_systolic_rows(tmp_path):
    (tmp_path / "V.csv").write_text("FileName,X,Y,Frame\na.avi,1,2,3\na.avi,,,No Diastolic\nb,4,5,6\n")
    assert {k: dict(v) for k, v in read_tracings(tmp_path / "V.csv", POINT_COLUMNS).items()} == {
        "a": {3: [[1.0, 2.0]]}, "b": {6: [[4.0, 5.0]]}}
    (tmp_path / "V.csv").write_text("FileName,X,Y,Frame\na.avi,1,oops,3\n")
    with pytest.raises(DataError, match=r"V.csv:2: non-numeric coordinate or frame"):
        read_tracings(tmp_path / "V.csv", POINT_COLUMNS)


def test_truncated_video_names_the_file(tmp_path):
    root = make_pediatric(tmp_path / "p")
    bad = root / "A4C/Videos/CR3-a.avi"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match=r"A4C/Videos/CR3-a.avi: cannot decode video"):
        import_echonet_pediatric(root, tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists()
    report = import_echonet_pediatric(root, tmp_path / "o.h5", skip_bad=True)
    assert report.counts["sequences"] == 5 and "CR3-a.avi" in report.skipped[0]


def test_bad_layout_and_split(tmp_path):
    with pytest.raises(DataError, match=r"no A4C/FileList.csv or PSAX/FileList.csv"):
        import_echonet_pediatric(tmp_path, tmp_path / "o.h5")
    root = make_pediatric(tmp_path / "p")
    (root / "PSAX/VolumeTracings.csv").write_text("FileName,X1,Y1,X2,Y2,Frame\n")
    with pytest.raises(DataError, match=r"PSAX/VolumeTracings.csv: missing column\(s\) \['X', 'Y'\]"):
        import_echonet_pediatric(root, tmp_path / "o.h5")
    (root / "PSAX").rename(tmp_path / "psax-away")
    text = (root / "A4C/FileList.csv").read_text().replace(",3\n", ",TRAIN\n")
    (root / "A4C/FileList.csv").write_text(text)
    with pytest.raises(DataError, match=r"A4C/FileList.csv \(CR4-a.avi\): Split = 'TRAIN'; .* fold numbers 0-9"):
        import_echonet_pediatric(root, tmp_path / "o.h5")


def test_cli(tmp_path):
    root = make_pediatric(tmp_path / "p")
    r = run_samfx("data", "echonet-pediatric", str(root), "--out", str(tmp_path / "o.h5"), "--test-fold", "2",
                  "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["counts"]["sequences"] == 6 and "test = fold 2, val = fold 1" in info["notes"][0]
    r = run_samfx("data", "echonet-pediatric", str(root), "--out", str(tmp_path / "p.h5"), "--val-fold", "0")
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: --val-fold and --test-fold are both 0; choose two different folds")
