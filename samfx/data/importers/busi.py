"""Import BUSI (breast ultrasound images, as distributed) into a samfx store.

Layout: ``ROOT/Dataset_BUSI_with_GT/{benign,malignant,normal}/`` holding ``benign (1).png`` with its
mask ``benign (1)_mask.png`` and, for some lesions, extra masks ``benign (1)_mask_1.png``,
``_mask_2.png``... ROOT may also be the ``Dataset_BUSI_with_GT`` folder itself.

Every image becomes a sample (label 1 = lesion: the union of all its masks; normal images have
empty masks and are kept as negatives), id ``<category>_(<n>)``, attribute ``category``. Masks are
read as 0/1 when their values are 0/255 or 0/1 (gray or RGB with equal channels); any other value
is refused. BUSI has no patient ids and no spacing, so patient = image and spacing is unknown; the
train/val/test split (70/10/20) is seeded and drawn within each category.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from samfx.contracts.errors import DataError
from samfx.data.images import read_png
from samfx.data.importers.common import ImportReport, safe_id
from samfx.data.outfile import check_out
from samfx.data.progress import progress_bar
from samfx.data.store import StoreWriter, split_patients

CATEGORIES = ("benign", "malignant", "normal")
FOLDER = "Dataset_BUSI_with_GT"
MASK = re.compile(r"^(?P<stem>.+)_mask(?:_(?P<k>\d+))?\.png$", re.IGNORECASE)


def scan_category(folder: Path) -> tuple[dict[str, tuple[Path, list[Path]]], list[Path]]:
    """stem -> (image, its masks in order) for one category folder, and masks without an image."""
    images: dict[str, Path] = {}
    masks: dict[str, list[tuple[int, Path]]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() != ".png":
            continue
        m = MASK.match(path.name)
        if m:
            masks.setdefault(m.group("stem"), []).append((int(m.group("k") or 0), path))
        else:
            images[path.stem] = path
    found = {stem: (img, [p for _, p in sorted(masks.get(stem, []))]) for stem, img in images.items()}
    orphans = [p for stem, ps in masks.items() if stem not in images for _, p in ps]
    return found, orphans


def read_mask(path: Path) -> np.ndarray:
    """A BUSI mask as 0/1 uint8; DataError naming the file when it is not a binary mask."""
    mask = read_png(path, label=True)
    values = set(np.unique(mask).tolist())
    if not values <= {0, 255} and not values <= {0, 1}:
        raise DataError(f"{path}: mask values {sorted(values)[:6]} are not a binary mask (0/255 or 0/1)")
    return (mask > 0).astype(np.uint8)


def _base(root: Path) -> Path:
    root = root.expanduser()
    base = root / FOLDER if (root / FOLDER).is_dir() else root
    if not base.is_dir() or not any((base / c).is_dir() for c in CATEGORIES):
        raise DataError(f"{root}: no benign/, malignant/ or normal/ folder; expected the BUSI layout "
                        f"{FOLDER}/benign/benign (1).png with benign (1)_mask.png")
    return base


def import_busi(root: str | Path, out: str | Path, *, seed: int = 0, skip_bad: bool = False,
                show_progress: bool = False, force: bool = False) -> ImportReport:
    """Import the BUSI folder `root` into the store `out` (replaced only with `force` and only when it
    is a samfx store)."""
    check_out(Path(out).expanduser(), force)  # before any reading
    base = _base(Path(root))
    report = ImportReport(str(out), f"busi:{base}")
    todo: list[tuple[str, str, Path, list[Path]]] = []
    for cat in CATEGORIES:
        if not (base / cat).is_dir():
            report.notes.append(f"{base / cat}: not found; no {cat} images")
            continue
        found, orphans = scan_category(base / cat)
        report.missing += [f"{p}: mask without its image" for p in orphans]
        for stem, (img, masks) in sorted(found.items()):
            if masks:
                todo.append((cat, stem, img, masks))
            else:
                report.missing.append(f"{base / cat / (stem + '_mask.png')}: not found (the mask of {stem}.png)")
    if not todo:
        raise DataError(f"{base}: no image with its _mask.png was found; check the layout")
    counts = {"images": 0, **{c: 0 for c in CATEGORIES}, "merged_masks": 0}
    ids: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    with StoreWriter(out, [1], ["lesion"], source="busi", description=f"BUSI from {base}", force=force) as w, \
            progress_bar(len(todo), "importing BUSI", show_progress) as advance:
        for cat, stem, img, masks in todo:
            item = report.attempt(skip_bad, lambda: _one(w, cat, stem, img, masks))
            if item is not None:
                ids[cat].append(item)
                counts["images"] += 1
                counts[cat] += 1
                counts["merged_masks"] += len(masks) > 1
            advance()
        for cat_ids in ids.values():  # stratified: each category split on its own
            for name, members in split_patients(cat_ids, seed).items():
                w.set_split(name, ids=members)
    report.notes.append(f"split by image with seed {seed} within each category (70/10/20): BUSI has no "
                        f"official split and no patient ids")
    report.counts = counts
    return report.finish()


def _one(w: StoreWriter, cat: str, stem: str, img_path: Path, mask_paths: list[Path]) -> str:
    image = read_png(img_path)
    label = np.zeros(image.shape, np.uint8)
    for path in mask_paths:
        mask = read_mask(path)
        if mask.shape != image.shape:
            raise DataError(f"{path}: mask shape {mask.shape} does not match image {image.shape} of {img_path.name}")
        label |= mask
    item = safe_id(stem)
    w.add_image(item, image, label, patient=item, view="", phase="", spacing=None, source=str(img_path),
                category=cat, masks=len(mask_paths))
    return item
