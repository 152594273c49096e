"""samfx's one on-disk dataset format: an HDF5 file (h5py), chunked and gzip-compressed.

Layout (format version 1; docs/data.md is the reference)::

    /                      attrs: samfx_format="samfx-store", format_version=1, classes (int[]),
                                  class_names (str[]), source (str), description (str)
    /samples/<id>/image    (H,W) uint8      one 2-D image at native resolution
    /samples/<id>/label    (H,W) uint8      one class id per pixel (0 = background)
                           attrs: patient, view, phase, source (str), spacing (2,) mm (row, col)
    /sequences/<id>/frames (T,H,W) uint8
    /sequences/<id>/labels (T,H,W) uint8    zeros where a frame is not labeled
    /sequences/<id>/labeled (T,) bool
                           attrs: patient, view, source, spacing, ed, es (frame index, -1 unknown),
                                  ef (percent, NaN unknown), fps (NaN unknown)
    /splits/<name>/patients, /splits/<name>/ids   str[] (either or both; an item is in the split
                                  when its patient or its id is listed)

Unknown spacing is NaN. Extra per-item attrs (e.g. CAMUS ``age``) may be added freely.
:class:`StoreWriter` writes to a temporary name and renames on success, so an interrupted import
never leaves a file at the final path. :func:`read_index` validates a file and returns a picklable
:class:`StoreIndex`; array data is read with :func:`read_sample` / :func:`read_sequence`.
"""
from __future__ import annotations

import os
import re
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samfx.contracts.errors import DataError
from samfx.data import outfile
from samfx.data.checks import (
    READ_ERRORS,
    REMAKE,
    as_uint8,
    bad,
    check_label_values,
    check_labels,
    check_sample,
    check_sequence,
    check_spacing,
    read_list,
    reading,
    require,
)
from samfx.data.files import disk_full, out_of_space
from samfx.data.outfile import FORMAT, FORMAT_VERSION

_ID = re.compile(r"^[A-Za-z0-9_.:+=@,()\-]+$")
_SAMPLE_ATTRS = ("patient", "view", "phase", "spacing")
_SEQ_ATTRS = ("patient", "view", "spacing", "ed", "es", "ef")


def _h5py() -> Any:
    import h5py

    return h5py


