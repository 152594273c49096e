"""Import the SAMUS authors' US30K PNG layout into a samfx store.

Layout: ``ROOT/<Dataset>/img/<name>.png`` and ``ROOT/<Dataset>/label/<name>.png`` (class id per
pixel; 1-bit and 0/255 masks read as 0/1), lists ``ROOT/MainPatient/{train,val,test}[-<Dataset>].txt``
(train/val lines ``<class id>/<Dataset>/<name>``, test lines ``<Dataset>/<name>``),
``ROOT/<Dataset>/MainPatient/{train,val,test}.txt`` (lines ``<name>``) and
``ROOT/MainPatient/class.json`` (number of classes per dataset, background included).

Every listed image is imported once (id ``<Dataset>:<name>``, patient = id, spacing unknown = NaN)
and put in each split that lists it. Listed files that do not exist are collected in the report,
not raised (unless ``strict``). Class ids are shared across datasets as in SAMUS (1 = BUSI lesion
and CAMUS LV alike); import one dataset with ``datasets=[...]`` to keep names meaningful.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from samfx.contracts.errors import DataError
from samfx.data.images import read_png
from samfx.data.importers.common import ImportReport, read_lines, safe_id
from samfx.data.outfile import check_out
from samfx.data.progress import progress_bar
from samfx.data.store import StoreWriter

KNOWN_NAMES = {
    "Echocardiography-CAMUS": ["LV", "MYO", "LA"],
    "Echocardiography-HMCQU": ["LV"],
    "Breast-BUSI": ["lesion"], "Breast-UDIAT": ["lesion"],
    "ThyroidNodule-TN3K": ["nodule"], "ThyroidNodule-DDTI": ["nodule"], "ThyroidNodule-TG3K": ["thyroid"],
    "ThyroidGland-TG3K": ["thyroid"],
}
SPLITS = ("train", "val", "test")
EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif")


def _entries(root: Path) -> dict[tuple[str, str], set[str]]:
    """(dataset, name) -> splits listing it, from the global and per-dataset MainPatient lists."""
    found: dict[tuple[str, str], set[str]] = {}
    main = root / "MainPatient"
    if main.is_dir():
        for path in sorted(main.glob("*.txt")):
            split = re.split(r"[-.]", path.name, maxsplit=1)[0]
            if split not in SPLITS:
                continue
            for line in read_lines(path):
                parts = line.split("/")
                if len(parts) >= 2:  # [class id /] dataset / name
                    found.setdefault((parts[-2], parts[-1]), set()).add(split)
    for ds_main in sorted(root.glob("*/MainPatient")):
        if not (ds_main.parent / "img").is_dir():  # not a dataset folder
            continue
        for split in SPLITS:
            path = ds_main / f"{split}.txt"
            if path.is_file():
                for line in read_lines(path):
                    found.setdefault((ds_main.parent.name, line.split("/")[-1]), set()).add(split)
    return found


def _find(folder: Path, name: str) -> Path | None:
    if Path(name).suffix.lower() in EXTS and (folder / name).is_file():
        return folder / name
    return next((folder / f"{name}{e}" for e in EXTS if (folder / f"{name}{e}").is_file()), None)


def import_us30k(root: str | Path, out: str | Path, *, datasets: list[str] | None = None, strict: bool = False,
                 skip_bad: bool = False, show_progress: bool = False, force: bool = False) -> ImportReport:
    """Import the US30K folder `root` (optionally only `datasets`) into the store `out` (replaced only
    with `force` and only when it is a samfx store)."""
    check_out(Path(out).expanduser(), force)  # before any reading
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: US30K folder not found; pass the folder holding MainPatient/ and the dataset folders")
    entries = _listed(root, datasets)
    class_file = root / "MainPatient" / "class.json"
    report = ImportReport(str(out), f"us30k:{root}")
    n_classes = _class_counts(class_file, report)
    present = _present(root, entries, strict, report)
    ds_names = sorted({d for d, *_ in present})  # declared classes: datasets actually found
    per_ds = {d: n_classes.get(d, 2) for d in ds_names}
    top = max(per_ds.values()) - 1
    if top < 1:
        raise DataError(f"{class_file}: every dataset declares fewer than 2 classes; nothing to segment")
    names = KNOWN_NAMES.get(ds_names[0], []) if len(ds_names) == 1 else []
    class_names = names if len(names) == top else [f"class{k}" for k in range(1, top + 1)]
    split_ids: dict[str, list[str]] = {s: [] for s in SPLITS}
    counts = {"images": 0}
    with StoreWriter(out, list(range(1, top + 1)), class_names, source="us30k",
                     description=f"US30K ({', '.join(ds_names)}) from {root}", force=force) as w, \
            progress_bar(len(present), "importing US30K", show_progress) as advance:
        for ds, name, img_path, lab_path in present:
            item = report.attempt(skip_bad, lambda: _one(w, ds, name, img_path, lab_path, per_ds[ds]))
            if item is not None:
                for split in entries[(ds, name)]:
                    split_ids[split].append(item)
                counts["images"] += 1
            advance()
        for split, ids in split_ids.items():
            w.set_split(split, ids=ids)
    multi = sum(1 for k in entries if len(entries[k]) > 1)
    if multi:
        report.notes.append(f"{multi} image(s) are listed in more than one split (kept in each)")
    counts["datasets"] = len({d for d, *_ in present})
    report.counts = counts
    return report.finish()


def _listed(root: Path, datasets: list[str] | None) -> dict[tuple[str, str], set[str]]:
    """:func:`_entries` of `root`, only those of `datasets` when given; a DataError when nothing (or an
    unknown dataset) is listed."""
    entries = _entries(root)
    if not entries:
        raise DataError(f"{root}: no list files (MainPatient/train.txt, <Dataset>/MainPatient/train.txt); "
                        f"expected the SAMUS US30K layout")
    if datasets:
        known = {d for d, _ in entries}
        unknown = sorted(set(datasets) - known)
        if unknown:
            raise DataError(f"{root}: dataset(s) {unknown} are not listed; listed datasets: {', '.join(sorted(known))}")
        entries = {k: v for k, v in entries.items() if k[0] in datasets}
    return entries


def _class_counts(class_file: Path, report: ImportReport) -> dict[str, int]:
    """MainPatient/class.json: dataset -> number of classes (background included); empty, with a note in
    `report`, when the file is missing."""
    if not class_file.is_file():
        report.notes.append(f"{class_file}: not found; every dataset taken as binary (background + 1 class)")
        return {}
    try:
        return {str(k): int(v) for k, v in json.loads(class_file.read_text()).items()}
    except (ValueError, AttributeError) as exc:
        raise DataError(f"{class_file}: not a JSON mapping of dataset -> number of classes ({exc})") from None


def _present(root: Path, entries: dict[tuple[str, str], set[str]], strict: bool,
             report: ImportReport) -> list[tuple[str, str, Path, Path]]:
    """(dataset, name, image file, label file) of every listed image whose two files exist; the others go
    to ``report.missing`` (a DataError with `strict`, or when none exists)."""
    present: list[tuple[str, str, Path, Path]] = []
    for (ds, name) in sorted(entries):
        img, lab = _find(root / ds / "img", name), _find(root / ds / "label", name)
        if img is None or lab is None:
            missing = root / ds / ("img" if img is None else "label") / name
            if strict:
                raise DataError(f"{missing}[.png]: listed but not found (strict import)")
            report.missing.append(f"{ds}/{'img' if img is None else 'label'}/{name}")
            continue
        present.append((ds, name, img, lab))
    if not present:
        raise DataError(f"{root}: none of the {len(entries)} listed images exists "
                        f"(first missing: {', '.join(report.missing[:3])}); check ROOT")
    return present


def _one(w: StoreWriter, ds: str, name: str, img_path: Path, lab_path: Path, n_classes: int) -> str:
    image = read_png(img_path)
    label = read_png(lab_path, label=True)
    values = set(np.unique(label).tolist())
    if values <= {0, 255} and 255 in values:  # 0/255 binary masks
        label = (label == 255).astype(np.uint8)
    if label.shape != image.shape:
        raise DataError(f"{lab_path}: mask shape {label.shape} does not match image {image.shape}")
    bad = sorted(set(np.unique(label).tolist()) - set(range(n_classes)))
    if bad:
        raise DataError(f"{lab_path}: label ids {bad} outside the declared set 0..{n_classes - 1} of {ds} "
                        f"(MainPatient/class.json); fix the mask or class.json")
    item = safe_id(f"{ds}:{Path(name).stem if Path(name).suffix.lower() in EXTS else name}")
    w.add_image(item, image, label, patient=item, view="", phase="", spacing=None, source=str(img_path), dataset=ds)
    return item
