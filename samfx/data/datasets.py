"""torch Datasets over a samfx store (see samfx.data.store).

Every dataset reads the store's index in ``__init__`` (file closed again) and opens its own h5py
handle lazily on first item access, once per process: handles are never shared across a fork
(DataLoader workers) and are dropped when the dataset is pickled.

Items: images float32 (3,S,S) in [0,1] (grayscale repeated to 3 channels; SAM's mean/std is NOT
applied), labels int64 of the store's class ids, ``spacing`` float32 (2,) = mm per pixel (row, col)
after resizing to S×S and augmentation zoom (NaN when the store does not know it).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from samfx.config.schema import CLIP_LABELS, AugmentSection
from samfx.contracts.errors import DataError
from samfx.data import augment as aug
from samfx.data.store import Item, open_store, read_frames, read_index, read_sample

SEQUENCE_FRAMES = ("ed_es", "labeled", "none")
# data.augment, or its mapping form (missing keys default; samfx.data.augment.check_augment); None: no augmentation
Augment = AugmentSection | dict[str, Any] | None


class _StoreDataset(Dataset):
    def __init__(self, path: str | Path, split: str | None, image_size: int, augment: Augment = None, seed: int = 0):
        if int(image_size) < 8:
            raise DataError(f"image_size must be >= 8 pixels, got {image_size}")
        self.path = str(Path(path).expanduser())
        self.split = split
        self.index = read_index(self.path)
        self.items = self.index.in_split(split)
        self.image_size = int(image_size)
        self.augment = aug.check_augment(augment)
        self.seed = int(seed)
        self.epoch = 0
        self._file = None
        self._pid = -1

    @property
    def classes(self) -> list[int]:
        return self.index.classes

    @property
    def class_names(self) -> list[str]:
        return self.index.class_names

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of `epoch` (call before each epoch, in every process)."""
        self.epoch = int(epoch)

    def _h5(self):
        if self._file is None or self._pid != os.getpid():
            self._file = open_store(self.path)
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, -1
        return state

    def _spacing(self, item: Item, p: aug.AugParams) -> torch.Tensor:
        h, w = item.shape[-2:]
        sp = np.asarray(item.spacing, np.float64) * np.array([h, w]) / self.image_size / p.scale
        return torch.tensor(sp, dtype=torch.float32)

    def _empty(self, what: str) -> DataError:
        where = f"split '{self.split}'" if self.split is not None else "the store"
        return DataError(f"{self.path}: {where} has no {what}; check the split name or the import "
                         f"(`samfx data stats {self.path}`)")

    @staticmethod
    def _rgb(img: torch.Tensor) -> torch.Tensor:
        return img.expand(*img.shape[:-3], 3, *img.shape[-2:]).contiguous()


class ImageDataset(_StoreDataset):
    """Labeled 2-D images: every single image of the split plus labeled frames of its sequences.

    ``sequence_frames``: "ed_es" (default) takes a sequence's ED and ES frames when labeled,
    "labeled" every labeled frame, "none" no frame. A sequence frame is skipped when the split
    already has a single image of the same (patient, view, phase), e.g. CAMUS's ED/ES files.
    Item: image (3,S,S) float32, label (S,S) int64, spacing (2,), index, id, patient, view, phase.
    """

    def __init__(self, path: str | Path, split: str | None, image_size: int, augment: Augment = None,
                 seed: int = 0, sequence_frames: str = "ed_es"):
        super().__init__(path, split, image_size, augment, seed)
        if sequence_frames not in SEQUENCE_FRAMES:
            raise DataError(f"sequence_frames: '{sequence_frames}' is not one of {', '.join(SEQUENCE_FRAMES)}")
        self.entries: list[tuple[Item, int, str]] = []
        seen = set()
        for it in self.items:
            if it.kind == "sample":
                self.entries.append((it, -1, it.phase))
                seen.add((it.patient, it.view, it.phase))
        if sequence_frames != "none":
            for it in self.items:
                if it.kind != "sequence":
                    continue
                if sequence_frames == "ed_es":
                    frames = sorted({f for f in (it.ed, it.es) if f >= 0 and it.labeled[f]})
                else:
                    frames = [f for f, ok in enumerate(it.labeled) if ok]
                for f in frames:
                    phase = "ED" if f == it.ed else "ES" if f == it.es else f"frame{f}"
                    if (it.patient, it.view, phase) not in seen:
                        self.entries.append((it, f, phase))
        if not self.entries:
            raise self._empty("labeled images")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        it, frame, phase = self.entries[index]
        if frame < 0:
            image, label = read_sample(self._h5(), it.id, self.classes)
        else:
            image, label = read_frames(self._h5(), it.id, frame, self.classes)
        img, lab = aug.resize(image[None], label[None], self.image_size)
        p = aug.draw_params(self.augment, self.seed, self.epoch, index)
        img, lab = aug.apply(img, lab, p)
        assert lab is not None  # a label map in, a label map out
        return {"image": self._rgb(img[0]), "label": lab[0], "spacing": self._spacing(it, p),
                "index": index, "id": it.id if frame < 0 else f"{it.id}#{frame}",
                "patient": it.patient, "view": it.view, "phase": phase}


