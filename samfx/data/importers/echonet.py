"""Import EchoNet-Dynamic into a samfx store.

Layout: ``ROOT/FileList.csv`` (FileName, EF, FPS, NumberOfFrames, Split, ...),
``ROOT/VolumeTracings.csv`` (FileName, X1, Y1, X2, Y2, Frame) and ``ROOT/Videos/<FileName>.avi``
(112×112). Each video becomes a sequence (grayscale frames). Its traced frames get filled LV masks
(label 1): per frame, the first row of VolumeTracings is the long axis and the following rows are
chords across the LV; the polygon through the chords' first end points and, reversed, their
second end points is filled. Of the two traced frames the one with the larger LV area is ED, the
other ES (independent of row order). Spacing is unknown (NaN). AVIs are decoded with PyAV.
The tracing reader and the per-video writer also serve EchoNet-Pediatric (echonet_pediatric.py),
whose VolumeTracings.csv lists outline points (FileName, X, Y, Frame) instead of chords.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from samfx.contracts.errors import DataError
from samfx.data.importers.common import ImportReport, safe_id
from samfx.data.importers.video import read_video
from samfx.data.outfile import check_out
from samfx.data.progress import progress_bar
from samfx.data.store import StoreWriter

SPLITS = {"TRAIN": "train", "VAL": "val", "TEST": "test"}


def read_avi(path: Path) -> np.ndarray:
    """Decode a video to grayscale frames (T,H,W) uint8; DataError when it cannot be decoded."""

    return read_video(path)[0]


CHORD_COLUMNS = ("X1", "Y1", "X2", "Y2")  # EchoNet-Dynamic: a long axis, then chords across the LV
POINT_COLUMNS = ("X", "Y")                # EchoNet-Pediatric: points along the LV outline
Traces = dict[str, dict[int, list[list[float]]]]  # video stem -> frame -> tracing rows


def read_tracings(path: Path, columns: tuple[str, ...]) -> Traces:
    """VolumeTracings.csv as stem -> frame -> rows of `columns`; rows whose Frame is a note such as
    "No Systolic" (EchoNet-Pediatric) are skipped, any other non-number is a DataError naming the line."""
    traces: Traces = defaultdict(lambda: defaultdict(list))
    for i, row in enumerate(read_csv(path, ("FileName", *columns, "Frame")), start=2):
        if row["Frame"].strip().lower().startswith("no "):
            continue
        try:
            traces[video_stem(row["FileName"])][int(float(row["Frame"]))].append([float(row[k]) for k in columns])
        except (TypeError, ValueError):
            raise DataError(f"{path}:{i}: non-numeric coordinate or frame in {row}") from None
    return traces


def read_csv(path: Path, need: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of an EchoNet CSV file; a DataError names the file when it or a column in `need` is missing."""
    if not path.is_file():
        raise DataError(f"{path}: not found; expected the EchoNet-Dynamic layout (FileList.csv, "
                        f"VolumeTracings.csv, Videos/)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    cols = set(reader.fieldnames or ())  # from the header line: a file may have no rows
    lacking = [c for c in need if c not in cols]
    if lacking:
        raise DataError(f"{path}: missing column(s) {lacking}; found {sorted(cols)}")
    return rows


def trace_mask(lines: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Filled LV mask (H,W) uint8 from one frame's tracing rows: (N,4) = X1, Y1, X2, Y2 chords
    after a long-axis row, or (N,2) = X, Y outline points in order."""
    from PIL import Image, ImageDraw

    if lines.shape[1] == 2:
        xs, ys = lines[:, 0], lines[:, 1]
    else:
        chords = lines[1:]
        xs = np.concatenate([chords[:, 0], chords[::-1, 2]])
        ys = np.concatenate([chords[:, 1], chords[::-1, 3]])
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y in zip(xs, ys)], fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8)


def video_stem(name: str) -> str:
    """A FileList name without its .avi suffix (the lists name videos with and without it)."""
    return name[:-4] if name.lower().endswith(".avi") else name


def import_echonet(root: str | Path, out: str | Path, *, limit: int | None = None, skip_bad: bool = False,
                   show_progress: bool = False, force: bool = False) -> ImportReport:
    """Import the EchoNet-Dynamic folder `root` into the store `out` (first `limit` videos if set;
    an existing `out` is replaced only with `force` and only when it is a samfx store)."""
    check_out(Path(out).expanduser(), force)  # before any reading
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: EchoNet-Dynamic folder not found")
    files = read_csv(root / "FileList.csv", ("FileName", "EF", "Split"))
    traces = read_tracings(root / "VolumeTracings.csv", CHORD_COLUMNS)
    files = files[:limit] if limit else files
    report = ImportReport(str(out), f"echonet:{root}")
    counts = {"sequences": 0, "labeled_frames": 0}
    split_ids: dict[str, list[str]] = {s: [] for s in SPLITS.values()}
    with StoreWriter(out, [1], ["LV"], source="echonet", description=f"EchoNet-Dynamic from {root}",
                     force=force) as w, \
            progress_bar(len(files), "importing EchoNet", show_progress) as advance:
        for row in files:
            stem = video_stem(row["FileName"])
            path = root / "Videos" / f"{stem}.avi"
            if not path.is_file():
                report.missing.append(f"Videos/{stem}.avi")
                advance()
                continue
            n_labeled = report.attempt(skip_bad, lambda: add_video(w, safe_id(stem), path, row,
                                                                   traces.get(stem, {}), report))
            if n_labeled is None:
                advance()
                continue
            split = SPLITS.get(row["Split"].strip().upper())
            if split:
                split_ids[split].append(safe_id(stem))
            counts["sequences"] += 1
            counts["labeled_frames"] += n_labeled
            advance()
        if not counts["sequences"]:
            raise DataError(f"{root}: no video of FileList.csv was found under Videos/")
        for split, ids in split_ids.items():
            w.set_split(split, ids=ids)
    report.counts = counts
    return report.finish()


def add_video(w: StoreWriter, item_id: str, path: Path, row: dict[str, str], traces: dict[int, list[list[float]]],
              report: ImportReport, *, view: str = "4CH", **extra: object) -> int:
    """Write one video as sequence `item_id` with masks on its traced frames; returns how many."""
    frames = read_avi(path)
    n, shape = frames.shape[0], frames.shape[1:]
    labels = np.zeros(frames.shape, np.uint8)
    labeled = np.zeros(n, bool)
    areas = {}
    for frame, lines in sorted(traces.items()):
        if not 0 <= frame < n:
            report.notes.append(f"{path.name}: tracing of frame {frame} beyond the {n} decoded frames; ignored")
            continue
        if len(lines) < 3:
            report.notes.append(f"{path.name}: frame {frame} has {len(lines)} tracing rows (< 3); ignored")
            continue
        labels[frame] = trace_mask(np.asarray(lines), shape)
        labeled[frame] = True
        areas[frame] = int(labels[frame].sum())
    ed = es = -1
    if len(areas) >= 2:
        ed, es = max(areas, key=areas.__getitem__), min(areas, key=areas.__getitem__)
    try:
        ef = float(row["EF"])
    except ValueError:
        ef = float("nan")
    fps = float(row.get("FPS") or "nan")
    w.add_sequence(item_id, frames, labels, labeled, patient=video_stem(row["FileName"]), view=view, spacing=None,
                   ed=ed, es=es, ef=ef, fps=fps, source=str(path), **extra)
    return int(labeled.sum())
