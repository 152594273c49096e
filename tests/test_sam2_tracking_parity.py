"""SAM2.1's multimask tracking against the sam2 package's SAM2VideoPredictor itself (init_state,
add_new_points_or_box, propagate_in_video; build_sam2_video_predictor's post-processing: stability
fallback, masks binarized for the clicked frame's memory, memories stored in bf16; hole filling off, as
samfx has none). The random SAM2.1 tiny weights of tests/test_sam2_memory_parity.py, with token 0's
hypernetwork scaled so that its single mask is *stable* on the tracked frames: the stability fallback
cannot pick the best multimask output for it, so only SAM2.1's per-frame choice (three masks, the best by
predicted IoU, its token the object pointer) matches the predictor."""
from __future__ import annotations

import dataclasses

import pytest
import torch

pytest.importorskip("sam2")

from samfx.config.recipe import load_recipe
from samfx.model.build import build_model
from samfx_plugins.sam2.config import PACKAGE_CONFIGS
from tests.sam2_files import package_model, save_official
from tests.test_sam2_memory_parity import MEAN, STD, S, T, clip

TOKEN0_SCALE = 40.0   # token 0's logits x40: |logits| >> the stability delta (0.05) on almost every pixel
VIDEO = ["model.temporal.binarize_prompted_masks=true", "model.temporal.bf16_memory=true"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(SAM2VideoPredictor, samfx video model) holding the same weights."""
    from sam2.build_sam import build_sam2_video_predictor

    pkg = package_model("tiny", S)
    with torch.no_grad():
        last = pkg.sam_mask_decoder.output_hypernetworks_mlps[0].layers[-1]
        last.weight.mul_(TOKEN0_SCALE)
        last.bias.mul_(TOKEN0_SCALE)
    path = save_official(pkg, tmp_path_factory.mktemp("sam2vp") / "sam2.1_tiny_stable_token0.pt")
    predictor = build_sam2_video_predictor(PACKAGE_CONFIGS["tiny"], str(path), device="cpu",
                                           hydra_overrides_extra=[f"++model.image_size={S}"])
    predictor.fill_hole_area = 0
    model = build_model(load_recipe("recipes/sam2_video_quick.yaml", [f"model.checkpoint={path}", *VIDEO]))
    return predictor, model.eval()


def run_samfx(model, frames, labels):
    """Each frame's SegOutput and the DecoderInput its decoder got."""
    outs: dict[int, object] = {}
    inputs: list = []
    hook = model.mask_decoder.register_forward_pre_hook(lambda mod, args: inputs.append(args[0]))
    try:
        with torch.no_grad():
            model.forward_clip(frames, [1], labels, prompt_frames=[0],
                               on_frame=lambda t, o: outs.__setitem__(t, o))
    finally:
        hook.remove()
    return [outs[t] for t in range(frames.shape[1])], inputs


def run_predictor(predictor, frames, points, labels, monkeypatch):
    """SAM2VideoPredictor on the clip (its frame loader replaced by the normalized frames): the click on
    frame 0, then propagation; each frame's stored low-res mask logits."""
    import sam2.sam2_video_predictor as vp

    images = ((frames[0] - MEAN) / STD).float()
    monkeypatch.setattr(vp, "load_video_frames", lambda **kw: (images, S, S))
    state = predictor.init_state("unused")
    predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=points, labels=labels)
    for _ in predictor.propagate_in_video(state):
        pass
    out = state["output_dict_per_obj"][0]
    return [out["cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"][t]["pred_masks"] for t in range(T)]


def token0_stability(model, inputs) -> list[float]:
    """Stability score of token 0's single mask on each tracked frame (what the fallback looks at)."""
    dec = model.mask_decoder
    dec.dynamic_multimask_via_stability = False
    try:
        with torch.no_grad():
            return [dec._get_stability_scores(dec(dataclasses.replace(i, frame=None)).low_res).min().item()
                    for i in inputs[1:]]
    finally:
        dec.dynamic_multimask_via_stability = True


def diffs(predictor, model, monkeypatch) -> tuple[list[float], list, list]:
    frames, labels = clip()
    ours, inputs = run_samfx(model, frames, labels)
    first = ours[0].prompts
    ref = run_predictor(predictor, frames, first.points[0], first.point_labels[0], monkeypatch)
    out = [(o.decoded.low_res - r).abs().max().item() for o, r in zip(ours, ref)]
    return out, ours, inputs


@pytest.mark.slow
def test_multimask_tracking_matches_sam2_video_predictor(models, monkeypatch):
    predictor, model = models
    assert model.mask_decoder.multimask_tracking and model.temporal.bf16_memory
    assert torch.equal(model.temporal.memory_gate, torch.ones(256))          # an official file: open
    got, ours, inputs = diffs(predictor, model, monkeypatch)
    print("multimask tracking, max abs diff per frame:", " ".join(f"{d:.2e}" for d in got))
    assert [i.num_points for i in inputs] == [1] + [0] * (T - 1)
    assert all(i.frame is not None and i.frame.t == t for t, i in enumerate(inputs))
    stability = token0_stability(model, inputs)
    print("token 0 stability on frames 1..7:", " ".join(f"{s:.3f}" for s in stability))
    assert min(stability) >= model.mask_decoder.dynamic_multimask_stability_thresh   # no fallback rescue
    assert all(o.decoded.object_score.item() > 0 for o in ours)                 # the object is tracked
    assert max(got[1:]) <= 1e-4
    assert got[0] <= 1e-4

    model.mask_decoder.multimask_tracking = False     # the control: token 0 on the tracked frames
    try:
        off, _, _ = diffs(predictor, model, monkeypatch)
    finally:
        model.mask_decoder.multimask_tracking = True
    print("multimask tracking off, max abs diff per frame:", " ".join(f"{d:.2e}" for d in off))
    assert min(off[1:]) > 0.1
