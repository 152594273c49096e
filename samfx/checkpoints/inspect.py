"""``samfx inspect FILE``: what a weights file is and the command that loads it (docs/checkpoints.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from samfx.checkpoints.files import FORMAT, model_state, read_checkpoint
from samfx.checkpoints.kinds import components, identify, model_size, plugin_kinds
from samfx.contracts.errors import CheckpointError


def inspect_checkpoint(path: str | Path) -> dict[str, Any]:
    """{file, format, model_size, components: {prefix: {tensors, values}}, recipe, load_with, note}."""
    path = Path(path).expanduser()
    obj = read_checkpoint(path)
    state = model_state(obj, path)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    parts = {k: {"tensors": t, "values": v} for k, (t, v) in components(shapes).items()}
    kinds = plugin_kinds()
    kind = identify(shapes, kinds)
    size = model_size(shapes, kind, kinds)
    report: dict[str, Any] = {"file": str(path), "model_size": size, "components": parts}
    if obj.get("format") == FORMAT and "recipe" in obj:
        model = obj["recipe"].get("model", {})
        names = {k: model[k].get("name") for k in ("image_encoder", "prompt_encoder", "mask_decoder")
                 if isinstance(model.get(k), dict)}
        return {**report, "format": f"samfx checkpoint ({', '.join(f'{k}: {v}' for k, v in names.items())})",
                "recipe": "its own (stored in the file)", "load_with": f"samfx eval {path}",
                "note": "or as weights of another recipe: model.checkpoint=" + str(path)}
    if kind is None:
        first = ", ".join(list(shapes)[:3])
        raise CheckpointError(f"{path}: not a checkpoint layout samfx knows (first keys: {first}); "
                              f"docs/checkpoints.md lists the layouts samfx reads")
    return {**report, "format": kind.name, "recipe": kind.recipe, "load_with": kind.how_to_load(str(path), shapes),
            "note": kind.note_for(shapes)}
