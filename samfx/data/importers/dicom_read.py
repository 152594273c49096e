"""Read one ultrasound DICOM file (single frame or multi-frame cine) into gray frames and metadata.

- Pixels: pydicom (JPEG transfer syntaxes through pylibjpeg / pylibjpeg-libjpeg); RGB, YBR and
  PALETTE COLOR (through its lookup tables) are converted to gray (ITU-R 601 luma), MONOCHROME1 is
  inverted, >8-bit data is scaled to 0..255.
- Spacing: the Sequence of Ultrasound Regions (0018,6011): the largest 2-D region
  (RegionSpatialFormat 1, tissue data preferred) whose PhysicalUnitsX/YDirection are cm (code 3)
  gives (PhysicalDeltaY, PhysicalDeltaX) x 10 mm per pixel, and the frames are cropped to its
  bounds (RegionLocationMinX0 .. MaxX1, MinY0 .. MaxY1, inclusive). Else PixelSpacing (0028,0030),
  else unknown.
- Size: the header must fit the pixel data before anything is decoded: NumberOfFrames >= 1, Rows x
  Columns at most :data:`samfx.data.images.MAX_PIXELS`, native Pixel Data at least NumberOfFrames x
  Rows x Columns x SamplesPerPixel x BitsAllocated bits long, encapsulated Pixel Data holding at least
  one fragment per frame; otherwise a DataError naming the file and the attributes.
- Frame rate: FrameTime (0018,1063, ms), FrameTimeVector (0018,1065), CineRate (0018,0040) or
  RecommendedDisplayFrameRate (0008,2144); NaN when none is present.
- PatientID and StudyInstanceUID are hashed (sha256 of salt + value, 16 hex digits) unless
  ``keep_ids``.
"""
from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samfx.contracts.errors import DataError, first_line
from samfx.data.images import MAX_PIXELS, to_uint8
from samfx.data.sector import sector_mask

REQUIRED = (("Rows", "(0028,0010)"), ("Columns", "(0028,0011)"), ("SamplesPerPixel", "(0028,0002)"),
            ("BitsAllocated", "(0028,0100)"), ("PhotometricInterpretation", "(0028,0004)"),
            ("PixelData", "(7FE0,0010)"))
CM = 3  # PhysicalUnits code for centimetres
REGIONS = "Sequence of Ultrasound Regions (0018,6011)"


@dataclass
class DicomCine:
    """One DICOM file as gray frames (T,H,W) uint8 with what samfx stores about it."""

    frames: np.ndarray
    spacing: tuple[float, float] | None
    fps: float
    patient: str
    study: str
    attrs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    modality: str = ""      # Modality (0008,0060), e.g. US; "" when absent


