"""SAM2's object-presence term in training: ``train.stages.N.object_score_weight`` × BCE of the decoder's
object-score logits against "the query's target has foreground", for images and for clips."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from samfx.config.recipe import load_recipe
from samfx.engine.train.steps import ClipStep, ImageStep, object_score_loss
from samfx.model.build import build_model
from samfx_plugins.losses.losses import Dice

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["model.image_encoder.image_size=64", "data.classes=[1, 2]", "data.class_names=[LV, MYO]"]


def test_object_score_loss_is_bce_against_presence():
    score = torch.tensor([[2.0], [-1.0], [0.5]])
    targets = torch.zeros(3, 1, 4, 4)
    targets[0, 0, 1, 1] = 1.0                      # present; 1 and 2 absent
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0)) + math.log1p(math.exp(0.5))) / 3
    assert float(object_score_loss(score, targets)) == pytest.approx(expected, rel=1e-6)


def _labels(b: int, t: int | None = None) -> torch.Tensor:
    """Label maps with class 1 present and class 2 absent."""
    shape = (b, 64, 64) if t is None else (b, t, 64, 64)
    labels = torch.zeros(shape, dtype=torch.long)
    labels[..., 20:40, 20:40] = 1
    return labels


def test_image_step_adds_the_presence_term_for_sam2():
    model = build_model(load_recipe(ROOT / "recipes" / "apg_on_sam2_quick.yaml", SMALL))
    images, labels = torch.rand(2, 3, 64, 64), _labels(2)
    torch.manual_seed(0)
    plain, _, aux0 = ImageStep(model, [1, 2], Dice(1.0))(images, labels)
    torch.manual_seed(0)
    weighted, _, aux = ImageStep(model, [1, 2], Dice(1.0), object_score_weight=2.0)(images, labels)
    assert "object_score" not in aux0
    targets, out = model.forward_classes(images, [1, 2], labels)
    expected = object_score_loss(out.decoded.object_score, targets)
    assert float(aux["object_score"]) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert float((weighted - plain).detach()) == pytest.approx(2.0 * float(expected.detach()), rel=1e-4)
    # the term reaches the decoder's object-score head
    model.zero_grad()
    weighted.backward()
    head = [p for n, p in model.named_parameters() if "pred_obj_score_head" in n]
    assert head and all(p.grad is not None and p.grad.abs().sum() > 0 for p in head)


def test_clip_step_adds_the_presence_term_over_labeled_frames():
    model = build_model(load_recipe(ROOT / "recipes" / "autosam2_video_quick.yaml", SMALL)).eval()
    frames, labels = torch.rand(1, 3, 3, 64, 64), _labels(1, 3)
    labeled = torch.tensor([[True, False, True]])
    plain, _, aux0 = ClipStep(model, [1, 2], Dice(1.0))(frames, labels, labeled)
    weighted, _, aux = ClipStep(model, [1, 2], Dice(1.0), object_score_weight=1.0)(frames, labels, labeled)
    out = model.forward_clip(frames, [1, 2], labels, labeled)
    assert out.object_score is not None and out.object_score.shape == (1, 3, 2)
    expected = object_score_loss(out.object_score[labeled].reshape(-1),
                                 out.targets[labeled].flatten(0, 1).unsqueeze(1))
    assert "object_score" not in aux0
    assert float(aux["object_score"]) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert float((weighted - plain).detach()) == pytest.approx(float(expected.detach()), rel=1e-4)


def test_decoders_without_object_scores_are_unchanged():
    model = build_model(load_recipe(ROOT / "tests" / "recipes" / "tiny_sam.yaml", ["data.classes=[1, 2]",
                                                                                   "data.class_names=[LV, MYO]"]))
    images, labels = torch.rand(2, 3, 64, 64), _labels(2)
    torch.manual_seed(0)
    plain, _, _ = ImageStep(model, [1, 2], Dice(1.0))(images, labels)
    torch.manual_seed(0)
    weighted, _, aux = ImageStep(model, [1, 2], Dice(1.0), object_score_weight=5.0)(images, labels)
    assert "object_score" not in aux and torch.equal(plain, weighted)
