"""`samfx data dicom` on ultrasound DICOM written with pydicom: multi-frame, regions, JPEG baseline."""
from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from pydicom.pixels.decoders import JPEGLosslessSV1Decoder
from scipy import ndimage

from samfx.contracts.errors import DataError
from samfx.data.importers.dicom import import_dicom
from samfx.data.importers.dicom_read import hash_id, read_dicom
from samfx.data.store import open_store, read_frames, read_index
from tests.cli_inprocess import cli, one_line
from tests.dicom_us import echo_frames, fan_mask, gray, us_dataset, write

INNER = ndimage.binary_erosion(fan_mask(), iterations=2)   # sector edges: hull / JPEG tolerance
OUTER = ndimage.binary_dilation(fan_mask(), iterations=2)



@pytest.fixture(scope="module")
def screen() -> np.ndarray:
    return echo_frames(5)


@pytest.fixture(scope="module")
def export(tmp_path_factory, screen) -> Path:
    """An export folder: RGB cine (uncompressed), the same as JPEG baseline in a subfolder with no
    extension, a single gray frame of another patient, a DICOMDIR and a text file."""
    root = tmp_path_factory.mktemp("export")
    write(root / "cine_rgb.dcm", us_dataset(screen))
    write(root / "series2" / "IM_0001", us_dataset(screen, jpeg=True))
    write(root / "still.dcm", us_dataset(gray(screen)[:1], patient="PAT-7", study="1.2.3.9"))
    (root / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    (root / "notes.txt").write_text("not DICOM")
    return root


def test_folder_import_crops_regions_masks_sector_and_hashes_ids(export, screen, tmp_path):
    out = tmp_path / "cine.h5"
    report = import_dicom([export], out)
    assert report.counts == {"sequences": 3, "frames": 11, "patients": 2}
    index = read_index(out)
    assert sorted(index.items) == ["cine_rgb", "series2_IM_0001", "still"]
    assert index.class_names == ["LV"] and index.splits == {}
    truth = gray(screen)[:, 6:70, 8:88]                       # cropped to the 2-D tissue region
    with open_store(out) as f:
        frames, labels = read_frames(f, "cine_rgb")
        jpeg, _ = read_frames(f, "series2_IM_0001")
        still, _ = read_frames(f, "still")
        attrs = dict(f["sequences/cine_rgb"].attrs)
        still_attrs = dict(f["sequences/still"].attrs)
    assert frames.shape == (5, 64, 80) and not labels.any()
    assert np.array_equal(frames[:, INNER], truth[:, INNER])          # the fan kept exactly
    assert not frames[:, ~OUTER].any()                                 # text, ECG and the rest blanked
    assert np.abs(jpeg[:, INNER].astype(int) - truth[:, INNER]).mean() < 3   # JPEG baseline, lossy
    assert "pylibjpeg" in JPEGLosslessSV1Decoder.available_plugins             # JPEG lossless decodable
    assert not jpeg[:, ~OUTER].any()
    assert still.shape == (1, 64, 80) and np.array_equal(still[0, INNER], truth[0, INNER])
    assert not still[:, ~OUTER].any()                  # one frame: the largest lit component, hull-filled
    item = index.items["cine_rgb"]
    assert item.spacing == pytest.approx((0.3, 0.25)) and item.labeled == (False,) * 5
    assert attrs["fps"] == pytest.approx(25.0) and list(attrs["region"]) == [8, 6, 87, 69]
    assert attrs["patient"] == hash_id("PAT-0042", "") and attrs["study"] == hash_id("1.2.826.0.1.3680043.8.498.1", "")
    assert attrs["source"] == "cine_rgb.dcm" and attrs["photometric"] == "RGB"
    assert math.isnan(still_attrs["fps"]) and still_attrs["patient"] == hash_id("PAT-7", "")
    raw = out.read_bytes()
    assert b"PAT-0042" not in raw and b"Doe" not in raw and b"1.2.826.0.1.3680043.8.498.1" not in raw


def test_keep_ids_salt_and_no_region(tmp_path, screen):
    path = write(tmp_path / "a.dcm", us_dataset(gray(screen), regions=False))
    assert read_dicom(path, keep_ids=True).patient == "PAT-0042"
    assert read_dicom(path, salt="s3cret").patient == hash_id("PAT-0042", "s3cret") != hash_id("PAT-0042", "")
    cine = read_dicom(path)
    assert cine.spacing is None and cine.frames.shape == (5, 72, 96) and "region" not in cine.attrs
    kept = read_dicom(path, sector=False)
    assert np.array_equal(kept.frames, gray(screen))


def test_blank_loop_keeps_every_pixel_and_says_so(tmp_path):
    path = write(tmp_path / "blank.dcm", us_dataset(np.zeros((3, 72, 96), np.uint8)))
    cine = read_dicom(path)
    assert cine.frames.shape == (3, 64, 80) and "sector_fraction" not in cine.attrs
    assert cine.notes == ["blank.dcm: no scan sector found (blank image?); all pixels kept"]


def test_cli_import_with_options_and_stats_line(tmp_path, screen):
    path = write(tmp_path / "in" / "a.dcm", us_dataset(screen, frame_time=None))
    out = tmp_path / "a.h5"
    r = cli("data", "dicom", path, "--out", out, "--no-crop", "--no-sector", "--fps", "50", "--keep-ids",
            "--class-names", "LV,MYO,LA")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == f"wrote {out}: 1 sequences, 5 frames, 1 patients"
    assert "patient and study IDs kept in clear (--keep-ids)" in r.stdout
    index = read_index(out)
    assert index.class_names == ["LV", "MYO", "LA"] and index.items["a"].patient == "PAT-0042"
    with h5py.File(out) as f:
        assert f["sequences/a/frames"].shape == (5, 72, 96) and f["sequences/a"].attrs["fps"] == 50.0
    one_line(cli("data", "dicom", path, "--out", out), f"{out}: already exists; pass --force")


def _bad(tmp_path: Path, name: str, screen: np.ndarray) -> Path:
    ds = us_dataset(gray(screen))
    if name == "not_dicom.dcm":
        (tmp_path / name).write_bytes(b"\0" * 200)
        return tmp_path / name
    if name == "no_rows.dcm":
        del ds.Rows
    elif name == "no_pixels.dcm":
        del ds.PixelData
    elif name == "few_bytes.dcm":
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    elif name == "frames_mismatch.dcm":
        ds.NumberOfFrames = 9
    elif name == "frames_excess.dcm":
        ds.NumberOfFrames = 3
    elif name == "region_no_bound.dcm":
        del ds.SequenceOfUltrasoundRegions[0].RegionLocationMaxX1
    elif name == "jpeg_truncated.dcm":
        ds = us_dataset(screen, jpeg=True)
    elif name == "jpeg_cut.dcm":
        ds = us_dataset(screen, jpeg=True)
        ds.PixelData = ds.PixelData[:300]
    elif name == "zero_frame_time.dcm":
        ds.FrameTime = 0
    path = write(tmp_path / name, ds)
    if name in ("truncated.dcm", "jpeg_truncated.dcm"):  # an interrupted copy
        path.write_bytes(path.read_bytes()[:-5000])
    return path


@pytest.mark.parametrize("name,what", [
    ("not_dicom.dcm", "not a DICOM file (no 'DICM' marker"),
    ("truncated.dcm", "Pixel Data (7FE0,0010) cannot be decoded"),
    ("jpeg_truncated.dcm", "the file ends early (End of file reached before delimiter (FFFE,E0DD) found)"),
    ("no_rows.dcm", "missing attribute Rows (0028,0010)"),
    ("no_pixels.dcm", "missing attribute PixelData (7FE0,0010)"),
    ("few_bytes.dcm", "Pixel Data (7FE0,0010) cannot be decoded"),
    ("frames_mismatch.dcm", "Pixel Data (7FE0,0010) cannot be decoded"),
    ("frames_excess.dcm", "Pixel Data (7FE0,0010) decodes to 5 frame(s) of (72, 96), but NumberOfFrames "
                          "(0028,0008) = 3"),
    ("region_no_bound.dcm", "Sequence of Ultrasound Regions (0018,6011) item 1 lacks RegionLocationMaxX1"),
    ("jpeg_cut.dcm", "Pixel Data (7FE0,0010) cannot be decoded (transfer syntax JPEG Baseline"),
    ("zero_frame_time.dcm", "frame timing (FrameTime (0018,1063)"),
])
def test_bad_files_are_one_line_naming_file_and_attribute(tmp_path, screen, name, what):
    path = _bad(tmp_path, name, screen)
    one_line(cli("data", "dicom", path, "--out", tmp_path / "x.h5", "--json"), f"{path}: {what}")  # --json: no bar
    assert not (tmp_path / "x.h5").exists() and not list(tmp_path.glob("x.h5.partial-*"))


def test_skip_bad_imports_the_rest_and_reports(tmp_path, screen):
    folder = tmp_path / "in"
    write(folder / "good.dcm", us_dataset(screen))
    bad = _bad(folder, "no_pixels.dcm", screen)
    report = import_dicom([folder], tmp_path / "o.h5", skip_bad=True)
    assert report.counts["sequences"] == 1 and len(report.skipped) == 1 and str(bad) in report.skipped[0]
    with pytest.raises(DataError, match="no DICOM file in this folder"):
        import_dicom([_empty(tmp_path)], tmp_path / "p.h5")


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    return tmp_path / "empty"
