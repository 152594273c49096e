"""SAM checkpoints through the recipe's `model.checkpoint:` into the `sam` and `samus` recipes, and
one clear error for each kind of bad file."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import ImageEncoderViT

from samfx.config.recipe import load_recipe
from samfx.contracts.errors import CheckpointError
from samfx.model.build import build_model
from samfx.model.weights import load_weights
from samfx_plugins.sam.config import SIZES
from samfx_plugins.sam.encoder import resize_pos_embed, resize_rel_pos, vit_kwargs
from samfx_plugins.sam.reference import reference_sam

ROOT = Path(__file__).resolve().parents[1]
SAM_TINY = ["model.image_encoder.size=tiny", "model.image_encoder.image_size=256", "model.prompt.name=none"]
SAMUS_TINY = ["model.image_encoder.size=tiny", "model.prompt.name=none"]


def _model(recipe: str, overrides: list[str]):
    return build_model(load_recipe(ROOT / "recipes" / recipe, overrides))


@pytest.fixture(scope="module")
def sam_tiny_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """segment-anything's own Sam at the tiny preset and 1024² (official layout), random weights."""
    torch.manual_seed(0)
    sam = reference_sam("tiny")
    with torch.no_grad():
        for p in sam.parameters():
            p.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("ckpt") / "sam_tiny.pth"
    torch.save(sam.state_dict(), path)
    return path, sam.state_dict()


def test_official_layout_loads_unchanged_into_sam(sam_tiny_file):
    path, state = sam_tiny_file
    model = _model("sam_vit_b.yaml", ["model.image_encoder.size=tiny", "model.prompt.name=none"])  # 1024²
    report = load_weights(model, path)
    assert report["missing"] == [] and report["loaded"] == sorted(state)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())


def test_sam_at_256_resizes_pos_embed_and_rel_pos_per_block(sam_tiny_file):
    path, state = sam_tiny_file
    model = _model("sam_vit_b.yaml", [*SAM_TINY, f"model.checkpoint={path}"])
    enc = model.image_encoder
    assert torch.equal(enc.pos_embed, resize_pos_embed(state["image_encoder.pos_embed"], (16, 16)))
    for i in (1, 3):   # global: 127 -> 31
        assert torch.equal(enc.blocks[i].attn.rel_pos_h,
                           resize_rel_pos(state[f"image_encoder.blocks.{i}.attn.rel_pos_h"], 31))
    for i in (0, 2):   # window: unchanged
        assert torch.equal(enc.blocks[i].attn.rel_pos_w, state[f"image_encoder.blocks.{i}.attn.rel_pos_w"])
    out = model(torch.rand(1, 3, 256, 256))
    assert out.low_res.shape == (1, 1, 64, 64)


def test_into_samus_only_the_documented_keys_are_missing(sam_tiny_file):
    path, _ = sam_tiny_file
    model = _model("samus.yaml", SAMUS_TINY)
    missing = load_weights(model, path)["missing"]
    added = tuple(f"image_encoder.{p}" for p in model.image_encoder.new_parameter_prefixes())
    assert missing and all(k.startswith(added) for k in missing)
    assert {k for k in model.state_dict() if k.startswith(added)} == set(missing)
    # docs/checkpoints.md lists them, with N for the global blocks' indices
    doc = (ROOT / "docs" / "checkpoints.md").read_text()
    generic = {re.sub(r"blocks\.\d+\.", "blocks.N.", k.rsplit(".", 1)[0].rsplit(".", 1)[0]) for k in missing}
    for prefix in ("cnn", "pos_adapter", "input_adapter", "blocks.N.cba", "blocks.N.refine", "blocks.N.mlp_adapter"):
        assert f"`image_encoder.{prefix}.*`" in doc, prefix
        assert any(g.startswith(f"image_encoder.{prefix}") for g in generic)


def test_checkpoint_key_goes_through_build_model(sam_tiny_file):
    path, state = sam_tiny_file
    model = _model("samus.yaml", [*SAMUS_TINY, f"model.checkpoint={path}"])
    assert torch.equal(model.image_encoder.patch_embed.proj.weight, state["image_encoder.patch_embed.proj.weight"])


