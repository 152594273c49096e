"""Saving an annotation session: label maps as PNG (uint8 class ids, one per frame) and NIfTI (x, y[, t],
spacing kept, read back by samfx.data.images), the loop and its labels appended to (or creating) a samfx
HDF5 store as ``samfx data`` writes one (so ``samfx train`` reads it), and the session JSON (the
operations, to reopen it). Every file is written atomically: a failure leaves the previous file."""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from samfx.contracts.errors import SamfxError
from samfx.data.files import atomic_write, write_json
from samfx.data.store import StoreWriter, open_store, read_frames, read_index, read_sample
from samfx.deploy.annotate.access import AnnotateError
from samfx.deploy.annotate.session import AnnotationSession

SESSION_SUFFIX = ".samfx-annotate.json"


def _png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def save_pngs(session: AnnotationSession, folder: Path) -> list[Path]:
    """``<name>_label.png`` for an image, ``<name>_label_<t>.png`` per frame of a loop."""
    name, t = session.loop.name, session.num_frames
    paths = [folder / (f"{name}_label.png" if t == 1 else f"{name}_label_{i:04d}.png") for i in range(t)]
    for path, lab in zip(paths, session.labels):
        _write_bytes(path, _png_bytes(lab))
    return paths


def nifti_bytes(labels: np.ndarray, spacing: tuple[float, float] | None) -> bytes:
    """(T,H,W) or (H,W) uint8 as a gzipped NIfTI-1 stored (x, y[, t]) with zooms (col mm, row mm[, 1])."""
    import nibabel as nib

    data = labels.T if labels.ndim == 2 else labels.transpose(2, 1, 0)
    row, col = spacing if spacing else (1.0, 1.0)
    img = nib.Nifti1Image(np.ascontiguousarray(data, dtype=np.uint8), np.diag([col, row, 1.0, 1.0]))
    img.header.set_zooms((col, row, 1.0)[: data.ndim])
    img.header.set_xyzt_units("mm")
    return gzip.compress(img.to_bytes(), mtime=0)


def save_nifti(session: AnnotationSession, folder: Path) -> Path:
    """``<name>_label.nii.gz``: every frame's label map with the loop's spacing."""
    path = folder / f"{session.loop.name}_label.nii.gz"
    labels = session.labels[0] if session.num_frames == 1 else session.labels
    _write_bytes(path, nifti_bytes(labels, session.loop.spacing))
    return path


def save_document(session: AnnotationSession, folder: Path) -> Path:
    """``<name>.samfx-annotate.json``: the session's operations (reopen with ``samfx annotate --session``)."""
    path = folder / f"{session.loop.name}{SESSION_SUFFIX}"
    write_json(path, session.document())
    return path


