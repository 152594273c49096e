"""Deterministic seeding and capture / restore of every RNG the training loop touches.

States are stored as tensors / plain Python data so checkpoints load with ``weights_only=True``.
"""
from __future__ import annotations

import hashlib
import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(on: bool) -> None:
    """``train.deterministic``: torch's deterministic kernels for every op that has one.

    Ops without a deterministic kernel (some CUDA backward passes) warn once instead of failing, so
    a run names what still varies rather than refusing to start. cuDNN autotuning is left off.
    """
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.deterministic = on
    if on:
        # cuBLAS needs a fixed workspace to be reproducible; read when its first handle is created
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def derive_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from any parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def rng_state() -> dict[str, Any]:
    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


class EpochSeeded(torch.utils.data.Dataset):
    """Wraps a dataset so each item's randomness (augmentation) depends only on (seed, epoch, index).

    The global python / numpy / torch RNGs are re-seeded for the duration of ``__getitem__`` and
    restored afterwards, so the item is the same whatever the worker count, the rank, or where a
    resumed epoch starts, and the trainer's own random stream (e.g. simulated clicks) is untouched.
    """

    def __init__(self, dataset: Any, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        """``ds[index]`` in the current epoch, or ``ds[(epoch, index)]`` (the trainer's sampler)."""
        if isinstance(key, tuple):
            epoch, index = key
            if epoch != self.epoch:
                self.set_epoch(epoch)
        else:
            index = key
        seed = derive_seed("item", self.seed, self.epoch, int(index))
        py, npy = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py)
                np.random.set_state(npy)

    def __getattr__(self, name: str) -> Any:  # expose the wrapped dataset's attributes
        if name in {"dataset", "seed", "epoch"}:
            raise AttributeError(name)
        return getattr(self.dataset, name)
