"""One image path: a file gives the same uint8 pixels through `samfx data folder` (what training reads)
and through `samfx predict` (what the model is fed), and a NaN file is refused by both the same way."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from samfx.contracts.errors import SamfxError
from samfx.data.datasets import ImageDataset
from samfx.data.store import open_store, read_frames, read_index, read_sample
from samfx.deploy.inputs import read_inputs
from samfx.deploy.predict import model_input
from tests.cli_inprocess import cli, one_line

H, W, T = 24, 36, 3


def pattern_12bit() -> np.ndarray:
    """Values spanning 0..4095 in a non-trivial (non-monotone, non-separable) pattern."""
    r, c = np.mgrid[0:H, 0:W]
    a = (r * 173 + c * c * 37 + (r * c) % 11 * 59) % 4096
    a[0, 0], a[-1, -1] = 0, 4095
    return a.astype(np.uint16)


def mask() -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[5:15, 8:25] = 1
    return m


def nifti(path: Path, data: np.ndarray, zooms: tuple[float, ...]) -> Path:
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_zooms(zooms)
    nib.save(img, str(path))
    return path


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    """img/ and gt/: a 16-bit PNG, a float 2-D NIfTI and a float 3-D (x, y, t) NIfTI, each with a mask."""
    img, gt = tmp_path / "img", tmp_path / "gt"
    img.mkdir()
    gt.mkdir()
    Image.fromarray(pattern_12bit()).save(img / "us16.png")
    Image.fromarray(mask() * 255).save(gt / "us16_mask.png")
    flt = pattern_12bit().astype(np.float32) * 0.37 - 12.5          # (rows, cols), non-integer values
    nifti(img / "still.nii.gz", flt.T.copy(), (0.3, 0.5))           # NIfTI stores (x, y) = (cols, rows)
    nifti(gt / "still_mask.nii.gz", mask().T.copy(), (0.3, 0.5))
    seq = np.stack([np.roll(flt, 3 * t, axis=1) for t in range(T)])  # (t, rows, cols)
    nifti(img / "beat.nii", seq.transpose(2, 1, 0).copy(), (0.3, 0.5, 1.0))
    nifti(gt / "beat_mask.nii", np.stack([mask()] * T).transpose(2, 1, 0).copy(), (0.3, 0.5, 1.0))
    return img, gt


def imported(folders: tuple[Path, Path], out: Path) -> Path:
    r = cli("data", "folder", *folders, "--out", out, "--mask-suffix", "_mask")
    assert r.exit_code == 0, r.output
    return out


def test_same_pixels_through_import_and_predict(folders, tmp_path):
    store = imported(folders, tmp_path / "s.h5")
    img = folders[0]
    with open_store(store) as f:
        png_store, _ = read_sample(f, "us16")
        still_store, _ = read_sample(f, "still")
        beat_store, _ = read_frames(f, "beat")
    [png_in], [still_in], [beat_in] = (read_inputs(img / n) for n in ("us16.png", "still.nii.gz", "beat.nii"))

    assert png_in.frames.dtype == np.uint8 and np.array_equal(png_in.frames[0], png_store)
    assert np.array_equal(still_in.frames[0], still_store) and not still_in.sequence
    assert beat_in.sequence and np.array_equal(beat_in.frames, beat_store)
    spacing = {it.id: tuple(it.spacing) for it in read_index(store).items.values()}
    assert still_in.spacing == spacing["still"] == pytest.approx((0.5, 0.3))
    assert beat_in.spacing == spacing["beat"] == pytest.approx((0.5, 0.3))

    # the 16-bit range is scaled, not saturated (PIL's convert("L") clips everything above 255)
    assert png_store.min() == 0 and png_store.max() == 255 and len(np.unique(png_store)) > 100
    assert not np.array_equal(png_store, np.asarray(Image.open(img / "us16.png").convert("L")))
    # float values are rounded after min-max scaling, not truncated
    flt = pattern_12bit().astype(np.float64) * 0.37 - 12.5
    scaled = (flt - flt.min()) / (flt.max() - flt.min()) * 255
    assert np.array_equal(still_store, np.round(scaled).astype(np.uint8))
    assert not np.array_equal(still_store, scaled.astype(np.uint8))


def test_same_model_input_after_the_same_resize(folders, tmp_path):
    store = imported(folders, tmp_path / "s.h5")
    ds = ImageDataset(store, None, 32, sequence_frames="none")
    by_id = {ds[i]["id"]: ds[i]["image"] for i in range(len(ds))}
    for name, item in (("us16.png", "us16"), ("still.nii.gz", "still")):
        [inp] = read_inputs(folders[0] / name)
        x = model_input(inp.frames, 32).clamp(0.0, 1.0)[0]
        assert torch.equal(x, by_id[item]), name


def test_nan_nifti_is_refused_by_both_with_one_line(folders, tmp_path):
    img, gt = folders
    bad = pattern_12bit().astype(np.float32)
    bad[4, 7] = np.nan
    path = nifti(img / "holes.nii.gz", bad.T.copy(), (0.3, 0.5))
    nifti(gt / "holes_mask.nii.gz", mask().T.copy(), (0.3, 0.5))
    what = f"{path}: image is empty or has NaN/inf values"

    one_line(cli("data", "folder", img, gt, "--out", tmp_path / "x.h5", "--mask-suffix", "_mask",
                 "--json"), what)
    with pytest.raises(SamfxError) as exc:
        read_inputs(path)
    assert str(exc.value).startswith(what) and "\n" not in str(exc.value)
    one_line(cli("predict", tmp_path / "model.pt", path, "--out", tmp_path / "o"), what)
