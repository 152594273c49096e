"""Read and write weights files: official SAM state dicts, foreign layouts, samfx checkpoints.

Reading uses ``torch.load(weights_only=True)`` or safetensors: a checkpoint cannot run code.
Writing is atomic (``samfx.data.files.atomic_write``: temp file in the same folder, fsync, rename),
so a checkpoint is never visible half-written. Loading weights into a model is
``samfx.model.weights``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from samfx.contracts.errors import CheckpointError, first_line
from samfx.data.files import atomic_write

FORMAT = "samfx"


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to `path`, atomically; out of space, ``DiskFull`` names the bytes its tensors need."""
    atomic_write(Path(path), lambda fh: torch.save(obj, fh), need=tensor_bytes(obj))


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in `obj` (nested dicts, lists, tuples): what a checkpoint of it needs at least."""
    if isinstance(obj, Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def check_values(state: dict[str, Tensor], own: dict[str, Tensor], path: str | Path) -> None:
    """Refuse weights that would load silently but wrongly: a CheckpointError naming `path` and the first
    key of `state` (also in the model's `own` state) that is not floating point where the model's is (or
    the reverse), or that holds NaN or infinity. Another float precision (fp16 file, fp32 model) is cast."""
    for key, value in state.items():
        mine = own.get(key)
        if mine is None:
            continue
        if value.is_floating_point() != mine.is_floating_point() or value.is_complex():
            raise CheckpointError(f"{path}: '{key}' is {str(value.dtype).removeprefix('torch.')}, the model's is "
                                  f"{str(mine.dtype).removeprefix('torch.')}; the file is damaged or not weights "
                                  f"for this model")
        if value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: '{key}' holds NaN or infinite values; the run that saved it diverged "
                                  f"or the file is damaged: use an earlier checkpoint")


SAFETENSORS_META = "samfx"  # metadata key holding a samfx checkpoint's non-tensor fields as JSON


def is_safetensors(path: Path) -> bool:
    """By suffix, or by content: an 8-byte little-endian header length followed by a JSON object."""
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 10**8


def read_safetensors(path: Path) -> dict[str, Any]:
    """A safetensors file as a state dict; a samfx checkpoint's metadata restores its other fields."""
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
            meta = fh.metadata() or {}
    except Exception as exc:
        msg = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: cannot read safetensors file ({msg}); is it truncated?") from None
    if SAFETENSORS_META not in meta:
        return tensors
    try:
        fields = json.loads(meta[SAFETENSORS_META])
    except ValueError:
        raise CheckpointError(f"{path}: its '{SAFETENSORS_META}' metadata is not JSON; was it edited?") from None
    return {**fields, "model": tensors}


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """Write a checkpoint object: ``.safetensors`` stores ``obj["model"]`` as tensors and the other
    (plain-data) fields as JSON metadata; anything else goes through ``torch.save``."""
    path = Path(path)
    if path.suffix != ".safetensors":
        atomic_save(obj, path)
        return
    import json

    from safetensors.torch import save

    tensors = obj["model"] if "model" in obj else obj
    fields = {k: v for k, v in obj.items() if k != "model"} if "model" in obj else None
    meta = {SAFETENSORS_META: json.dumps(fields, default=str)} if fields is not None else None
    blob = save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta)
    atomic_write(path, lambda fh: fh.write(blob), need=len(blob))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file (.pt/.pth or .safetensors) safely; errors name the file and say what is wrong."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a weights file; `model.checkpoint` names a .pt/.pth "
                              f"file, e.g. a run's best.pt")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; check `model.checkpoint` in the recipe")
    if is_safetensors(path):
        return read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        import h5py

        if h5py.is_hdf5(path):
            raise CheckpointError(f"{path}: is an HDF5 file (a samfx data store?), not PyTorch weights; "
                                  f"`model.checkpoint` names a .pt/.pth file, a store goes in data.source") from None
        msg = first_line(exc)
        if "Weights only load failed" in str(exc):
            msg = "it holds Python objects that a weights-only load refuses (not a plain state dict)"
        raise CheckpointError(f"{path}: cannot read checkpoint ({msg}); is the file truncated or not a "
                              f"PyTorch state dict?") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict (mapping of names to tensors), got {type(obj).__name__}")
    return obj


def model_state(obj: dict[str, Any], path: str | Path) -> dict[str, Tensor]:
    """The model's state dict inside a checkpoint object (samfx checkpoints and SAM2's official files wrap
    it in "model", training scripts such as Medical-SAM-Adapter's in "state_dict")."""
    state = obj["model"] if obj.get("format") == FORMAT else obj
    if state is obj and isinstance(obj.get("model"), dict) and not isinstance(obj["model"], Tensor):
        state = obj["model"]  # SAM2's official files: {"model": state_dict}
    if state is obj and isinstance(obj.get("state_dict"), dict) and not isinstance(obj["state_dict"], Tensor):
        state = obj["state_dict"]
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: checkpoint holds no weights")
    if all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}  # saved from (Distributed)DataParallel
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a state dict: '{bad[0]}' is a {type(state[bad[0]]).__name__}, "
                              f"not a tensor")
    return state


Shapes = dict[str, tuple[int, ...]]


def lazy_shapes(path: str | Path) -> Callable[[], Shapes]:
    """A function giving the key -> shape table of the weights in `path`, read on first call only."""
    cache: Shapes = {}

    def shapes() -> Shapes:
        if not cache:
            cache.update({k: tuple(v.shape) for k, v in model_state(_read_mapped(Path(path)), path).items()})
        return cache
    return shapes


def _read_mapped(path: Path) -> dict[str, Any]:
    """Like read_checkpoint, but memory-maps zip-format torch files (nothing is read that is not used);
    anything else, or any problem, goes through read_checkpoint and its messages."""
    try:
        if path.is_file() and not is_safetensors(path):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            if isinstance(obj, dict):
                return obj
    except Exception:
        pass
    return read_checkpoint(path)
