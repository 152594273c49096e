"""Read and write weights: official SAM state dicts, foreign layouts, samfx checkpoints.

Reading uses ``torch.load(weights_only=True)`` or safetensors: a checkpoint cannot run code.
Foreign layouts (the SAMUS / AutoSAMUS authors', SAMed, MSA...) are mapped by the components that
own those weights: the encoder's ``convert_state_dict`` and every other component's
``import_foreign_state`` (docs/plugins.md); the core knows no foreign key.
Writing is atomic (temp file in the same folder, fsync, rename), so a checkpoint is never
visible half-written.
"""
from __future__ import annotations

import fnmatch
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import torch
from torch import Tensor

from samfx.components import allowed_missing_from_base
from samfx.errors import CheckpointError, first_line
from samfx.interfaces import ForeignKeys

if TYPE_CHECKING:
    from samfx.model import SegmentationModel

FORMAT = "samfx"


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to `path`, atomically."""
    atomic_write(Path(path), lambda fh: torch.save(obj, fh))


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Replace `path` atomically (a killed writer leaves the old file, never half a new one): write
    through `write(file)` to a temp file in the same folder, fsync, rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    atomic_write(path, lambda fh: fh.write(blob))


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


def _split(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _shape(t: Tensor) -> str:
    return "(" + ",".join(str(s) for s in t.shape) + ")"


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


def import_foreign(model: SegmentationModel, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Let each component rename the foreign keys it owns (``import_foreign_state(state, prefix)``)."""
    from samfx.components import parts

    for part in parts(model):
        if isinstance(part.module, ForeignKeys):
            state = part.module.import_foreign_state(state, part.prefix)
    return state


def convert_parts(model: SegmentationModel, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each component's ``convert_state_dict`` on its part of `state` (keys relative to it)."""
    from samfx.components import parts

    out = dict(state)
    for part in parts(model):
        if not isinstance(part.module, ForeignKeys):
            continue
        mine = _split(out, part.prefix)
        if not mine:
            continue
        out = {k: v for k, v in out.items() if not k.startswith(part.prefix)}
        out.update({part.prefix + k: v for k, v in part.module.convert_state_dict(mine).items()})
    return out


def load_weights(model: SegmentationModel, path: str | Path, allow_missing: Sequence[str] = (),
                 loaded: Sequence[str] = ()) -> dict[str, list[str]]:
    """Load SAM / SAMUS-authors / samfx weights into a SegmentationModel.

    Each component converts its part (``convert_state_dict``: e.g. rel-pos resizing, key maps).
    Keys the model adds by design (components' ``new_parameter_prefixes``, prompt generators,
    adapters, temporal: ``samfx.components``) may be missing; any other missing, unexpected or mis-shaped key is an
    error naming the file and the first offenders; keys in `loaded` (filled by an earlier file, e.g.
    ``model.base_checkpoint``) do not count as missing. Returns {"missing": [...], "loaded": [...]}.
    """
    return load_state(model, model_state(read_checkpoint(path), path), path, allow_missing, loaded)


def load_state(model: SegmentationModel, state: dict[str, Tensor], path: str | Path, allow_missing: Sequence[str] = (),
               loaded: Sequence[str] = ()) -> dict[str, list[str]]:
    """:func:`load_weights` for a state dict already read from `path` (named in errors)."""
    converted = convert_parts(model, state)
    try:
        converted = import_foreign(model, converted)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None

    own = model.state_dict()
    unexpected = [k for k in converted if k not in own]
    mismatched = [k for k in converted if k in own and own[k].shape != converted[k].shape]
    by_design = allowed_missing_from_base(model)
    earlier = set(loaded)
    missing = [k for k in own if k not in converted and k not in earlier]
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
    return {"missing": missing, "loaded": sorted(earlier | set(converted))}


def load_recipe_weights(model: SegmentationModel, m: dict[str, Any], state: dict[str, Tensor] | None = None,
                        where: str | Path | None = None) -> None:
    """The recipe's ``model.base_checkpoint`` then ``model.checkpoint`` (or `state`, read from `where`,
    in its place); the top file is checked for keys that neither holds."""
    allow = list(m.get("checkpoint_allow_missing") or [])
    top = m.get("checkpoint") if state is None else where
    loaded: list[str] = []
    if m.get("base_checkpoint"):
        base_allow = ["*"] if top else allow
        loaded = load_weights(model, m["base_checkpoint"], allow_missing=base_allow)["loaded"]
    if state is not None and where is not None:
        load_state(model, state, where, allow, loaded)
    elif top:
        load_weights(model, top, allow_missing=allow, loaded=loaded)
