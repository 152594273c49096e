"""The `sam` plugin: SAM's encoder / prompt encoder / batched mask decoder as samfx components."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from segment_anything import sam_model_registry

from samfx.config.recipe import load_recipe
from samfx.contracts.errors import RecipeError, SamfxError
from samfx.contracts.interfaces import BuildContext, DecoderInput, ImageFeatures
from samfx.contracts.plugins import get_registry
from samfx.model.build import build_model
from samfx_plugins.sam.config import SamMaskDecoderConfig, SamPromptEncoderConfig
from samfx_plugins.sam.decoder import build_mask_decoder, build_prompt_encoder
from samfx_plugins.sam.encoder import SamImageEncoder
from samfx_plugins.sam.reference import reference_sam

TINY = ["model.image_encoder.size=tiny", "model.image_encoder.image_size=256"]


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_registered_with_schemas():
    reg = get_registry()
    for kind in ("image_encoder", "prompt_encoder", "mask_decoder"):
        comp = reg.get(kind, "sam")
        assert comp.plugin == "sam" and comp.schema is not None and comp.description


def test_plugin_modules_do_not_import_torch():
    code = ("import sys, samfx_plugins.sam.plugin, samfx_plugins.samus.plugin; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("size", ["vit_b", "vit_l", "vit_h"])
def test_parameter_names_and_shapes_are_sams(size):
    with torch.device("meta"):
        ours = SamImageEncoder(size, 1024)
        official = sam_model_registry[size]().image_encoder
    assert _shapes(ours) == _shapes(official)
    assert isinstance(ours, type(official))  # a subclass of segment_anything's ImageEncoderViT


def test_tiny_matches_reference_and_embedding_geometry():
    enc = SamImageEncoder("tiny", 256)
    assert _shapes(enc) == _shapes(reference_sam("tiny", 256).image_encoder)
    assert (enc.image_size, enc.embed_dim, enc.embed_size, enc.encoder_dim) == (256, 256, (16, 16), 96)
    assert enc(torch.rand(1, 3, 256, 256)).embedding.shape == (1, 256, 16, 16)


def test_same_embedding_as_segment_anything_with_pixel_norm():
    torch.manual_seed(0)
    ref = reference_sam("tiny", 256).eval()
    enc = SamImageEncoder("tiny", 256).eval()
    enc.load_state_dict(ref.image_encoder.state_dict())
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        expected = ref.image_encoder(ref.preprocess(x * 255))
        assert (enc(x).embedding - expected).abs().max().item() <= 1e-4
        enc.pixel_norm = False
        assert (enc(x).embedding - ref.image_encoder(x)).abs().max().item() <= 1e-4


def test_default_trainable_is_everything_and_sites():
    enc = SamImageEncoder("tiny", 256)
    assert enc.default_trainable() == [n for n, _ in enc.named_parameters()]
    sites = enc.sites()
    assert set(sites) == {f"blocks.{i}{s}" for i in range(4) for s in ("", ".mlp", ".attn.qkv", ".attn.proj")}
    assert sites["blocks.0.attn.qkv"].layout == "linear" and sites["blocks.0.attn.qkv"].spatial == (8, 8)
    assert sites["blocks.1.attn.qkv"].spatial == (16, 16)  # global block
    assert (sites["blocks.2.attn.qkv"].in_dim, sites["blocks.2.attn.qkv"].out_dim) == (96, 288)
    assert sites["blocks.3.mlp"].layout == sites["blocks.3"].layout == "bhwc"
    seen = []
    sites["blocks.2.mlp"].module.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    enc(torch.rand(1, 3, 256, 256))
    assert seen == [(1, 16, 16, 96)]


def test_bad_config_and_bad_input_are_one_line_errors():
    with pytest.raises(RecipeError, match=r"unknown size 'vit_x'.*sizes: vit_b, vit_l, vit_h, tiny"):
        SamImageEncoder("vit_x")
    with pytest.raises(RecipeError, match="image_size must be a positive multiple of 16.*got 1000"):
        SamImageEncoder("tiny", 1000)
    with pytest.raises(SamfxError, match=r"expected images \(B,3,256,256\), got \(1, 3, 128, 128\)"):
        SamImageEncoder("tiny", 256)(torch.rand(1, 3, 128, 128))


def _decoder_parts():
    torch.manual_seed(0)
    ctx = BuildContext(image_size=256, embed_dim=256, embed_size=(16, 16))
    return build_prompt_encoder(SamPromptEncoderConfig(), ctx), build_mask_decoder(SamMaskDecoderConfig(), ctx)


def test_mask_decoder_batched_one_prompt_set_per_query():
    pe, dec = _decoder_parts()
    b = 3
    emb = torch.randn(b, 256, 16, 16)
    points = torch.rand(b, 2, 2) * 256
    labels = torch.tensor([[1, 0], [1, 1], [0, 1]])
    sparse, dense = pe.encode(b, points=(points, labels))
    out = dec(DecoderInput(ImageFeatures(emb), pe.get_dense_pe(), sparse, dense))
    assert out.low_res.shape == (b, 1, 64, 64) and out.iou.shape == (b, 1) and out.mask_tokens.shape == (b, 1, 256)
    multi = dec(DecoderInput(ImageFeatures(emb), pe.get_dense_pe(), sparse, dense, multimask=True))
    assert multi.low_res.shape == (b, 3, 64, 64) and multi.iou.shape == (b, 3)
    for i in range(b):  # each image alone, through segment-anything's own single- and multi-mask paths
        for multimask, mine in ((False, out), (True, multi)):
            ref_low, ref_iou = super(type(dec), dec).forward(emb[i:i + 1], pe.get_dense_pe(), sparse[i:i + 1],
                                                             dense[i:i + 1], multimask_output=multimask)
            assert (mine.low_res[i] - ref_low[0]).abs().max().item() <= 1e-4
            assert (mine.iou[i] - ref_iou[0]).abs().max().item() <= 1e-5
    with pytest.raises(SamfxError, match="3 images x 1 queries each != 2 sparse"):
        dec(DecoderInput(ImageFeatures(emb), pe.get_dense_pe(), sparse[:2], dense))


def test_queries_share_their_image_features_without_copies():
    """K queries per image (DecoderInput.queries_per_image) decode exactly as the features repeated K times."""
    pe, dec = _decoder_parts()
    emb = torch.randn(2, 256, 16, 16)
    sparse, dense = pe.encode(6, points=(torch.rand(6, 1, 2) * 256, torch.ones(6, 1, dtype=torch.int)))
    shared = dec(DecoderInput(ImageFeatures(emb), pe.get_dense_pe(), sparse, dense, queries_per_image=3))
    copied = dec(DecoderInput(ImageFeatures(emb.repeat_interleave(3, 0)), pe.get_dense_pe(), sparse, dense))
    assert torch.equal(shared.low_res, copied.low_res) and torch.equal(shared.iou, copied.iou)


def test_output_tokens():
    _, dec = _decoder_parts()
    tokens = dec.output_tokens()
    assert tokens.shape == (5, 256)
    assert torch.equal(tokens[0], dec.iou_token.weight[0]) and torch.equal(tokens[1:], dec.mask_tokens.weight)


def test_recipe_builds_and_runs():
    recipe = load_recipe("recipes/sam_vit_b.yaml", TINY)
    model = build_model(recipe)
    images = torch.rand(2, 3, 256, 256)
    targets = torch.zeros(2, 1, 256, 256)
    targets[:, :, 64:192, 64:192] = 1
    out = model(images, targets=targets)
    assert out.low_res.shape == (2, 1, 64, 64) and out.logits.shape == (2, 1, 256, 256)
    assert out.iou.shape == (2, 1)
    enc = model.image_encoder
    assert isinstance(enc, SamImageEncoder) and (enc.size, enc.image_size, enc.pixel_norm) == ("tiny", 256, True)


def test_recipes_validate_against_the_schemas():
    reg = get_registry()
    sam = load_recipe("recipes/sam_vit_b.yaml", [], reg).config["model"]
    assert sam["image_encoder"] == {"name": "sam/sam", "size": "vit_b", "image_size": 1024, "fast_attention": True,
                                    "pixel_norm": True, "out_dim": 256}
    assert sam["mask_decoder"] == {"name": "sam/sam", "transformer_depth": 2, "mlp_dim": 2048, "num_heads": 8}
    samus = load_recipe("recipes/samus.yaml", [], reg).config
    assert samus["model"]["image_encoder"] == {"name": "samus/samus", "size": "vit_b", "image_size": 256,
                                               "fast_attention": True, "pixel_norm": False, "out_dim": 256}
    stage = samus["train"]["stages"][0]
    assert stage["trainable"] == ["image_encoder:default"] and stage["loss"]["name"] == "losses/dice_bce"
    assert (stage["optimizer"]["name"], stage["optimizer"]["lr"], samus["data"]["batch_size"]) == ("adam", 5e-4, 8)
    with pytest.raises(RecipeError, match=r"model\.image_encoder\.fast_atention: unknown key, did you mean "
                                          r"'fast_attention'\?"):
        load_recipe("recipes/samus.yaml", ["model.image_encoder.fast_atention=false"], reg)
