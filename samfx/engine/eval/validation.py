"""Validation during training (sharded over DDP ranks, gathered on all) and stage-end overlays.

A plugin's exception in a forward here is one line naming the plugin and component, as in a training
step (samfx.contracts.attribution.running): "validation: plugin 'p', prompt_generator 'p/x' failed
while running: ..." (or "stage-end overlays: ...")."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from samfx.contracts.attribution import running
from samfx.engine.eval.inference import predict_classes, to_device
from samfx.engine.eval.metrics import dice
from samfx.engine.eval.overlays import clear, save_overlay
from samfx.engine.eval.sequences import SequenceScoring, evaluate_sequences
from samfx.engine.run import distributed as D
from samfx.engine.run.loaders import collate, ignore_in_worker, start_workers
from samfx.engine.run.rundir import safe_name

if TYPE_CHECKING:
    from samfx.model.segmentation import SegmentationModel


def _shard(ds: Dataset) -> Subset:
    info = D.env_info() if D.active() else D.DistInfo()
    # map-style datasets have __len__; torch's Dataset type does not declare it
    return Subset(ds, list(range(info.rank, len(ds), info.world_size)))  # type: ignore[arg-type]


def _summary(per_class: list[float], names: list[str]) -> dict[str, float]:
    out = {"val/dice": sum(per_class) / len(per_class)}
    out.update({f"val/dice_{name}": v for name, v in zip(names, per_class)})
    return out


@dataclass(frozen=True)
class Batching:
    """How validate_images loads the split: images per batch and DataLoader worker processes."""

    batch_size: int
    num_workers: int = 0


@torch.no_grad()
def validate_images(model: SegmentationModel, ds: Dataset, classes: list[int], names: list[str], device: torch.device,
                    precision: str, batching: Batching, loss_fn: nn.Module | None = None) -> dict[str, float]:
    """val/loss (the stage's loss, image-weighted), val/dice (mean over classes of per-image Dice
    means) and val/dice_<class>, with the model's active prompt generator, loaded as `batching` says.
    The loader's workers ignore stop signals (SIGINT, SIGTERM, SIGHUP): the training process finishes
    the validation and then stops (samfx.engine.train.interrupt)."""

    was_training = model.training
    model.eval()
    loader = DataLoader(_shard(ds), batch_size=batching.batch_size, shuffle=False, collate_fn=collate,
                        num_workers=batching.num_workers, worker_init_fn=ignore_in_worker)
    records: list[tuple[float, list[float]]] = []
    for batch in start_workers(loader):
        images, label = to_device(batch, device)
        assert label is not None  # validation splits are labeled
        with running("validation"):
            p = predict_classes(model, images, classes, label, precision=precision)
            loss = float(loss_fn(p.out.logits.float(), p.targets)) if loss_fn is not None else math.nan
        pred = p.labels.cpu().numpy()
        gt = label.cpu().numpy()
        for i in range(images.shape[0]):
            records.append((loss, [dice(pred[i] == c, gt[i] == c) for c in classes]))
    records = D.gather_lists(records)
    model.train(was_training)
    n = max(1, len(records))
    metrics = {"val/loss": sum(r[0] for r in records) / n}
    metrics.update(_summary([sum(r[1][k] for r in records) / n for k in range(len(classes))], names))
    return metrics


def validate_sequences(model: SegmentationModel, ds: Dataset, classes: list[int], names: list[str],
                       device: torch.device, precision: str) -> dict[str, float]:
    """Clip training: whole sequences through forward_clip; val/dice = mean over classes of the
    per-sequence mean Dice on labeled frames (no val/loss)."""

    was_training = model.training
    with running("validation"):
        rows = evaluate_sequences(model, _shard(ds), classes, device, precision=precision,
                                  scoring=SequenceScoring(hd95=False))["sequences"]
    rows = D.gather_lists(rows)
    model.train(was_training)
    per_class = []
    for c in classes:
        vals = [r["dice"][c] for r in rows if math.isfinite(r["dice"][c])]
        per_class.append(sum(vals) / len(vals) if vals else 0.0)
    return _summary(per_class, names)


@torch.no_grad()
def write_overlays(model: SegmentationModel, ds: Dataset, classes: list[int], folder: Path, device: torch.device,
                   precision: str, n: int) -> None:
    """Overlay PNGs of the first `n` items of `ds` (prediction in colour, ground truth in white),
    replacing any PNGs already in `folder`."""

    clear(folder)
    was_training = model.training
    model.eval()
    for i in range(min(n, len(ds))):  # type: ignore[arg-type]  # map-style Dataset: has __len__
        item: dict[str, Any] = ds[i]
        images, label = to_device(collate([item]), device)
        assert label is not None
        with running("stage-end overlays"):
            pred = predict_classes(model, images, classes, label, precision=precision).labels[0]
        save_overlay(folder / f"{i:03d}-{safe_name(item.get('id', item.get('index', i)))}.png",
                     images[0, 0].float().cpu().numpy(), pred.cpu().numpy(), label[0].cpu().numpy())
    model.train(was_training)
