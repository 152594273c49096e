"""The run folder: what ``samfx train`` writes and ``--resume`` / ``eval`` / ``predict`` read.

    RUN/recipe.yaml       resolved recipe (recipe.to_yaml())
    RUN/versions.json     samfx, torch, python and every plugin the recipe uses, with versions
    RUN/last.pt           full training state (atomic); best.pt: weights at the best select_metric
    RUN/log.csv           global_step,stage,epoch,step,key,value  (one row per logged scalar)
    RUN/tb/               TensorBoard events
    RUN/metrics.json      per-stage best / last metrics
    RUN/curves.png        loss and metric curves
    RUN/overlays/         prediction overlays (PNG)
    RUN/.lock             only while a ``samfx train`` uses the folder (samfx.engine.run.lock)
"""
from __future__ import annotations

import contextlib
import functools
import platform
import re
import time
from pathlib import Path
from typing import Any

import samfx
from samfx.config.paths import at_pattern
from samfx.config.recipe import Recipe
from samfx.config.schema import COMPONENT_SLOTS, RecipeSchema
from samfx.contracts.errors import CheckpointError, SamfxError
from samfx.contracts.registry import Registry
from samfx.data.files import write_json, write_text
from samfx.engine.run import checkpoints as ckpt
from samfx.engine.run.lock import RunLock

LAST, BEST = "last.pt", "best.pt"
BEST_SAFETENSORS = "best.safetensors"  # best weights with train.checkpoint_format: safetensors


def best_name(checkpoint_format: str) -> str:
    return BEST_SAFETENSORS if checkpoint_format == "safetensors" else BEST


def new_run_dir(recipe: Recipe) -> Path:
    """Create and return train.out_dir/<recipe name>-<YYYYmmdd-HHMMSS>, or with -2, -3, ... appended
    when that exists: the folder is made exclusively, so runs started in the same second never share it."""
    stem = Path(recipe.path).stem if recipe.path else "run"
    base = Path(recipe.typed.train.out_dir).expanduser() / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                path.mkdir()
                return path
            except FileExistsError:
                n += 1
                path = base.with_name(f"{base.name}-{n}")
    except OSError as exc:
        raise SamfxError(f"train.out_dir: cannot create a run folder in {base.parent} ({exc.strerror}); "
                         f"choose another train.out_dir or --out") from None


def claim(run_dir: Path | None, recipe: Recipe, resume: bool) -> tuple[Path, Any, dict[str, Any] | None]:
    """Rank 0, before anything in the run folder is written: the folder (a new one when `run_dir` is
    None), its lock (:class:`samfx.engine.run.lock.RunLock`) and every check. Returns (folder, lock,
    last.pt's content when resuming). On error the lock is released, so the folder is as it was;
    a folder to resume is never created."""

    if run_dir is None:
        if resume:
            raise SamfxError("--resume: name the run folder to continue")
        run_dir = new_run_dir(recipe)
    elif resume and not run_dir.is_dir():
        raise SamfxError(f"{run_dir}: nothing to resume (no such folder); check the path, or start a new run "
                         f"without --resume")
    elif not resume:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SamfxError(f"--out {run_dir}: cannot create the run folder ({exc.strerror})") from None
    lock = RunLock.acquire(run_dir)
    try:
        obj = None
        if resume:
            obj = load_last(run_dir)
            check_resume(obj["recipe"], recipe.config, run_dir)
        elif (run_dir / LAST).exists():
            raise SamfxError(f"{run_dir}: already holds a run (last.pt); continue it with `--resume {run_dir}` "
                             f"or choose another --out")
    except BaseException:
        lock.release()
        raise
    return run_dir, lock, obj


def remove_if_empty(run_dir: Path) -> None:
    """Remove `run_dir` when it holds nothing (a run that failed before its first write); else keep it."""
    with contextlib.suppress(OSError):
        run_dir.rmdir()


def load_last(run_dir: Path) -> dict[str, Any]:
    """RUN/last.pt for --resume: readable, a samfx checkpoint, with its training state."""

    path, best = run_dir / LAST, run_dir / BEST
    if not path.is_file():
        raise SamfxError(f"{run_dir}: nothing to resume (no last.pt); start it without --resume")
    fix = f"start a new run from its weights (model.checkpoint={best})" if best.is_file() else "start a new run"
    try:
        obj = ckpt.load(path)
    except CheckpointError as exc:
        raise CheckpointError(f"--resume {run_dir}: {exc}; restore last.pt from a copy, or {fix}") from None
    if not isinstance(obj.get("train_state"), dict) or not isinstance(obj.get("progress"), dict):
        raise CheckpointError(f"--resume {run_dir}: {path} holds weights but no training state (a copy of best.pt?); "
                              f"put back the last.pt that `samfx train` wrote, or {fix}")
    return obj