def load_document(path: Path) -> dict[str, Any]:
    """A saved session JSON, checked; AnnotateError naming the file otherwise."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AnnotateError(f"{path}: cannot read the session JSON ({exc}); save the session again") from None
    if not isinstance(doc, dict) or doc.get("samfx_annotate") != 1 or not isinstance(doc.get("ops"), list):
        raise AnnotateError(f"{path}: not a samfx annotate session (samfx_annotate: 1 with 'ops'); choose a "
                            f"*{SESSION_SUFFIX} file")
    return doc


def _copy_items(src: Path, w: StoreWriter) -> list[str]:
    """Every item and split of the store at `src` into writer `w`; the ids copied."""
    index = read_index(src)
    if index.classes != w.classes or index.class_names != w.class_names:
        raise AnnotateError(f"{src}: its classes {index.classes} {index.class_names} differ from the run's "
                            f"{w.classes} {w.class_names}; save to a new store")
    skip = {"patient", "view", "phase", "spacing", "source", "ed", "es", "ef", "fps"}
    with open_store(src) as f:
        for item in index.items.values():
            extra = {k: v for k, v in item.attrs.items() if k not in skip}
            if item.kind == "sample":
                image, label = read_sample(f, item.id)
                w.add_image(item.id, image, label, patient=item.patient, view=item.view, phase=item.phase,
                            spacing=item.spacing, source=str(item.attrs.get("source", "")), **extra)
            else:
                frames, labels = read_frames(f, item.id)
                w.add_sequence(item.id, frames, labels, np.asarray(item.labeled), patient=item.patient,
                               view=item.view, spacing=item.spacing, ed=item.ed, es=item.es, ef=item.ef,
                               fps=float(item.attrs.get("fps", float("nan"))),
                               source=str(item.attrs.get("source", "")), **extra)
    for name, (patients, ids) in index.splits.items():
        w.set_split(name, patients=sorted(patients), ids=sorted(ids))
    return list(index.items)


def save_store(session: AnnotationSession, path: Path, *, patient: str | None = None, split: str = "train",
               view: str = "", item_id: str | None = None) -> dict[str, Any]:
    """Add the loop with its label maps to the store at `path` (created when missing; an existing samfx
    store is rewritten with its items and splits plus this one, atomically) as ``samfx data`` would: a
    sequence (frames labeled where the session touched them, ED/ES from the LV area of the labeled
    frames, spacing, fps) or, for one frame, an image; its patient (default the loop's name) joins
    `split`. Returns ``{"store", "id", "patient", "split", "labeled_frames"}``."""
    run, loop = session.ops.run, session.loop
    item = item_id or "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in loop.name) or "annotated"
    who = patient or item
    labeled = session.labeled.copy()
    if not labeled.any():
        raise AnnotateError("save: nothing is annotated yet; click, run automatic or paint a frame first")
    existing = path.exists()
    try:
        with StoreWriter(path, list(run.classes), list(run.class_names), source="samfx annotate",
                         description="hand-annotated with samfx annotate", force=existing) as w:
            ids = _copy_items(path, w) if existing else []
            if item in ids and item_id is not None:
                raise AnnotateError(f"{path}: already has an item '{item}'; give another id")
            base, n = item, 2
            while item in ids:   # the same loop saved again: a new id, as an importer never overwrites
                item, n = f"{base}-{n}", n + 1
            _add_item(session, w, item, who, view, labeled)
            w.set_split(split, patients=[who])
    except SamfxError:
        raise
    except OSError as exc:
        raise AnnotateError(f"{path}: cannot write the store ({exc}); choose a writable path") from None
    return {"store": str(path), "id": item, "patient": who, "split": split,
            "labeled_frames": [int(t) for t in np.flatnonzero(labeled)]}


def _add_item(session: AnnotationSession, w: StoreWriter, item: str, who: str, view: str,
              labeled: np.ndarray) -> None:
    loop, labels = session.loop, session.labels
    if session.num_frames == 1:
        w.add_image(item, loop.frames[0], labels[0], patient=who, view=view, spacing=loop.spacing,
                    source="samfx annotate")
        return
    lv, idx = session.lv_class(), np.flatnonzero(labeled)
    areas = (labels[idx] == lv).reshape(len(idx), -1).sum(1)
    ed, es = int(idx[np.argmax(areas)]), int(idx[np.argmin(areas)])   # max / min LV area, labeled frames
    if es == ed:
        es = -1
    fps = loop.fps if loop.fps else float("nan")
    w.add_sequence(item, loop.frames, np.where(labeled[:, None, None], labels, 0), labeled, patient=who,
                   view=view, spacing=loop.spacing, ed=ed, es=es, fps=fps, source="samfx annotate")


def save_all(session: AnnotationSession, folder: Path, formats: list[str], store: Path | None = None,
             split: str = "train", patient: str | None = None) -> dict[str, Any]:
    """Write `formats` (``png``, ``nifti``, ``json``) into `folder` and, with `store`, the store; the paths."""
    bad = [f for f in formats if f not in ("png", "nifti", "json")]
    if bad:
        raise AnnotateError(f"save: unknown format(s) {bad}; use png, nifti, json")
    out: dict[str, Any] = {}
    if "png" in formats:
        out["png"] = [str(p) for p in save_pngs(session, folder)]
    if "nifti" in formats:
        out["nifti"] = str(save_nifti(session, folder))
    if "json" in formats:
        out["json"] = str(save_document(session, folder))
    if store is not None:
        out["store"] = save_store(session, store, split=split, patient=patient)
    return out
