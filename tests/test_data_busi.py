"""BUSI importer on a tiny Dataset_BUSI_with_GT tree with the real names ("benign (1)_mask_1.png"),
RGB images, gray and RGB 0/255 masks, a merged extra mask, and damaged files."""
import json

import numpy as np
import pytest
from PIL import Image

from samfx.contracts.errors import DataError
from samfx.data.importers.busi import import_busi
from samfx.data.store import open_store, read_index, read_sample
from tests.conftest import run_samfx

H, W = 12, 16


def _box(r0, r1, c0, c1, value=255, rgb=False):
    m = np.zeros((H, W), np.uint8)
    m[r0:r1, c0:c1] = value
    return Image.fromarray(np.stack([m] * 3, -1) if rgb else m)


def _image(value):
    a = np.full((H, W, 3), value, np.uint8)  # BUSI images are RGB PNGs with equal channels
    a[3, 5] = 250
    return Image.fromarray(a)


def make_busi(root, n=(4, 3, 3)):
    base = root / "Dataset_BUSI_with_GT"
    for cat, count in zip(("benign", "malignant", "normal"), n):
        (base / cat).mkdir(parents=True)
        for i in range(1, count + 1):
            _image(10 * i).save(base / cat / f"{cat} ({i}).png")
            mask = _box(0, 0, 0, 0) if cat == "normal" else _box(2, 6, 2, 8, rgb=(i == 2))
            mask.save(base / cat / f"{cat} ({i})_mask.png")
    _box(8, 10, 10, 14).save(base / "benign/benign (1)_mask_1.png")  # a second lesion
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = make_busi(tmp_path_factory.mktemp("busi"))
    out = root / "busi.h5"
    return root, out, import_busi(root, out, seed=1)


def test_counts_ids_and_categories(imported):
    _, out, report = imported
    assert report.counts == {"images": 10, "benign": 4, "malignant": 3, "normal": 3, "merged_masks": 1}
    assert not report.missing and not report.skipped
    idx = read_index(out)
    assert idx.classes == [1] and idx.class_names == ["lesion"]
    item = idx.items["benign_(1)"]
    assert (item.shape, item.patient, item.attrs["category"]) == ((H, W), "benign_(1)", "benign")
    assert item.attrs["masks"] == 2
    assert item.attrs["source"].endswith("Dataset_BUSI_with_GT/benign/benign (1).png")
    assert np.isnan(item.spacing[0])
    s = report.stats
    assert (s["images"], s["patients"], s["classes"]) == (10, 10, {"1": "lesion"})
    assert s["spacing_mm"] is None and s["ef_range"] is None


def test_masks_merged_binary_and_rgb(imported):
    _, out, _ = imported
    with open_store(out) as f:
        img, lab = read_sample(f, "benign_(1)")
        assert img.shape == (H, W) and img[0, 0] == 10 and img[3, 5] == 250
        assert set(np.unique(lab)) == {0, 1} and lab.sum() == 4 * 6 + 2 * 4 and lab[9, 11] == 1
        _, rgb = read_sample(f, "malignant_(2)")   # RGB 0/255 mask
        assert rgb.sum() == 24
        _, empty = read_sample(f, "normal_(3)")
        assert empty.sum() == 0


def test_split_within_each_category(imported):
    _, out, _ = imported
    idx = read_index(out)
    splits = {n: sorted(it.id for it in idx.in_split(n)) for n in ("train", "val", "test")}
    assert sorted(sum(splits.values(), [])) == sorted(idx.items)
    for cat in ("benign", "malignant", "normal"):
        assert all(any(i.startswith(cat) for i in splits[n]) for n in ("train", "val", "test"))


def test_missing_masks_and_images_reported(tmp_path):
    root = make_busi(tmp_path / "b", n=(2, 1, 1))
    base = root / "Dataset_BUSI_with_GT"
    (base / "malignant/malignant (1)_mask.png").unlink()
    _box(1, 2, 1, 2).save(base / "normal/normal (9)_mask.png")
    report = import_busi(base, tmp_path / "o.h5")  # ROOT may be the dataset folder itself
    assert report.counts["images"] == 3
    assert report.missing == [f"{base}/malignant/malignant (1)_mask.png: not found (the mask of malignant (1).png)",
                              f"{base}/normal/normal (9)_mask.png: mask without its image"]


def test_truncated_png_names_the_file(tmp_path):
    root = make_busi(tmp_path / "b", n=(2, 1, 1))
    bad = root / "Dataset_BUSI_with_GT/benign/benign (2).png"
    bad.write_bytes(bad.read_bytes()[:30])
    with pytest.raises(DataError, match=r"benign \(2\)\.png: cannot read image"):
        import_busi(root, tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists()
    report = import_busi(root, tmp_path / "o.h5", skip_bad=True)
    assert report.counts["images"] == 3 and "benign (2).png" in report.skipped[0]


def test_bad_masks_name_the_mask(tmp_path):
    root = make_busi(tmp_path / "b", n=(1, 1, 1))
    base = root / "Dataset_BUSI_with_GT"
    Image.fromarray(np.zeros((H + 1, W), np.uint8)).save(base / "benign/benign (1)_mask_1.png")
    with pytest.raises(DataError, match=r"benign \(1\)_mask_1\.png: mask shape \(13, 16\) does not match image"):
        import_busi(root, tmp_path / "o.h5")
    (base / "benign/benign (1)_mask_1.png").unlink()
    _box(2, 5, 2, 5, value=128).save(base / "malignant/malignant (1)_mask.png")
    with pytest.raises(DataError, match=r"malignant \(1\)_mask\.png: mask values \[0, 128\] are not a binary mask"):
        import_busi(root, tmp_path / "o.h5")


def test_cli(tmp_path):
    root = make_busi(tmp_path / "b", n=(2, 1, 1))
    r = run_samfx("data", "busi", str(root), "--out", str(tmp_path / "o.h5"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"]["images"] == 4
    r = run_samfx("data", "busi", str(tmp_path), "--out", str(tmp_path / "p.h5"))
    assert r.returncode == 2 and r.stderr.strip() == (
        f"error: {tmp_path}: no benign/, malignant/ or normal/ folder; expected the BUSI layout "
        f"Dataset_BUSI_with_GT/benign/benign (1).png with benign (1)_mask.png")
