"""The fast path (plugins/sam/fast.py, attention.py) against segment-anything's numerics: each swapped
module, the whole tiny SAMUS model (forward and gradients), bf16 dtypes into SDPA, the position
adapter cache, and torch.compile (no graph breaks in the forward with clicks; compiled == eager)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.image_encoder import Attention, Block
from segment_anything.modeling.prompt_encoder import PromptEncoder
from segment_anything.modeling.transformer import Attention as DecoderAttention

from samfx.config.recipe import load_recipe
from samfx.contracts.errors import SamfxError
from samfx.model.build import build_model
from samfx.model.trainable import apply_stage
from samfx_plugins.sam.attention import FastAttention, set_fast_attention
from samfx_plugins.sam.decoder import SamPromptEncoder
from samfx_plugins.sam.fast import FastBlock, FastDecoderAttention, FastLayerNorm2d, set_fast_path
from samfx_plugins.samus.encoder import SamusImageEncoder

TINY = ["model.image_encoder.size=tiny", "model.image_encoder.image_size=128"]
FAST_TYPES = (FastAttention, FastBlock, FastLayerNorm2d, FastDecoderAttention)


def _randomize(module: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> None:
    """Random values everywhere (SAM zero-initialises rel-pos tables, which would hide errors)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def _rel_err(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-12) -> float:
    """Max abs difference relative to b's largest magnitude (at least `floor`)."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(floor)).item()


def _check_grads(g_fast: dict[str, torch.Tensor], g_ref: dict[str, torch.Tensor], tol: float) -> None:
    """Per-parameter relative error; gradients that are zero in exact arithmetic (e.g. the key bias
    under softmax) are compared to the largest gradient of the module instead."""
    assert g_ref.keys() == g_fast.keys() and g_ref
    floor = 1e-2 * max(g.abs().max().item() for g in g_ref.values())
    for name in g_ref:
        assert _rel_err(g_fast[name], g_ref[name], floor) <= tol, name


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def _check_same(ref: torch.nn.Module, fast: torch.nn.Module, *inputs: torch.Tensor, tol: float = 1e-4) -> None:
    """Forward within tol; gradients of the inputs and of every parameter within tol (relative)."""
    xs_ref = [x.clone().requires_grad_(True) for x in inputs]
    xs_fast = [x.clone().requires_grad_(True) for x in inputs]
    y_ref, y_fast = ref(*xs_ref), fast(*xs_fast)
    y_ref, y_fast = (getattr(y, "embedding", y) for y in (y_ref, y_fast))   # encoders return ImageFeatures
    assert y_fast.shape == y_ref.shape
    assert _rel_err(y_fast, y_ref) <= tol
    y_ref.square().sum().backward()
    y_fast.square().sum().backward()
    for a, b in zip(xs_fast, xs_ref):
        assert _rel_err(a.grad, b.grad) <= tol
    _check_grads(_grads(getattr(fast, "_orig_mod", fast)), _grads(ref), tol)   # a compiled module: its own


@pytest.mark.parametrize("mode", ["bias", "fold"])
@pytest.mark.parametrize("grid,input_size", [((8, 8), (8, 8)), ((16, 16), (16, 16)), ((6, 10), (6, 10))])
def test_attention_modes_match_segment_anything(mode, grid, input_size):
    ref = Attention(96, num_heads=3, use_rel_pos=True, input_size=input_size)
    _randomize(ref)
    fast = copy.deepcopy(ref)
    assert set_fast_attention(fast, True, rel_pos_mode=mode) == 1 and fast.rel_pos_mode == mode
    _check_same(ref, fast, torch.randn(2, *grid, 96))


def test_rel_pos_mode_from_environment(monkeypatch):
    monkeypatch.setenv("SAMFX_REL_POS", "fold")
    enc = SamusImageEncoder("tiny", 128)
    assert {m.rel_pos_mode for m in enc.modules() if isinstance(m, FastAttention)} == {"fold"}
    monkeypatch.setenv("SAMFX_REL_POS", "flod")
    with pytest.raises(SamfxError, match=r"^SAMFX_REL_POS='flod': not one of auto, bias, fold; unset it"):
        SamusImageEncoder("tiny", 128)


@pytest.mark.parametrize("window,grid", [(5, (8, 8)), (4, (8, 8)), (3, (7, 5))])
def test_window_block_projects_before_partition(window, grid):
    """Padded windows (8 -> 10 with window 5) are filled with qkv(0), as segment-anything's zero padding."""
    ref = Block(48, 3, use_rel_pos=True, window_size=window, input_size=grid)
    _randomize(ref, scale=0.1)
    fast = copy.deepcopy(ref)
    set_fast_path(fast, True, rel_pos_mode="bias")
    assert type(fast) is FastBlock and type(fast.attn) is FastAttention
    _check_same(ref, fast, torch.randn(2, *grid, 48))
    # an adapter hooked on qkv (LoRA-like, no bias) sees the real tokens and the zero token alike
    lora = torch.nn.Linear(48, 144, bias=False)
    for blk in (ref, fast):
        blk.attn.qkv.register_forward_hook(lambda m, i, o: o + lora(i[0]))
    ref.zero_grad(), fast.zero_grad()
    _check_same(ref, fast, torch.randn(2, *grid, 48))


