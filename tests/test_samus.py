"""The `samus` encoder: structure and parameter counts, forward shapes, trainable set, sites,
SAM -> SAMUS conversion and the SAMUS authors' key layout (round trip)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from segment_anything import sam_model_registry

from samfx.config.recipe import load_recipe
from samfx.contracts.errors import RecipeError
from samfx.model.build import build_model
from samfx.model.trainable import apply_stage
from samfx.model.weights import load_weights
from samfx_plugins.sam.encoder import resize_rel_pos
from samfx_plugins.sam.reference import reference_sam
from samfx_plugins.samus.encoder import SamusImageEncoder
from samfx_plugins.samus.keys import export_authors_state_dict, from_authors, to_authors

TINY = ["model.image_encoder.size=tiny"]


def _build(*overrides: str):
    recipe = load_recipe("recipes/samus.yaml", [*TINY, *overrides])
    return recipe, build_model(recipe)


def _targets(b: int = 2) -> torch.Tensor:
    t = torch.zeros(b, 1, 256, 256)
    t[:, :, 80:200, 60:180] = 1
    return t


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_vit_b_parameter_breakdown():
    """The SAMUS paper's count: 39,653,120 trainable of 133,323,568 (encoder here; + SAM's 4,064,560 decoder side)."""
    with torch.device("meta"):
        enc = SamusImageEncoder("vit_b")
    groups = {"cnn": r"cnn\.", "pos_adapter": r"pos_adapter\.", "input_adapter": r"input_adapter\.",
              "cba": r"blocks\.\d+\.cba\.", "refine": r"blocks\.\d+\.refine\.",
              "mlp_adapter": r"blocks\.\d+\.mlp_adapter\.", "global_rel_pos": r"blocks\.(2|5|8|11)\.attn\.rel_pos"}
    counts = {g: sum(p.numel() for n, p in enc.named_parameters() if re.match(rx, n)) for g, rx in groups.items()}
    assert counts == {"cnn": 2_142_272, "pos_adapter": 5_309_952, "input_adapter": 295_872, "cba": 9_449_472,
                      "refine": 21_239_808, "mlp_adapter": 1_183_488, "global_rel_pos": 32_256}
    trainable = set(enc.default_trainable())
    assert sum(p.numel() for n, p in enc.named_parameters() if n in trainable) == 39_653_120 == sum(counts.values())
    assert sum(p.numel() for p in enc.parameters()) == 129_259_008
    assert enc.blocks[2].attn.rel_pos_h.shape == (63, 64) and enc.blocks[0].attn.rel_pos_h.shape == (27, 64)
    assert enc.pos_embed.shape == (1, 64, 64, 768)
    assert enc.patch_embed.proj.kernel_size == (16, 16) and enc.patch_embed.proj.stride == (8, 8)


def test_show_json_counts_whole_vit_b_model():
    """The done-when numbers, through the CLI: whole model incl. SAM's prompt encoder and decoder."""
    samfx = Path(sys.executable).with_name("samfx")
    out = subprocess.run([str(samfx), "show", "recipes/samus.yaml", "--json"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    params = json.loads(out.stdout)["params"]
    assert (params["total"], params["trainable"]) == (133_323_568, 39_653_120)
    assert params["by_component"]["image_encoder"] == {"total": 129_259_008, "trainable": 39_653_120}
    assert params["by_component"]["prompt_encoder"] == {"total": 6_220, "trainable": 0}
    assert params["by_component"]["mask_decoder"] == {"total": 4_058_340, "trainable": 0}


def test_forward_shapes_via_build_model():
    _, model = _build("model.prompt.name=none")   # no targets needed
    out = model(torch.rand(2, 3, 256, 256))
    assert out.low_res.shape == (2, 1, 128, 128) and out.logits.shape == (2, 1, 256, 256)
    assert model.image_encoder.embed_size == (32, 32)


def test_exactly_the_trainable_set_gets_gradients():
    recipe, model = _build()
    chosen = apply_stage(model, recipe, 0)
    assert chosen == {f"image_encoder.{n}" for n in model.image_encoder.default_trainable()}
    out = model(torch.rand(2, 3, 256, 256), targets=_targets())
    F.binary_cross_entropy_with_logits(out.logits, _targets()).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == chosen
    no_signal = [n for n, p in model.named_parameters() if n in chosen and not p.grad.abs().sum() > 0]
    assert no_signal == [], no_signal


def test_default_trainable_and_new_prefixes_tiny():
    enc = SamusImageEncoder("tiny")
    assert enc.new_parameter_prefixes() == [
        "cnn.", "pos_adapter.", "input_adapter.", "blocks.1.cba.", "blocks.1.refine.", "blocks.1.mlp_adapter.",
        "blocks.3.cba.", "blocks.3.refine.", "blocks.3.mlp_adapter."]
    rel = {n for n in enc.default_trainable() if "rel_pos" in n}
    assert rel == {f"blocks.{i}.attn.rel_pos_{a}" for i in (1, 3) for a in "hw"}


def test_sites():
    enc = SamusImageEncoder("tiny")
    sites = enc.sites()
    cnn = {k: (s.layout, s.in_dim, s.out_dim, s.spatial) for k, s in sites.items() if k.startswith("cnn.")}
    assert cnn == {"cnn.stage0": ("bchw", 3, 16, (256, 256)), "cnn.stage1": ("bchw", 16, 32, (128, 128)),
                   "cnn.stage2": ("bchw", 32, 64, (64, 64)), "cnn.stage3": ("bchw", 64, 96, (32, 32)),
                   "cnn.out": ("bchw", 96, 96, (32, 32))}
    assert {"blocks.0.attn.qkv", "blocks.1.mlp", "blocks.3"} <= set(sites)
    assert sites["blocks.0.attn.qkv"].spatial == (8, 8) and sites["blocks.1.attn.qkv"].spatial == (32, 32)
    enc.eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        base = enc(x).embedding
        seen = []
        h1 = sites["blocks.1"].module.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
        h2 = sites["cnn.out"].module.register_forward_hook(lambda m, i, o: o * 0)   # the branch output is used
        changed = enc(x).embedding
        h1.remove(), h2.remove()
        assert seen == [(1, 32, 32, 96)]
        assert not torch.allclose(base, changed)
        assert torch.equal(enc(x).embedding, base)


def test_position_adapter_cache_follows_weights():
    enc = SamusImageEncoder("tiny").eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        a, b = enc(x).embedding, enc(x).embedding
        assert torch.equal(a, b) and enc._pos_cache is not None
        enc.pos_adapter[0].conv.weight.mul_(2.0)          # an in-place update, as an optimizer step
        c = enc(x).embedding
    assert not torch.allclose(a, c)
    assert torch.allclose(c, enc(x).embedding.detach(), atol=1e-5)   # with grad on: recomputed, same values


def test_bad_image_size():
    with pytest.raises(RecipeError, match="image_size must be one of 128, 256, 512.*got 300"):
        SamusImageEncoder("tiny", 300)


def test_from_sam_tiny(tmp_path):
    """An official-layout SAM state dict (segment-anything's Sam at the tiny preset, 1024²)."""
    ref = reference_sam("tiny")
    _randomize(ref)
    path = tmp_path / "sam_tiny.pth"
    torch.save(ref.state_dict(), path)
    _, model = _build()
    report = load_weights(model, path)
    enc, sam_enc = model.image_encoder, ref.image_encoder
    new = tuple(f"image_encoder.{p}" for p in enc.new_parameter_prefixes())
    assert set(report["missing"]) == {k for k in model.state_dict() if k.startswith(new)}
    for i in (1, 3):   # global blocks: 127 -> 63
        assert torch.equal(enc.blocks[i].attn.rel_pos_h, resize_rel_pos(sam_enc.blocks[i].attn.rel_pos_h, 63))
        assert enc.blocks[i].attn.rel_pos_w.shape == (63, 32)
    for i in (0, 2):   # window blocks: unchanged
        assert torch.equal(enc.blocks[i].attn.rel_pos_w, sam_enc.blocks[i].attn.rel_pos_w)
    for name in ("patch_embed.proj.weight", "pos_embed", "neck.0.weight", "blocks.2.mlp.lin1.weight"):
        assert torch.equal(enc.state_dict()[name], sam_enc.state_dict()[name]), name
    assert torch.equal(model.mask_decoder.iou_token.weight, ref.mask_decoder.iou_token.weight)


def test_rel_pos_resized_by_block_index_for_vit_l():
    """vit_l's global blocks are 5, 11, 17, 23: picking keys by substring ('2','5','8','11') would
    resize window blocks 2, 8, 12, 15... and miss 17 and 23."""
    with torch.device("meta"):
        official = sam_model_registry["vit_l"]().image_encoder.state_dict()
        enc = SamusImageEncoder("vit_l")
    converted = enc.convert_state_dict(official)
    lengths = {i: converted[f"blocks.{i}.attn.rel_pos_h"].shape[0] for i in range(24)}
    assert lengths == {i: 63 if i in (5, 11, 17, 23) else 27 for i in range(24)}


def test_authors_key_map_is_invertible_and_named_as_theirs():
    enc = SamusImageEncoder("tiny")
    state = enc.state_dict()
    authors = to_authors(state)
    assert from_authors(authors).keys() == state.keys()
    expected = {"cnn_embed.inc.conv.0.weight": (16, 3, 3, 3), "cnn_embed.inc.conv.1.bias": (16,),
                "cnn_embed.downs.2.maxpool_conv.1.weight": (96, 64, 3, 3),
                "post_pos_embed.downs.0.maxpool_conv.1.weight": (96, 96, 3, 3),
                "post_pos_embed.downs.0.maxpool_conv.2.weight": (96,),
                "input_Adapter.D_fc1.weight": (24, 96), "input_Adapter.D_fc2.bias": (96,),
                "blocks.3.MLP_Adapter.D_fc2.weight": (96, 24), "blocks.1.Space_Adapter.q.weight": (96, 96),
                "blocks.1.Space_Adapter.proj.bias": (96,), "blocks.3.refine_Adapter.conv.0.weight": (96, 96, 3, 3),
                "blocks.3.refine_Adapter.conv.1.weight": (96,), "patch_embed.proj.weight": (96, 3, 16, 16),
                "blocks.0.attn.rel_pos_h": (15, 32), "neck.2.weight": (256, 256, 3, 3)}
    assert {k: tuple(authors[k].shape) for k in expected} == expected
    samfx_only = re.compile(r"(^cnn\.|^pos_adapter\.|^input_adapter\.|\.cba\.|\.refine\.|\.mlp_adapter\.)")
    assert not [k for k in authors if samfx_only.search(k)]


def test_authors_layout_round_trip_gives_identical_outputs(tmp_path):
    _, model = _build("model.prompt.name=none")
    _randomize(model, seed=3)
    exported = export_authors_state_dict(model.state_dict())
    assert "image_encoder.cnn_embed.inc.conv.0.weight" in exported and "mask_decoder.iou_token.weight" in exported
    path = tmp_path / "samus_authors.pth"
    torch.save(exported, path)
    _, again = _build("model.prompt.name=none", f"model.checkpoint={path}")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    model.eval(), again.eval()
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(model(x).logits, again(x).logits)


@pytest.mark.parametrize("encoder", ["sam", "samus"])
def test_activation_checkpointing_gives_the_same_gradients(encoder, monkeypatch):
    import samfx_plugins.sam.encoder as sam_encoder
    from samfx_plugins.sam.encoder import SamImageEncoder

    calls = []
    real = sam_encoder.checkpoint
    monkeypatch.setattr(sam_encoder, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))

    torch.manual_seed(0)
    enc = SamusImageEncoder("tiny") if encoder == "samus" else SamImageEncoder("tiny", 256)
    x = torch.rand(1, 3, 256, 256)
    grads = []
    for on in (False, True):
        enc.zero_grad()
        enc.set_activation_checkpointing(on)
        calls.clear()
        enc(x).embedding.square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in enc.parameters() if p.grad is not None]))
        assert len(calls) == (len(enc.blocks) + 2 * (encoder == "samus") if on else 0)  # + refine convs
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_out_dim_sets_the_prompt_and_decoder_width():
    """A narrower neck (CPU demos) flows through the prompt encoder, decoder and APG widths."""
    from samfx.config.recipe import load_recipe
    from samfx.model.build import build_model

    recipe = load_recipe("recipes/autosamus.yaml", ["model.image_encoder.size=tiny",
                                                    "model.image_encoder.image_size=128",
                                                    "model.image_encoder.out_dim=64"])
    model = build_model(recipe)
    assert model.image_encoder.embed_dim == 64 and model.mask_decoder.transformer_dim == 64
    images = torch.rand(2, 3, 128, 128)
    out = model(images, targets=torch.ones(2, 1, 128, 128))
    assert out.logits.shape == (2, 1, 128, 128) and out.low_res.shape == (2, 1, 64, 64)