def _sequences(ds: _StoreDataset) -> list[Item]:
    seqs = [it for it in ds.items if it.kind == "sequence"]
    if not seqs:
        raise ds._empty("sequences (clip and sequence datasets need stores with sequences)")
    return seqs


class ClipDataset(_StoreDataset):
    """Clips of ``clip_length`` consecutive frames, one per sequence of the split and epoch.

    The window is drawn from (seed, epoch, index) among those holding a labeled frame; a sequence
    shorter than the clip is padded by repeating its last frame (padding frames are unlabeled).
    ``labels``: "all" keeps every labeled frame, "ed_es" only a sequence's ED and ES frames (the sparse
    labels of CAMUS's full sequences; a sequence without known ED/ES then has none).
    Item: frames (T,3,S,S), labels (T,S,S) int64, labeled (T,) bool, key_frames (T,) bool (the sequence's
    ED and ES frames, for the ``ed_es`` prompt schedule), spacing, index, id, patient, view,
    frame_index; one augmentation draw for the whole clip.
    """

    def __init__(self, path: str | Path, split: str | None, image_size: int, clip_length: int,
                 augment: Augment = None, seed: int = 0, labels: str = "all"):
        super().__init__(path, split, image_size, augment, seed)
        if int(clip_length) < 1:
            raise DataError(f"clip_length must be >= 1, got {clip_length}")
        if labels not in CLIP_LABELS:
            raise DataError(f"clip labels: '{labels}' is not one of {', '.join(CLIP_LABELS)}")
        self.clip_length = int(clip_length)
        self.sequences = _sequences(self)
        self.labeled = [self._kept_labels(it, labels) for it in self.sequences]
        if not any(any(lab) for lab in self.labeled):
            raise self._empty(f"labeled frames (clip labels '{labels}')")

    @staticmethod
    def _kept_labels(it: Any, labels: str) -> list[bool]:
        keep = [bool(x) for x in it.labeled]
        if labels == "ed_es":
            keep = [ok and f in (it.ed, it.es) for f, ok in enumerate(keep)]
        return keep

    def __len__(self) -> int:
        return len(self.sequences)

    def window(self, index: int) -> list[int]:
        """Frame indices of item `index`'s clip this epoch."""
        it = self.sequences[index]
        n, length = it.shape[0], self.clip_length
        starts = list(range(max(1, n - length + 1)))
        good = [s for s in starts if any(self.labeled[index][s:s + length])]
        rng = np.random.default_rng([self.seed, self.epoch, index, 7])
        start = int(rng.choice(good or starts))
        return [min(start + i, n - 1) for i in range(length)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        it = self.sequences[index]
        idx = self.window(index)
        last = idx[-1] + 1
        frames, labels = read_frames(self._h5(), it.id, slice(idx[0], last), self.classes)
        pick = [i - idx[0] for i in idx]
        frames, labels = frames[pick], labels[pick]
        labeled = torch.tensor([self.labeled[index][i] for i in idx], dtype=torch.bool)
        repeated = torch.tensor([False, *(a == b for a, b in zip(idx[1:], idx[:-1]))], dtype=torch.bool)
        labeled &= ~repeated
        key_frames = torch.tensor([i in (it.ed, it.es) for i in idx], dtype=torch.bool) & ~repeated
        img, lab = aug.resize(frames, labels, self.image_size)
        p = aug.draw_params(self.augment, self.seed, self.epoch, index)
        img, lab = aug.apply(img, lab, p)
        return {"frames": self._rgb(img), "labels": lab, "labeled": labeled, "spacing": self._spacing(it, p),
                "index": index, "id": it.id, "patient": it.patient, "view": it.view,
                "frame_index": torch.tensor(idx, dtype=torch.long), "key_frames": key_frames}


class SequenceDataset(_StoreDataset):
    """Whole sequences for evaluation (no augmentation; use batch size 1, lengths differ).

    Item: frames (T,3,S,S), labels (T,S,S), labeled (T,), spacing, ed, es (frame index, -1 unknown),
    ef (float32 percent, NaN unknown), index, id, patient, view.
    """

    def __init__(self, path: str | Path, split: str | None, image_size: int):
        super().__init__(path, split, image_size, None, 0)
        self.sequences = _sequences(self)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> dict[str, Any]:
        it = self.sequences[index]
        frames, labels = read_frames(self._h5(), it.id, classes=self.classes)
        img, lab = aug.resize(frames, labels, self.image_size)
        return {"frames": self._rgb(img), "labels": lab, "labeled": torch.tensor(it.labeled, dtype=torch.bool),
                "spacing": self._spacing(it, aug.AugParams()), "ed": it.ed, "es": it.es,
                "ef": torch.tensor(it.ef, dtype=torch.float32), "index": index, "id": it.id,
                "patient": it.patient, "view": it.view}