def test_layernorm2d_one_kernel_and_bf16():
    ref = LayerNorm2d(16)
    _randomize(ref)
    fast = copy.deepcopy(ref)
    assert set_fast_path(fast) == 1 and type(fast) is FastLayerNorm2d
    x = torch.randn(2, 16, 8, 8) * 3 + 1
    _check_same(ref, fast, x, tol=1e-5)
    _check_same(ref, fast, x.contiguous(memory_format=torch.channels_last), tol=1e-5)
    assert fast(x).is_contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fast(x.bfloat16())
    assert y.dtype == torch.bfloat16 and _rel_err(y.float(), ref(x)) <= 2e-2


def test_decoder_attention_by_sdpa():
    ref = DecoderAttention(64, num_heads=4, downsample_rate=2)
    _randomize(ref)
    fast = copy.deepcopy(ref)
    set_fast_path(fast)
    assert type(fast) is FastDecoderAttention
    _check_same(ref, fast, torch.randn(3, 7, 64), torch.randn(3, 50, 64), torch.randn(3, 50, 64))


@pytest.mark.parametrize("pad", [True, False])
def test_point_embedding_matches_segment_anything(pad):
    ours = SamPromptEncoder(32, (8, 8), 128)
    _randomize(ours)
    ref = PromptEncoder(embed_dim=32, image_embedding_size=(8, 8), input_image_size=(128, 128), mask_in_chans=16)
    ref.load_state_dict(ours.state_dict())
    points = torch.rand(4, 3, 2) * 128
    labels = torch.tensor([[1, 0, -1], [0, 0, 1], [-1, -1, 1], [1, 1, 1]])
    assert torch.equal(ours._embed_points(points, labels, pad), ref._embed_points(points, labels.float(), pad))


def _tiny_pair(recipe: str = "recipes/samus.yaml"):
    """The tiny SAMUS model on the fast path and on the reference path, with the same random weights."""
    fast_r = load_recipe(recipe, TINY)
    ref_r = load_recipe(recipe, [*TINY, "model.image_encoder.fast_attention=false"])
    torch.manual_seed(3)
    fast, ref = build_model(fast_r, load_checkpoint=False), build_model(ref_r, load_checkpoint=False)
    with torch.no_grad():   # default init, but SAM's zero-initialised rel-pos tables made random
        for name, p in fast.named_parameters():
            if "rel_pos" in name:
                p.normal_(0, 0.1)
    ref.load_state_dict(fast.state_dict())
    for model, r in ((fast, fast_r), (ref, ref_r)):
        apply_stage(model, r, 0)
    return fast, ref


def test_whole_tiny_samus_model_fast_equals_reference():
    fast, ref = _tiny_pair()
    kinds = {type(m) for m in fast.modules()}
    assert set(FAST_TYPES) <= kinds and not kinds & {Attention, Block, LayerNorm2d, DecoderAttention}
    assert not {type(m) for m in ref.modules()} & set(FAST_TYPES)
    assert [n for n, _ in fast.named_parameters()] == [n for n, _ in ref.named_parameters()]
    torch.manual_seed(0)
    images, labels = torch.rand(2, 3, 128, 128), torch.randint(0, 4, (2, 128, 128))
    outs = []
    for model in (ref, fast):
        model.eval()          # deterministic clicks (deepest pixel); gradients stay on
        targets, out = model.forward_classes(images, [1, 2, 3], labels)
        F.binary_cross_entropy_with_logits(out.logits, targets).backward()
        outs.append(out.logits)
    assert _rel_err(outs[1], outs[0]) <= 1e-4
    g_ref = _grads(ref)
    assert len(g_ref) > 20
    _check_grads(_grads(fast), g_ref, 1e-3)


