"""Read and write weights: official SAM state dicts, the SAMUS authors' layout, samfx checkpoints.

Reading always uses ``torch.load(weights_only=True)``: a checkpoint cannot run code.
Writing is atomic (temp file in the same folder, fsync, rename), so a checkpoint is never
visible half-written.
"""
from __future__ import annotations

import fnmatch
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from samfx.errors import CheckpointError

if TYPE_CHECKING:
    from samfx.model import SegmentationModel

FORMAT = "samfx"


def atomic_save(obj: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file safely; errors name the file and say what is wrong."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a weights file; `model.checkpoint` names a .pt/.pth "
                              f"file, e.g. a run's best.pt")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; check `model.checkpoint` in the recipe")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        import h5py

        if h5py.is_hdf5(path):
            raise CheckpointError(f"{path}: is an HDF5 file (a samfx data store?), not PyTorch weights; "
                                  f"`model.checkpoint` names a .pt/.pth file, a store goes in data.source") from None
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Weights only load failed" in str(exc):
            msg = "it holds Python objects that a weights-only load refuses (not a plain state dict)"
        raise CheckpointError(f"{path}: cannot read checkpoint ({msg}); is the file truncated or not a "
                              f"PyTorch state dict?") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict (mapping of names to tensors), got {type(obj).__name__}")
    return obj


def model_state(obj: dict[str, Any], path: str | Path) -> dict[str, Tensor]:
    """The model's state dict inside a checkpoint object (samfx checkpoints wrap it)."""
    state = obj["model"] if obj.get("format") == FORMAT else obj
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: checkpoint holds no weights")
    if all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}  # saved from (Distributed)DataParallel
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a state dict: '{bad[0]}' is a {type(state[bad[0]]).__name__}, "
                              f"not a tensor")
    return state


def _split(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _shape(t: Tensor) -> str:
    return "(" + ",".join(str(s) for s in t.shape) + ")"


def load_weights(model: SegmentationModel, path: str | Path, allow_missing: Sequence[str] = ()) -> dict[str, list[str]]:
    """Load SAM / SAMUS-authors / samfx weights into a SegmentationModel.

    The encoder converts its part (``convert_state_dict``: e.g. rel-pos resizing, key maps).
    Keys the model adds by design (encoder's ``new_parameter_prefixes``, prompt generators,
    adapters, temporal) may be missing; any other missing, unexpected or mis-shaped key is an
    error naming the file and the first offenders. Returns {"missing": [...], "loaded": [...]}.
    """
    obj = read_checkpoint(path)
    state = model_state(obj, path)
    converted: dict[str, Tensor] = {}
    encoder = model.image_encoder
    enc_state = encoder.convert_state_dict(_split(state, "image_encoder."))
    converted.update({f"image_encoder.{k}": v for k, v in enc_state.items()})
    converted.update({k: v for k, v in state.items() if not k.startswith("image_encoder.")})

    own = model.state_dict()
    unexpected = [k for k in converted if k not in own]
    mismatched = [k for k in converted if k in own and own[k].shape != converted[k].shape]
    by_design = [f"image_encoder.{p}" for p in encoder.new_parameter_prefixes()]
    by_design += ["prompt_generators.", "adapters.", "temporal."]
    missing = [k for k in own if k not in converted]
    bad_missing = [k for k in missing if not any(k.startswith(p) for p in by_design)
                   and not any(fnmatch.fnmatchcase(k, pat) for pat in allow_missing)]
    if mismatched:
        first = ", ".join(f"{k} file{_shape(converted[k])} vs model{_shape(own[k])}" for k in mismatched[:3])
        hint = "; wrong model size?" if any("image_encoder" in k for k in mismatched) else ""
        raise CheckpointError(f"{path}: {len(mismatched)} shape mismatches: {first}{hint}")
    if unexpected:
        raise CheckpointError(f"{path}: {len(unexpected)} keys the model does not have, first: "
                              f"{', '.join(unexpected[:3])}; wrong model size or encoder?")
    if bad_missing:
        raise CheckpointError(f"{path}: {len(bad_missing)} model keys missing from the file, first: "
                              f"{', '.join(bad_missing[:3])}; add patterns to model.checkpoint_allow_missing "
                              f"if that is intended")
    model.load_state_dict(converted, strict=False)
    return {"missing": missing, "loaded": sorted(converted)}
