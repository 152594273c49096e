"""Everything the report shows, read from a run folder (docs/report.md): recipe, versions, log.csv,
an eval-<split>.json (or eval-<split>-<prompt>.json: samfx.engine.eval.evaluate.eval_file), parameter
counts and the worst / best test images re-segmented for overlays."""
from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samfx.contracts.errors import SamfxError, first_line
from samfx.contracts.plugins import get_registry
from samfx.data.datasets import ImageDataset
from samfx.engine.eval.evaluate import eval_file
from samfx.engine.eval.inference import predict_classes, resolve_precision, to_device
from samfx.engine.run import checkpoints as ckpt
from samfx.engine.run import rundir
from samfx.engine.run.distributed import DistInfo, resolve_device
from samfx.engine.run.loaders import collate
from samfx.model.trainable import apply_stage, count_params
from samfx.report.stats import rank_images

if TYPE_CHECKING:
    from samfx.config.recipe import Recipe

RUN_FILES = ("recipe.yaml", rundir.BEST, rundir.LAST, rundir.BEST_SAFETENSORS)


@dataclass
class RunData:
    """The report's inputs; ``notes`` says what could not be shown and why. ``compared``: for a page of
    several prompts, every (eval file, report) in page order, the first being ``eval_path``; else empty."""

    run: Path
    eval_path: Path
    report: dict[str, Any]
    recipe_text: str = ""
    versions: dict[str, Any] | None = None
    log_rows: list[dict[str, str]] = field(default_factory=list)
    params: dict[str, Any] | None = None
    worst: list[dict[str, Any]] = field(default_factory=list)
    best: list[dict[str, Any]] = field(default_factory=list)
    class_ids: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    compared: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)


def check_run(run: str | Path) -> Path:
    """The run folder, or a one-line error naming the path with what to do."""
    path = Path(run).expanduser()
    if not path.exists():
        raise SamfxError(f"{path}: no such run folder; check the path (`samfx train RECIPE --out {path}` "
                         f"makes one)")
    if not path.is_dir() or not any((path / f).is_file() for f in RUN_FILES):
        raise SamfxError(f"{path}: not a samfx run folder (no recipe.yaml, best.pt or last.pt); give the folder "
                         f"that `samfx train` wrote")
    return path


def find_eval(run: Path, split: str | None, prompt: str | None = None) -> Path:
    """The evaluation to report: among RUN's eval-<split>.json and eval-<split>-<prompt>.json files, those
    of `split` (default: the only file, else the recipe's eval.split's, else all) and of prompt generator
    `prompt` (default: any), the newest; a one-line error when none matches."""
    hint = (f"`samfx eval {run}{f' --split {split}' if split else ''}{f' --prompt {prompt}' if prompt else ''} "
            f"--report`")
    found = sorted(run.glob("eval-*.json"), key=lambda p: p.stat().st_mtime)
    if split is None and prompt is None:
        if not found:
            raise SamfxError(f"{run}: no evaluation yet (no eval-<split>.json); run {hint}")
        preferred = _of_split(found, _recipe_split(run), None)
        return preferred[-1] if len(found) > 1 and preferred else found[-1]
    matches = _of_split(found, split, prompt) if split is not None else [
        p for p in found if _fields(p).get("prompt") == prompt]
    if not matches:
        what = " and ".join(w for w in (f"split '{split}'" if split is not None else "",
                                        f"prompt '{prompt}'" if prompt is not None else "") if w)
        raise SamfxError(f"{run}: no evaluation of {what} yet ({eval_file(split or '<split>', prompt)}); run {hint}")
    return matches[-1]


def prompt_list(prompt: str | Sequence[str] | None) -> list[str]:
    """`prompt` as a list without repeats (None: [], a string: [it]), in the order given."""
    items = [prompt] if isinstance(prompt, str) else list(prompt or [])
    return list(dict.fromkeys(str(p) for p in items))


def find_evals(run: Path, split: str | None, prompts: Sequence[str]) -> list[Path]:
    """The evaluations of a page of several prompts: each of `prompts` by :func:`find_eval`, all of one
    split (`split`, else the first one's); ``all`` among them stands for every evaluation of that split
    (the newest per prompt, the checkpoint's default first). A one-line error when one is missing."""
    named = [p for p in prompts if p != "all"]
    first = find_eval(run, split, named[0] if named else None)
    split = split or str(read_eval(first).get("split"))
    paths = [find_eval(run, split, p) for p in named]
    if "all" in prompts:
        found = sorted(run.glob("eval-*.json"), key=lambda p: p.stat().st_mtime)
        newest = {str(_fields(p).get("prompt")): p for p in _of_split(found, split, None)}
        default = run / eval_file(split)
        paths += sorted(newest.values(), key=lambda p: (p != default, p.name))
    return list(dict.fromkeys(paths))


def _of_split(found: list[Path], split: str, prompt: str | None) -> list[Path]:
    """The files of `found` (in order) that evaluate `split` (with `prompt`, when given): named
    eval-<split>.json or eval-<split>-*.json and saying so inside (a split's name may contain '-')."""
    plain = eval_file(split)
    out = []
    for path in found:
        if path.name != plain and not path.name.startswith(plain[: -len(".json")] + "-"):
            continue
        if path.name == plain and prompt is None:
            out.append(path)
            continue
        fields = _fields(path)
        if fields.get("split") == split and (prompt is None or fields.get("prompt") == prompt):
            out.append(path)
    return out