def plugins_used(recipe: Recipe, registry: Registry) -> dict[str, str]:
    """{component slot path: plugin} for every component the recipe names."""
    used: dict[str, str] = {}
    for slot, kind in COMPONENT_SLOTS.items():
        for path, cfg in at_pattern(recipe.config, slot):
            if isinstance(cfg, dict) and "name" in cfg:
                used[path] = registry.get(kind, cfg["name"], where=path).plugin
    return used


def versions(recipe: Recipe, registry: Registry, plugin_versions: dict[str, str]) -> dict[str, Any]:
    import torch

    used = sorted(set(plugins_used(recipe, registry).values()))
    return {"samfx": samfx.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.version.cuda, "plugins": {p: plugin_versions.get(p, "unknown") for p in used}}


def prepare(run_dir: Path, recipe: Recipe, registry: Registry, plugin_versions: dict[str, str]) -> None:
    """Write (or, resuming, update) recipe.yaml and versions.json of a claimed folder (:func:`claim`)."""
    for stale in run_dir.glob(".*.tmp"):  # left by a writer that was killed; the lock says it is not running
        stale.unlink(missing_ok=True)
    try:
        write_text(run_dir / "recipe.yaml", recipe.to_yaml())
        write_json(run_dir / "versions.json", versions(recipe, registry, plugin_versions))
    except OSError as exc:
        raise SamfxError(f"{run_dir}: cannot write the run folder ({exc.strerror})") from None


def find_checkpoint(target: str | Path, prefer: str = BEST) -> Path:
    """A checkpoint file, or a run folder's best.pt / best.safetensors (else last.pt)."""
    path = Path(target).expanduser()
    if path.is_dir():
        bests = (BEST, BEST_SAFETENSORS)
        for name in (prefer, *(bests if prefer == BEST else ()), LAST, *bests):
            if (path / name).is_file():
                return path / name
        raise SamfxError(f"{path}: no best.pt or last.pt in this folder; is it a samfx run folder?")
    if not path.exists():
        raise SamfxError(f"{path}: no such checkpoint or run folder")
    return path


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
    return [k for k in keys if not _same_value(k, a.get(k, "<absent>"), b.get(k, "<absent>"))
            and not any(fnmatch.fnmatchcase(k, pat) for pat in RESUME_MUTABLE)]


_NAME_KEYS = tuple(f"{slot}.name" for slot in COMPONENT_SLOTS)


def _same_value(key: str, x: Any, y: Any) -> bool:
    """Equal, or a component named 'apg' by a run saved before names were qualified and 'apg/apg' now."""
    import fnmatch

    if x == y:
        return True
    if "<absent>" in (x, y):  # a key added to the schema after the run was saved, at its default
        return _schema_default(key) == (y if x == "<absent>" else x)
    return (isinstance(x, str) and isinstance(y, str) and ("/" in x) != ("/" in y)
            and x.split("/")[-1] == y.split("/")[-1] and any(fnmatch.fnmatchcase(key, p) for p in _NAME_KEYS))


@functools.cache
def _schema_defaults() -> dict[str, Any]:
    from omegaconf import OmegaConf

    return _flatten(OmegaConf.to_container(OmegaConf.structured(RecipeSchema)))


def _schema_default(key: str) -> Any:
    """The schema's default at a dotted key; list items take the default list's first item's."""
    return _schema_defaults().get(re.sub(r"\.\d+(?=\.)", ".0", key), "<no default>")


def check_resume(stored: dict[str, Any], new: dict[str, Any], run_dir: Path) -> None:
    bad = resume_conflicts(stored, new)
    if bad:
        a, b = _flatten(stored), _flatten(new)
        k = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise SamfxError(f"--resume {run_dir}: the recipe differs from the run's at {k}: run has "
                         f"{a.get(k, '<absent>')!r}, now {b.get(k, '<absent>')!r}{more}; resume with the run's "
                         f"recipe (`samfx train --resume {run_dir}`) or start a new run")
