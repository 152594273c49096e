"""``samfx eval``: per-class Dice / IoU / HD / HD95 per image and per patient (docs/metrics.md).

The model is rebuilt from the checkpoint's stored recipe. Metrics are computed on label maps at
the model's input resolution S×S, with the dataset's spacing (mm per pixel after resizing);
distances are in mm when every image has a known spacing, else in pixels for all images.
The report is written next to the checkpoint as ``eval-<split>.json`` with the checkpoint's default
prompt, or ``eval-<split>-<prompt>.json`` with another one (:func:`eval_file`), so evaluations of one
split with different prompts never overwrite each other.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from samfx.config.recipe import load_recipe
from samfx.contracts.attribution import running
from samfx.contracts.errors import DataError, SamfxError
from samfx.contracts.plugins import get_registry
from samfx.data.datasets import ImageDataset, SequenceDataset
from samfx.data.files import jsonable, write_json
from samfx.engine.eval import metrics as M
from samfx.engine.eval.inference import predict_classes, resolve_precision, to_device
from samfx.engine.eval.overlays import clear, save_overlay, write_error
from samfx.engine.eval.sequences import SequenceScoring, evaluate_sequences
from samfx.engine.run import checkpoints as ckpt
from samfx.engine.run import rundir
from samfx.engine.run.distributed import DistInfo, resolve_device
from samfx.engine.run.loaders import check_classes, collate, store_path
from samfx.model.build import build_extra, prompt_configs, prompt_key

SCHEMA = "samfx.eval/1"


def parse_data(data: str | None, registry, where: str = "--data") -> Any:
    """``--data``: a store file (.h5) or a dataset component as YAML, e.g. ``{name: camus, root: ...}``."""
    if data is None:
        return None
    if Path(data).expanduser().suffix in {".h5", ".hdf5"}:
        if not Path(data).expanduser().is_file():
            raise SamfxError(f"{where}: store file '{data}' not found")
        return str(Path(data).expanduser())
    import yaml

    try:
        cfg = yaml.safe_load(data)
    except yaml.YAMLError:
        cfg = None
    if isinstance(cfg, str):
        cfg = {"name": cfg}
    if not isinstance(cfg, dict):
        raise SamfxError(f"{where}: expected a store file (.h5) or a dataset as YAML such as "
                         f"'{{name: synthetic_echo}}', got {data!r}")
    try:
        recipe = load_recipe(None, [f"data.source={yaml.safe_dump(cfg, default_flow_style=True).strip()}"],
                             registry)
    except SamfxError as exc:
        raise SamfxError(f"{where}: {exc}") from None
    return recipe.typed.data.source


def default_prompt(recipe) -> str:
    """The checkpoint's default prompt-generator key: eval.prompt's, else the last stage's."""
    return prompt_key(recipe, recipe.typed.eval.prompt or recipe.typed.train.stages[-1].prompt)


def eval_file(split: str, prompt: str | None = None) -> str:
    """The file name of an evaluation of `split`: ``eval-<split>.json`` with the checkpoint's default
    prompt (`prompt` None), else ``eval-<split>-<prompt>.json`` (both through rundir.safe_name)."""
    tail = "" if prompt is None else f"-{rundir.safe_name(prompt)}"
    return f"eval-{rundir.safe_name(split)}{tail}.json"


def choose_prompt(model, recipe, prompt: str | None, registry, needs_labels_ok: bool, where: str) -> str:
    """The prompt-generator key to use: `prompt`, else eval.prompt, else the last stage's."""

    if prompt is None:
        key = default_prompt(recipe)
    elif prompt in model.prompt_generators:
        key = prompt
    elif "/" in prompt and (keys := _keys_of(recipe, registry, prompt, where)):
        key = keys[0]  # a qualified name ('apg/apg') of a generator the model holds under its key ('apg')
    else:
        gen = build_extra(model, "prompt_generator", {"name": prompt}, where, registry)
        if any(True for _ in gen.parameters()):
            raise SamfxError(f"{where}: prompt generator '{prompt}' is not in this checkpoint (it has: "
                             f"{', '.join(model.prompt_generators)}) and has weights that would be untrained")
        key = prompt
        model.prompt_generators[key] = gen.to(next(model.parameters()).device).eval()
    gen = model.prompt_generators[key]
    if gen.needs_targets and not needs_labels_ok:
        raise SamfxError(f"{where}: prompt '{key}' simulates a user from ground truth (clicks, boxes, masks), "
                         f"which unlabeled inputs do not have; use a checkpoint trained with an automatic prompt "
                         f"(any that needs no ground truth, e.g. apg) or --prompt none")
    return key


