"""CAMUS importer on a tiny tree written with nibabel (non-square frames, mm spacing, cfg, splits)."""
import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from samfx.cli.main import app
from samfx.contracts.errors import DataError
from samfx.data.datasets import ImageDataset, SequenceDataset
from samfx.data.importers.camus import import_camus
from samfx.data.importers.camus_layout import read_cfg
from samfx.data.store import open_store, read_frames, read_index, read_sample

W, H, T = 20, 28, 5          # NIfTI x = columns, y = rows
ZOOMS = (0.31, 0.154)        # x (col) mm, y (row) mm
SPLITS = {"training": ["patient0001", "patient0002"], "validation": ["patient0003"], "testing": ["patient0004"]}


def _nii(path, data, zooms):
    nib.save(nib.Nifti1Image(data, np.diag([zooms[0], zooms[1], 1.0, 1.0])), str(path))


def _gt_xy(shift=0):
    g = np.zeros((W, H), np.uint8)
    g[5:15, 4 + shift:14 + shift] = 1     # LV
    g[3:17, 14 + shift:16 + shift] = 2    # MYO
    g[6:14, 18:24] = 3                    # LA
    return g


def make_camus(root, splits=True, patients=4):
    base = root / "database_nifti"
    for p in range(1, patients + 1):
        pid = f"patient{p:04d}"
        d = base / pid
        d.mkdir(parents=True)
        for view in ("2CH", "4CH"):
            (d / f"Info_{view}.cfg").write_text(
                f"ED: 1\nES: {T}\nNbFrame: {T}\nSex: F\nAge: {60 + p}\nImageQuality: Good\nEF: {50 + p}.5\n"
                "FrameRate: 30.0\n")
            for k, phase in enumerate(("ED", "ES")):
                img = np.full((W, H), 10 * p + k, np.uint8)
                img[3, 7] = 200  # x=3 (column), y=7 (row)
                _nii(d / f"{pid}_{view}_{phase}.nii.gz", img, ZOOMS)
                if not (p == 4 and view == "4CH" and phase == "ES"):
                    _nii(d / f"{pid}_{view}_{phase}_gt.nii.gz", _gt_xy(k), ZOOMS)
            seq = np.stack([np.full((W, H), t, np.uint8) for t in range(T)], axis=-1)
            _nii(d / f"{pid}_{view}_half_sequence.nii.gz", seq, (*ZOOMS, 1.0))
            gts = np.stack([_gt_xy(t % 2) for t in range(T)], axis=-1)
            _nii(d / f"{pid}_{view}_half_sequence_gt.nii.gz", gts, (*ZOOMS, 1.0))
    if splits:
        sd = root / "database_split"
        sd.mkdir()
        for name, members in SPLITS.items():
            (sd / f"subgroup_{name}.txt").write_text("\n".join(members) + "\n")
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = make_camus(tmp_path_factory.mktemp("camus"))
    out = root / "camus.h5"
    return root, out, import_camus(root, out)


def test_counts_and_missing_report(imported):
    root, _, report = imported
    assert report.counts == {"patients": 4, "images": 15, "sequences": 8}
    assert report.missing == [str(root / "database_nifti/patient0004/patient0004_4CH_ES_gt.nii.gz")]
    assert not list(root.glob("*.partial-*"))


def test_axis_order_shapes_spacing_labels(imported):
    _, out, _ = imported
    idx = read_index(out)
    assert idx.classes == [1, 2, 3] and idx.class_names == ["LV", "MYO", "LA"]
    s = idx.items["patient0002_4CH_ES"]
    assert (s.shape, s.patient, s.view, s.phase) == ((H, W), "patient0002", "4CH", "ES")
    assert s.spacing == pytest.approx((0.154, 0.31))
    with open_store(out) as f:
        img, lab = read_sample(f, "patient0002_4CH_ES")
        assert img[7, 3] == 200 and img[0, 0] == 21
        assert np.array_equal(lab, _gt_xy(1).T) and set(np.unique(lab)) == {0, 1, 2, 3}
        frames, labels = read_frames(f, "patient0001_2CH_half_sequence")
    assert frames.shape == (T, H, W) and frames[:, 0, 0].tolist() == list(range(T))
    assert np.array_equal(labels[1], _gt_xy(1).T)