class StoreWriter:
    """Create a store: ``with StoreWriter(path, classes, class_names) as w: w.add_image(...)``.

    Data goes to ``<path>.partial-<pid>``; the file is renamed to ``path`` only when the ``with``
    block ends without an exception (otherwise the partial file is deleted). An existing ``path``
    is refused unless ``force`` and it is a samfx store (samfx.data.outfile); partial files of
    dead writers of ``path`` are deleted on entry.
    """

    def __init__(self, path: str | Path, classes: list[int], class_names: list[str], *,
                 source: str = "", description: str = "", compression: str = "gzip", force: bool = False):
        if len(classes) != len(class_names):
            raise DataError(f"{path}: {len(classes)} classes but {len(class_names)} class names")
        if any(c <= 0 or c > 255 for c in classes):
            raise DataError(f"{path}: class ids must be in 1..255 (0 is background), got {classes}")
        self.path = Path(path).expanduser()
        outfile.check_out(self.path, force)
        self.tmp = self.path.with_name(f"{self.path.name}{outfile.PARTIAL}{os.getpid()}")
        self.classes = [int(c) for c in classes]
        self.allowed = {0, *self.classes}
        self.class_names = list(class_names)
        self.source, self.description = source, description
        presets: dict[str, dict[str, Any]] = {"gzip": dict(compression="gzip", compression_opts=4),
                                              "lzf": dict(compression="lzf"), "none": {}}
        self.compression = presets[compression]
        self.file: Any = None  # the h5py.File while open
        self.ids: set[str] = set()
        self.splits: dict[str, dict[str, list[str]]] = {}

    def __enter__(self) -> StoreWriter:
        outfile.clean_stale_partials(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"{self.path}: cannot create the folder {self.path.parent} ({outfile.reason(exc)}); "
                            f"choose a path in a writable folder") from None
        try:
            self.file = _h5py().File(self.tmp, "w")
        except OSError as exc:
            raise DataError(f"{self.path}: cannot create the store file ({outfile.reason(exc)}); choose a "
                            f"path in a writable folder") from None
        f = self.file
        f.attrs["samfx_format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["classes"] = np.asarray(self.classes, dtype=np.int64)
        f.attrs["class_names"] = np.asarray(self.class_names, dtype=object)
        f.attrs["source"] = self.source
        f.attrs["description"] = self.description
        f.create_group("samples")
        f.create_group("sequences")
        f.create_group("splits")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Rename the partial file on success; on any failure delete it (out of space: DiskFull, one line)."""
        error = exc
        try:
            if exc_type is None:
                self._write_splits()
            self.file.close()
            if exc_type is None:
                os.replace(self.tmp, self.path)
                return
        except BaseException as err:
            error = err
        size = self.tmp.stat().st_size if self.tmp.exists() else 0
        with suppress(Exception):
            self.file.close()
        self.tmp.unlink(missing_ok=True)
        full = out_of_space(error)
        if full is not None:
            raise disk_full(self.path, size, full) from None
        if error is not exc and error is not None:
            raise error

    def _new_id(self, item_id: str, where: str) -> None:
        if not _ID.match(item_id):
            raise DataError(f"{where}: item id '{item_id}' may use only letters, digits and _.:+=@,()- "
                            f"(no '/' or spaces)")
        if item_id in self.ids:
            raise DataError(f"{where}: item id '{item_id}' written twice; ids must be unique in a store")
        self.ids.add(item_id)

    @staticmethod
    def _attrs(group, attrs: dict[str, Any]) -> None:
        for k, v in attrs.items():
            if v is None:
                continue
            group.attrs[k] = v

    def add_image(self, item_id: str, image: Any, label: Any, *, patient: str, view: str = "",
                  phase: str = "", spacing: Any = None, source: str = "", **extra: Any) -> None:
        """One labeled 2-D image (H,W) with its label map (H,W) of declared class ids."""
        where = source or item_id
        self._new_id(item_id, where)
        img = as_uint8(image, "image", where)
        lab = as_uint8(label, "label", where)
        if img.ndim != 2 or lab.shape != img.shape:
            raise DataError(f"{where}: image must be (H,W) with a label of the same shape, got image "
                            f"{img.shape} and label {lab.shape}")
        check_labels(lab, self.allowed, where)
        g = self.file["samples"].create_group(item_id)
        g.create_dataset("image", data=img, chunks=img.shape, **self.compression)
        g.create_dataset("label", data=lab, chunks=lab.shape, **self.compression)
        self._attrs(g, dict(patient=str(patient), view=str(view), phase=str(phase), source=str(source),
                            spacing=check_spacing(spacing, where), **extra))

    def add_sequence(self, item_id: str, frames: Any, labels: Any = None, labeled: Any = None, *,  # noqa: PLR0913  (keywords are the stored sequence attributes)
                     patient: str, view: str = "", spacing: Any = None, ed: int = -1, es: int = -1,
                     ef: float = float("nan"), fps: float = float("nan"), source: str = "",
                     **extra: Any) -> None:
        """A sequence: frames (T,H,W); labels (T,H,W) (zeros where unknown); labeled (T,) bool."""
        where = source or item_id
        self._new_id(item_id, where)
        fr = as_uint8(frames, "frames", where)
        if fr.ndim != 3 or fr.shape[0] < 1:
            raise DataError(f"{where}: frames must be (T,H,W), got shape {fr.shape}")
        lab = np.zeros(fr.shape, np.uint8) if labels is None else as_uint8(labels, "labels", where)
        if lab.shape != fr.shape:
            raise DataError(f"{where}: labels {lab.shape} do not match frames {fr.shape}")
        flags = np.zeros(fr.shape[0], bool) if labeled is None and labels is None else (
            np.ones(fr.shape[0], bool) if labeled is None else np.asarray(labeled, bool).reshape(-1))
        if flags.shape != (fr.shape[0],):
            raise DataError(f"{where}: labeled must have one flag per frame ({fr.shape[0]}), got {flags.shape}")
        check_labels(lab, self.allowed, where)
        for name, idx in (("ed", ed), ("es", es)):
            if not -1 <= int(idx) < fr.shape[0]:
                raise DataError(f"{where}: {name} frame index {idx} outside 0..{fr.shape[0] - 1}")
        g = self.file["sequences"].create_group(item_id)
        chunk = (1, *fr.shape[1:])
        g.create_dataset("frames", data=fr, chunks=chunk, **self.compression)
        g.create_dataset("labels", data=lab, chunks=chunk, **self.compression)
        g.create_dataset("labeled", data=flags)
        self._attrs(g, dict(patient=str(patient), view=str(view), source=str(source),
                            spacing=check_spacing(spacing, where), ed=int(ed), es=int(es), ef=float(ef),
                            fps=float(fps), **extra))

    def set_split(self, name: str, *, patients: list[str] | None = None, ids: list[str] | None = None) -> None:
        """Declare split `name` by patients and/or item ids (added to any earlier call)."""
        entry = self.splits.setdefault(name, {"patients": [], "ids": []})
        entry["patients"] += [str(p) for p in patients or []]
        entry["ids"] += [str(i) for i in ids or []]

    def _write_splits(self) -> None:
        strs = _h5py().string_dtype()
        for name, entry in self.splits.items():
            g = self.file["splits"].create_group(name)
            for key, values in entry.items():
                g.create_dataset(key, data=np.asarray(sorted(set(values)), dtype=object), dtype=strs)


@dataclass(frozen=True)
class Item:
    """Metadata of one sample (kind "sample") or sequence (kind "sequence") of a store."""

    kind: str
    id: str
    patient: str
    view: str
    phase: str
    spacing: tuple[float, float]
    shape: tuple[int, ...]
    ed: int = -1
    es: int = -1
    ef: float = float("nan")
    labeled: tuple[bool, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class StoreIndex:
    """Everything about a store except its arrays (picklable; safe to send to workers)."""

    path: str
    classes: list[int]
    class_names: list[str]
    source: str
    items: dict[str, Item]
    splits: dict[str, tuple[set[str], set[str]]]  # name -> (patients, ids)

    def in_split(self, split: str | None) -> list[Item]:
        """Items of `split` (all items when None), in store order."""
        if split is None:
            return list(self.items.values())
        if split not in self.splits:
            raise DataError(f"{self.path}: no split '{split}'; splits are: {', '.join(sorted(self.splits)) or 'none'}")
        patients, ids = self.splits[split]
        return [it for it in self.items.values() if it.patient in patients or it.id in ids]


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        return v.item()
    return v


def open_store(path: str | Path):
    """Open `path` read-only as an h5py File, with a DataError when it is missing or not HDF5."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: store file not found; create one with `samfx data synth --out {p}` or an importer")
    h5py = _h5py()
    try:
        return h5py.File(p, "r")
    except READ_ERRORS as exc:
        raise DataError(f"{p}: not a readable HDF5 file ({str(exc).splitlines()[0]}); {REMAKE}") from None


