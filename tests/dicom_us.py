"""Ultrasound DICOM files written with pydicom in the layout echo machines export (for the tests).

A frame is 72x96 with the 2-D tissue region at x 8..87, y 6..69 (cropped size 64x80): a speckled
fan (apex at the region's top centre) changing every frame, burnt-in static text and a green ECG
trace inside the region but outside the fan, and a logo above the region. A spectral Doppler
region (RegionSpatialFormat 3) lies below it, as on a combined 2-D + Doppler screen.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

H, W = 72, 96
REGION = (8, 6, 87, 69)           # x0, y0, x1, y1 (inclusive)
DELTA_CM = (0.025, 0.03)          # PhysicalDeltaX, PhysicalDeltaY -> spacing (row, col) = (0.3, 0.25) mm


def fan_mask(h: int = 64, w: int = 80) -> np.ndarray:
    """(h,w) bool fan of the cropped region: apex at (0, w/2), radius 58 px, half-angle 35 degrees."""
    rows, cols = np.mgrid[:h, :w]
    dy, dx = rows + 0.5, cols - w / 2 + 0.5
    return (np.hypot(dy, dx) < 58) & (np.abs(np.degrees(np.arctan2(dx, dy))) < 35)


def echo_frames(t: int, seed: int = 0) -> np.ndarray:
    """(t, H, W, 3) uint8 screen: gray fan with speckle, static text, green ECG, logo."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = REGION
    screen = np.zeros((t, H, W, 3), np.uint8)
    fan = fan_mask()
    speckle = rng.integers(20, 230, size=(t, *fan.shape)).astype(np.uint8)
    region = screen[:, y0:y1 + 1, x0:x1 + 1]
    region[:, fan] = speckle[:, fan, None]
    region[:, 55:61, 2:12] = 220                       # burnt-in text, static
    region[:, 62, 40:78] = (0, 200, 0)                 # green ECG trace
    screen[:, 0:4, 2:30] = 255                          # logo above the region
    return screen


def us_dataset(frames: np.ndarray, *, jpeg: bool = False, regions: bool = True, patient: str = "PAT-0042",
               study: str = "1.2.826.0.1.3680043.8.498.1", frame_time: float | None = 40.0) -> Dataset:
    """A US (multi-frame when T > 1) image dataset of (T,H,W) gray or (T,H,W,3) RGB frames."""
    t = frames.shape[0]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage if t > 1 else UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Manufacturer = "US", "samfx-test"
    ds.PatientID, ds.PatientName, ds.StudyInstanceUID = patient, "Doe^Jane", study
    ds.SeriesInstanceUID = generate_uid()
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    rgb = frames.ndim == 4
    ds.SamplesPerPixel = 3 if rgb else 1
    if rgb:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = ("YBR_FULL_422" if jpeg else "RGB") if rgb else "MONOCHROME2"
    if t > 1:
        ds.NumberOfFrames = t
        ds.FrameIncrementPointer = Tag(0x0018, 0x1063)
        if frame_time is not None:
            ds.FrameTime = frame_time
            ds.CineRate = round(1000 / frame_time)
    if regions:
        ds.SequenceOfUltrasoundRegions = [_region(REGION, 1, 1, 3, 3, *DELTA_CM),
                                          _region((8, 70, 87, 71), 3, 3, 4, 7, 0.01, 2.0)]
    if jpeg:
        ds.PixelData = encapsulate([_jpeg(f) for f in frames])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = np.ascontiguousarray(frames).tobytes()
    return ds


def _region(bounds: tuple[int, int, int, int], spatial: int, data_type: int, ux: int, uy: int,
            dx: float, dy: float) -> Dataset:
    r = Dataset()
    r.RegionSpatialFormat, r.RegionDataType, r.RegionFlags = spatial, data_type, 0
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = bounds
    r.PhysicalUnitsXDirection, r.PhysicalUnitsYDirection = ux, uy
    r.PhysicalDeltaX, r.PhysicalDeltaY = dx, dy
    r.ReferencePixelX0, r.ReferencePixelY0 = (bounds[2] - bounds[0]) // 2, 0
    return r


def _jpeg(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write(path: Path, ds: Dataset) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def gray(screen: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of RGB frames, as the importer computes it."""
    g = screen[..., 0] * 0.299 + screen[..., 1] * 0.587 + screen[..., 2] * 0.114
    return np.clip(np.round(g), 0, 255).astype(np.uint8)
