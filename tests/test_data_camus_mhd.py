"""CAMUS 2019 (MetaImage) release: a tiny training/ + testing/ tree in the real layout, detected by
`import_camus`, with the cfg's LVedv/LVesv/LVef, unlabeled testing patients and damaged files."""
import json

import numpy as np
import pytest

from samfx.contracts.errors import DataError
from samfx.data.datasets import ImageDataset
from samfx.data.importers.camus import import_camus
from samfx.data.store import open_store, read_frames, read_index, read_sample
from tests.conftest import run_samfx
from tests.mhd_files import write_mhd

H, W, T = 28, 20, 5           # rows, columns, frames
SPACING_XY = (0.308, 0.154)   # x (column) mm, y (row) mm, as ElementSpacing lists them


def _gt(shift=0):
    g = np.zeros((H, W), np.uint8)
    g[4 + shift:14 + shift, 5:15] = 1   # LV
    g[14 + shift:16 + shift, 3:17] = 2  # MYO
    g[18:24, 6:14] = 3                  # LA
    return g


def _frames(p):
    seq = np.stack([np.full((H, W), 10 * p + t, np.uint8) for t in range(T)])
    seq[:, 7, 3] = 200  # row 7, column 3
    return seq


def make_camus2019(root, training=(1, 2, 3, 4), testing=(1, 2)):
    for kind, numbers in (("training", training), ("testing", testing)):
        for p in numbers:
            pid = f"patient{p:04d}"
            d = root / kind / pid
            d.mkdir(parents=True)
            for view in ("2CH", "4CH"):
                cfg = f"ED: 1\nES: {T}\nNbFrame: {T}\nSex: M\nAge: {40 + p}\nImageQuality: Medium\n"
                if kind == "training":
                    cfg += f"LVedv: {80 + p}.25\nLVesv: {30 + p}.5\nLVef: {50 + p}.5\n"
                (d / f"Info_{view}.cfg").write_text(cfg)
                seq = _frames(p)
                write_mhd(d / f"{pid}_{view}_sequence.mhd", seq, (*SPACING_XY, 1.0))
                for phase, t in (("ED", 0), ("ES", T - 1)):
                    write_mhd(d / f"{pid}_{view}_{phase}.mhd", seq[t], SPACING_XY)
                    if kind == "training":
                        write_mhd(d / f"{pid}_{view}_{phase}_gt.mhd", _gt(t // 2), SPACING_XY)
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = make_camus2019(tmp_path_factory.mktemp("camus2019"))
    out = root / "camus.h5"
    return root, out, import_camus(root, out, seed=3)


def test_counts_splits_and_stats(imported):
    _, out, report = imported
    assert report.counts == {"patients": 4, "images": 16, "sequences": 12, "testing_patients": 2}
    assert report.source.startswith("camus2019:") and not report.missing and not report.skipped
    idx = read_index(out)
    assert idx.classes == [1, 2, 3] and idx.class_names == ["LV", "MYO", "LA"]
    groups = {n: {it.patient for it in idx.in_split(n)} for n in ("train", "val", "test", "testing")}
    assert groups["testing"] == {"testing_patient0001", "testing_patient0002"}
    assert set().union(groups["train"], groups["val"], groups["test"]) == {f"patient000{p}" for p in (1, 2, 3, 4)}
    assert [len(groups[n]) for n in ("train", "val", "test")] == [2, 1, 1]
    s = report.stats
    assert (s["images"], s["sequences"], s["frames"], s["patients"]) == (16, 12, 12 * T, 6)
    assert s["labeled_frames"] == 8 * 2 and s["spacing_mm"] == pytest.approx([0.154, 0.308])
    assert s["ef_patients"] == 4 and s["ef_range"] == pytest.approx([51.5, 54.5])


def test_axis_order_spacing_and_labels(imported):
    _, out, _ = imported
    idx = read_index(out)
    s = idx.items["patient0002_4CH_ES"]
    assert (s.shape, s.patient, s.view, s.phase) == ((H, W), "patient0002", "4CH", "ES")
    assert s.spacing == pytest.approx((0.154, 0.308))  # (row, col) = (ElementSpacing[1], [0])
    with open_store(out) as f:
        img, lab = read_sample(f, "patient0002_4CH_ES")
        assert img[7, 3] == 200 and img[0, 0] == 20 + T - 1
        assert np.array_equal(lab, _gt((T - 1) // 2))
        frames, labels = read_frames(f, "patient0001_2CH_sequence")
    assert frames.shape == (T, H, W) and frames[:, 0, 0].tolist() == [10 + t for t in range(T)]
    assert np.array_equal(labels[0], _gt(0)) and np.array_equal(labels[T - 1], _gt((T - 1) // 2))
    assert labels[1:T - 1].sum() == 0


def test_cfg_ef_and_volumes_stored(imported):
    _, out, _ = imported
    idx = read_index(out)
    q = idx.items["patient0003_2CH_sequence"]
    assert (q.ed, q.es, q.ef) == (0, T - 1, 53.5) and q.labeled == (True,) + (False,) * (T - 2) + (True,)
    assert q.attrs["lv_edv"] == 83.25 and q.attrs["lv_esv"] == 33.5 and q.attrs["age"] == 43
    assert idx.items["patient0003_2CH_ED"].attrs["ef"] == 53.5
    t = idx.items["testing_patient0001_4CH_sequence"]
    assert np.isnan(t.ef) and not any(t.labeled) and (t.ed, t.es) == (0, T - 1)
    assert "testing_patient0001_4CH_ED" not in idx.items  # no ground truth: not a sample


def test_training_folder_alone_and_no_sequences(tmp_path):
    root = make_camus2019(tmp_path / "c", training=(1, 2, 3), testing=())
    report = import_camus(root / "training", tmp_path / "o.h5", sequences=False)
    assert report.counts == {"patients": 3, "images": 12, "sequences": 0, "testing_patients": 0}
    assert not read_index(tmp_path / "o.h5").in_split("testing")


def test_frame_that_is_not_the_ed_image_stays_unlabeled(tmp_path):
    root = make_camus2019(tmp_path / "c", training=(1,), testing=())
    d = root / "training/patient0001"
    write_mhd(d / "patient0001_2CH_ED.mhd", np.full((H, W), 99, np.uint8), SPACING_XY)
    report = import_camus(root, tmp_path / "o.h5")
    q = read_index(tmp_path / "o.h5").items["patient0001_2CH_sequence"]
    assert q.labeled[0] is False and q.labeled[T - 1] is True
    assert any("patient0001_2CH_ED.mhd is not frame 1 of the sequence" in n for n in report.notes)


def test_truncated_raw_names_the_file(tmp_path):
    root = make_camus2019(tmp_path / "c", training=(1,), testing=(1,))
    raw = root / "training/patient0001/patient0001_4CH_ES_gt.raw"
    raw.write_bytes(raw.read_bytes()[:100])
    with pytest.raises(DataError, match=r"patient0001_4CH_ES_gt.raw: holds 100 bytes of pixels but "
                                         r"patient0001_4CH_ES_gt.mhd describes 20 x 28 MET_UCHAR"):
        import_camus(root, tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists() and not list(tmp_path.glob("o.h5.partial-*"))
    report = import_camus(root, tmp_path / "o.h5", skip_bad=True)
    assert len(report.skipped) == 1 and "patient0001_4CH_ES_gt.raw" in report.skipped[0]
    assert report.counts["images"] == 3 and report.counts["sequences"] == 4


def test_cli_bad_header_is_one_line(tmp_path):
    root = make_camus2019(tmp_path / "c", training=(1,), testing=())
    (root / "training/patient0001/patient0001_2CH_sequence.mhd").write_text("NDims = 3\nDimSize = 20 28\n"
                                                                          "ElementDataFile = x.raw\n")
    r = run_samfx("data", "camus", str(root), "--out", str(tmp_path / "o.h5"))
    assert r.returncode == 2 and r.stdout == ""
    assert "Traceback" not in r.stderr  # above the error line: only the progress bar
    assert [ln for ln in r.stderr.splitlines() if "error" in ln] == [
        f"error: {root}/training/patient0001/patient0001_2CH_sequence.mhd: DimSize has 2 values but NDims is 3"]
    r = run_samfx("data", "camus", str(root), "--out", str(tmp_path / "o.h5"), "--skip-bad", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["skipped"]["count"] == 1 and info["counts"]["sequences"] == 1
    r = run_samfx("data", "camus", str(root), "--out", str(tmp_path / "o.h5"), "--force", "--skip-bad")
    assert r.returncode == 0 and "stats: 4 images, 1 sequences" in r.stdout and "EF 1 patients" in r.stdout


def test_not_camus_names_both_layouts(tmp_path):
    (tmp_path / "training").mkdir()
    with pytest.raises(DataError, match=r"no patientNNNN folders; expected a CAMUS layout: .*2019 release"):
        import_camus(tmp_path, tmp_path / "o.h5")


def test_image_dataset_reads_2019_store(imported):
    _, out, _ = imported
    ds = ImageDataset(out, "train", 16)
    assert len(ds) == 2 * 4  # 2 patients x 2 views x ED/ES images; sequence ED/ES frames not counted twice
    assert ds[0]["image"].shape == (3, 16, 16)
