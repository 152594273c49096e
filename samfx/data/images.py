"""Reading and normalising image files: the one path from a file to the uint8 pixels a model sees.

The importers (what training reads) and ``samfx predict`` both read through this module, so a file
gives the same pixels in both.

- :func:`to_uint8`: uint8 is kept; integer values in 0..255 are kept; anything else is min-max
  scaled to 0..255 and rounded. Empty arrays and NaN/inf values are a DataError naming the file.
- :func:`to_label`: label ids as uint8; non-integer, negative or >255 values are a DataError.
- :func:`read_png`: PNG (8- and 16-bit), JPEG, BMP, TIFF as a 2-D uint8 array; 16-bit and float
  images go through :func:`to_uint8`, every other mode (palette colour included: its colours, not
  its indices) through PIL's grayscale conversion. A multi-page TIFF (or any file of several
  frames) is a DataError: it is never silently read as its first page.
- :func:`read_nifti`: a 2-D or 3-D NIfTI as (rows, cols) or (t, rows, cols), with its spacing; a
  spacing that is not positive and finite is dropped (None) with a UserWarning naming the file.
- Bounds, checked from the header before any pixel buffer exists: an image (or NIfTI frame) of more
  than :data:`MAX_PIXELS` pixels is a DataError whatever Pillow's own ``MAX_IMAGE_PIXELS``; a NIfTI
  whose declared shape needs more bytes than the file can hold (uncompressed: its size; gzip: 1032x
  its size) is a DataError.
- :func:`read_image`: any of the above by extension, as uint8 (or label ids) plus the NIfTI spacing.

Every unreadable file is a DataError whose message is one line starting with the file's path.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np

from samfx.contracts.errors import DataError

NIFTI_EXT = (".nii", ".nii.gz")
MAX_PIXELS = 89_478_485   # pixels per image or frame samfx reads (Pillow's default bomb limit)
GZIP_MAX_RATIO = 1032     # deflate cannot expand data more than this


def to_uint8(arr: np.ndarray, where: str) -> np.ndarray:
    """Intensities as uint8: integers in 0..255 are kept, anything else is min-max scaled."""
    a = np.asarray(arr)
    if a.dtype == np.uint8:
        return a
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise DataError(f"{where}: image is empty or has NaN/inf values; the file is damaged")
    if a.min() >= 0 and a.max() <= 255 and np.all(a == np.round(a)):
        return a.astype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    return np.round((a - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)


def to_label(arr: np.ndarray, where: str) -> np.ndarray:
    """Label ids as uint8; they must be non-negative integers (ids are checked by the writer)."""
    a = np.asarray(arr)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.size and (not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 255
                   or np.any(np.abs(a - np.round(a)) > 1e-3)):
        raise DataError(f"{where}: label map must hold integer class ids, got values in "
                        f"[{a.min()}, {a.max()}]; is this an image rather than a label file?")
    return np.round(a).astype(np.uint8)


def read_png(path: Path, *, label: bool = False) -> np.ndarray:
    """A PNG/JPEG/BMP/TIFF as a 2-D uint8 array (grayscale). Masks keep their values (1-bit -> 0/1)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: samfx's own bound below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise DataError(f"{path}: declares {width}x{height} = {width * height} pixels, more than the "
                                f"{MAX_PIXELS} samfx reads; a decompression bomb or not an ultrasound image")
            im.load()
            mode = im.mode
            pages = int(getattr(im, "n_frames", 1) or 1)
            if pages > 1:
                raise DataError(f"{path}: holds {pages} pages/frames; samfx reads one image per file, not page 1 "
                                f"of many: save each page as its own file, or the loop as DICOM or NIfTI")
            if label:
                a = np.asarray(im)
                if a.ndim == 3:
                    if not np.all(a[..., :3] == a[..., :1]):
                        raise DataError(f"{path}: colour label image; labels must be one class id per pixel")
                    a = a[..., 0]
                return to_label(a, str(path))
            if mode in ("I", "I;16", "I;16B", "F"):
                return to_uint8(np.asarray(im).astype(np.float64), str(path))
            return np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc}); the file is damaged or "
                        f"not an image") from None


def read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    """(array in (rows, cols) or (frames, rows, cols) order, spacing (row_mm, col_mm)) of a NIfTI file
    stored as (x, y[, t]) (the CAMUS convention); trailing axes of size 1 beyond the third are dropped.
    The values are the file's (not yet converted to uint8). Bounds and spacing: module docstring."""
    import nibabel as nib

    try:
        img = cast("nib.Nifti1Image", nib.load(str(path)))
        _check_nifti_size(path, img.header)
        data = np.asanyarray(img.dataobj)
        zooms, shape = _raw_zooms(path, img), tuple(img.shape)
    except DataError:
        raise
    except Exception as exc:  # nibabel raises many types for truncated / foreign files
        raise DataError(f"{path}: cannot read NIfTI ({type(exc).__name__}: {exc}); the file is truncated "
                        f"or not NIfTI, download it again") from None
    if data.size == 0:
        raise DataError(f"{path}: NIfTI with shape {shape} has no pixels; expected (x, y) or (x, y, t) "
                        f"with t >= 1")
    if data.ndim > 3 and all(s == 1 for s in data.shape[3:]):
        data = np.squeeze(data, axis=tuple(range(3, data.ndim)))
    if data.ndim not in (2, 3):
        raise DataError(f"{path}: expected a 2-D image or a 3-D (x, y, t) sequence, got shape {data.shape}")
    data = data.T if data.ndim == 2 else data.transpose(2, 1, 0)  # -> (rows, cols) / (t, rows, cols)
    spacing = (float(zooms[1]), float(zooms[0]))
    if not all(v > 0 and math.isfinite(v) for v in spacing):
        warnings.warn(f"{path}: pixel spacing {spacing} mm is not positive and finite; ignored (spacing unknown)",
                      UserWarning, stacklevel=2)
        return data, None
    return data, spacing


def _raw_zooms(path: Path, img: Any) -> tuple[float, ...]:
    """The header's zooms as written: nibabel's load turns negative ones positive and zeros into 1."""
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as fh:
        header = type(img.header).from_fileobj(fh, check=False)
    return tuple(float(z) for z in header.get_zooms())


def _check_nifti_size(path: Path, header: Any) -> None:
    """DataError when the header's shape cannot be this file's: more than MAX_PIXELS per frame, or more bytes
    than the file can hold."""
    shape = tuple(int(s) for s in header.get_data_shape())
    needed = math.prod(shape) * np.dtype(header.get_data_dtype()).itemsize
    size = path.stat().st_size
    room = size * GZIP_MAX_RATIO if path.name.lower().endswith(".gz") else size - int(header.get_data_offset())
    if (len(shape) >= 2 and shape[0] * shape[1] > MAX_PIXELS) or needed > room:
        raise DataError(f"{path}: header declares shape {shape} ({needed} bytes), but the file of {size} bytes "
                        f"can hold at most {max(room, 0)}; the header is damaged or the file truncated")


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_EXT)


def read_image(path: Path, *, label: bool = False) -> tuple[np.ndarray, tuple[float, float] | None]:
    """(rows, cols) or (t, rows, cols) uint8 array of an image (``label``: a mask, as class ids) and the
    NIfTI spacing (row_mm, col_mm) if any (None for other formats)."""
    if is_nifti(path):
        data, spacing = read_nifti(path)
        arr = to_label(data, str(path)) if label else to_uint8(data, str(path))
        return arr, spacing
    return read_png(path, label=label), None
