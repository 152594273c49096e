"""`samfx data folder`: image/mask folders paired by stem, label mapping, patients, splits, reports."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from samfx.contracts.errors import DataError
from samfx.data.importers.folder import FolderOptions, import_folder
from samfx.data.importers.grouping import PatientRule, ratio_splits
from samfx.data.importers.labelmap import build_label_map, parse_labels
from samfx.data.store import open_store, read_frames, read_index, read_sample
from tests.cli_inprocess import cli, one_line

RNG = np.random.default_rng(0)



def png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def mask(h: int = 20, w: int = 30, values: tuple[int, ...] = (0, 255)) -> np.ndarray:
    m = np.full((h, w), values[0], np.uint8)
    for k, v in enumerate(values[1:]):
        m[2 + 4 * k: 5 + 4 * k, 3:20] = v
    return m


@pytest.fixture
def tree(tmp_path) -> Path:
    """img/ and gt/ of 3 patients: gray PNG, RGB JPEG, 16-bit TIFF; masks 0/255 named <stem>_mask.png;
    one image without a mask, one mask without an image."""
    for i, p in enumerate(("pat01", "pat01", "pat02", "pat03", "pat04")):
        stem = f"{p}_img{i}"
        if i == 1:
            png(tmp_path / "img" / f"{stem}.jpg", RNG.integers(0, 255, (20, 30, 3), dtype=np.uint8))
        elif i == 2:
            Image.fromarray((RNG.integers(0, 4000, (20, 30))).astype(np.uint16)).save(tmp_path / "img" / f"{stem}.tif")
        else:
            png(tmp_path / "img" / f"{stem}.png", RNG.integers(0, 255, (20, 30), dtype=np.uint8))
        png(tmp_path / "gt" / f"{stem}_mask.png", mask())
    png(tmp_path / "img" / "orphan.png", RNG.integers(0, 255, (20, 30), dtype=np.uint8))
    png(tmp_path / "gt" / "lost_mask.png", mask())
    return tmp_path


def options(**kw) -> FolderOptions:
    return FolderOptions(labels=build_label_map(kw.pop("labels", None), kw.pop("names", None)),
                         mask_pattern=kw.pop("pattern", "{stem}_mask"), **kw)


def test_pairs_by_stem_with_formats_patients_and_ratio_splits(tree, tmp_path):
    out = tmp_path / "my.h5"
    report = import_folder(tree / "img", tree / "gt", out,
                           options(patients=PatientRule(r"(pat\d+)_"), ratios=(0.5, 0.25, 0.25), seed=3))
    assert report.counts == {"images": 5, "sequences": 0, "patients": 4}
    assert report.notes[:2] == ["1 image(s) without a mask: orphan.png", "1 mask(s) without an image: lost_mask.png"]
    index = read_index(out)
    assert index.classes == [1] and index.class_names == ["foreground"]
    assert {it.patient for it in index.items.values()} == {"pat01", "pat02", "pat03", "pat04"}
    splits = ratio_splits(["pat01", "pat02", "pat03", "pat04"], (0.5, 0.25, 0.25), 3)
    assert {k: sorted(v[0]) for k, v in index.splits.items()} == splits
    assert [len(v) for v in splits.values()] == [2, 1, 1]
    with open_store(out) as f:
        image, label = read_sample(f, "pat01_img0")
        rgb, _ = read_sample(f, "pat01_img1")
        tif, _ = read_sample(f, "pat02_img2")
    assert np.array_equal(image, np.asarray(Image.open(tree / "img" / "pat01_img0.png")))
    assert np.array_equal(label, (mask() == 255).astype(np.uint8))      # 0/255 -> 0/1
    assert rgb.shape == (20, 30) and tif.dtype == np.uint8 and tif.max() == 255  # RGB -> gray; 16-bit scaled
    assert all(np.isnan(it.spacing).all() for it in index.items.values())


def test_label_mapping_class_names_spacing_and_nifti(tmp_path):
    png(tmp_path / "i" / "a.png", RNG.integers(0, 255, (20, 30), dtype=np.uint8))
    png(tmp_path / "m" / "a.png", mask(values=(0, 128, 255)))
    xy = RNG.integers(0, 255, (30, 20, 4)).astype(np.uint8)            # NIfTI (x, y, t): a sequence
    nib.save(nib.Nifti1Image(xy, np.diag([0.4, 0.3, 1, 1])), str(tmp_path / "i" / "s.nii.gz"))
    lab = np.zeros_like(xy)
    lab[5:9, 4:8] = 128
    nib.save(nib.Nifti1Image(lab, np.eye(4)), str(tmp_path / "m" / "s.nii.gz"))
    out = tmp_path / "o.h5"
    report = import_folder(tmp_path / "i", tmp_path / "m", out,
                           options(pattern="{stem}", labels=["0,128,255=0,1,2"], names=["LV", "MYO"]))
    assert report.counts == {"images": 1, "sequences": 1, "patients": 2}
    index = read_index(out)
    assert index.classes == [1, 2] and index.class_names == ["LV", "MYO"]
    assert index.items["s"].spacing == pytest.approx((0.3, 0.4))        # (row, col) from the header
    with open_store(out) as f:
        _, label = read_sample(f, "a")
        frames, labels = read_frames(f, "s")
    assert set(np.unique(label)) == {0, 1, 2} and (label == 2).sum() == (mask(values=(0, 128, 255)) == 255).sum()
    assert frames.shape == (4, 20, 30) and np.array_equal(frames[2], xy[:, :, 2].T)
    assert labels[0, 4:8, 5:9].all() and labels.sum() == 4 * 16 and index.items["s"].labeled == (True,) * 4
    fixed = import_folder(tmp_path / "i", tmp_path / "m", tmp_path / "p.h5",
                          options(pattern="{stem}", labels=["0,128,255=0,1,2"], spacing=(0.5, 0.5)))
    assert fixed.counts["images"] == 1 and read_index(tmp_path / "p.h5").items["s"].spacing == (0.5, 0.5)


def test_split_lists_one_folder_and_leak_report(tmp_path):
    for stem in ("p1_a", "p1_b", "p2_a", "p3_a"):
        png(tmp_path / "d" / f"{stem}.png", RNG.integers(0, 255, (8, 8), dtype=np.uint8))
        png(tmp_path / "d" / f"{stem}_seg.png", mask(8, 8, (0, 1)))
    (tmp_path / "test.txt").write_text("p2\np1_b\nnobody\n")
    (tmp_path / "train.txt").write_text("p1_a\n")
    r = cli("data", "folder", tmp_path / "d", tmp_path / "d", "--out", tmp_path / "o.h5", "--mask-suffix", "_seg",
            "--patient-regex", r"^(p\d)_", "--split-list", f"test={tmp_path / 'test.txt'}",
            "--split-list", f"train={tmp_path / 'train.txt'}", "--json")
    assert r.exit_code == 0, r.output
    index = read_index(tmp_path / "o.h5")
    assert sorted(index.items) == ["p1_a", "p1_b", "p2_a", "p3_a"]
    assert index.splits["test"] == ({"p2"}, {"p1_b"}) and index.splits["train"] == (set(), {"p1_a"})
    assert "1 listed name(s) match no imported file or patient: test: nobody" in r.stdout
    assert "1 patient(s) in more than one split (check the lists): p1" in r.stdout
    assert "1 imported item(s) in no split: p3_a" in r.stdout


def test_cli_stats_line_and_progress(tree, tmp_path):
    out = tmp_path / "c.h5"
    r = cli("data", "folder", tree / "img", tree / "gt", "--out", out, "--mask-suffix", "_mask", "--spacing", "0.3")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == f"wrote {out}: 5 images, 0 sequences, 5 patients"
    assert "splits by patient (seed 0): train 3, val 1, test 1" in r.stdout
    assert read_index(out).items["pat01_img0"].spacing == (0.3, 0.3)


def test_size_mismatch_and_unexpected_values_name_the_file(tree, tmp_path):
    png(tree / "gt" / "pat03_img3_mask.png", mask(20, 31))
    png(tree / "gt" / "pat04_img4_mask.png", mask(values=(0, 255, 7)))
    args = ("data", "folder", tree / "img", tree / "gt", "--out", tmp_path / "x.h5", "--mask-suffix", "_mask", "--json")
    one_line(cli(*args), f"{tree / 'gt' / 'pat03_img3_mask.png'}: mask shape (20, 31) does not match image "
                         f"pat03_img3.png (20, 30)")
    assert not (tmp_path / "x.h5").exists()
    r = cli(*args, "--skip-bad")
    assert r.exit_code == 0, r.output
    assert '"count": 2' in r.stdout and "unexpected mask values [7] (expected [0, 1, 255])" in r.stdout
    assert sorted(read_index(tmp_path / "x.h5").items) == ["pat01_img0", "pat01_img1", "pat02_img2"]


@pytest.mark.parametrize("extra,what", [
    (["--labels", "255"], "--labels '255': expected MASK_VALUES=CLASS_IDS"),
    (["--labels", "0,255=0"], "--labels '0,255=0': expected MASK_VALUES=CLASS_IDS"),
    (["--labels", "255=1", "--labels", "255=2"], "--labels: mask value 255 is mapped to both 1 and 2"),
    (["--labels", "255=3", "--class-names", "LV"], "--labels maps to class 3 but --class-names names only 1"),
    (["--split", "0.5,0.5"], "--split '0.5,0.5': expected three fractions"),
    (["--split-list", "test"], "--split-list 'test': expected NAME=FILE"),
    (["--split-list", "test=/nonexistent/t.txt"], "cannot read /nonexistent/t.txt"),
    (["--patient-regex", "(p"], "--patient-regex '(p': not a valid regular expression"),
    (["--patient-regex", "^zz(\\d)", "--mask-suffix", "_mask"], "file name does not match --patient-regex"),
    (["--spacing", "0,1"], "--spacing '0,1': expected mm per pixel > 0"),
    (["--mask-pattern", "gt"], "--mask-pattern 'gt': must contain {stem}"),
    (["--mask-pattern", "{stem}_m", "--mask-suffix", "_m"], "--mask-suffix and --mask-pattern: give one"),
])
def test_bad_options_are_one_line(tree, tmp_path, extra, what):
    one_line(cli("data", "folder", tree / "img", tree / "gt", "--out", tmp_path / "x.h5", "--json", *extra), what)


def test_missing_folders_no_pairs_and_same_folder_without_suffix(tree, tmp_path):
    one_line(cli("data", "folder", tmp_path / "nope", tree / "gt", "--out", tmp_path / "x.h5"),
             f"{tmp_path / 'nope'}: image folder not found")
    one_line(cli("data", "folder", tree / "img", tree / "gt", "--out", tmp_path / "x.h5"),
             f"{tree / 'img'}: no image has a mask in {tree / 'gt'}")
    one_line(cli("data", "folder", tree / "img", tree / "img", "--out", tmp_path / "x.h5"),
             "images and masks in one folder need a mask name that differs")
    png(tree / "img" / "pat01_img0.tif", np.zeros((2, 2), np.uint8))
    with pytest.raises(DataError, match="same stem as pat01_img0.png"):
        import_folder(tree / "img", tree / "gt", tmp_path / "y.h5", options())


def test_label_map_defaults():
    binary = build_label_map(None, None)
    assert binary.classes == [1] and binary.apply(np.array([0, 1, 255], np.uint8), "m").tolist() == [0, 1, 1]
    three = build_label_map(None, ["LV", "MYO", "LA"])
    assert three.apply(np.array([0, 3], np.uint8), "m").tolist() == [0, 3]
    with pytest.raises(DataError, match="m: unexpected mask values \\[255\\]"):
        three.apply(np.array([0, 255], np.uint8), "m")
    assert parse_labels(["0,128,255=0,1,2", "64=3"]) == {0: 0, 128: 1, 255: 2, 64: 3}
    assert build_label_map(["255=2"], None).class_names == ["class1", "class2"]


def test_mask_pattern_with_a_prefix(tmp_path):
    png(tmp_path / "d" / "a.png", RNG.integers(0, 255, (8, 8), dtype=np.uint8))
    png(tmp_path / "d" / "gt_a.png", mask(8, 8, (0, 1)))
    png(tmp_path / "d" / "gt_{0}.png", mask(8, 8, (0, 1)))          # braces in a name are not a template
    report = import_folder(tmp_path / "d", tmp_path / "d", tmp_path / "o.h5", options(pattern="gt_{stem}"))
    assert report.counts["images"] == 1 and sorted(read_index(tmp_path / "o.h5").items) == ["a"]
    assert report.notes[0] == "1 image(s) without a mask: gt_{0}.png"
