"""Shared set-up of the `samfx annotate` tests (no tests here): a tiny trained run whose prompt encoder
takes clicks, boxes and masks (the toy run with SAM's prompt encoder and decoder and a space-time memory,
one optimizer step), a tiny synthetic echo cine, and a live server on a free loopback port."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.toy_runs import train_toy

# the toy recipe (tests/recipes/toy.yaml) with SAM's prompt encoder and mask decoder at the toy's width (the
# toy prompt encoder takes no clicks), and the stm temporal module; one step trains in a few seconds
RUN_OVERRIDES = ("train.stages.0.max_steps=1", "train.stages.0.epochs=1", "model.prompt_encoder.name=sam",
                 "model.mask_decoder.name=sam", "model.temporal.name=stm")
CINE_ITEM = "patient0001_4CH"


def train_clickable(folder: Path, plugins) -> Path:
    return train_toy(folder / "run", plugins, *RUN_OVERRIDES)


def load(run: Path, plugins, temporal: bool = True):
    """samfx.api.load_run on the CPU; ``temporal=False`` drops the memory (propagation by mask prompts)."""
    from samfx import api

    loaded = api.load_run(run, device="cpu", registry=plugins.registry)
    if not temporal:
        loaded.model.temporal = None
    return loaded


def synthetic_cine(root: Path, frames: int = 6) -> Path:
    """A one-patient synthetic echo store (2CH and 4CH loops of `frames` frames, 64×72) in `root`."""
    from samfx.data.synth.store import generate

    return generate(root / "cine.h5", patients=1, frames=frames, size=(64, 72))


def lv_center(store: Path, item: str = CINE_ITEM, t: int = 0) -> tuple[float, float]:
    """(x, y) of the centre of the LV (label 1) of frame t of the store's ground truth."""
    from samfx.data.store import open_store, read_frames

    with open_store(store) as f:
        _, labels = read_frames(f, item)
    rows, cols = np.nonzero(labels[t] == 1)
    return float(cols.mean()), float(rows.mean())


def server(run, root: Path, **limits):
    """A live server (uvicorn in a thread, free loopback port) on `run` with `root` allowed."""
    from samfx.deploy.annotate.access import Roots
    from samfx.deploy.annotate.modelops import ModelOps
    from samfx.deploy.annotate.serve import Background
    from samfx.deploy.annotate.server import AnnotateServer, Limits

    return Background(AnnotateServer(ModelOps(run), Roots([root]), limits=Limits(**limits)))
