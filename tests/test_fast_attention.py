"""Fast attention (SDPA + rel-pos bias) matches segment-anything's Attention, forward and backward."""
from __future__ import annotations

import copy

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention, get_rel_pos

from samfx_plugins.sam.attention import FastAttention, rel_pos_table, set_fast_attention
from samfx_plugins.sam.encoder import SamImageEncoder
from samfx_plugins.samus.encoder import SamusImageEncoder

TOL = 1e-4


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    """Random values everywhere (rel-pos tables start at zero in SAM, which would hide errors)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.mark.parametrize("grid,input_size", [((8, 8), (8, 8)),       # window block: table 2*8-1
                                             ((16, 16), (16, 16)),    # global block
                                             ((16, 16), (32, 32))])   # table of another length: interpolated
def test_fast_attention_matches_segment_anything(grid, input_size):
    ref = Attention(96, num_heads=3, use_rel_pos=True, input_size=input_size)
    _randomize(ref)
    fast = copy.deepcopy(ref)
    assert set_fast_attention(fast, True) == 1 and type(fast) is FastAttention
    x = torch.randn(2, *grid, 96, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y_ref, y_fast = ref(x), fast(x2)
    assert y_fast.shape == y_ref.shape == (2, *grid, 96)
    assert (y_ref - y_fast).abs().max().item() <= TOL
    y_ref.square().sum().backward()
    y_fast.square().sum().backward()
    assert _rel_err(x2.grad, x.grad) <= 1e-5
    for (name, p_ref), (_, p_fast) in zip(ref.named_parameters(), fast.named_parameters()):
        assert _rel_err(p_fast.grad, p_ref.grad) <= 1e-5, name


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max abs difference relative to the largest magnitude (gradients here reach ~1e2)."""
    return ((a - b).abs().max() / b.abs().max()).item()


def test_same_parameters_and_switch_back():
    ref = Attention(96, num_heads=3, use_rel_pos=True, input_size=(8, 8))
    fast = copy.deepcopy(ref)
    set_fast_attention(fast)
    assert [n for n, _ in fast.named_parameters()] == ["rel_pos_h", "rel_pos_w", "qkv.weight", "qkv.bias",
                                                       "proj.weight", "proj.bias"]
    set_fast_attention(fast, False)
    assert type(fast) is Attention


def test_rel_pos_table_matches_get_rel_pos():
    table = torch.randn(31, 8)
    assert torch.equal(rel_pos_table(16, 16, table), get_rel_pos(16, 16, table))
    assert torch.equal(rel_pos_table(8, 8, table), get_rel_pos(8, 8, table))   # interpolation path


@pytest.mark.parametrize("encoder", ["sam", "samus"])
def test_whole_encoder_fast_equals_reference(encoder):
    torch.manual_seed(0)
    enc = SamImageEncoder("tiny", 256) if encoder == "sam" else SamusImageEncoder("tiny", 256)
    n_attn = sum(isinstance(m, FastAttention) for m in enc.modules())
    assert n_attn == 4  # on by default, in window and global blocks
    _randomize(enc, seed=1)
    enc.eval()
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        fast = enc(x).embedding
        set_fast_attention(enc, False)
        ref = enc(x).embedding
    assert (fast - ref).abs().max().item() <= TOL


def test_schema_flag_turns_it_off():
    enc = SamImageEncoder("tiny", 256, fast_attention=False)
    assert not any(isinstance(m, FastAttention) for m in enc.modules())
    enc = SamusImageEncoder("tiny", 256, fast_attention=False)
    assert not any(isinstance(m, FastAttention) for m in enc.modules())
