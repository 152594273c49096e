"""Import plain videos (MP4, AVI, ... anything FFmpeg decodes, through PyAV) as sequences.

Each video becomes one sequence of gray frames, id = file stem. Optional masks: ``MASKS/<stem>/``
holds one mask image per labeled frame, its frame index (0-based) being the last number in the
mask's file name (``0012.png``, ``frame_12.png``); those frames are ``labeled``, mask values go
through the LabelMap. The frame rate is the stream's average rate unless ``fps`` is given; spacing
is unknown unless given. Patients and splits as in the folder importer.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from samfx.contracts.errors import DataError
from samfx.data.images import read_png
from samfx.data.importers.common import SHOW, ImportReport, safe_id
from samfx.data.importers.folder import split_name
from samfx.data.importers.grouping import PatientRule, ratio_splits
from samfx.data.importers.labelmap import LabelMap
from samfx.data.outfile import check_out
from samfx.data.progress import progress_bar
from samfx.data.store import StoreWriter


@dataclass
class VideoOptions:
    """Masks, labels, timing, spacing, patients and splits of `import_videos`."""

    labels: LabelMap
    masks: Path | None = None
    fps: float | None = None
    spacing: tuple[float, float] | None = None
    patients: PatientRule = field(default_factory=lambda: PatientRule(None))
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0


def read_video(path: Path) -> tuple[np.ndarray, float]:
    """Gray frames (T,H,W) uint8 and the stream's average frame rate (NaN if unknown)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream; pass a video file (MP4, AVI, ...)")
            stream = container.streams.video[0]
            rate = float(stream.average_rate) if stream.average_rate else float("nan")
            frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    except DataError:
        raise
    except Exception as exc:  # PyAV raises FFmpeg errors of many types
        raise DataError(f"{path}: cannot decode video ({type(exc).__name__}: {exc}); the file is damaged or "
                        f"not a video") from None
    if not frames:
        raise DataError(f"{path}: the video has no decodable frame; the file is damaged")
    return np.stack(frames).astype(np.uint8), rate


def frame_masks(folder: Path) -> dict[int, Path]:
    """Frame index -> mask file of one video's mask folder (index = last number in the file stem)."""
    out: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        parts = split_name(path) if path.is_file() else None
        numbers = re.findall(r"\d+", parts[0]) if parts else []
        if not numbers:
            continue
        index = int(numbers[-1])
        if index in out:
            raise DataError(f"{path}: frame {index} already has a mask ({out[index].name}); one mask per frame")
        out[index] = path
    return out


def import_videos(files: list[str | Path], out: str | Path, options: VideoOptions, *, skip_bad: bool = False,
                  show_progress: bool = False, force: bool = False) -> ImportReport:
    """Import video `files` into the store `out` (module docstring)."""
    check_out(Path(out).expanduser(), force)  # before any reading
    paths = [Path(f).expanduser() for f in files]
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: video not found; pass video files (MP4, AVI, ...)")
    if options.masks is not None and not options.masks.is_dir():
        raise DataError(f"--masks {options.masks}: folder not found; it holds one folder of masks per video stem")
    report = ImportReport(str(out), "video:" + ",".join(str(p) for p in paths))
    lm = options.labels
    counts = {"sequences": 0, "frames": 0, "labeled_frames": 0, "patients": 0}
    patients: set[str] = set()
    unmasked: list[str] = []
    with StoreWriter(out, lm.classes, lm.class_names, source="video",
                     description=f"videos {', '.join(p.name for p in paths)}", force=force) as w, \
            progress_bar(len(paths), "importing videos", show_progress) as advance:
        for path in paths:
            done = report.attempt(skip_bad, lambda: _one(w, path, options))
            if done is not None:
                patient, n_frames, n_labeled = done
                patients.add(patient)
                counts["sequences"] += 1
                counts["frames"] += n_frames
                counts["labeled_frames"] += n_labeled
                if options.masks is not None and not n_labeled:
                    unmasked.append(path.name)
            advance()
        if not counts["sequences"]:
            raise DataError(f"{paths[0]}: every video was skipped as bad; first: {report.skipped[0]}")
        for name, members in ratio_splits(sorted(patients), options.ratios, options.seed).items():
            w.set_split(name, patients=members)
    counts["patients"] = len(patients)
    report.counts = counts
    if unmasked:
        more = f" (+{len(unmasked) - SHOW} more)" if len(unmasked) > SHOW else ""
        report.notes.append(f"{len(unmasked)} video(s) without masks (unlabeled): {', '.join(unmasked[:SHOW])}{more}")
    return report.finish()


def _one(w: StoreWriter, path: Path, options: VideoOptions) -> tuple[str, int, int]:
    """Write one video; (patient, frames, labeled frames)."""
    stem = path.stem
    patient = options.patients.patient(stem, str(path))
    frames, rate = read_video(path)
    labels = np.zeros(frames.shape, np.uint8)
    labeled = np.zeros(frames.shape[0], bool)
    folder = options.masks / stem if options.masks is not None else None
    if folder is not None and folder.is_dir():
        for index, mask_path in frame_masks(folder).items():
            if index >= frames.shape[0]:
                raise DataError(f"{mask_path}: frame {index} is beyond the {frames.shape[0]} frames of {path.name}")
            raw = read_png(mask_path, label=True)
            if raw.shape != frames.shape[1:]:
                raise DataError(f"{mask_path}: mask shape {raw.shape} does not match the frames of {path.name} "
                                f"{frames.shape[1:]}")
            labels[index] = options.labels.apply(raw, str(mask_path))
            labeled[index] = True
    fps = options.fps if options.fps is not None else rate
    w.add_sequence(safe_id(stem), frames, labels, labeled, patient=patient, spacing=options.spacing,
                   fps=fps if math.isfinite(fps) else float("nan"), source=str(path))
    return patient, int(frames.shape[0]), int(labeled.sum())