@pytest.mark.parametrize("mode", ["bias", "fold"])
def test_bf16_autocast_feeds_sdpa_bf16_only(monkeypatch, mode):
    """No silent fp32 attention under autocast: every SDPA call (ViT, CBA, decoder) gets bf16 tensors."""
    monkeypatch.setenv("SAMFX_REL_POS", mode)
    fast, _ = _tiny_pair()
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append({t.dtype for t in (q, k, v, attn_mask) if t is not None})
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    fast.eval()   # deterministic clicks, for the fp32 comparison below
    images, labels = torch.rand(2, 3, 128, 128), torch.randint(0, 4, (2, 128, 128))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        targets, out = fast.forward_classes(images, [1, 2, 3], labels)
    assert len(seen) >= 4 + 2 + 5                   # ViT blocks, CBA, decoder attentions
    assert all(s == {torch.bfloat16} for s in seen), seen
    with torch.no_grad():
        ref = fast.forward_classes(images, [1, 2, 3], labels)[1].logits
    assert (out.logits.float() - ref).abs().mean() <= 0.05 * ref.abs().mean()


def test_position_adapter_cache_is_hit_at_inference():
    enc = SamusImageEncoder("tiny", 128).eval()
    calls = []
    enc.pos_adapter.register_forward_hook(lambda *a: calls.append(1))
    x = torch.rand(1, 3, 128, 128)
    with torch.inference_mode():
        enc(x), enc(x)
    assert len(calls) == 1
    enc(x), enc(x)                 # gradients on: computed every time
    assert len(calls) == 3


@pytest.mark.parametrize("training", [True, False])
def test_forward_with_clicks_has_no_graph_breaks(training):
    """torch._dynamo.explain over the tiny SAMUS forward (clicks, decoder): one graph, in training
    (random clicks) and at eval (deepest-pixel clicks, whose erosion loop runs a fixed count when compiled)."""
    import torch._dynamo as dynamo

    fast, _ = _tiny_pair()
    fast.train(training)
    dynamo.reset()
    images, labels = torch.rand(2, 3, 128, 128), torch.randint(0, 4, (2, 128, 128))
    with torch.set_grad_enabled(training):
        explained = dynamo.explain(fast.forward_classes)(images, [1, 2, 3], labels)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    dynamo.reset()


@pytest.mark.slow
def test_compiled_encoder_equals_eager():
    """torch.compile (inductor) of the tiny SAMUS encoder: same forward and gradients as eager."""
    torch.manual_seed(0)
    enc = SamusImageEncoder("tiny", 128)
    _randomize(enc, seed=5, scale=0.05)
    compiled = copy.deepcopy(enc)
    torch._dynamo.reset()
    _check_same(enc, torch.compile(compiled, dynamic=False), torch.rand(2, 3, 128, 128), tol=1e-3)
    torch._dynamo.reset()


def test_reference_path_switch_is_reversible():
    enc = SamusImageEncoder("tiny", 128)
    n = set_fast_path(enc, False)
    assert n > 0 and not {type(m) for m in enc.modules()} & set(FAST_TYPES)
    assert set_fast_path(enc, True) == n


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run by benchmarks/gpu_check.sh)")
@pytest.mark.parametrize("mode,backend", [("fold", "FLASH_ATTENTION"), ("bias", "EFFICIENT_ATTENTION")])
@pytest.mark.parametrize("grid,batch", [((32, 32), 2), ((14, 14), 18)])   # SAMUS vit_b: global block, windows
def test_cuda_bf16_attention_runs_the_fused_kernel(mode, backend, grid, batch):
    """Under bf16 autocast the fold path runs in the flash kernel and the bias path in the memory-efficient
    one (sdpa_kernel raises if the chosen kernel cannot take the inputs), forward and backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    ref = Attention(768, num_heads=12, use_rel_pos=True, input_size=grid).cuda()
    _randomize(ref, scale=0.02)
    fast = copy.deepcopy(ref)
    set_fast_attention(fast, True, rel_pos_mode=mode)
    x = torch.randn(batch, *grid, 768, device="cuda")
    x_ref, x_fast = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        with sdpa_kernel(getattr(SDPBackend, backend)):
            y = fast(x_fast)
        y_ref = ref(x_ref)
    assert y.dtype == torch.bfloat16
    with sdpa_kernel(getattr(SDPBackend, backend)):
        y.float().square().sum().backward()
    y_ref.float().square().sum().backward()
    assert _rel_err(y.float(), y_ref.float()) <= 3e-2
    assert _rel_err(x_fast.grad, x_ref.grad) <= 5e-2
