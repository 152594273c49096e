"""``samfx predict --first-mask``: a sequence segmented from a given frame-0 label map (semi-supervised).

The label map (a one-channel image of class ids at the sequence's resolution, as ``samfx predict`` writes
``frame_000_label.png``) is handed to the ``masks`` prompt: it is frame 0's output and what the temporal
module stores first; the later frames follow from the memory alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from samfx.contracts.errors import SamfxError, first_line
from samfx.data.augment import resize_labels
from samfx.data.images import read_png
from samfx.engine.eval.evaluate import choose_prompt


def read_first_mask(path: str | Path) -> np.ndarray:
    """The label map (H,W) in an image file, read as the importers read label PNGs
    (``read_png(label=True)``); a one-line error naming ``--first-mask`` for anything else."""

    p = Path(path)
    hint = "give frame 0's label map (a one-channel PNG of class ids, as `samfx predict` writes frame_000_label.png)"
    if not p.is_file():
        raise SamfxError(f"--first-mask {p}: no such file; {hint}")
    try:
        return read_png(p, label=True).astype(np.int64)
    except SamfxError as exc:
        raise SamfxError(f"--first-mask {first_line(exc)}; {hint}") from None


def check_first_mask(mask: np.ndarray, item: Any, classes: list[int]) -> None:
    """`item` (a predict Input) is a sequence whose frames have the label map's H x W, and the map holds only
    background and the model's classes."""
    if not item.sequence:
        raise SamfxError(f"--first-mask: {item.source} is a single image; the mask starts a sequence (NIfTI "
                         f"with frames, a .h5 store's sequence, a DICOM cine)")
    frames_hw = tuple(item.frames.shape[1:])
    if tuple(mask.shape) != frames_hw:
        raise SamfxError(f"--first-mask: {mask.shape[0]}x{mask.shape[1]} label map, but {item.source} has "
                         f"{frames_hw[0]}x{frames_hw[1]} frames; give frame 0's labels at the sequence's size")
    unknown = sorted(set(np.unique(mask).tolist()) - {0, *classes})
    if unknown:
        raise SamfxError(f"--first-mask: values {unknown} are not classes of this model ({classes}, 0 = "
                         f"background); relabel them or train with those classes")


def first_frame_labels(mask: np.ndarray, frames: int, size: int, device: torch.device) -> tuple[torch.Tensor,
                                                                                            torch.Tensor]:
    """(labels (1,T,S,S) long: frame 0 the mask resized nearest to S x S, the rest 0; labeled (1,T) bool:
    frame 0 only), the arguments ``forward_clip`` takes for a masks prompt on frame 0."""

    small = resize_labels(mask[None], size)[0]
    labels = torch.zeros(1, frames, size, size, dtype=torch.long, device=device)
    labels[0, 0] = small.to(device)
    labeled = torch.zeros(1, frames, dtype=torch.bool, device=device)
    labeled[0, 0] = True
    return labels, labeled


def first_mask_prompt(model: Any, recipe: Any, prompt: str | None, registry: Any) -> str:
    """The prompt for ``--first-mask``: `prompt` (default ``masks``), which must give masks, on a model with
    a temporal module (without one, the frames after the first would get no prompt at all)."""

    key = choose_prompt(model, recipe, prompt or "masks", registry, True, "--prompt")
    if not model.prompt_generators[key].gives_mask:
        raise SamfxError(f"--first-mask: prompt '{key}' does not take a given mask; leave --prompt out (the "
                         f"masks prompt is used)")
    if model.temporal is None:
        raise SamfxError("--first-mask: this checkpoint has no temporal module, so the frames after the first "
                         "would get no prompt; use a run trained with a memory (model.temporal, e.g. stm)")
    return key
