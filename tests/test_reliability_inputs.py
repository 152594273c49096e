"""Hostile input files are refused in one line naming the file, from their headers, before any pixel
buffer of the declared size is allocated: decompression-bomb PNG/TIFF, DICOMs whose header claims more
frames, rows or columns than their pixel data hold (or zero frames), NIfTI files with an absurd declared
shape or unusable pixel spacing, truncated videos (docs/data.md, "Hostile and damaged files")."""
from __future__ import annotations

import gzip
import math
import resource
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from samfx.contracts.errors import DataError
from samfx.data.images import MAX_PIXELS, read_image, read_nifti, read_png
from samfx.data.importers.dicom_read import read_dicom
from samfx.data.importers.video import read_video
from tests.dicom_us import echo_frames, gray, us_dataset, write
from tests.test_data_video import write_video


def bounded(read, path: Path):
    """``read(path)`` with the address space capped at 1.5 GiB above what is mapped now (restored before
    the error is reported): reading a hostile file must not even try a huge allocation."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    cap = mapped + (3 << 29)
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        return read(path)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def one_line_error(exc: pytest.ExceptionInfo, path: Path, *parts: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    for part in parts:
        assert part in msg, (part, msg)
    return msg


# -- images ---------------------------------------------------------------------------------------------------

def bomb_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width x height 8-bit gray pixels, with one row of data (a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def bomb_tiff(path: Path, width: int, height: int) -> Path:
    """An uncompressed little-endian TIFF declaring width x height 8-bit gray pixels, holding 16 bytes."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0),
            (277, 3, 1), (278, 4, height), (279, 4, 16)]
    ifd_at = 8
    data_at = ifd_at + 2 + 12 * len(tags) + 4
    entries = b"".join(struct.pack("<HHII", tag, kind, 1, data_at if tag == 273 else value)
                       for tag, kind, value in tags)
    path.write_bytes(b"II*\0" + struct.pack("<I", ifd_at) + struct.pack("<H", len(tags)) + entries
                     + b"\0\0\0\0" + b"\0" * 16)
    return path


@pytest.mark.parametrize("make", [bomb_png, bomb_tiff])
@pytest.mark.parametrize("pillow_limit", ["default", "disabled"])
def test_decompression_bomb_is_refused_from_the_header(tmp_path, monkeypatch, make, pillow_limit):
    from PIL import Image

    if pillow_limit == "disabled":  # a plugin or notebook turned Pillow's own guard off: samfx's bound holds
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    path = make(tmp_path / f"bomb.{'png' if make is bomb_png else 'tif'}", 60000, 60000)
    with pytest.raises(DataError) as exc:
        bounded(read_png, path)
    one_line_error(exc, path)


def test_image_just_over_the_bound_is_refused_and_under_it_read(tmp_path):
    side = math.isqrt(MAX_PIXELS) + 1
    path = bomb_png(tmp_path / "big.png", side, side)
    with pytest.raises(DataError) as exc:
        bounded(read_png, path)
    one_line_error(exc, path, f"{side}x{side}", "decompression bomb")
    from PIL import Image

    Image.fromarray(np.full((3, 4), 7, np.uint8)).save(tmp_path / "ok.png")
    assert read_png(tmp_path / "ok.png").shape == (3, 4)


# -- DICOM ------------------------------------------------------------------------------------------------------

def dicom(tmp_path: Path, name: str, **attrs) -> Path:
    ds = us_dataset(gray(echo_frames(3)))
    for key, value in attrs.items():
        setattr(ds, key, value)
    return write(tmp_path / name, ds)


@pytest.mark.parametrize("attrs, parts", [
    ({"NumberOfFrames": 100000}, ("NumberOfFrames (0028,0008) = 100000", "Pixel Data")),
    ({"Rows": 60000, "Columns": 60000}, ("Rows x Columns (0028,0010/0011) = 60000 x 60000",)),
    ({"Rows": 60000}, ("Rows 60000", "Pixel Data (7FE0,0010) cannot be decoded: it holds 20736 bytes")),
    ({"NumberOfFrames": 0}, ("NumberOfFrames (0028,0008) = 0",)),
])
def test_dicom_header_claiming_more_than_its_pixel_data_is_refused(tmp_path, attrs, parts):
    path = dicom(tmp_path, "claims.dcm", **attrs)
    with pytest.raises(DataError) as exc:
        bounded(read_dicom, path)
    one_line_error(exc, path, *parts)


def test_jpeg_dicom_claiming_huge_frames_is_refused(tmp_path):
    ds = us_dataset(echo_frames(2), jpeg=True)
    ds.Rows, ds.Columns = 60000, 60000
    path = write(tmp_path / "jpeg.dcm", ds)
    with pytest.raises(DataError) as exc:
        bounded(read_dicom, path)
    one_line_error(exc, path, "Rows x Columns")


def test_consistent_dicom_still_reads(tmp_path):
    assert read_dicom(dicom(tmp_path, "ok.dcm")).frames.shape == (3, 64, 80)


# -- NIfTI ------------------------------------------------------------------------------------------------------

def nifti(path: Path, zooms=(0.3, 0.2, 1.0), shape=(6, 5, 2)) -> Path:
    img = nib.Nifti1Image(np.arange(np.prod(shape), dtype=np.uint8).reshape(shape), np.eye(4))
    nib.save(img, str(path))
    return patch(path, 76, struct.pack("<4f", 1.0, *zooms))  # pixdim, as written: nibabel would fix them


def patch_dims(path: Path, dims: tuple[int, ...]) -> Path:
    """Rewrite the NIfTI-1 header's dim field (offset 40, 8 int16) of `path`."""
    return patch(path, 40, struct.pack("<8h", len(dims), *dims, *([1] * (7 - len(dims)))))


def patch(path: Path, offset: int, data: bytes) -> Path:
    """Overwrite the bytes at `offset` of a NIfTI-1 file (.nii or .nii.gz) with `data`."""
    gz = path.name.endswith(".gz")
    raw = bytearray(gzip.decompress(path.read_bytes()) if gz else path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(gzip.compress(bytes(raw)) if gz else bytes(raw))
    return path


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
def test_nifti_with_huge_declared_shape_is_refused_from_the_header(tmp_path, name):
    path = patch_dims(nifti(tmp_path / name), (32767, 32767, 32767))
    with pytest.raises(DataError) as exc:
        bounded(read_nifti, path)
    one_line_error(exc, path, "(32767, 32767, 32767)", "bytes")


@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan"), float("inf")])
def test_nifti_with_unusable_spacing_drops_it_with_a_warning(tmp_path, bad):
    path = nifti(tmp_path / "s.nii.gz", zooms=(0.3, bad, 1.0))
    with pytest.warns(UserWarning, match=r"s\.nii\.gz: pixel spacing .* not positive and finite; ignored"):
        arr, spacing = read_image(path)
    assert spacing is None and arr.shape == (2, 5, 6)
    assert read_image(nifti(tmp_path / "ok.nii.gz"))[1] == pytest.approx((0.2, 0.3))


# -- video ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, codec, pix", [("mp4", "mpeg4", "yuv420p"), ("avi", "mjpeg", "yuvj420p")])
@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_truncated_video_is_one_line(tmp_path, fmt, codec, pix, keep):
    path = tmp_path / f"cut.{fmt}"
    write_video(path, fmt, codec, pix)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(DataError) as exc:
        bounded(read_video, path)
    one_line_error(exc, path)
