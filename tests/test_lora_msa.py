"""LoRA (SAMed) and MSA adapters: math on plain modules, then attached to SAM's tiny ViT by a recipe."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from samfx.contracts.errors import RecipeError
from samfx.contracts.interfaces import BuildContext, Site
from samfx_plugins.lora.config import LoRAConfig
from samfx_plugins.lora.module import build_lora
from samfx_plugins.msa_adapter.config import MSAAdapterConfig
from samfx_plugins.msa_adapter.module import build_msa_adapter

torch.set_num_threads(1)
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
CTX = BuildContext()


def qkv_site(dim=8):
    return Site("blocks.0.attn.qkv", nn.Linear(dim, 3 * dim), "linear", dim, 3 * dim)


def test_lora_starts_as_identity_and_adds_scaled_low_rank_update():
    site = qkv_site()
    lora = build_lora(LoRAConfig(rank=2, alpha=4.0, targets="qv"), CTX, site)
    x = torch.randn(2, 3, 3, 8)
    y = site.module(x)
    torch.testing.assert_close(lora(x, y), y)             # B = 0 at init
    assert all(torch.count_nonzero(b.weight) == 0 for b in lora.b)
    assert [a.weight.shape for a in lora.a] == [(2, 8), (2, 8)]
    with torch.no_grad():
        for b in lora.b:
            b.weight.normal_()
    out = lora(x, y)
    dq = 2.0 * lora.b[0](lora.a[0](x))                   # scale = alpha / rank = 2
    dv = 2.0 * lora.b[1](lora.a[1](x))
    torch.testing.assert_close(out[..., :8], y[..., :8] + dq)
    torch.testing.assert_close(out[..., 8:16], y[..., 8:16])   # k untouched
    torch.testing.assert_close(out[..., 16:], y[..., 16:] + dv)
    full = build_lora(LoRAConfig(rank=3, targets="all"), CTX, site)
    assert full.b[0].weight.shape == (24, 3) and full.scale == 1.0


def test_lora_errors():
    with pytest.raises(RecipeError, match="adapter 'lora' at site 'blocks.0': needs a 'linear' site"):
        build_lora(LoRAConfig(), CTX, Site("blocks.0", nn.Identity(), "bhwc", 8, 8))
    with pytest.raises(RecipeError, match="targets 'qx' must be distinct letters of 'qkv'"):
        build_lora(LoRAConfig(targets="qx"), CTX, qkv_site())
    with pytest.raises(RecipeError, match="rank must be >= 1, got 0"):
        build_lora(LoRAConfig(rank=0), CTX, qkv_site())
    odd = Site("head", nn.Linear(8, 10), "linear", 8, 10)
    with pytest.raises(RecipeError, match="need a fused qkv output .* got width 10; use targets: all"):
        build_lora(LoRAConfig(), CTX, odd)


def test_msa_adapter_modes():
    x, y = torch.randn(2, 3, 3, 8), torch.randn(2, 3, 3, 8)
    par = build_msa_adapter(MSAAdapterConfig(), CTX, Site("blocks.1.mlp", nn.Identity(), "bhwc", 8, 8))
    ser = build_msa_adapter(MSAAdapterConfig(), CTX, Site("blocks.1", nn.Identity(), "bhwc", 8, 8))
    assert par.parallel and par.scale == 0.5 and not ser.parallel and ser.scale == 1.0
    assert par.down.weight.shape == (2, 8)                  # ratio 0.25
    torch.testing.assert_close(par(x, y), y)                # zero-initialised up projection
    with torch.no_grad():
        par.up.weight.normal_()
        ser.up.weight.normal_()
    torch.testing.assert_close(par(x, y), y + 0.5 * par.up(torch.relu(par.down(x))))
    torch.testing.assert_close(ser(x, y), y + ser.up(torch.relu(ser.down(y))))
    with pytest.raises(RecipeError, match="needs ViT tokens \\(layout 'bhwc'"):
        build_msa_adapter(MSAAdapterConfig(), CTX, qkv_site())
    with pytest.raises(RecipeError, match="mode 'paralel' is unknown; use one of: auto, parallel, serial"):
        build_msa_adapter(MSAAdapterConfig(mode="paralel"), CTX, Site("b", nn.Identity(), "bhwc", 8, 8))


@pytest.mark.parametrize("recipe,sites", [
    ("samed.yaml", ["lora-blocks-0-attn-qkv", "lora-blocks-1-attn-qkv", "lora-blocks-2-attn-qkv",
                    "lora-blocks-3-attn-qkv"]),
    ("msa.yaml", [f"msa_adapter-blocks-{i}-{site}" for site in ("mlp", "attn-proj") for i in range(4)]),
])
def test_adapter_recipes_attach_to_every_block(recipe, sites):
    from samfx.config.recipe import load_recipe
    from samfx.contracts.plugins import get_registry
    from samfx.model.build import build_model
    from samfx.model.trainable import apply_stage

    reg = get_registry()
    if ("image_encoder", "sam/sam") not in reg.components:
        pytest.skip("sam plugin not available")
    rec = load_recipe(RECIPES / recipe, ["model.image_encoder.size=tiny", "model.image_encoder.image_size=64"],
                      reg)
    torch.manual_seed(0)
    model = build_model(rec, reg)
    assert sorted(model.adapters) == sorted(sites)            # tiny ViT: 4 blocks
    chosen = apply_stage(model, rec, 0)
    assert {n.split(".")[0] for n in chosen} == {"adapters", "mask_decoder"}
    images = torch.rand(2, 3, 64, 64)
    targets = torch.zeros(2, 1, 64, 64)
    targets[:, :, 16:48, 16:48] = 1
    model.eval()                                               # deterministic simulated prompts
    base = model(images, targets=targets).logits
    plain = model.image_encoder(images).embedding
    with torch.no_grad():                                      # non-zero adapters change the output:
        for ad in model.adapters.values():                     # the forward hooks are live
            for name, p in ad.named_parameters():
                if name.startswith(("b.", "up.")):
                    p.normal_(0, 0.1)
    assert not torch.allclose(model.image_encoder(images).embedding, plain)
    out = model(images, targets=targets).logits
    assert not torch.allclose(out, base)
    model.train()
    torch.nn.functional.binary_cross_entropy_with_logits(model(images, targets=targets).logits, targets).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad <= chosen                                 # frozen SAM gets none
    assert {n for n in chosen if n.startswith("adapters.")} <= with_grad