def is_dicom(path: Path) -> bool:
    """Whether `path` starts like a DICOM Part 10 file ('DICM' after the 128-byte preamble)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def find_dicoms(folder: Path) -> list[Path]:
    """DICOM files under `folder` (any depth, any name; DICOMDIR index files excluded), sorted."""
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name.upper() != "DICOMDIR" and is_dicom(p)]


def hash_id(value: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}{value}".encode()).hexdigest()[:16]


def read_dicom(path: Path, *, keep_ids: bool = False, salt: str = "", crop: bool = True,
               sector: bool = True) -> DicomCine:
    """Read `path` (module docstring); DataError naming the file and the attribute at fault."""
    ds = _open(path)
    for name, tag in REQUIRED:
        if name not in ds:
            raise DataError(f"{path}: missing attribute {name} {tag}; not an image DICOM or an incomplete "
                            f"export, export the loop again as an image")
    _check_size(ds, path)
    gray, coloured = _gray_frames(ds, path)
    notes: list[str] = []
    region, spacing = _region(ds, path, gray.shape[1:], notes)
    attrs: dict[str, Any] = {"transfer_syntax": str(ds.file_meta.get("TransferSyntaxUID", "")),
                             "photometric": str(ds.PhotometricInterpretation)}
    if crop and region is not None:
        x0, y0, x1, y1 = region
        gray, coloured = gray[:, y0:y1 + 1, x0:x1 + 1], coloured[y0:y1 + 1, x0:x1 + 1]
        attrs["region"] = np.asarray(region, np.int64)  # x0, y0, x1, y1 in the file's pixels
    if spacing is None and "PixelSpacing" in ds:
        spacing = _positive_pair(ds.PixelSpacing, path, "PixelSpacing (0028,0030)")
    if sector:
        mask = sector_mask(gray, coloured)
        if mask is None:
            notes.append(f"{path.name}: no scan sector found (blank image?); all pixels kept")
        else:
            gray = gray * mask
            attrs["sector_fraction"] = float(mask.mean())
    fps = _fps(ds, path)
    patient, study = str(ds.get("PatientID", "") or ""), str(ds.get("StudyInstanceUID", "") or "")
    if not keep_ids:
        patient, study = (hash_id(v, salt) if v else "" for v in (patient, study))
    return DicomCine(gray, spacing, fps, patient, study, attrs, notes, str(ds.get("Modality", "") or ""))


def _open(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings(record=True) as caught:  # pydicom warns on early EOF, and to stderr
            warnings.simplefilter("always")
            ds = pydicom.dcmread(str(path))
    except InvalidDicomError:
        raise DataError(f"{path}: not a DICOM file (no 'DICM' marker after the 128-byte preamble); pass DICOM "
                        f"files exported from the scanner") from None
    except Exception as exc:  # pydicom raises many types on truncated or damaged files
        raise DataError(f"{path}: cannot parse DICOM ({type(exc).__name__}: {first_line(exc)}); the file is "
                        f"truncated or damaged, export it again") from None
    early = [str(w.message) for w in caught if "End of file" in str(w.message)]
    if early:
        raise DataError(f"{path}: the file ends early ({early[0].split(' in file ')[0]}); it is truncated, "
                        f"copy or export it again")
    return ds


def _check_size(ds: Any, path: Path) -> None:
    """Refuse a header that claims more pixels than the Pixel Data can hold (module docstring), before any
    buffer of the claimed size exists."""
    declared = ds.get("NumberOfFrames", None)
    frames = 1 if declared is None or str(declared).strip() == "" else int(declared)
    rows, cols = int(ds.Rows), int(ds.Columns)
    if frames < 1:
        raise DataError(f"{path}: NumberOfFrames (0028,0008) = {frames}; the file declares no frame, export the "
                        f"loop again")
    if rows < 1 or cols < 1 or rows * cols > MAX_PIXELS:
        raise DataError(f"{path}: Rows x Columns (0028,0010/0011) = {rows} x {cols} is not an image samfx reads "
                        f"(1 to {MAX_PIXELS} pixels per frame); the header is damaged")
    data = ds.PixelData
    if ds.file_meta.get("TransferSyntaxUID", None) is not None and ds.file_meta.TransferSyntaxUID.is_compressed:
        from pydicom.encaps import parse_fragments

        try:
            fragments = parse_fragments(data)[0]
        except Exception:  # a damaged item structure: reported by the decoder with its own reason
            return
        if fragments < frames:
            name = getattr(ds.file_meta.TransferSyntaxUID, "name", "")
            raise DataError(f"{path}: Pixel Data (7FE0,0010) cannot be decoded (transfer syntax {name}; it holds "
                            f"{fragments} compressed fragment(s), but NumberOfFrames (0028,0008) = {frames}); the "
                            f"file is truncated or its header is wrong")
        return
    spp, bits = int(ds.SamplesPerPixel), int(ds.BitsAllocated)
    needed = (frames * rows * cols * spp * bits + 7) // 8
    if len(data) < needed:
        raise DataError(f"{path}: Pixel Data (7FE0,0010) cannot be decoded: it holds {len(data)} bytes, but "
                        f"NumberOfFrames (0028,0008) "
                        f"= {frames} x Rows {rows} x Columns {cols} x SamplesPerPixel {spp} x {bits} bits need "
                        f"{needed}; the file is truncated or its header is wrong")


def _frames(ds: Any, path: Path) -> Iterator[np.ndarray]:
    """Decoded frames, one at a time: decoding a whole loop at once peaks at ~9x its size."""
    from pydicom.pixels import iter_pixels

    syntax = ds.file_meta.get("TransferSyntaxUID", None)
    name = getattr(syntax, "name", str(syntax))
    try:
        yield from iter_pixels(ds)
    except Exception as exc:  # decoders raise ValueError, RuntimeError, NotImplementedError, ...
        raise DataError(f"{path}: Pixel Data (7FE0,0010) cannot be decoded (transfer syntax {name}; "
                        f"{type(exc).__name__}: {first_line(exc)}); the file is truncated or damaged, or its "
                        f"compression is unsupported") from None


def _gray_frames(ds: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(T,H,W) uint8 gray frames and an (H,W) mask of pixels coloured in any frame (overlays, Doppler)."""
    photometric = str(ds.PhotometricInterpretation)
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    frames: list[np.ndarray] = []
    coloured = np.zeros((int(ds.Rows), int(ds.Columns)), bool)
    with warnings.catch_warnings():  # pydicom warns (to stderr) on excess frames: checked below instead
        warnings.simplefilter("ignore")
        for frame in _frames(ds, path):
            if photometric == "PALETTE COLOR":
                frame = _palette_rgb(ds, frame, path)
            if frame.ndim == 3:  # RGB (pydicom converts YBR to RGB)
                rgb = to_uint8(frame, str(path))
                coloured |= rgb.max(-1).astype(np.int16) - rgb.min(-1) > 16
                frame = np.clip(np.round(rgb @ luma), 0, 255).astype(np.uint8)
            frames.append(frame)
    expected = int(ds.get("NumberOfFrames", 1) or 1)
    if len(frames) != expected or frames[0].shape != coloured.shape:
        raise DataError(f"{path}: Pixel Data (7FE0,0010) decodes to {len(frames)} frame(s) of "
                        f"{frames[0].shape if frames else ()}, but NumberOfFrames (0028,0008) = {expected} and "
                        f"Rows x Columns = {coloured.shape}; the file is inconsistent")
    gray = to_uint8(np.stack(frames), str(path))  # >8-bit gray: one scaling for the whole loop
    return (255 - gray if photometric == "MONOCHROME1" else gray), coloured