def _keys_of(recipe, registry, name: str, where: str) -> list[str]:
    """The model's prompt-generator keys whose component is `name`."""

    want = registry.get("prompt_generator", name, where).qualname
    return [k for k, cfg in prompt_configs(recipe)[0].items()
            if registry.get("prompt_generator", cfg["name"], where).qualname == want]


def evaluate(target: str | Path, *, split: str | None = None, data: str | None = None, prompt: str | None = None,  # noqa: PLR0913  (mirrors samfx eval's options)
             device: str = "auto", registry=None, compat: bool | None = None, overlays: int | None = None,
             write: bool = True, limit: int | None = None) -> dict[str, Any]:
    """Evaluate a run folder (best.pt, else last.pt) or a checkpoint file; returns the report, written
    (when `write`) as :func:`eval_file` next to the checkpoint, its overlays in ``overlays/<that stem>``.
    A plugin's exception while predicting is one line naming the plugin and component
    (samfx.contracts.attribution.running)."""

    registry = registry or get_registry()
    path = rundir.find_checkpoint(target)
    dev = resolve_device(device, DistInfo(), option="--device ")
    model, recipe, obj = ckpt.load_model(path, registry, dev)
    cfg = recipe.typed
    classes = list(cfg.data.classes)
    names = {c: n for c, n in zip(classes, cfg.data.class_names)}
    split = split or cfg.eval.split
    compat = cfg.eval.compat_row_hd if compat is None else compat
    source = parse_data(data, registry) or cfg.data.source
    store = store_path(source, registry, "--data" if data else "data.source")
    key = choose_prompt(model, recipe, prompt, registry, True, "--prompt")
    precision = resolve_precision(cfg.train.precision, dev)
    loader = DataLoader(_split_images(store, split, model.image_size, classes, limit),
                        batch_size=cfg.eval.batch_size, shuffle=False, collate_fn=collate,
                        num_workers=cfg.data.num_workers)
    folder = path.parent
    name = eval_file(split, None if key == default_prompt(recipe) else key)
    overlay_dir = None
    if write:
        overlay_dir = folder / "overlays" / Path(name).stem
        with _writing(overlay_dir):
            clear(overlay_dir)  # this report's overlays only, never mixed with an earlier eval's
    with running(f"eval '{split}' prompt '{key}'"):
        records = _predict_split(model, loader, classes, dev, key, precision, overlay_dir,
                                 cfg.eval.overlays if overlays is None else overlays)
    if not records:
        raise SamfxError(f"{store}: split '{split}' has no labeled images to evaluate")
    report = {"schema": SCHEMA, "checkpoint": str(path), "store": str(store), "split": split, "prompt": key,
              "image_size": model.image_size, **_score(records, classes, names, compat)}
    if getattr(model, "temporal", None) is not None:  # temporal models: whole sequences too
        run = _Run(dev, key, precision, limit)
        with running(f"eval '{split}' sequences prompt '{key}'"):
            report["sequences"] = _sequences(model, store, split, classes, names, run)
    report = jsonable(report)
    if write:
        out = folder / name
        with _writing(out):
            write_json(out, report)
        report["written"] = str(out)
    return report


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An OSError while writing the evaluation `path` (the JSON report or one overlay PNG) as one line
    naming the file and the reason (samfx.engine.eval.overlays.write_error); the JSON is replaced
    atomically, so a failed write leaves the previous report."""
    try:
        yield
    except OSError as exc:
        raise SamfxError(write_error(exc, path, "cannot write the evaluation")) from None


def _split_images(store: Path, split: str, image_size: int, classes: list[int], limit: int | None) -> Any:
    """The split's labeled images (the first `limit` only, when given); a DataError when the store lacks
    one of the checkpoint's classes."""

    full = ImageDataset(store, split, image_size)
    check_classes(classes, full.index, "data.classes (the checkpoint's)")
    if limit:
        return torch.utils.data.Subset(full, list(range(min(limit, len(full)))))
    return full