def read_index(path: str | Path) -> StoreIndex:
    """Validate the store at `path` and return its :class:`StoreIndex`.

    Checked here, from metadata only: root attributes, groups, and the shape and dtype of every
    dataset (docs/data.md "Validation"). Label values are checked when labels are read.
    """
    p = Path(path).expanduser()
    with open_store(p) as f, reading(p, "the root group /"):
        hint = REMAKE
        if _str(f.attrs.get("samfx_format", "")) != FORMAT:
            raise DataError(f"{p}: not a samfx store (root attribute 'samfx_format' missing); {hint}")
        version = int(f.attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise DataError(f"{p}: store format version {version}, this samfx reads {FORMAT_VERSION}; {hint}")
        for key in ("classes", "class_names"):
            if key not in f.attrs:
                raise DataError(f"{p}: missing root attribute '{key}'; {hint}")
        classes = [int(c) for c in np.asarray(f.attrs["classes"]).reshape(-1)]
        names = [_str(c) for c in np.asarray(f.attrs["class_names"]).reshape(-1)]
        if len(classes) != len(names) or any(not 0 < c < 256 for c in classes):
            raise bad(p, "root attributes", f"declare classes {classes} named {names} (ids must be 1..255, "
                                             f"one name each)")
        for grp in ("samples", "sequences", "splits"):
            if grp not in f:
                raise DataError(f"{p}: missing group '/{grp}'; {hint}")
        items: dict[str, Item] = {}
        for sid in list(f["samples"]):
            where = f"/samples/{sid}"
            with reading(p, where):
                g = f["samples"][sid]
                require(p, where, g, ("image", "label"), _SAMPLE_ATTRS)
                shape = check_sample(p, where, g)
                a = {k: _plain(v) for k, v in g.attrs.items()}
                items[sid] = Item("sample", sid, a["patient"], a["view"], a["phase"], tuple(a["spacing"]),
                                  shape, attrs=a)
        for qid in list(f["sequences"]):
            where = f"/sequences/{qid}"
            with reading(p, where):
                g = f["sequences"][qid]
                require(p, where, g, ("frames", "labels", "labeled"), _SEQ_ATTRS)
                shape, labeled = check_sequence(p, where, g)
                a = {k: _plain(v) for k, v in g.attrs.items()}
                items[qid] = Item("sequence", qid, a["patient"], a["view"], "", tuple(a["spacing"]), shape,
                                  ed=int(a["ed"]), es=int(a["es"]), ef=float(a["ef"]), labeled=labeled, attrs=a)
                for key in ("ed", "es"):
                    if not -1 <= int(a[key]) < shape[0]:
                        raise bad(p, where, f"has {key}={a[key]} outside frames 0..{shape[0] - 1} (or -1)")
        splits = {}
        for name in list(f["splits"]):
            with reading(p, f"/splits/{name}"):
                g = f["splits"][name]
                pats = read_list(p, f"/splits/{name}/patients", g["patients"]) if "patients" in g else set()
                ids = read_list(p, f"/splits/{name}/ids", g["ids"]) if "ids" in g else set()
            splits[name] = (pats, ids)
        return StoreIndex(str(p), classes, names, _str(f.attrs.get("source", "")), items, splits)


def _group(f, where: str, classes: Any):
    """The item's group and the classes its labels are checked against (default: the store's)."""
    with reading(f.filename, where):
        return f[where], (f.attrs["classes"] if classes is None else classes)


def _pick(f, g, name: str, index: Any) -> np.ndarray:
    """``g[name][index]``; a list of indices may be unsorted and repeat (h5py wants neither)."""
    with reading(f.filename, f"{g.name}/{name}"):
        if isinstance(index, (list, np.ndarray)):
            uniq, inv = np.unique(np.asarray(index), return_inverse=True)
            return g[name][uniq][inv]
        return g[name][index]


def read_sample(f, item_id: str, classes: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(image, label) uint8 arrays of sample `item_id` from an open store file; label ids are checked
    against `classes` (default: the store's)."""
    g, classes = _group(f, f"/samples/{item_id}", classes)
    image, label = (_pick(f, g, name, ()) for name in ("image", "label"))
    check_label_values(label, classes, f.filename, f"{g.name}/label")
    return image, label


def read_frames(f, item_id: str, index: Any = slice(None), classes: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(frames, labels) uint8 arrays (T',H,W) of sequence `item_id`, frames selected by `index`
    (label ids checked as in :func:`read_sample`)."""
    g, classes = _group(f, f"/sequences/{item_id}", classes)
    frames, labels = (_pick(f, g, name, index) for name in ("frames", "labels"))
    check_label_values(labels, classes, f.filename, f"{g.name}/labels")
    return frames, labels


def read_labels(f, item_id: str, index: Any = slice(None), classes: Any = None) -> np.ndarray:
    """Labels only (T',H,W) of sequence `item_id` (see :func:`read_frames`)."""
    g, classes = _group(f, f"/sequences/{item_id}", classes)
    labels = _pick(f, g, "labels", index)
    check_label_values(labels, classes, f.filename, f"{g.name}/labels")
    return labels


def split_patients(patients: list[str], seed: int, val_frac: float = 0.1,
                   test_frac: float = 0.2) -> dict[str, list[str]]:
    """Seeded split by patient: at least one val and one test patient when there are >= 3."""
    order = [patients[i] for i in np.random.default_rng([seed, 4242]).permutation(len(patients))]
    n = len(order)
    n_test = max(1, round(test_frac * n)) if n >= 3 else 0
    n_val = max(1, round(val_frac * n)) if n >= 3 else 0
    return {"test": sorted(order[:n_test]), "val": sorted(order[n_test:n_test + n_val]),
            "train": sorted(order[n_test + n_val:])}