def _palette_rgb(ds: Any, frame: np.ndarray, path: Path) -> np.ndarray:
    """A PALETTE COLOR frame's indices through its Red/Green/Blue Palette Color Lookup Tables as RGB
    uint8 (16-bit table entries scaled by 1/257)."""
    from pydicom.pixels import apply_color_lut

    try:
        rgb = np.asarray(apply_color_lut(frame, ds))
    except Exception as exc:  # missing or inconsistent lookup tables
        raise DataError(f"{path}: PALETTE COLOR frames cannot be converted ({type(exc).__name__}: "
                        f"{first_line(exc)}); the Palette Color Lookup Tables (0028,1101..1203) are missing "
                        f"or damaged") from None
    bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    return (np.round(rgb / 257.0) if bits > 8 else rgb).astype(np.uint8)


def _region(ds: Any, path: Path, hw: tuple[int, ...], notes: list[str]
            ) -> tuple[tuple[int, int, int, int] | None, tuple[float, float] | None]:
    """Bounds (x0, y0, x1, y1) and spacing (row, col) mm of the main 2-D region, if there is one."""
    regions = list(ds.get("SequenceOfUltrasoundRegions", []) or [])
    if not regions:
        return None, None
    candidates = []
    for i, r in enumerate(regions):
        if int(r.get("RegionSpatialFormat", 0)) != 1:
            continue
        names = ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1")
        if any(n not in r for n in names):
            missing = next(n for n in names if n not in r)
            raise DataError(f"{path}: {REGIONS} item {i + 1} lacks {missing}; the region bounds are incomplete")
        x0, y0, x1, y1 = (int(r[n].value) for n in names)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, hw[1] - 1), min(y1, hw[0] - 1)
        if x1 < x0 or y1 < y0:
            raise DataError(f"{path}: {REGIONS} item {i + 1} has empty bounds x {x0}..{x1}, y {y0}..{y1} "
                            f"for a {hw[1]}x{hw[0]} image")
        tissue = int(r.get("RegionDataType", 0)) == 1
        candidates.append((tissue, (x1 - x0 + 1) * (y1 - y0 + 1), i, (x0, y0, x1, y1), r))
    if not candidates:
        notes.append(f"{path.name}: {REGIONS} has no 2-D region (RegionSpatialFormat 1); spacing unknown")
        return None, None
    _, _, i, bounds, r = max(candidates, key=lambda c: (c[0], c[1]))
    units = (int(r.get("PhysicalUnitsXDirection", 0)), int(r.get("PhysicalUnitsYDirection", 0)))
    if units != (CM, CM) or "PhysicalDeltaX" not in r or "PhysicalDeltaY" not in r:
        notes.append(f"{path.name}: {REGIONS} item {i + 1} has no PhysicalDeltaX/Y in cm (units {units}); "
                     f"spacing unknown")
        return bounds, None
    where = f"{REGIONS} item {i + 1} PhysicalDeltaY/X"
    spacing = _positive_pair([abs(float(r.PhysicalDeltaY)) * 10, abs(float(r.PhysicalDeltaX)) * 10], path, where)
    return bounds, spacing


def _positive_pair(values: Any, path: Path, where: str) -> tuple[float, float]:
    try:
        row, col = (float(v) for v in values)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {where} must be two numbers, got {values!r}") from None
    if not (row > 0 and col > 0 and math.isfinite(row) and math.isfinite(col)):
        raise DataError(f"{path}: {where} must be positive, got {row}, {col}")
    return row, col


def _fps(ds: Any, path: Path) -> float:
    try:
        if ds.get("FrameTime") is not None:
            return _positive(1000.0 / float(ds.FrameTime))
        if ds.get("FrameTimeVector"):
            steps = [float(v) for v in list(ds.FrameTimeVector)[1:]]
            return _positive(1000.0 / (sum(steps) / len(steps))) if steps else float("nan")
        for name in ("CineRate", "RecommendedDisplayFrameRate"):
            if ds.get(name) is not None:
                return _positive(float(ds[name].value))
    except (TypeError, ValueError, ZeroDivisionError):
        raise DataError(f"{path}: frame timing (FrameTime (0018,1063), FrameTimeVector (0018,1065) or CineRate "
                        f"(0018,0040)) is not a positive number; fix the file or pass --fps") from None
    return float("nan")


def _positive(value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(value)
    return value
