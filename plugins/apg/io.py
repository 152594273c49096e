"""Save an APG on its own and load it into another model (the transplant; docs/apg.md).

File format (a plain dict, read with ``weights_only=True``)::

    {"format": "samfx-apg", "version": 1, "embed_dim": d, "form": "paper" | "reference",
     "config": {form, tokens, tasks, mlp_dim, residual, sparse_tokens}, "state_dict": {...}}
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from samfx.checkpoints.files import FORMAT as SAMFX_FORMAT
from samfx.checkpoints.files import atomic_save, is_safetensors, read_safetensors, save_checkpoint
from samfx.contracts.errors import CheckpointError
from samfx_plugins.apg.config import ARCH_KEYS
from samfx_plugins.apg.module import AutoPromptGenerator

APG_FORMAT = "samfx-apg"
VERSION = 1


def find_apg(model: nn.Module, key: str | None = None) -> AutoPromptGenerator:
    """The APG itself, or the one among a SegmentationModel's prompt generators (``key`` picks)."""
    if isinstance(model, AutoPromptGenerator):
        return model
    gens = getattr(model, "prompt_generators", None)
    if gens is None:
        raise CheckpointError(f"expected an APG or a samfx model, got {type(model).__name__}")
    if key is not None:
        if key not in gens or not isinstance(gens[key], AutoPromptGenerator):
            apgs = [k for k, g in gens.items() if isinstance(g, AutoPromptGenerator)]
            raise CheckpointError(f"the model has no APG named '{key}'; its APGs: {', '.join(apgs) or 'none'}")
        return gens[key]
    apgs = [k for k, g in gens.items() if isinstance(g, AutoPromptGenerator)]
    if len(apgs) != 1:
        what = "no APG" if not apgs else f"several APGs ({', '.join(apgs)}); pass key=..."
        raise CheckpointError(f"the model has {what}; its prompt generators: {', '.join(gens)}")
    return gens[apgs[0]]


def apg_payload(apg: AutoPromptGenerator) -> dict[str, Any]:
    state = {k: v.detach().cpu().clone() for k, v in apg.state_dict().items()}
    return {"format": APG_FORMAT, "version": VERSION, "embed_dim": apg.embed_dim, "form": apg.form,
            "config": apg.config(), "state_dict": state}


def save_apg(model: nn.Module, path: str | Path, key: str | None = None) -> Path:
    """Write the APG of `model` (or `model` itself) to `path` atomically (``.safetensors``: the weights
    as tensors, the other fields as JSON metadata); returns the path."""
    path = Path(path).expanduser()
    write_apg(apg_payload(find_apg(model, key)), path)
    return path


def write_apg(payload: dict[str, Any], path: Path) -> None:
    """An APG payload to `path`: ``torch.save``, or safetensors (weights + JSON metadata) by suffix."""
    if path.suffix == ".safetensors":
        fields = {k: v for k, v in payload.items() if k != "state_dict"}
        save_checkpoint({**fields, "model": payload["state_dict"]}, path)
    else:
        atomic_save(payload, path)


def read_apg(path: str | Path) -> dict[str, Any]:
    """Read and check an APG file (weights only); errors name the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: APG file not found; check model.prompt.weights "
                              f"(write one with save_apg or `python -m samfx_plugins.apg export`)")
    if is_safetensors(path):
        obj = read_safetensors(path)
        if "model" in obj and "format" in obj:
            obj["state_dict"] = obj.pop("model")
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(f"{path}: cannot read APG file ({first}); is it truncated?") from None
    if not isinstance(obj, dict) or obj.get("format") != APG_FORMAT:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        hint = (" (a full samfx checkpoint: extract the APG with `python -m samfx_plugins.apg export`)"
                if got == SAMFX_FORMAT or isinstance(obj, dict) and "model" in obj else "")
        raise CheckpointError(f"{path}: not a samfx APG file (format {got!r}, expected '{APG_FORMAT}'){hint}")
    for field in ("embed_dim", "config", "state_dict"):
        if field not in obj:
            raise CheckpointError(f"{path}: APG file lacks '{field}'; re-export it")
    return obj


def load_apg(model: nn.Module, path: str | Path, key: str | None = None) -> AutoPromptGenerator:
    """Load an APG file into the APG of `model` (or into `model`, an APG). Returns that APG.

    The width must match the model's prompt width and the architecture keys (form, tokens, tasks,
    mlp_dim, residual) the recipe's; otherwise a one-line error names the file and both values.
    """
    apg = find_apg(model, key)
    obj = read_apg(path)
    width = int(obj["embed_dim"])
    if width != apg.embed_dim:
        raise CheckpointError(f"{path}: APG width {width} does not fit this model's prompt width "
                              f"{apg.embed_dim}; an APG moves only between models whose mask decoders "
                              f"have the same width")
    mine, theirs = apg.arch(), obj["config"]
    for k in ARCH_KEYS:
        if k in theirs and theirs[k] != mine[k]:
            raise CheckpointError(f"{path}: APG saved with {k}={theirs[k]!r} but this one has "
                                  f"{k}={mine[k]!r}; set model.prompt.{k}={theirs[k]} in the recipe")
    state: dict[str, Tensor] = obj["state_dict"]
    own = apg.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shape = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or extra or shape:
        what = (f"missing {missing[:2]}" if missing else f"unexpected {extra[:2]}" if extra
                else f"shape of {shape[0]} {tuple(state[shape[0]].shape)} vs {tuple(own[shape[0]].shape)}")
        raise CheckpointError(f"{path}: APG weights do not fit ({what}); was it written by another "
                              f"samfx version?")
    apg.load_state_dict(state)
    return apg


def extract_from_state(state: dict[str, Tensor], prefix: str, config: dict[str, Any] | None,
                       where: str) -> dict[str, Any]:
    """An APG payload from a full model state dict's ``prefix`` keys (config inferred when None)."""
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if "task_tokens" not in sub:
        raise CheckpointError(f"{where}: no APG weights under '{prefix}*'")
    tasks, tokens, width = sub["task_tokens"].shape
    reference = any(".norm_q." in k for k in sub)
    lin1 = sub.get(f"token_mixer.a_blocks.0.{'ff' if reference else 'mlp'}.lin1.weight")
    if lin1 is None:
        raise CheckpointError(f"{where}: the weights under '{prefix}*' are not an APG this samfx version knows")
    inferred = {"form": "reference" if reference else "paper", "tokens": int(tokens), "tasks": int(tasks),
                "mlp_dim": int(lin1.shape[0]), "residual": True, "sparse_tokens": None}
    cfg = {**inferred, **{k: v for k, v in (config or {}).items() if k in inferred}}
    apg = AutoPromptGenerator(int(width), form=cfg["form"], tokens=cfg["tokens"], tasks=cfg["tasks"],
                              sparse_tokens=cfg["sparse_tokens"], mlp_dim=cfg["mlp_dim"],
                              residual=cfg["residual"])
    try:
        apg.load_state_dict(sub)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{where}: APG weights under '{prefix}*' do not match their settings "
                              f"{cfg} ({first})") from None
    return apg_payload(apg)