def _predict_split(model, loader: DataLoader, classes: list[int], dev: torch.device, key: str, precision: str,
                   overlay_dir: Path | None, n_overlays: int) -> list[dict[str, Any]]:
    """One record per image: its metadata and spacing, with the predicted and ground-truth label maps
    (``_pred``, ``_gt``); overlay PNGs of the first `n_overlays` images into `overlay_dir` (None: none)."""
    records: list[dict[str, Any]] = []
    for batch in loader:
        images, label = to_device(batch, dev)
        assert label is not None  # ImageDataset items always carry a label map
        pred = predict_classes(model, images, classes, label, prompt=key, precision=precision).labels
        for i in range(images.shape[0]):
            sp = [float(v) for v in torch.as_tensor(batch["spacing"][i]).reshape(-1)]
            records.append({"index": int(batch["index"][i]), "id": _get(batch, "id", i),
                            "patient": _get(batch, "patient", i), "view": _get(batch, "view", i),
                            "phase": _get(batch, "phase", i), "spacing": sp,
                            # uint8 keeps a large split in memory until the distance unit is known
                            "_pred": pred[i].cpu().numpy().astype("uint8"),
                            "_gt": label[i].cpu().numpy().astype("uint8")})
            if overlay_dir is not None and len(records) <= n_overlays:
                png = overlay_dir / f"{len(records) - 1:03d}-{rundir.safe_name(records[-1]['id'])}.png"
                with _writing(png):  # the writing only: an OSError reading the data stays a read error
                    save_overlay(png, images[i, 0].float().cpu().numpy(), records[-1]["_pred"], records[-1]["_gt"])
    return records


def _score(records: list[dict[str, Any]], classes: list[int], names: dict[int, str], compat: bool) -> dict[str, Any]:
    """Per-class metrics of every record (its label maps replaced by ``classes``) and their summary over
    images and patients: the report's metric fields. Distances in mm when every image has a spacing."""
    unit = "mm" if all(M.distance_unit(r["spacing"]) == "mm" for r in records) else "px"
    metric_names = list(M.METRICS) + ([M.COMPAT] if compat else [])
    for r in records:
        per = M.label_metrics(r.pop("_pred"), r.pop("_gt"), classes, r["spacing"] if unit == "mm" else None, compat)
        r["classes"] = {names[c]: v for c, v in per.items()}
    summary = M.summarize(records, names, metric_names)
    return {"distance_unit": unit, "classes": list(names.values()), "metrics": metric_names,
            "n_images": len(records), "n_patients": len(summary["patients"]), "mean": summary["mean"],
            "per_image": summary["per_image"], "per_patient": summary["per_patient"],
            "patients": summary["patients"], "images": records}


@dataclass(frozen=True)
class _Run:
    """How the checkpoint runs: device, prompt key, precision, and at most `limit` items (None: all)."""

    dev: torch.device
    key: str
    precision: str
    limit: int | None


def _sequences(model, store, split, classes, names, run: _Run) -> dict[str, Any] | None:
    """samfx.engine.eval.sequences.evaluate_sequences on the split's sequences (None when it has none)."""

    try:
        ds = SequenceDataset(store, split, model.image_size)
    except DataError:
        return None
    lv = next((c for c, n in names.items() if n == "LV"), classes[0])
    out = evaluate_sequences(model, ds, classes, run.dev, prompt=run.key, precision=run.precision, limit=run.limit,
                             scoring=SequenceScoring(lv_label=lv))
    return by_class_name(out, names)


PER_CLASS = ("dice", "dice_edes", "hd95", "hd95_edes", "hd95_inf", "hd95_inf_frames")


