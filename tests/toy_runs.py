"""A trained toy run (samfx.engine.testing's toy plugins on tests/recipes/toy.yaml) for eval / predict tests."""
from __future__ import annotations

from pathlib import Path

from samfx.contracts.plugins import Plugins

TOY = Path(__file__).resolve().parent / "recipes" / "toy.yaml"


def train_toy(run: Path, plugins: Plugins, *overrides: str) -> Path:
    """Train the toy recipe with `overrides` into `run`; returns `run`."""
    from samfx.config.recipe import load_recipe
    from samfx.engine.train.trainer import Trainer

    Trainer(load_recipe(TOY, list(overrides), plugins.registry), run, registry=plugins.registry, quiet=True).fit()
    return run
