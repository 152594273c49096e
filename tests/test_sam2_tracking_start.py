"""sam2_memory starts harmless: a memory whose weights come from no file (gate 0) gives, through
forward_clip, exactly the per-frame model's logits (same weights, model.temporal=null, image-mode encoder
as the benchmark's sam2_perframe arm) on every frame, for an automatic prompt, a first-frame click and
first-frame masks; one training step gives the gate a gradient."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("sam2")

from samfx.config.recipe import load_recipe
from samfx.model.build import build_model

S, T, CLASSES = 64, 4, [1, 2]
PER_FRAME = ["model.temporal=null", "model.image_encoder.no_memory_embed=true"]


def pair(recipe: str, *extra: str):
    """(video model with a fresh memory, the per-frame model with the same weights)."""
    over = [f"model.image_encoder.image_size={S}", *extra]
    torch.manual_seed(0)
    video = build_model(load_recipe(f"recipes/{recipe}.yaml", over)).eval()
    per_frame = build_model(load_recipe(f"recipes/{recipe}.yaml", [*over, *PER_FRAME])).eval()
    sd = {k: v for k, v in video.state_dict().items() if not k.startswith("temporal.")}
    sd["image_encoder.no_mem_embed"] = video.state_dict()["temporal.no_mem_embed"]
    per_frame.load_state_dict(sd, strict=True)
    return video, per_frame


def clip() -> tuple[torch.Tensor, torch.Tensor]:
    """(1,T,3,S,S) frames, (1,T,S,S) labels: a disc (1) and a ring around it (2) drifting over noise."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    frames, labels = [], []
    for t in range(T):
        r2 = (yy - 28 - t) ** 2 + (xx - 30 + t) ** 2
        lab = (r2 < 10 ** 2).long() + 2 * ((r2 >= 10 ** 2) & (r2 < 16 ** 2)).long()
        frames.append((0.3 * torch.rand(3, S, S, generator=g) + 0.3 * lab).clamp(0, 1))
        labels.append(lab)
    return torch.stack(frames)[None], torch.stack(labels)[None]


@pytest.mark.parametrize("recipe, extra", [("autosam2_video_quick", ()),        # APG on every frame
                                           ("sam2_video_quick", ()),            # a click on frame 0
                                           ("sam2_video_quick", ("model.prompt.name=masks",))])
def test_a_fresh_memory_is_the_per_frame_model(recipe, extra):
    video, per_frame = pair(recipe, *extra)
    assert torch.equal(video.temporal.memory_gate, torch.zeros(256))
    frames, labels = clip()
    with torch.no_grad():
        ours = video.forward_clip(frames, CLASSES, labels).logits
        theirs = per_frame.forward_clip(frames, CLASSES, labels).logits
        diff = [(ours[:, t] - theirs[:, t]).abs().max().item() for t in range(T)]
        assert max(diff) <= 1e-5, diff
        video.temporal.memory_gate.fill_(0.5)      # the control: half open, the later frames move
        opened = video.forward_clip(frames, CLASSES, labels).logits
    assert (opened[:, 0] - theirs[:, 0]).abs().max() <= 1e-5
    assert (opened[:, 1:] - theirs[:, 1:]).abs().max() > 1e-2


def test_a_training_step_reaches_the_closed_gate():
    video, _ = pair("sam2_video_quick")
    video.train()
    frames, labels = clip()
    out = video.forward_clip(frames, CLASSES, labels)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, out.targets.float())
    loss.backward()
    grad = video.temporal.memory_gate.grad
    assert grad is not None and grad.abs().max() > 0 and grad.ne(0).float().mean() > 0.9
    opt = torch.optim.SGD([video.temporal.memory_gate], lr=1.0)
    opt.step()
    assert video.temporal.memory_gate.abs().max() > 0       # the memory starts to open
