"""Import EchoNet-Pediatric into a samfx store.

Layout: one folder per view, ``ROOT/A4C/`` and ``ROOT/PSAX/``, each laid out like EchoNet-Dynamic:
``FileList.csv`` (FileName, EF, Sex, Age, Weight, Height, Split), ``VolumeTracings.csv``
(FileName, X, Y, Frame: points along the LV outline; a Frame of "No Systolic"/"No Diastolic" marks a
missing tracing) and ``Videos/<FileName>`` (AVI, 112×112). ROOT may also be one view folder.

Each video becomes a sequence ``<view>_<stem>`` (view ``A4C``/``PSAX``, patient = video stem),
masks filled inside the traced outline on the traced frames (label 1 = LV; the larger is ED), EF and
the other FileList columns as attributes. ``Split`` holds a fold number 0-9: every fold is a split
``fold<k>``, and train/val/test are all folds but two / fold `val_fold` / fold `test_fold`.
"""
from __future__ import annotations

import re
from pathlib import Path

from samfx.contracts.errors import DataError
from samfx.data.importers.common import ImportReport, safe_id
from samfx.data.importers.echonet import POINT_COLUMNS, add_video, read_csv, read_tracings, video_stem
from samfx.data.outfile import check_out
from samfx.data.progress import progress_bar
from samfx.data.store import StoreWriter

VIEWS = ("A4C", "PSAX")
KNOWN = ("FileName", "EF", "Split", "FPS")


def _view_folders(root: Path) -> list[tuple[str, Path]]:
    root = root.expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: EchoNet-Pediatric folder not found")
    folders = [(v, root / v) for v in VIEWS if (root / v / "FileList.csv").is_file()]
    if not folders and (root / "FileList.csv").is_file():  # ROOT is one view folder
        folders = [(root.name.upper() if root.name.upper() in VIEWS else root.name, root)]
    if not folders:
        raise DataError(f"{root}: no A4C/FileList.csv or PSAX/FileList.csv; expected the EchoNet-Pediatric "
                        f"layout A4C/{{FileList.csv, VolumeTracings.csv, Videos/}}")
    return folders


def _fold(value: str, where: str) -> int:
    try:
        fold = float(value)
    except ValueError:
        raise DataError(f"{where}: Split = {value!r}; EchoNet-Pediatric splits are fold numbers 0-9") from None
    if fold != int(fold) or fold < 0:
        raise DataError(f"{where}: Split = {value!r}; EchoNet-Pediatric splits are fold numbers 0-9")
    return int(fold)


def _attrs(row: dict[str, str]) -> dict[str, object]:
    """FileList columns other than the known ones, as lower-case attributes (numbers parsed)."""
    out: dict[str, object] = {}
    for key, value in row.items():
        if key in KNOWN or key is None:
            continue
        value = (value or "").strip()
        name = re.sub(r"\W+", "_", key).lower()
        try:
            out[name] = float(value)
        except ValueError:
            out[name] = value
    return out


def import_echonet_pediatric(root: str | Path, out: str | Path, *, val_fold: int = 1, test_fold: int = 0,
                             limit: int | None = None, skip_bad: bool = False, show_progress: bool = False,
                             force: bool = False) -> ImportReport:
    """Import the EchoNet-Pediatric folder `root` (first `limit` videos per view if set) into the store
    `out` (replaced only with `force` and only when it is a samfx store)."""
    check_out(Path(out).expanduser(), force)  # before any reading
    if val_fold == test_fold:
        raise DataError(f"--val-fold and --test-fold are both {val_fold}; choose two different folds")
    folders = _view_folders(Path(root))
    plan = []
    for view, folder in folders:
        rows = read_csv(folder / "FileList.csv", ("FileName", "EF", "Split"))
        traces = read_tracings(folder / "VolumeTracings.csv", POINT_COLUMNS)
        plan += [(view, folder, row, traces) for row in (rows[:limit] if limit else rows)]
    report = ImportReport(str(out), f"echonet-pediatric:{root}")
    counts = {"sequences": 0, "labeled_frames": 0, **{v: 0 for v, _ in folders}}
    folds: dict[int, list[str]] = {}
    with StoreWriter(out, [1], ["LV"], source="echonet-pediatric", force=force,
                     description=f"EchoNet-Pediatric ({', '.join(v for v, _ in folders)}) from {root}") as w, \
            progress_bar(len(plan), "importing EchoNet-Pediatric", show_progress) as advance:
        for view, folder, row, traces in plan:
            stem = video_stem(row["FileName"])
            path = folder / "Videos" / f"{stem}.avi"
            item = safe_id(f"{view}_{stem}")
            fold = _fold(row["Split"], f"{folder / 'FileList.csv'} ({row['FileName']})")
            if not path.is_file():
                report.missing.append(f"{view}/Videos/{stem}.avi")
            else:
                n = report.attempt(skip_bad, lambda: add_video(w, item, path, row, traces.get(stem, {}), report,
                                                               view=view, fold=fold, **_attrs(row)))
                if n is not None:
                    folds.setdefault(fold, []).append(item)
                    counts["sequences"] += 1
                    counts[view] += 1
                    counts["labeled_frames"] += n
            advance()
        if not counts["sequences"]:
            raise DataError(f"{root}: no video of FileList.csv was found under <view>/Videos/")
        for name in ("train", "val", "test"):  # declared even when empty, as in the EchoNet-Dynamic store
            w.set_split(name, ids=[])
        for fold, ids in folds.items():
            w.set_split(f"fold{fold}", ids=ids)
            w.set_split("test" if fold == test_fold else "val" if fold == val_fold else "train", ids=ids)
    report.notes.append(f"splits: test = fold {test_fold}, val = fold {val_fold}, train = the other folds "
                        f"(each fold is also a split fold<k>)")
    report.counts = counts
    return report.finish()