# -- bad files ---------------------------------------------------------------------------------
def _error(tmp_path: Path, obj=None, raw: bytes | None = None, name: str = "bad.pth") -> str:
    path = tmp_path / name
    if raw is not None:
        path.write_bytes(raw)
    elif obj is not None:
        torch.save(obj, path)
    model = _model("samus.yaml", SAMUS_TINY)
    with pytest.raises(CheckpointError) as info:
        load_weights(model, path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_missing_file(tmp_path):
    assert "checkpoint not found" in _error(tmp_path, name="nope.pth")


def test_not_a_state_dict(tmp_path):
    assert "expected a state dict (mapping of names to tensors), got list" in _error(tmp_path, [1, 2, 3])
    assert "not a state dict: 'a' is a str, not a tensor" in _error(tmp_path, {"a": "x"})


def test_python_objects_are_refused(tmp_path):
    msg = _error(tmp_path, {"args": argparse.Namespace(lr=1.0)})
    assert "holds Python objects that a weights-only load refuses" in msg


def test_truncated_file(tmp_path, sam_tiny_file):
    data = sam_tiny_file[0].read_bytes()
    msg = _error(tmp_path, raw=data[: len(data) // 2])
    assert "cannot read checkpoint" in msg and "truncated" in msg


def test_shape_mismatch_names_keys_and_shapes(tmp_path, sam_tiny_file):
    state = dict(sam_tiny_file[1])
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 128)
    msg = _error(tmp_path, state)
    assert "1 shape mismatches: mask_decoder.iou_token.weight file(1,128) vs model(1,256)" in msg


def test_wrong_model_size(tmp_path, sam_tiny_file):
    sam = reference_sam("tiny")
    wider = {**vit_kwargs(SIZES["tiny"]), "embed_dim": 192, "num_heads": 6}
    sam.image_encoder = ImageEncoderViT(img_size=1024, patch_size=16, **wider)
    msg = _error(tmp_path, sam.state_dict())
    assert re.search(r"\d+ shape mismatches: image_encoder\.pos_embed file\(1,64,64,192\) vs model\(1,64,64,96\), "
                     r"image_encoder\.patch_embed\.proj\.weight file\(192,3,16,16\) vs model\(96,3,16,16\)", msg), msg
    assert msg.endswith("wrong model size?")
    deeper = {**vit_kwargs(SIZES["tiny"]), "depth": 6}
    sam.image_encoder = ImageEncoderViT(img_size=1024, patch_size=16, **deeper)
    msg = _error(tmp_path, sam.state_dict())
    assert "keys the model does not have, first: image_encoder.blocks.4." in msg and "wrong model size" in msg


@pytest.mark.slow
def test_real_vit_b_file_loads_into_both_recipes(tmp_path):
    """A state dict saved from segment_anything.sam_model_registry['vit_b']() (random init)."""
    sam = sam_model_registry["vit_b"]()
    path = tmp_path / "sam_vit_b.pth"
    torch.save(sam.state_dict(), path)
    model = _model("sam_vit_b.yaml", ["model.prompt.name=none"])
    assert load_weights(model, path)["missing"] == []
    assert torch.equal(model.image_encoder.blocks[11].attn.rel_pos_h, sam.image_encoder.blocks[11].attn.rel_pos_h)
    del model
    samus = _model("samus.yaml", ["model.prompt.name=none"])
    missing = load_weights(samus, path)["missing"]
    added = tuple(f"image_encoder.{p}" for p in samus.image_encoder.new_parameter_prefixes())
    assert all(k.startswith(added) for k in missing)
    assert samus.image_encoder.blocks[11].attn.rel_pos_h.shape == (63, 64)
    assert torch.equal(samus.image_encoder.blocks[11].attn.rel_pos_h,
                       resize_rel_pos(sam.image_encoder.blocks[11].attn.rel_pos_h, 63))
    with torch.no_grad():
        out = samus.eval()(torch.rand(1, 3, 256, 256))
    assert out.low_res.shape == (1, 1, 128, 128) and out.logits.shape == (1, 1, 256, 256)
