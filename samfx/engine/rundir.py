"""The run folder: what ``samfx train`` writes and ``--resume`` / ``eval`` / ``predict`` read.

    RUN/recipe.yaml       resolved recipe (recipe.to_yaml())
    RUN/versions.json     samfx, torch, python and every plugin the recipe uses, with versions
    RUN/last.pt           full training state (atomic); best.pt: weights at the best select_metric
    RUN/log.csv           global_step,stage,epoch,step,key,value  (one row per logged scalar)
    RUN/tb/               TensorBoard events
    RUN/metrics.json      per-stage best / last metrics
    RUN/curves.png        loss and metric curves
    RUN/overlays/         prediction overlays (PNG)
"""
from __future__ import annotations

import json
import platform
import re
import time
from pathlib import Path
from typing import Any

from samfx.errors import SamfxError
from samfx.recipe import Recipe
from samfx.registry import Registry
from samfx.schema import COMPONENT_SLOTS

LAST, BEST = "last.pt", "best.pt"


def default_run_dir(recipe: Recipe) -> Path:
    stem = Path(recipe.path).stem if recipe.path else "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(recipe.config["train"]["out_dir"]).expanduser() / f"{stem}-{stamp}"


def _components(node: Any, parts: list[str]) -> list[dict[str, Any]]:
    if not parts:
        return [node] if isinstance(node, dict) and "name" in node else []
    head, rest = parts[0], parts[1:]
    if head == "*":
        return [c for item in (node or []) for c in _components(item, rest)] if isinstance(node, list) else []
    return _components(node.get(head), rest) if isinstance(node, dict) else []


def plugins_used(recipe: Recipe, registry: Registry) -> dict[str, str]:
    """{component slot path: plugin} for every component the recipe names."""
    used: dict[str, str] = {}
    for slot, kind in COMPONENT_SLOTS.items():
        for i, cfg in enumerate(_components(recipe.config, slot.split("."))):
            comp = registry.get(kind, cfg["name"], where=slot)
            used[f"{slot}#{i}" if "*" in slot else slot] = comp.plugin
    return used


def versions(recipe: Recipe, registry: Registry, plugin_versions: dict[str, str]) -> dict[str, Any]:
    import torch

    import samfx

    used = sorted(set(plugins_used(recipe, registry).values()))
    return {"samfx": samfx.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.version.cuda, "plugins": {p: plugin_versions.get(p, "unknown") for p in used}}


def prepare(run_dir: Path, recipe: Recipe, registry: Registry, plugin_versions: dict[str, str],
            resume: bool) -> None:
    """Create (or, resuming, update) the run folder's recipe.yaml and versions.json."""
    if not resume and (run_dir / LAST).exists():
        raise SamfxError(f"{run_dir}: already holds a run (last.pt); continue it with `--resume {run_dir}` "
                         f"or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(recipe.to_yaml())
    (run_dir / "versions.json").write_text(json.dumps(versions(recipe, registry, plugin_versions), indent=2) + "\n")


def find_checkpoint(target: str | Path, prefer: str = BEST) -> Path:
    """A checkpoint file, or a run folder's best.pt (else last.pt)."""
    path = Path(target).expanduser()
    if path.is_dir():
        for name in (prefer, LAST, BEST):
            if (path / name).is_file():
                return path / name
        raise SamfxError(f"{path}: no best.pt or last.pt in this folder; is it a samfx run folder?")
    if not path.exists():
        raise SamfxError(f"{path}: no such checkpoint or run folder")
    return path


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "x"


# Recipe keys that may change when a run is resumed (globs over dotted paths); anything else would
# make the continued run a different experiment.
RESUME_MUTABLE = ("description", "train.stages.*.epochs", "train.stages.*.max_steps", "train.log_every",
                  "train.val_every", "train.save_every", "train.device", "train.out_dir", "train.compile",
                  "data.num_workers", "eval.*")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    if isinstance(node, list) and any(isinstance(v, dict) for v in node):
        out = {}
        for i, v in enumerate(node):
            out.update(_flatten(v, f"{prefix}.{i}"))
        return out or {prefix: []}
    return {prefix: node}


def resume_conflicts(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between the run's recipe and `new`, outside RESUME_MUTABLE."""
    import fnmatch

    a, b = _flatten(stored), _flatten(new)
    keys = sorted(set(a) | set(b))
    return [k for k in keys if a.get(k, "<absent>") != b.get(k, "<absent>")
            and not any(fnmatch.fnmatchcase(k, pat) for pat in RESUME_MUTABLE)]


def check_resume(stored: dict[str, Any], new: dict[str, Any], run_dir: Path) -> None:
    bad = resume_conflicts(stored, new)
    if bad:
        a, b = _flatten(stored), _flatten(new)
        k = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise SamfxError(f"--resume {run_dir}: the recipe differs from the run's at {k}: run has "
                         f"{a.get(k, '<absent>')!r}, now {b.get(k, '<absent>')!r}{more}; resume with the run's "
                         f"recipe (`samfx train --resume {run_dir}`) or start a new run")
