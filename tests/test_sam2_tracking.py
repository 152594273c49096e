"""SAM2.1's multimask tracking in the sam2 mask decoder (``multimask_tracking``): on a clip frame with
multimask_min_points..multimask_max_points points per query, the three multimask outputs are decoded and
the best by predicted IoU is returned as the single mask, with its IoU and token; images never change."""
from __future__ import annotations

import dataclasses

import pytest
import torch

pytest.importorskip("sam2")

from samfx.contracts.errors import RecipeError
from samfx.contracts.interfaces import BuildContext, DecoderInput, FrameInfo, ImageFeatures
from samfx_plugins.sam2.config import Sam2MaskDecoderConfig
from samfx_plugins.sam2.decoder import build_mask_decoder

C, H, B, K = 256, 4, 2, 2


def decoder(**kw):
    torch.manual_seed(0)
    ctx = BuildContext(image_size=16 * H, embed_dim=C, embed_size=(H, H), high_res_dims=(C, C))
    return build_mask_decoder(Sam2MaskDecoderConfig(mlp_dim=64, **kw), ctx).eval()


def decoder_input(num_points: int, frame: FrameInfo | None) -> DecoderInput:
    g = torch.Generator().manual_seed(1)
    feats = ImageFeatures(torch.randn(B, C, H, H, generator=g),
                          (torch.randn(B, C, 4 * H, 4 * H, generator=g), torch.randn(B, C, 2 * H, 2 * H, generator=g)))
    q = B * K
    return DecoderInput(feats, torch.randn(1, C, H, H, generator=g), torch.randn(q, max(num_points, 1) + 1, C,
                        generator=g), torch.randn(q, C, H, H, generator=g), K, frame=frame, num_points=num_points)


def best_of_three(dec, inp: DecoderInput):
    """SAM2Base._forward_sam_heads' choice, from the decoder's own three-mask output."""
    three = dec(dataclasses.replace(inp, multimask=True, frame=None))
    best = three.iou.argmax(-1)
    rows = torch.arange(best.shape[0])
    return three.low_res[rows, best][:, None], three.iou[rows, best][:, None], three.mask_tokens[rows, best][:, None]


@pytest.mark.parametrize("num_points, frame_t", [(0, 3), (1, 0)])
@pytest.mark.parametrize("train", [False, True])
def test_a_tracked_frame_keeps_the_best_of_three(num_points, frame_t, train):
    dec = decoder().train(train)
    inp = decoder_input(num_points, FrameInfo(frame_t, 8, frame_t == 0, K))
    with torch.no_grad():
        out = dec(inp)
        masks, iou, tokens = best_of_three(dec, inp)
    assert out.low_res.shape == (B * K, 1, 4 * H, 4 * H) and out.iou.shape == (B * K, 1)
    assert out.mask_tokens.shape == (B * K, 1, C) and out.object_score.shape == (B * K, 1)
    assert torch.equal(out.low_res, masks) and torch.equal(out.iou, iou) and torch.equal(out.mask_tokens, tokens)
    token0 = decoder(dynamic_multimask_via_stability=False).train(train)   # token 0, no fallback
    with torch.no_grad():
        single = token0(dataclasses.replace(inp, frame=None))
    assert (single.low_res - out.low_res).abs().max() > 0.1
    assert (single.mask_tokens - out.mask_tokens).abs().max() > 0.1


@pytest.mark.parametrize("num_points, frame", [(2, FrameInfo(4, 8, True, K)), (3, FrameInfo(0, 8, True, K)),
                                               (0, None), (1, None)])
def test_images_and_other_point_counts_keep_the_single_mask(num_points, frame):
    """Images (frame None) and clip frames outside [min, max] points: exactly the single-mask output."""
    dec, off = decoder(), decoder(multimask_tracking=False)
    inp = decoder_input(num_points, frame)
    with torch.no_grad():
        out, ref = dec(inp), off(dataclasses.replace(inp, frame=None))
    assert out.low_res.shape == (B * K, 1, 4 * H, 4 * H)
    assert torch.equal(out.low_res, ref.low_res) and torch.equal(out.iou, ref.iou)
    assert torch.equal(out.mask_tokens, ref.mask_tokens)


def test_the_point_range_and_the_switch():
    inp = decoder_input(2, FrameInfo(1, 8, True, K))
    wide = decoder(multimask_max_points=2)
    assert wide.tracks_multimask(inp) and not decoder().tracks_multimask(inp)
    assert not decoder(multimask_tracking=False).tracks_multimask(decoder_input(0, FrameInfo(1, 8, False, K)))
    assert not decoder(multimask_min_points=1).tracks_multimask(decoder_input(0, FrameInfo(1, 8, False, K)))
    with pytest.raises(RecipeError, match=r"multimask_min_points \(2\) is above multimask_max_points \(1\)"):
        decoder(multimask_min_points=2)


def test_recipe_ranges():
    from samfx.config.recipe import load_recipe
    from samfx.contracts.plugins import get_registry

    rec = load_recipe("recipes/sam2_video_quick.yaml", registry=get_registry()).typed.model.mask_decoder
    assert (rec["multimask_tracking"], rec["multimask_min_points"], rec["multimask_max_points"]) == (True, 0, 1)
    with pytest.raises(RecipeError, match=r"model.mask_decoder.multimask_max_points: must be >= 0"):
        load_recipe("recipes/sam2_video_quick.yaml", ["model.mask_decoder.multimask_max_points=-1"],
                    registry=get_registry())
