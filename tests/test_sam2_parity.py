"""The sam2 plugin against the sam2 package itself: the same random weights, saved in the official
SAM2.1 layout and loaded through a recipe's model.checkpoint, give SAM2ImagePredictor's low-res logits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from samfx.config.recipe import load_recipe
from samfx.contracts.interfaces import DecoderInput
from samfx.model.build import build_model
from tests.sam2_files import package_model, save_official

S = 256  # image size: embedding 16x16, low-res logits 64x64


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    pkg = package_model("tiny", S)
    path = save_official(pkg, tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny_random.pt")
    recipe = load_recipe("recipes/sam2_hiera_t_quick.yaml", [f"model.checkpoint={path}"])
    ours = build_model(recipe).eval()
    return pkg, ours


def _image(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(S, S, 3), dtype=np.uint8)


def _predictor(pkg):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    pred = SAM2ImagePredictor(pkg)
    pred._bb_feat_sizes = [(S // 4, S // 4), (S // 8, S // 8), (S // 16, S // 16)]  # hard-coded for 1024
    return pred


def _ours(model, img: np.ndarray, xy: list[list[float]], labels: list[int], multimask: bool):
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        feats = model.encode(x)
        pts = (torch.tensor([xy], dtype=torch.float), torch.tensor([labels]))
        sparse, dense = model.prompt_encoder.encode(1, points=pts)
        return model.mask_decoder(DecoderInput(feats, model.prompt_encoder.get_dense_pe(), sparse, dense,
                                               multimask=multimask))


@pytest.mark.parametrize("multimask", [False, True])
def test_one_click_matches_sam2_image_predictor(pair, multimask):
    pkg, ours = pair
    img, xy, labels = _image(), [[120.0, 90.0]], [1]
    pred = _predictor(pkg)
    with torch.no_grad():
        pred.set_image(img)
        _, iou, low = pred.predict(point_coords=np.array(xy), point_labels=np.array(labels),
                                   multimask_output=multimask, return_logits=True)
    out = _ours(ours, img, xy, labels, multimask)
    expected = torch.from_numpy(low)                                  # (M,64,64), clamped to +-32 there
    got = out.low_res[0].clamp(-32.0, 32.0)
    assert got.shape == expected.shape == (3 if multimask else 1, S // 4, S // 4)
    diff = (got - expected).abs().max().item()
    print(f"max abs diff low-res logits (multimask={multimask}): {diff:.3g}")
    assert diff <= 1e-4
    assert (out.iou[0] - torch.from_numpy(iou)).abs().max().item() <= 1e-4
    assert out.mask_tokens is not None and out.object_score is not None
    assert out.mask_tokens.shape == (1, 3 if multimask else 1, 256) and out.object_score.shape == (1, 1)


def test_object_score_and_tokens_match_sam2_heads(pair):
    pkg, ours = pair
    img = _image(2)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = _ours(ours, img, [[30.0, 200.0], [100.0, 100.0]], [1, 0], False)
        backbone = pkg.forward_image((x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                                     / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        _, vision, _, sizes = pkg._prepare_backbone_features(backbone)
        emb = (vision[-1] + pkg.no_mem_embed).permute(1, 2, 0).view(1, -1, *sizes[-1])
        high = [v.permute(1, 2, 0).view(1, -1, *s) for v, s in zip(vision[:-1], sizes[:-1])]
        pts = (torch.tensor([[[30.0, 200.0], [100.0, 100.0]]]), torch.tensor([[1, 0]], dtype=torch.int))
        sparse, dense = pkg.sam_prompt_encoder(points=pts, boxes=None, masks=None)
        low, iou, tokens, score = pkg.sam_mask_decoder(emb, pkg.sam_prompt_encoder.get_dense_pe(), sparse, dense,
                                                       multimask_output=False, repeat_image=False,
                                                       high_res_features=high)
    assert (out.low_res - low).abs().max().item() <= 1e-4
    assert (out.mask_tokens - tokens).abs().max().item() <= 1e-4
    assert (out.object_score - score).abs().max().item() <= 1e-4


def test_k_queries_per_image_equal_repeated_images(pair):
    _, ours = pair
    torch.manual_seed(0)
    x = torch.rand(2, 3, S, S)
    k = 3
    coords = torch.randint(0, S, (2 * k, 1, 2)).float()
    labels = torch.ones(2 * k, 1, dtype=torch.long)
    with torch.no_grad():
        feats = ours.encode(x)
        sparse, dense = ours.prompt_encoder.encode(2 * k, points=(coords, labels))
        pe = ours.prompt_encoder.get_dense_pe()
        shared = ours.mask_decoder(DecoderInput(feats, pe, sparse, dense, queries_per_image=k))
        copied = ours.mask_decoder(DecoderInput(feats.per_query(k), pe, sparse, dense))
    assert shared.low_res.shape == (2 * k, 1, S // 4, S // 4)
    assert (shared.low_res - copied.low_res).abs().max().item() <= 1e-5
    assert (shared.iou - copied.iou).abs().max().item() <= 1e-5


def test_no_prompt_is_sam2bases_empty_point(pair):
    """Without points or box, SAM2Base._forward_sam_heads embeds a (0,0) point with label -1 (+ pad)."""
    pkg, ours = pair
    with torch.no_grad():
        sparse, dense = ours.prompt_encoder.encode(2)
        pts = (torch.zeros(1, 1, 2), -torch.ones(1, 1, dtype=torch.int32))
        ref_sparse, ref_dense = pkg.sam_prompt_encoder(points=pts, boxes=None, masks=None)
    assert sparse.shape == (2, 2, 256) and dense.shape == (2, 256, S // 16, S // 16)
    assert torch.equal(sparse, ref_sparse.expand(2, -1, -1)) and torch.equal(dense, ref_dense.expand(2, -1, -1, -1))
    ours.prompt_encoder.empty_point = False
    try:
        assert ours.prompt_encoder.encode(2)[0].shape == (2, 0, 256)   # SAM2ImagePredictor without prompts
    finally:
        ours.prompt_encoder.empty_point = True
