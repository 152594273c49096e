"""Import a folder of images and a folder of masks, paired by file stem, into a samfx store.

Images and masks may be PNG, JPEG, BMP, TIFF or NIfTI (``.nii``/``.nii.gz``), grayscale or RGB
(images are converted to gray; a colour mask is an error). The mask of image ``<stem>.<ext>`` is
the file whose stem is ``mask_pattern.format(stem=<stem>)`` (default ``{stem}``; ``_mask`` suffix:
``{stem}_mask``) in any supported format. A 2-D pair becomes a sample; a 3-D NIfTI pair (x, y, t)
becomes a sequence with every frame labeled. Mask values are mapped to class ids by a
:class:`~samfx.data.importers.labelmap.LabelMap`. Images without a mask and masks without an
image are reported, not imported; a size mismatch or an unexpected mask value is a DataError
naming the file (skipped and reported with ``skip_bad``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from samfx.contracts.errors import DataError
from samfx.data.images import read_image
from samfx.data.importers.common import SHOW, ImportReport, safe_id
from samfx.data.importers.grouping import PatientRule, assign_lists, ratio_splits
from samfx.data.importers.labelmap import LabelMap
from samfx.data.outfile import check_out
from samfx.data.progress import progress_bar
from samfx.data.store import StoreWriter

EXTS = (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class FolderOptions:
    """How `import_folder` pairs, labels, groups and splits (docs/data.md, "Your own data")."""

    labels: LabelMap
    mask_pattern: str = "{stem}"
    spacing: tuple[float, float] | None = None       # None: from NIfTI headers, else unknown
    patients: PatientRule = field(default_factory=lambda: PatientRule(None))
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    split_lists: dict[str, list[str]] = field(default_factory=dict)   # used instead of ratios when set
    seed: int = 0


def split_name(path: Path) -> tuple[str, str] | None:
    """(stem, extension) of a supported file, else None (``a.nii.gz`` -> ``("a", ".nii.gz")``)."""
    low = path.name.lower()
    ext = next((e for e in EXTS if low.endswith(e)), None)
    return None if ext is None else (path.name[: -len(ext)], ext)


def list_files(folder: Path, what: str) -> dict[str, Path]:
    """Supported files of `folder` by stem; DataError when two files share a stem (``a.png``, ``a.tif``)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: {what} folder not found; pass the folder holding the {what} files")
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        parts = split_name(path) if path.is_file() else None
        if parts is None:
            continue
        if parts[0] in out:
            raise DataError(f"{path}: same stem as {out[parts[0]].name}; pairs are matched by stem, keep one")
        out[parts[0]] = path
    return out


def pair_files(images: Path, masks: Path, pattern: str) -> tuple[list[tuple[str, Path, Path]], list[str], list[str]]:
    """(stem, image, mask) pairs, images without a mask, masks without an image."""
    if "{stem}" not in pattern:
        raise DataError(f"--mask-pattern {pattern!r}: must contain {{stem}}, e.g. '{{stem}}_mask'")
    image_files, mask_files = list_files(images, "image"), list_files(masks, "mask")
    one_folder = images.resolve() == masks.resolve()
    if one_folder:  # files that are some image's mask are masks, not images
        if pattern == "{stem}":
            raise DataError(f"{images}: images and masks in one folder need a mask name that differs from the "
                            f"image's, e.g. --mask-suffix _mask")
        taken = {pattern.replace("{stem}", s) for s in image_files}
        image_files = {s: p for s, p in image_files.items() if s not in taken}
    mask_of = {stem: pattern.replace("{stem}", stem) for stem in image_files}
    pairs = [(s, p, mask_files[mask_of[s]]) for s, p in image_files.items() if mask_of[s] in mask_files]
    lonely_images = [p.name for s, p in image_files.items() if mask_of[s] not in mask_files]
    used = set(mask_of.values()) | (set(image_files) if one_folder else set())
    lonely_masks = [p.name for s, p in mask_files.items() if s not in used]
    return pairs, lonely_images, lonely_masks