def test_sequences_cfg_and_ed_es(imported):
    _, out, _ = imported
    q = read_index(out).items["patient0003_2CH_half_sequence"]
    assert (q.ed, q.es, q.ef) == (0, T - 1, 53.5) and all(q.labeled)
    assert q.spacing == pytest.approx((0.154, 0.31))
    assert q.attrs["age"] == 63 and q.attrs["sex"] == "F" and q.attrs["image_quality"] == "Good"
    assert q.attrs["fps"] == 30.0 and q.attrs["nb_frames"] == T
    assert read_index(out).items["patient0003_2CH_ED"].attrs["ef"] == 53.5


def test_read_cfg(tmp_path):
    (tmp_path / "Info_2CH.cfg").write_text("ED: 1\nES: 13\nSex: M\nEF: 47.2\nImageQuality: Poor\nweird line\n"
                                           "New Key: x y\n")
    assert read_cfg(tmp_path / "Info_2CH.cfg") == {"cfg_ed": 1, "cfg_es": 13, "sex": "M", "ef": 47.2,
                                                   "image_quality": "Poor", "new_key": "x y"}


def test_official_split_membership(imported):
    _, out, _ = imported
    idx = read_index(out)
    for split, members in (("train", SPLITS["training"]), ("val", SPLITS["validation"]), ("test", SPLITS["testing"])):
        assert {it.patient for it in idx.in_split(split)} == set(members)
    ds = ImageDataset(out, "test", 16)
    # patient0004: 3 ED/ES images + the 4CH ES frame of its half sequence (no single image for it)
    assert sorted((e[0].view, e[2], e[1]) for e in ds.entries) == [
        ("2CH", "ED", -1), ("2CH", "ES", -1), ("4CH", "ED", -1), ("4CH", "ES", T - 1)]
    item = ds[0]
    assert torch_close(item["spacing"], [H * 0.154 / 16, W * 0.31 / 16])
    seq = SequenceDataset(out, "val", 16)
    assert len(seq) == 2 and seq[0]["frames"].shape == (T, 3, 16, 16)


def torch_close(t, values):
    return np.allclose(t.numpy(), values, rtol=1e-5)


def test_seeded_split_without_split_files(tmp_path):
    root = make_camus(tmp_path / "c", splits=False, patients=3)
    report = import_camus(root / "database_nifti", tmp_path / "o.h5", seed=1)
    idx = read_index(tmp_path / "o.h5")
    groups = {n: {it.patient for it in idx.in_split(n)} for n in ("train", "val", "test")}
    assert [len(groups[n]) for n in ("train", "val", "test")] == [1, 1, 1]
    assert any("no official split files" in n for n in report.notes)


def test_truncated_nifti(tmp_path):
    root = make_camus(tmp_path / "c", patients=1)
    bad = root / "database_nifti/patient0001/patient0001_2CH_ES.nii.gz"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DataError, match=r"patient0001_2CH_ES.nii.gz: cannot read NIfTI .*truncated"):
        import_camus(root, tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists()
    report = import_camus(root, tmp_path / "o.h5", skip_bad=True)
    assert len(report.skipped) == 1 and "patient0001_2CH_ES.nii.gz" in report.skipped[0]
    assert report.counts == {"patients": 1, "images": 3, "sequences": 2}  # only that file skipped


def test_label_outside_set(tmp_path):
    root = make_camus(tmp_path / "c", patients=1)
    gt = _gt_xy()
    gt[0, 0] = 7
    _nii(root / "database_nifti/patient0001/patient0001_4CH_ED_gt.nii.gz", gt, ZOOMS)
    with pytest.raises(DataError, match=r"patient0001_4CH_ED.nii.gz: label ids \[7\] are outside the declared set"):
        import_camus(root, tmp_path / "o.h5")


def test_not_camus(tmp_path):
    with pytest.raises(DataError, match="no patientNNNN folders"):
        import_camus(tmp_path, tmp_path / "o.h5")


def test_cli(tmp_path):
    root = make_camus(tmp_path / "c", patients=2)
    r = CliRunner().invoke(app, ["data", "camus", str(root), "--out", str(tmp_path / "o.h5"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["counts"] == {"patients": 2, "images": 8, "sequences": 4}
