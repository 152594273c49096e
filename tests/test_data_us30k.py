"""US30K importer: the real layout sample (one BUSI image), 0/255 masks, bad inputs."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from samfx.cli.main import app
from samfx.contracts.errors import DataError
from samfx.data.datasets import ImageDataset
from samfx.data.importers.us30k import import_us30k
from samfx.data.store import open_store, read_index, read_sample

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared/fixtures/us30k_layout_sample"
if not SAMPLE.is_dir():
    SAMPLE = Path("/work/shared/fixtures/us30k_layout_sample")
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared/fixtures/us30k_layout_sample not present")


@needs_sample
def test_imports_the_real_busi_image_and_reports_missing(tmp_path):
    report = import_us30k(SAMPLE, tmp_path / "u.h5")
    assert report.counts == {"images": 1, "datasets": 1}
    # 14 distinct listed images are not shipped (CAMUS, TN3K, ... and other BUSI names)
    assert len(report.missing) == 14
    assert "Breast-BUSI/img/benign0046" in report.missing
    assert "Echocardiography-CAMUS/img/0001_2CH_000" in report.missing
    lines = report.summary_lines()
    assert lines[1].startswith("14 listed but missing: ") and lines[1].endswith("(+9 more)")
    idx = read_index(tmp_path / "u.h5")
    assert idx.classes == [1] and idx.class_names == ["lesion"]
    item = idx.items["Breast-BUSI:benign0001"]
    assert item.shape == (256, 256) and item.attrs["dataset"] == "Breast-BUSI"
    assert all(np.isnan(item.spacing))
    for split in ("train", "val", "test"):  # listed in all three per-dataset lists
        assert [it.id for it in idx.in_split(split)] == ["Breast-BUSI:benign0001"]
    with open_store(tmp_path / "u.h5") as f:
        img, lab = read_sample(f, "Breast-BUSI:benign0001")
    src = np.asarray(Image.open(SAMPLE / "Breast-BUSI/img/benign0001.png"))[..., 0]
    mask = np.asarray(Image.open(SAMPLE / "Breast-BUSI/label/benign0001.png"))
    assert np.array_equal(img, src) and np.array_equal(lab, mask.astype(np.uint8))
    assert set(np.unique(lab)) == {0, 1} and lab.sum() == 246
    it = ImageDataset(tmp_path / "u.h5", "train", 64)[0]
    assert it["image"].shape == (3, 64, 64) and set(it["label"].unique().tolist()) == {0, 1}


@needs_sample
def test_strict_and_cli(tmp_path):
    with pytest.raises(DataError, match=r"listed but not found \(strict import\)"):
        import_us30k(SAMPLE, tmp_path / "u.h5", strict=True)
    r = CliRunner().invoke(app, ["data", "us30k", str(SAMPLE), "--out", str(tmp_path / "u.h5"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["counts"]["images"] == 1 and out["missing"]["count"] == 14 and len(out["missing"]["first"]) == 5
    r = CliRunner().invoke(app, ["data", "us30k", str(SAMPLE), "--out", str(tmp_path / "v.h5"),
                                 "--dataset", "Breast-BUS"])
    assert r.exit_code == 2 and "dataset(s) ['Breast-BUS'] are not listed" in r.output


def _tree(root, masks, n_classes=2, images=None):
    (root / "MainPatient").mkdir(parents=True)
    (root / "MainPatient/class.json").write_text(json.dumps({"DS": n_classes}))
    (root / "DS/img").mkdir(parents=True)
    (root / "DS/label").mkdir(parents=True)
    lines = []
    for i, mask in enumerate(masks):
        name = f"im{i}"
        img = images[i] if images else Image.fromarray(np.full(mask.shape, 100, np.uint8))
        if isinstance(img, bytes):
            (root / f"DS/img/{name}.png").write_bytes(img)
        else:
            img.save(root / f"DS/img/{name}.png")
        Image.fromarray(mask).save(root / f"DS/label/{name}.png")
        lines.append(f"1/DS/{name}")
    (root / "MainPatient/train.txt").write_text("\n".join(lines))
    (root / "MainPatient/test.txt").write_text("DS/im0\nDS/gone")
    return root


def test_0_255_masks_become_0_1(tmp_path):
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:9] = 255
    root = _tree(tmp_path / "r", [mask])
    report = import_us30k(root, tmp_path / "u.h5")
    assert report.missing == ["DS/img/gone"]
    with open_store(tmp_path / "u.h5") as f:
        _, lab = read_sample(f, "DS:im0")
    assert lab.dtype == np.uint8 and set(np.unique(lab)) == {0, 1} and lab.sum() == 18
    idx = read_index(tmp_path / "u.h5")
    assert [it.id for it in idx.in_split("test")] == ["DS:im0"] and idx.class_names == ["class1"]


def test_png_that_is_not_an_image(tmp_path):
    root = _tree(tmp_path / "r", [np.zeros((4, 4), np.uint8)], images=[b"this is not a png"])
    with pytest.raises(DataError, match=r"DS/img/im0.png: cannot read image .*not an image"):
        import_us30k(root, tmp_path / "u.h5")
    assert not (tmp_path / "u.h5").exists()


def test_label_ids_outside_declared_set(tmp_path):
    mask = np.zeros((6, 6), np.uint8)
    mask[1, 1] = 2
    root = _tree(tmp_path / "r", [mask, np.zeros((6, 6), np.uint8)])
    with pytest.raises(DataError, match=r"DS/label/im0.png: label ids \[2\] outside the declared set 0..1 of DS"):
        import_us30k(root, tmp_path / "u.h5")
    report = import_us30k(root, tmp_path / "u.h5", skip_bad=True)
    assert report.counts["images"] == 1 and "im0.png" in report.skipped[0]


def test_shape_mismatch_and_empty(tmp_path):
    root = _tree(tmp_path / "r", [np.zeros((6, 6), np.uint8)], images=[Image.fromarray(np.zeros((5, 6), np.uint8))])
    with pytest.raises(DataError, match=r"im0.png: mask shape \(6, 6\) does not match image \(5, 6\)"):
        import_us30k(root, tmp_path / "u.h5")
    with pytest.raises(DataError, match="no list files"):
        import_us30k(tmp_path, tmp_path / "u.h5")
