"""One forward of a dummy batch through every prompt generator of a model, before any data is read.

A component that builds but cannot run at the recipe's geometry (an APG with ``classes: 2`` on data
with 3 classes) then fails in ``samfx show`` or at the start of ``samfx train``, not after the first
stage has trained. The check reads no data, runs without gradients in eval mode and restores every
random generator and each module's train/eval mode: the training that follows is bit-identical.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch

from samfx.contracts.attribution import running

if TYPE_CHECKING:
    from samfx.model.segmentation import SegmentationModel


@contextmanager
def _untouched(model: SegmentationModel, device: torch.device) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        for m, training in modes:
            m.training = training


def dummy_batch(image_size: int, classes: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One mid-grey image (1,3,S,S) and a label map (1,S,S) with a horizontal band per class (so that
    simulated clicks and boxes find every class)."""
    images = torch.full((1, 3, image_size, image_size), 0.5, device=device)
    label = torch.zeros(1, image_size, image_size, dtype=torch.long, device=device)
    band = max(1, image_size // (len(classes) + 1))
    for i, c in enumerate(classes):
        label[:, (i + 1) * band:(i + 2) * band] = c
    return images, label


def check_forward(model: SegmentationModel, classes: list[int], device: torch.device, where: str = "check") -> None:
    """Run every prompt generator of `model` once on :func:`dummy_batch` (a clip of 2 frames when the
    model has a temporal module or the prompt gives masks); a component's exception is reported naming
    it (samfx.contracts.attribution)."""
    images, label = dummy_batch(model.image_size, classes, device)
    with _untouched(model, device), torch.no_grad():
        model.eval()
        for key in model.prompt_generators:
            what = f"{where}: one forward of a dummy {model.image_size}² batch with prompt '{key}'"
            with running(what):
                if model.temporal is not None or model.prompt_generators[key].gives_mask:  # a sequence prompt
                    model.forward_clip(torch.stack([images, images], 1), classes, torch.stack([label, label], 1),
                                       prompt=key, key_frames=torch.ones(1, 2, dtype=torch.bool, device=device))
                else:
                    model.forward_classes(images, classes, label, prompt=key)
