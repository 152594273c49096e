"""Dice of a run through `samfx annotate`'s session API, which is what the page does (the browser test
checks that the two agree): one click per class at the deepest pixel of frame 0's truth, then propagate
forward, on every held-out test sequence of the run's own data. Also reported: frame 0 after the clicks
alone, and "automatic all" (the run's automatic prompt on every frame).

    python benchmarks/annotate_dice.py runs/demo
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from samfx import api
from samfx.contracts.plugins import get_registry
from samfx.data.datasets import SequenceDataset
from samfx.deploy.annotate.loops import open_loop
from samfx.deploy.annotate.modelops import ModelOps
from samfx.deploy.annotate.session import AnnotationSession
from samfx.engine.eval.metrics import dice
from samfx.engine.run.loaders import store_path
from samfx_plugins.prompts.simulated import deepest_pixel


def flat(masks: np.ndarray) -> np.ndarray:
    """A loop's masks (T,H,W) as one 2-D mask (T*H,W): its Dice is the Dice over every frame's pixels."""
    return masks.reshape(-1, masks.shape[-1])


def main(run_dir: str) -> None:
    torch.set_num_threads(2)
    run = api.load_run(run_dir, device="cpu")
    store = store_path(run.recipe.config["data"]["source"], get_registry())
    seqs = SequenceDataset(store, "test", run.model.image_size).sequences
    scores: dict[str, dict[int, list[float]]] = {k: {c: [] for c in run.classes}
                                                 for k in ("click+propagate", "frame 0 click", "automatic all")}
    for it in seqs:
        loop = open_loop(store, it.id)
        truth = loop.labels
        s = AnnotationSession(ModelOps(run), loop, precompute=False)
        for c in run.classes:
            x, y = deepest_pixel(torch.from_numpy(truth[0] == c)[None])[0].tolist()
            s.apply({"op": "click", "t": 0, "cls": c, "x": float(x), "y": float(y)})
        s.apply({"op": "propagate", "t": 0, "direction": "forward"})
        for c in run.classes:
            scores["click+propagate"][c].append(dice(flat(s.labels == c), flat(truth == c)))
            scores["frame 0 click"][c].append(dice(s.labels[0] == c, truth[0] == c))
        s.apply({"op": "automatic"})
        for c in run.classes:
            scores["automatic all"][c].append(dice(flat(s.labels == c), flat(truth == c)))
        s.close()
    print(f"{len(seqs)} test sequences of {store}; Dice % (mean ± std over sequences)")
    for c, name in zip(run.classes, run.class_names):
        print(name, *(f"| {k} {100 * np.mean(v[c]):.1f} ± {100 * np.std(v[c]):.1f}" for k, v in scores.items()))


if __name__ == "__main__":
    main(sys.argv[1])
