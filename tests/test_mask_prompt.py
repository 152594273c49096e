"""The ``masks`` prompt: a given mask on frame 0 of a sequence (semi-supervised), which is that frame's output
and what a memory stores first; refused for images; not scored by the sequence evaluation."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from samfx.config.recipe import load_recipe
from samfx.contracts.errors import SamfxError
from samfx.contracts.interfaces import GIVEN_MASK_LOGIT
from samfx.model.build import build_model
from samfx.model.forward_check import check_forward

ROOT = Path(__file__).resolve().parents[1]
S = 128
TINY = ["model.image_encoder.size=tiny", f"model.image_encoder.image_size={S}", "model.image_encoder.out_dim=64",
        "model.mask_decoder.mlp_dim=128", "model.prompt={name: masks}",
        "data.classes=[1, 2]", "data.class_names=[LV, MYO]"]


def _model(recipe: str, *extra: str):
    torch.manual_seed(0)
    return build_model(load_recipe(ROOT / "recipes" / recipe, [*TINY, *extra]), load_checkpoint=False).eval()


def _labels(t: int, shift: int = 0, s: int = S) -> torch.Tensor:
    """(1,T,s,s): class 1 a square, class 2 a band below it; `shift` moves both on frame 0 only."""
    labels = torch.zeros(1, t, s, s, dtype=torch.long)
    labels[:, :, 16:32, 16:32] = 1
    labels[:, :, 40:44, 8:56] = 2
    if shift:
        labels[:, 0] = torch.roll(labels[:, 0], shift, dims=-1)
    return labels


@torch.no_grad()
def test_frame_0_output_is_the_given_mask_and_later_frames_are_the_models():
    model = _model("samus.yaml")
    frames, labels = torch.rand(1, 3, 3, S, S), _labels(3)
    out = model.forward_clip(frames, [1, 2], labels)
    targets = (out.targets[0, 0] > 0.5)                                    # (K,S,S)
    assert torch.equal(out.logits[0, 0], torch.where(targets, GIVEN_MASK_LOGIT, -GIVEN_MASK_LOGIT))
    assert torch.equal(out.iou[0, 0], torch.ones(2))
    assert not torch.equal(out.logits[0, 1].abs(), torch.full_like(out.logits[0, 1], GIVEN_MASK_LOGIT))


@torch.no_grad()
def test_memory_stores_the_given_mask_at_the_decoders_resolution():
    model = _model("autosamus_msff_stm.yaml", "model.prompt={name: masks}", "data.clip_length=3")
    seen = []
    write = model.temporal.write
    model.temporal.write = lambda state, feats, decoded, frame: seen.append(decoded.low_res.clone()) or write(
        state, feats, decoded, frame)
    frames, labels = torch.rand(1, 2, 3, S, S), _labels(2)
    model.forward_clip(frames, [1, 2], labels)
    low = seen[0]                                                          # frame 0: (K,1,h',w')
    pooled = F.interpolate((labels[:, 0] == torch.tensor([1, 2])[:, None, None]).float()[:, None],
                           size=low.shape[-2:], mode="area")
    assert torch.allclose(low, (2 * pooled - 1) * GIVEN_MASK_LOGIT)


@torch.no_grad()
def test_the_memory_carries_the_given_mask_to_later_frames():
    """Frame 1 (no prompt) changes with frame 0's given mask through the memory, and only through it."""
    frames = torch.rand(1, 2, 3, S, S)
    outs = {}
    # a readout projection far from its near-zero start, so that a random memory moves the output visibly
    for name, extra in (("stm", ["data.clip_length=3", "model.temporal.out_init_std=1.0"]),
                        ("none", ["data.clip_length=3", "model.temporal=null"])):
        model = _model("autosamus_msff_stm.yaml", "model.prompt={name: masks}", *extra)
        a = model.forward_clip(frames, [1, 2], _labels(2)).logits[0, 1]
        b = model.forward_clip(frames, [1, 2], _labels(2, shift=12)).logits[0, 1]
        outs[name] = (a - b).abs().max().item()
    assert outs["stm"] > 1e-5 and outs["none"] == 0.0   # the same computation otherwise: exactly 0


def test_sam2_object_score_follows_the_given_mask():
    model = build_model(load_recipe(ROOT / "recipes" / "autosam2_video_quick.yaml",
                                    ["model.image_encoder.image_size=64", "model.prompt={name: masks}",
                                     "data.classes=[1, 2, 3]", "data.class_names=[LV, MYO, LA]"]),
                        load_checkpoint=False).eval()
    with torch.no_grad():
        out = model.forward_clip(torch.rand(1, 2, 3, 64, 64), [1, 2, 3], _labels(2, s=64))   # class 3 absent
    assert out.object_score[0, 0].tolist() == [GIVEN_MASK_LOGIT, GIVEN_MASK_LOGIT, -GIVEN_MASK_LOGIT]


def test_images_refuse_a_prompt_that_gives_the_mask():
    model = _model("samus.yaml")
    images, labels = torch.rand(1, 3, S, S), _labels(1)[:, 0]
    with pytest.raises(SamfxError, match=r"^prompt 'masks' gives the mask itself, so it prompts the first frame "
                                         r"of a sequence .*use clicks, boxes or an automatic prompt"):
        model.forward_classes(images, [1, 2], labels)
    with pytest.raises(SamfxError, match="gives the mask itself"):
        model(images, targets=(labels == 1).float()[:, None])
    check_forward(model, [1, 2], torch.device("cpu"))    # the start-of-training check runs it as a clip


def test_evaluation_does_not_score_the_given_frame(tmp_path):
    from samfx.data.datasets import SequenceDataset
    from samfx.data.synth.store import generate
    from samfx.engine.eval.sequences import evaluate_sequences

    store = generate(tmp_path / "s.h5", patients=2, frames=4, size=(48, 48))
    ds = SequenceDataset(store, None, S)
    model = _model("samus.yaml", "data.classes=[1, 2, 3]", "data.class_names=[LV, MYO, LA]")
    given = evaluate_sequences(model, ds, [1, 2, 3], torch.device("cpu"), limit=1)["sequences"][0]
    assert given["frames"] == 4 and given["scored_frames"] == 3
    model.prompt_generators[model.active_prompt].gives_mask = False    # the same outputs, frame 0 scored
    scored = evaluate_sequences(model, ds, [1, 2, 3], torch.device("cpu"), limit=1)["sequences"][0]
    assert scored["scored_frames"] == 4
    for c in (1, 2, 3):   # frame 0 is perfect, so scoring it can only raise the mean Dice
        assert scored["dice"][c] == pytest.approx((3 * given["dice"][c] + 1.0) / 4, abs=1e-9)