def by_class_name(out: dict[str, Any], names: dict[int, str]) -> dict[str, Any]:
    """evaluate_sequences' result with every per-class value keyed by class name: each row's ``dice``,
    ``hd95``... mappings, and the summary's ``dice_<id>``... keys as ``dice_<name>``."""
    for row in out["sequences"]:
        for key in PER_CLASS:
            if key in row:
                row[key] = {names[c]: v for c, v in row[key].items()}
    summary = {}
    for key, value in out["summary"].items():
        head, _, tail = key.rpartition("_")
        summary[f"{head}_{names[int(tail)]}" if head in PER_CLASS and tail.isdigit() else key] = value
    out["summary"] = summary
    return out


def _get(batch: dict[str, Any], key: str, i: int) -> Any:
    value = batch.get(key)
    if value is None:
        return None
    v = value[i]
    return v.item() if hasattr(v, "item") else v


def fmt(stat: dict[str, Any], scale: float = 1.0, digits: int = 2) -> str:
    if stat["mean"] is None:
        text = "n/a"
    else:
        text = f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"
    if stat.get("n_inf"):
        text += f" ({stat['n_inf']} inf)"
    return text


def print_table(report: dict[str, Any]) -> None:
    """Rich table: one row per class, mean ± std over images (Dice/IoU in %), patient Dice."""
    from rich.console import Console
    from rich.table import Table

    unit = report["distance_unit"]
    table = Table(title=f"{report['checkpoint']} on '{report['split']}' ({report['n_images']} images, "
                        f"{report['n_patients']} patients, prompt {report['prompt']})")
    cols = ["class", "Dice %", "IoU %", f"HD {unit}", f"HD95 {unit}", "patient Dice %"]
    if "row_hd_compat" in report["metrics"]:
        cols.append("row-HD compat")
    for c in cols:
        table.add_column(c, justify="left" if c == "class" else "right", no_wrap=True)
    for name, per in report["per_image"].items():
        row = [name, fmt(per["dice"], 100), fmt(per["iou"], 100), fmt(per["hd"]), fmt(per["hd95"]),
               fmt(report["per_patient"][name]["dice"], 100)]
        if "row_hd_compat" in per:
            row.append(fmt(per["row_hd_compat"], digits=1))
        table.add_row(*row)
    console = Console()
    Console(width=max(console.width, 120)).print(table)  # a pipe or CI log gets 80 columns otherwise
    if (report.get("sequences") or {}).get("sequences"):
        print_sequence_table(report)
    infs = sum(per[m].get("n_inf", 0) for per in report["per_image"].values() for m in ("hd", "hd95"))
    if infs:
        Console().print(f"[yellow]{infs} HD/HD95 values are infinite (one mask empty, the other not); they are "
                        f"counted above and excluded from the means (docs/metrics.md)[/]")


def print_sequence_table(report: dict[str, Any]) -> None:
    """A temporal model's whole sequences: per class Dice / HD95 on all labeled frames and at ED/ES, then
    the LV-area jitter and the EF error (docs/temporal.md, "Clinical output")."""
    from rich.console import Console
    from rich.table import Table

    seq = report["sequences"]
    summary, rows = seq["summary"], seq["sequences"]
    names = list(rows[0]["dice"])
    table = Table(title=f"{summary['n']} sequences, every frame (prompt {report['prompt']})")
    for c in ("class", "Dice %", "Dice ED/ES %", "HD95", "HD95 ED/ES"):
        table.add_column(c, justify="left" if c == "class" else "right", no_wrap=True)
    for n in names:
        table.add_row(n, *(_num(summary.get(f"{k}_{n}"), 100 if k.startswith("dice") else 1)
                           for k in ("dice", "dice_edes", "hd95", "hd95_edes")))
    Console(width=max(Console().width, 120)).print(table)
    if "jitter_mm2" in summary:
        gain = _num(summary['lv_area_gain'], 1, 2)
        Console().print(f"LV-area jitter {_num(summary['jitter_mm2'], 1)} mm² (gain {gain}), "
                        f"EF error vs the truth's masks {_num(summary['ef_mae_vs_gt_masks'], 1)} points, "
                        f"{summary['ef_undefined']} sequence(s) with an undefined EF; "
                        f"{_num(summary['ms_per_frame'], 1)} ms/frame")


def _num(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value * scale:.{digits}f}"