def _fields(path: Path) -> dict[str, Any]:
    """An eval file's JSON ({} when unreadable: read_eval says why if it is the one chosen)."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _recipe_split(run: Path) -> str:
    import yaml

    try:
        return str(yaml.safe_load((run / "recipe.yaml").read_text())["eval"]["split"])
    except Exception:  # no or unreadable recipe: fall back to the newest eval file
        return ""


def read_eval(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SamfxError(f"{path}: cannot read the evaluation ({first_line(exc)}); run `samfx eval` again") from None
    if not isinstance(report, dict) or report.get("schema") != "samfx.eval/1":
        raise SamfxError(f"{path}: not a samfx eval report (schema samfx.eval/1); run `samfx eval` again")
    return report


def read_log(run: Path) -> list[dict[str, str]]:
    path = run / "log.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def collect(run: str | Path, split: str | None = None, *, registry: Any = None, device: str = "cpu",
            k: int = 5, prompt: str | Sequence[str] | None = None) -> RunData:
    """Read a run folder for the report (the evaluation :func:`find_eval` picks; for several prompts, or
    ``all``, those :func:`find_evals` picks, the first one's in ``report``); the model is loaded for
    parameter counts and overlays."""

    folder = check_run(run)
    prompts = prompt_list(prompt)
    if len(prompts) > 1 or "all" in prompts:
        paths = find_evals(folder, split, prompts)
    else:
        paths = [find_eval(folder, split, prompts[0] if prompts else None)]
    eval_path = paths[0]
    data = RunData(run=folder, eval_path=eval_path, report=read_eval(eval_path))
    if len(paths) > 1:
        data.compared = [(eval_path, data.report)] + [(p, read_eval(p)) for p in paths[1:]]
    recipe_file = folder / "recipe.yaml"
    data.recipe_text = recipe_file.read_text() if recipe_file.is_file() else ""
    if (folder / "versions.json").is_file():
        data.versions = json.loads((folder / "versions.json").read_text())
    data.log_rows = read_log(folder)
    worst, best = rank_images(data.report.get("images") or [], k)
    try:
        _from_model(data, registry, device, worst, best)
    except Exception as exc:  # the page is still useful without the model: say why in it
        data.notes.append(f"model not loaded, so no parameter counts or overlays: {first_line(exc)}")
    return data


def _checkpoint(data: RunData) -> Path:
    stored = Path(str(data.report.get("checkpoint", "")))
    return stored if stored.is_file() else rundir.find_checkpoint(data.run)


def _from_model(data: RunData, registry: Any, device: str, worst: list[dict[str, Any]],
                best: list[dict[str, Any]]) -> None:
    """Parameter counts per component and stage; overlays of the ranked images."""

    dev = resolve_device(device, DistInfo(), option="--device ")
    model, recipe, _ = ckpt.load_model(_checkpoint(data), registry or get_registry(), dev)
    if not data.recipe_text:
        data.recipe_text = recipe.to_yaml()
    data.class_ids = list(recipe.typed.data.classes)
    data.params = param_counts(model, recipe)
    try:
        segs = segment_records(model, recipe, data.report, worst + best)
    except Exception as exc:
        data.notes.append(f"no overlays: the evaluated images could not be read again ({first_line(exc)})")
        return
    data.worst, data.best = segs[: len(worst)], segs[len(worst):]


def param_counts(model: Any, recipe: Recipe) -> dict[str, Any]:
    """{total, components: {name: total}, stages: [{name, trainable, by_component: {name: trainable}}]}."""

    comps = model.component_modules()
    out: dict[str, Any] = {"total": count_params(model)[0],
                           "components": {n: count_params(m)[0] for n, m in comps.items()}, "stages": []}
    for i, stage in enumerate(recipe.typed.train.stages):
        apply_stage(model, recipe, i)
        out["stages"].append({"name": stage.name, "trainable": count_params(model)[1],
                              "by_component": {n: count_params(m)[1] for n, m in comps.items()}})
    return out


def segment_records(model: Any, recipe: Recipe, report: dict[str, Any], records: list[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
    """[{record, image, pred, gt}] for eval image records, re-segmented with the eval's prompt."""
    import torch

    if not records:
        return []
    ds = ImageDataset(report["store"], report["split"], model.image_size)
    dev = next(model.parameters()).device
    classes = list(recipe.typed.data.classes)
    batch = collate([ds[int(r["index"])] for r in records])
    images, label = to_device(batch, dev)
    torch.manual_seed(0)  # simulated clicks, if the eval used them, are drawn the same way each time
    pred = predict_classes(model, images, classes, label, prompt=report["prompt"],
                           precision=resolve_precision(recipe.typed.train.precision, dev)).labels
    assert label is not None
    return [{"record": r, "image": images[i, 0].float().cpu().numpy(), "pred": pred[i].cpu().numpy(),
             "gt": label[i].cpu().numpy()} for i, r in enumerate(records)]
