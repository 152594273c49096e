"""sam2_memory end to end against the sam2 package: the same random SAM2.1 tiny weights, saved in the
official layout and loaded through recipes/sam2_video_quick.yaml's model.checkpoint; a clip of 8 frames
at 256², one click on frame 0 (prompt_frames=[0]), propagated; every frame's low-res logits vs
SAM2Base.track_step driven as SAM2VideoPredictor drives it (fp32 CPU, memories kept in fp32). The file has
no gate, so sam2_memory's gate loads open: SAM2's readout. tests/test_sam2_tracking_parity.py drives
SAM2VideoPredictor itself, with weights whose single mask is stable."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("sam2")

from samfx.config.recipe import load_recipe
from samfx.model.build import build_model
from tests.sam2_files import package_model, save_official

S, T = 256, 8
MEAN, STD = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    pkg = package_model("tiny", S)
    path = save_official(pkg, tmp_path_factory.mktemp("sam2v") / "sam2.1_hiera_tiny_random.pt")
    recipe = load_recipe("recipes/sam2_video_quick.yaml", [f"model.checkpoint={path}",
                                                            "model.temporal.bf16_memory=false"])  # as track_step
    return pkg, build_model(recipe).eval()


def clip(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(1,T,3,S,S) frames: a bright disc drifting over noise; (1,T,S,S) its label map."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    frames, labels = [], []
    for t in range(T):
        disc = ((yy - 100 - 3 * t) ** 2 + (xx - 120 + 2 * t) ** 2) < 40 ** 2
        img = 0.3 * torch.rand(3, S, S, generator=g) + 0.6 * disc
        frames.append(img.clamp(0, 1))
        labels.append(disc.long())
    return torch.stack(frames)[None], torch.stack(labels)[None]


def samfx_clip(model, frames, labels):
    outs: dict[int, object] = {}
    with torch.no_grad():
        model.forward_clip(frames, [1], labels, prompt_frames=[0], on_frame=lambda t, o: outs.__setitem__(t, o))
    return [outs[t] for t in range(frames.shape[1])]


def package_clip(pkg, frames, points, labels):
    """SAM2VideoPredictor's order: the click frame as initial conditioning frame, then track_step on each
    later frame over output_dict (cond / non-cond outputs), memories encoded on every frame."""
    out_dict: dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    masks = []
    with torch.no_grad():
        for t in range(frames.shape[1]):
            backbone = pkg.forward_image((frames[:, t] - MEAN) / STD)
            _, feats, pos, sizes = pkg._prepare_backbone_features(backbone)
            cond = t == 0
            inputs = {"point_coords": points.float(), "point_labels": labels.int()} if cond else None
            out = pkg.track_step(t, cond, feats, pos, sizes, inputs, None, out_dict, frames.shape[1])
            out_dict["cond_frame_outputs" if cond else "non_cond_frame_outputs"][t] = out
            masks.append(out["pred_masks"])
    return masks


def per_frame_diff(pkg, model, seed: int = 0) -> list[float]:
    frames, labels = clip(seed)
    ours = samfx_clip(model, frames, labels)
    first = ours[0].prompts
    ref = package_clip(pkg, frames, first.points, first.point_labels)
    diffs = []
    for o, r in zip(ours, ref):
        low, score = o.decoded.low_res, o.decoded.object_score
        low = torch.where(score[:, :, None, None] > 0, low, -1024.0)   # SAM2's NO_OBJ_SCORE on absent objects
        diffs.append((low - r).abs().max().item())
    return diffs


@pytest.mark.slow
def test_clip_matches_sam2_track_step(pair):
    """multimask_output_in_sam off in the package and multimask_tracking off in samfx: both decode one mask
    (with SAM2's stability fallback) on every frame. Unprompted frames get SAM2's no-prompt tokens."""
    pkg, model = pair
    assert model.prompt_encoder.encode(1)[0].shape[1] == 2      # empty point (label -1) + pad point
    pkg.multimask_output_in_sam = False
    model.mask_decoder.multimask_tracking = False
    try:
        diffs = per_frame_diff(pkg, model)
    finally:
        model.mask_decoder.multimask_tracking = True
    print("max abs diff per frame:", " ".join(f"{d:.2e}" for d in diffs))
    assert max(diffs) <= 1e-4


@pytest.mark.slow
def test_clip_matches_sam2_default_multimask(pair):
    """Against the package's SAM2.1 default (three masks on the click and on tracked frames, the best by
    predicted IoU, its token the object pointer): samfx's default multimask_tracking does the same."""
    pkg, model = pair
    pkg.multimask_output_in_sam = True
    assert model.mask_decoder.multimask_tracking
    diffs = per_frame_diff(pkg, model)
    print("multimask max abs diff per frame:", " ".join(f"{d:.2e}" for d in diffs))
    assert max(diffs) <= 1e-4


def test_video_model_counts_and_round_trip(pair):
    """Every weight of the official file lands in the video model (the memory's under temporal.*), the
    counts are the package's, and `convert --to sam2` gives the file's keys and values back."""
    from samfx.deploy.convert import export_state

    pkg, model = pair
    gate = model.temporal.memory_gate                       # samfx's gate: a SAM2 file loads it open
    assert torch.equal(gate, torch.ones(256))
    assert sum(p.numel() for p in pkg.parameters()) == 38_962_498
    assert sum(p.numel() for p in model.parameters()) == 38_962_498 + gate.numel()
    assert sum(p.numel() for p in model.temporal.parameters()) == 7_522_033 + gate.numel()
    back = export_state(model, "sam2")
    theirs = pkg.state_dict()
    assert back.keys() == theirs.keys()
    assert all(torch.equal(back[k], theirs[k]) for k in theirs)
