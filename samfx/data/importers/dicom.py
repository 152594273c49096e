"""Import ultrasound DICOM files (single frames and multi-frame cine loops) as unlabeled sequences.

Every DICOM file found (folders are searched at any depth, by the 'DICM' marker, whatever the file
names) becomes one sequence of its frames (a single frame: T = 1) with no labeled frame, read by
:func:`samfx.data.importers.dicom_read.read_dicom`: gray, cropped to the ultrasound region, pixels
outside the scan sector set to 0, spacing from the Sequence of Ultrasound Regions, fps from the
frame timing. The patient is the hashed PatientID (in clear with ``keep_ids``); the item id is the
file's path below the folder given, with '/' as '_'. Such a store is what ``samfx predict`` and
the clinical read-outs (LV area curve, ED/ES, EF) run on; it declares ``class_names`` so a model's
classes can be matched, and has no splits.
"""
from __future__ import annotations

import math
from pathlib import Path

from samfx.contracts.errors import DataError
from samfx.data.importers.common import ImportReport, safe_id
from samfx.data.importers.dicom_read import DicomCine, find_dicoms, read_dicom
from samfx.data.outfile import check_out
from samfx.data.progress import progress_bar
from samfx.data.store import StoreWriter


def collect_dicoms(inputs: list[Path]) -> list[tuple[Path, str]]:
    """(file, name below its input folder) of every DICOM file of `inputs` (files or folders)."""
    found: list[tuple[Path, str]] = []
    for p in inputs:
        if p.is_dir():
            files = find_dicoms(p)
            if not files:
                raise DataError(f"{p}: no DICOM file in this folder (files are recognised by the 'DICM' marker, "
                                f"at any depth); is it the export folder?")
            found += [(f, f.relative_to(p).as_posix()) for f in files]
        elif p.is_file():
            found.append((p, p.name))
        else:
            raise DataError(f"{p}: not found; pass DICOM files or folders holding them")
    return found


def item_name(rel: str) -> str:
    """Item id of a file from its path below the input folder (``a/IM_1.dcm`` -> ``a_IM_1``)."""
    stem = rel[:-4] if rel.lower().endswith(".dcm") else rel
    return safe_id(stem.replace("/", "_"))


def import_dicom(inputs: list[str | Path], out: str | Path, *, class_names: list[str] | None = None,  # noqa: PLR0913  (mirrors samfx import dicom's options)
                 keep_ids: bool = False, salt: str = "", crop: bool = True, sector: bool = True,
                 fps: float | None = None, skip_bad: bool = False, show_progress: bool = False,
                 force: bool = False) -> ImportReport:
    """Import the DICOM files of `inputs` (files or folders) into the store `out` (module docstring).
    `fps` replaces the files' frame timing; `class_names` (default ["LV"]) are declared as 1..K."""
    check_out(Path(out).expanduser(), force)  # before any reading
    files = collect_dicoms([Path(p).expanduser() for p in inputs])
    names = list(class_names or ["LV"])
    report = ImportReport(str(out), "dicom:" + ",".join(str(p) for p in inputs))
    counts = {"sequences": 0, "frames": 0, "patients": 0}
    patients: set[str] = set()
    known = {"spacing": 0, "fps": 0}
    with StoreWriter(out, list(range(1, len(names) + 1)), names, source="dicom",
                     description=f"DICOM ultrasound from {', '.join(str(p) for p in inputs)}", force=force) as w, \
            progress_bar(len(files), "importing DICOM", show_progress) as advance:
        for path, rel in files:
            cine = report.attempt(skip_bad, lambda: read_dicom(path, keep_ids=keep_ids, salt=salt, crop=crop,
                                                                sector=sector))
            if cine is not None:
                _write(w, cine, item_name(rel), rel, fps)
                report.notes += cine.notes
                patients.add(cine.patient or item_name(rel))
                counts["sequences"] += 1
                counts["frames"] += int(cine.frames.shape[0])
                known["spacing"] += cine.spacing is not None
                known["fps"] += fps is not None or math.isfinite(cine.fps)
            advance()
        if not counts["sequences"]:
            raise DataError(f"{inputs[0]}: every DICOM file was skipped as bad; first: {report.skipped[0]}")
    counts["patients"] = len(patients)
    report.counts = counts
    report.notes.append(f"spacing known for {known['spacing']} of {counts['sequences']} sequences, frame rate "
                        f"for {known['fps']}; patient and study IDs " +
                        ("kept in clear (--keep-ids)" if keep_ids else
                         "stored as sha256 hashes" + ("" if salt else " (unsalted: add --salt when IDs are short)")))
    return report.finish()


def _write(w: StoreWriter, cine: DicomCine, item: str, rel: str, fps: float | None) -> None:
    w.add_sequence(item, cine.frames, None, None, patient=cine.patient or item, spacing=cine.spacing,
                   fps=float(fps) if fps is not None else cine.fps, source=rel, study=cine.study, **cine.attrs)