def import_folder(images: str | Path, masks: str | Path, out: str | Path, options: FolderOptions, *,
                  skip_bad: bool = False, show_progress: bool = False, force: bool = False) -> ImportReport:
    """Import the pairs of `images` and `masks` into the store `out` (module docstring)."""
    check_out(Path(out).expanduser(), force)  # before any reading
    images, masks = Path(images).expanduser(), Path(masks).expanduser()
    pairs, lonely_images, lonely_masks = pair_files(images, masks, options.mask_pattern)
    if not pairs:
        raise DataError(f"{images}: no image has a mask in {masks} (mask name {options.mask_pattern!r} + any of "
                        f"{', '.join(EXTS)}); images without a mask: {', '.join(lonely_images[:3]) or 'none'}")
    report = ImportReport(str(out), f"folder:{images}")
    lm = options.labels
    counts = {"images": 0, "sequences": 0, "patients": 0}
    stems: dict[str, str] = {}
    patient_of: dict[str, str] = {}
    with StoreWriter(out, lm.classes, lm.class_names, source="folder",
                     description=f"images {images}, masks {masks}", force=force) as w, \
            progress_bar(len(pairs), "importing folder", show_progress) as advance:
        for stem, img, mask in pairs:
            done = report.attempt(skip_bad, lambda: _one(w, stem, img, mask, options))
            if done is not None:
                item, patient, kind = done
                stems[stem], patient_of[item] = item, patient
                counts[kind] += 1
            advance()
        if not stems:
            raise DataError(f"{images}: every pair was skipped as bad; first: {report.skipped[0]}")
        _splits(w, options, stems, patient_of, report)
    counts["patients"] = len(set(patient_of.values()))
    report.counts = counts
    report.notes[:0] = [_listing("image(s) without a mask", lonely_images),
                        _listing("mask(s) without an image", lonely_masks)]
    report.notes = [n for n in report.notes if n]
    return report.finish()


def _listing(what: str, names: list[str]) -> str:
    if not names:
        return ""
    more = f" (+{len(names) - SHOW} more)" if len(names) > SHOW else ""
    return f"{len(names)} {what}: {', '.join(names[:SHOW])}{more}"


def _one(w: StoreWriter, stem: str, img: Path, mask: Path, options: FolderOptions) -> tuple[str, str, str]:
    """Write one pair; (item id, patient, "images" | "sequences")."""
    patient = options.patients.patient(stem, str(img))
    image, nifti_spacing = read_image(img, label=False)
    raw, _ = read_image(mask, label=True)
    if raw.shape != image.shape:
        raise DataError(f"{mask}: mask shape {raw.shape} does not match image {img.name} {image.shape}; "
                        f"masks must have the image's size")
    label = options.labels.apply(raw, str(mask))
    spacing = options.spacing or nifti_spacing
    item = safe_id(stem)
    if image.ndim == 2:
        w.add_image(item, image, label, patient=patient, spacing=spacing, source=str(img), mask=str(mask))
        return item, patient, "images"
    w.add_sequence(item, image, label, np.ones(image.shape[0], bool), patient=patient, spacing=spacing,
                   source=str(img), mask=str(mask))
    return item, patient, "sequences"


def _splits(w: StoreWriter, options: FolderOptions, stems: dict[str, str], patient_of: dict[str, str],
            report: ImportReport) -> None:
    if not options.split_lists:
        sizes = []
        for name, members in ratio_splits(sorted(set(patient_of.values())), options.ratios, options.seed).items():
            w.set_split(name, patients=members)
            sizes.append(f"{name} {len(members)}")
        report.notes.append(f"splits by patient (seed {options.seed}): " + ", ".join(sizes))
        return
    resolved, unknown = assign_lists(options.split_lists, stems, patient_of)
    where: dict[str, set[str]] = {}
    for name, entry in resolved.items():
        w.set_split(name, ids=entry["ids"], patients=entry["patients"])
        listed = set(entry["ids"]) | {i for i, p in patient_of.items() if p in entry["patients"]}
        for item in listed:
            where.setdefault(patient_of[item], set()).add(name)
    if unknown:
        report.notes.append(_listing("listed name(s) match no imported file or patient", unknown))
    leaks = sorted(p for p, names in where.items() if len(names) > 1)
    if leaks:
        report.notes.append(_listing("patient(s) in more than one split (check the lists)", leaks))
    unsplit = [i for i in patient_of if patient_of[i] not in where]
    if unsplit:
        report.notes.append(_listing("imported item(s) in no split", unsplit))
