"""A trained toy run (samfx.engine.testing's toy plugins on tests/recipes/toy.yaml) for eval / predict tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from samfx.contracts.plugins import Plugins

TOY = Path(__file__).resolve().parent / "recipes" / "toy.yaml"


def train_toy(run: Path, plugins: Plugins, *overrides: str) -> Path:
    """Train the toy recipe with `overrides` into `run`; returns `run`."""
    from samfx.config.recipe import load_recipe
    from samfx.engine.train.trainer import Trainer

    Trainer(load_recipe(TOY, list(overrides), plugins.registry), run, registry=plugins.registry, quiet=True).fit()
    return run


def ellipses(t: int, h: int, w: int, scale=(1.0, 0.8, 0.6, 0.8, 1.0, 0.9)) -> np.ndarray:
    """LV label maps (t,h,w): an ellipse in the middle whose width follows `scale`."""
    rows, cols = np.mgrid[:h, :w]
    return np.stack([(((rows - h / 2) / (0.35 * h)) ** 2 + ((cols - w / 2) / (0.2 * w * s)) ** 2 < 1)
                     for s in scale[:t]]).astype(np.uint8)


def random_quick_run(folder):
    """A run folder (created) holding the quick preset's model at random weights (seed 0) as best.pt."""
    import torch

    from samfx import api
    from samfx.engine.run import checkpoints as ckpt

    rec = api.load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "autosamus_msff_quick.yaml")
    torch.manual_seed(0)
    model = api.build_model(rec, load_checkpoint=False)
    folder.mkdir(parents=True)
    ckpt.save(ckpt.make(model, rec), folder / "best.pt")
    return folder
