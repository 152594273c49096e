"""Write a small "bring your own data" sample in the layouts users have, from synthetic echo.

    python examples/byod_sample.py /tmp/byod

writes, for 4 synthetic patients (docs/data.md, "Your own data"):

    images/patientNNNN_<view>_<ED|ES>.png          gray PNG frames
    masks/patientNNNN_<view>_<ED|ES>_mask.png      masks with values 0, 85, 170, 255 (bg, LV, MYO, LA)
    dicom/patientNNNN/IM_0001                      4CH cine loop: multi-frame US DICOM, JPEG baseline,
                                                   RGB, on a screen with burnt-in text and an ECG trace,
                                                   Sequence of Ultrasound Regions, FrameTime 40 ms
    videos/patientNNNN_2CH.mp4                     2CH loop as MP4
    video_masks/patientNNNN_2CH/frame_NNN.png      masks of its first (ED) and last (ES) frames
"""
from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import JPEGBaseline8Bit, UltrasoundMultiFrameImageStorage, generate_uid

from samfx.data.store import open_store, read_frames, read_index
from samfx.data.synth.store import generate

MASK_VALUES = np.array([0, 85, 170, 255], np.uint8)   # label id -> grey level in the mask PNGs
BORDER = 16                                           # screen margin around the ultrasound region


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = generate(Path(tmp) / "synth.h5", patients=4, frames=10, size=(128, 144))
        index = read_index(store)
        with open_store(store) as f:
            for item in index.items.values():
                frames, labels = read_frames(f, item.id)
                spacing = (float(item.spacing[0]), float(item.spacing[1]))
                write_pngs(out, item.id, frames, labels)
                if item.view == "4CH":
                    write_dicom(out / "dicom" / item.patient / "IM_0001", frames, spacing, item.patient)
                else:
                    write_video(out, item.id, frames, labels)
    print(f"wrote a sample to {out}: images/, masks/, dicom/, videos/, video_masks/")


def write_pngs(out: Path, item: str, frames: np.ndarray, labels: np.ndarray) -> None:
    for phase, t in (("ED", 0), ("ES", len(frames) - 1)):
        save(out / "images" / f"{item}_{phase}.png", frames[t])
        save(out / "masks" / f"{item}_{phase}_mask.png", MASK_VALUES[labels[t]])


def write_video(out: Path, item: str, frames: np.ndarray, labels: np.ndarray) -> None:
    path = out / "videos" / f"{item}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"qscale": "2"}
        for fr in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.repeat(fr[..., None], 3, -1), format="rgb24")))
        c.mux(s.encode())
    for t in (0, len(frames) - 1):
        save(out / "video_masks" / item / f"frame_{t:03d}.png", MASK_VALUES[labels[t]])


def write_dicom(path: Path, frames: np.ndarray, spacing: tuple[float, float], patient: str) -> None:
    """A 4CH loop as an echo machine exports it (module docstring)."""
    t, h, w = frames.shape
    screen = np.zeros((t, h + 2 * BORDER, w + 2 * BORDER, 3), np.uint8)
    screen[:, BORDER:BORDER + h, BORDER:BORDER + w] = frames[..., None]
    screen[:, BORDER + 4:BORDER + 10, BORDER + 2:BORDER + 24] = 230            # burnt-in text
    screen[:, BORDER + h - 6, BORDER + w // 2:BORDER + w - 4] = (0, 220, 0)   # ECG trace
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = UltrasoundMultiFrameImageStorage, generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.StudyInstanceUID = "US", f"MRN-{patient[-4:]}", generate_uid()
    ds.Rows, ds.Columns, ds.NumberOfFrames = screen.shape[1], screen.shape[2], t
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime, ds.FrameIncrementPointer = 40.0, Tag(0x0018, 0x1063)
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = BORDER, BORDER
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = BORDER + w - 1, BORDER + h - 1
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3       # cm
    region.PhysicalDeltaX, region.PhysicalDeltaY = spacing[1] / 10, spacing[0] / 10
    ds.SequenceOfUltrasoundRegions = [region]
    ds.PixelData = encapsulate([jpeg(f) for f in screen])
    ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)


def jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/byod_sample.py OUT_FOLDER")
    main(Path(sys.argv[1]))
