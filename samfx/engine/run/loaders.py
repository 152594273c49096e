"""Datasets of a run: the recipe's ``data.source`` component -> HDF5 store -> torch datasets.

Temporal hook: with ``data.clip_length > 0`` the training split is a :class:`ClipDataset` (items
``frames`` (T,3,S,S) / ``labels`` (T,S,S) / ``labeled`` (T,)); the trainer hands such batches to
``clip_step`` (see trainer.py), which a temporal model implements through ``model.forward_clip``.
"""
from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, default_collate

from samfx.config.recipe import Recipe
from samfx.contracts.errors import DataError, SamfxError
from samfx.contracts.registry import Registry
from samfx.data.cache import cache_dir as resolve
from samfx.data.datasets import ClipDataset, ImageDataset, SequenceDataset
from samfx.model.build import build_extra

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def ignore_in_worker(_worker_id: int) -> None:
    """DataLoader ``worker_init_fn`` for every loader of a training (its own and validation's): a
    Ctrl-C or SIGTERM reaches the whole process group, but the training process decides when to
    stop; a worker dying first would fail the step or validation being finished. Unblocks the
    signals :func:`start_workers` blocked (a signal pending meanwhile is discarded)."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def start_workers(loader: Iterable[Any]) -> Iterator[Any]:
    """``iter(loader)`` with the stop signals blocked while its workers start: a worker is born
    blocking them until :func:`ignore_in_worker` ignores them, so a signal to the process group
    in between cannot kill it. The caller's signals are delivered once its workers have started."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def cache_dir() -> str:
    """Where generated / imported stores live (samfx.data.cache: $SAMFX_CACHE, else ~/.cache/samfx)."""

    return str(resolve())


def store_path(source_cfg: dict[str, Any], registry: Registry, where: str = "data.source") -> Path:
    """Build the dataset component and return its store file (created on first use)."""

    if isinstance(source_cfg, (str, Path)) and Path(source_cfg).suffix in {".h5", ".hdf5"}:
        return Path(source_cfg).expanduser()
    source = build_extra(None, "dataset", source_cfg, where, registry)
    if not hasattr(source, "path"):
        raise SamfxError(f"{where}: dataset '{source_cfg['name']}' built a {type(source).__name__}, not a "
                         f"DataSource with .path(cache_dir)")
    return Path(source.path(cache_dir()))


def open_split(recipe: Recipe, registry: Registry, split: str, image_size: int, train: bool,
               store: Path | None = None) -> Dataset:
    """The dataset of `split`: augmented clips/images for training, plain images otherwise; a
    DataError when the store lacks a class of ``data.classes``."""

    data = recipe.typed.data
    path = store or store_path(data.source, registry)
    seed = recipe.typed.train.seed
    augment = data.augment if train else None
    ds: ClipDataset | ImageDataset
    if train and data.clip_length > 0:
        ds = ClipDataset(path, split, image_size, data.clip_length, augment=augment, seed=seed,
                         labels=data.clip_labels)
    else:
        ds = ImageDataset(path, split, image_size, augment=augment, seed=seed)
    check_classes(data.classes, ds.index)
    return ds


def open_val_split(recipe: Recipe, registry: Registry, split: str, image_size: int,
                   sequences: bool) -> tuple[Dataset | None, str]:
    """The validation split: whole sequences (`sequences`: clip training validates on them) or plain
    images; (None, the reason) when the store has no such split."""
    try:
        if sequences:
            return SequenceDataset(store_path(recipe.typed.data.source, registry), split, image_size), ""
        return open_split(recipe, registry, split, image_size, train=False), ""
    except DataError as exc:
        if "no split" in str(exc) or "has no" in str(exc):
            return None, f"no validation split '{split}' ({exc})"
        raise


def check_classes(classes: list[int], index, where: str = "data.classes") -> None:
    """DataError unless the store declares every class of the recipe (before any training step)."""
    missing = [int(c) for c in classes if int(c) not in index.classes]
    if missing:
        declared = ", ".join(f"{c}={n}" for c, n in zip(index.classes, index.class_names))
        raise DataError(f"{where}: {list(classes)} includes {', '.join(map(str, missing))}, which the store "
                        f"{index.path} does not declare (its classes: {declared}); use only those ids or a "
                        f"store that has them")


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """default_collate, with string / mixed metadata kept as lists."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if isinstance(values[0], (str, type(None))):
            out[key] = values
        else:
            out[key] = default_collate(values)
    return out
