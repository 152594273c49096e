"""Space-time memory (plugin `stm`) and SegmentationModel.forward_clip, with tiny stand-in components."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samfx.contracts.errors import SamfxError
from samfx.contracts.interfaces import (
    BuildContext,
    DecoderOutput,
    FrameInfo,
    ImageEncoder,
    ImageFeatures,
    MaskDecoderBase,
    PromptGenerator,
    Prompts,
)
from samfx.model.segmentation import SegmentationModel
from samfx_plugins.prompts.simulated import Clicks, NoPrompt
from samfx_plugins.sam.decoder import SamPromptEncoder
from samfx_plugins.stm.config import STMConfig
from samfx_plugins.stm.memory import MemoryBank, SpaceTimeMemory, STMError, build_stm

S, C, H = 32, 32, 8          # image side, embedding width, embedding side


class TinyEncoder(ImageEncoder):
    def __init__(self):
        super().__init__()
        self.image_size, self.embed_dim, self.embed_size, self.encoder_dim = S, C, (H, H), C
        self.conv = nn.Conv2d(3, C, S // H, stride=S // H)

    def forward(self, x):
        return ImageFeatures(self.conv(x))


class TinyDecoder(MaskDecoderBase):
    """Batched stand-in for SAM's decoder: (emb + dense + pe + mean sparse) -> conv -> x4 logits."""

    def __init__(self):
        super().__init__()
        self.transformer_dim = C
        self.mix = nn.Conv2d(C, C, 3, padding=1)
        self.up = nn.ConvTranspose2d(C, 1, 4, stride=4)
        self.iou = nn.Linear(C, 1)

    def forward(self, inp):
        emb, sparse = inp.features.embedding.repeat_interleave(inp.queries_per_image, 0), inp.sparse
        x = emb + inp.dense + inp.image_pe
        if sparse.shape[1]:
            x = x + sparse.mean(1)[:, :, None, None]
        x = F.gelu(self.mix(x))
        return DecoderOutput(self.up(x), self.iou(x.mean((2, 3))))

    def output_tokens(self):
        return torch.zeros(5, C)


class TinyAuto(PromptGenerator):
    """Automatic prompt (APG stand-in): needs no targets."""

    def __init__(self):
        super().__init__()
        self.token = nn.Parameter(torch.randn(1, 1, C) * 0.1)
        self.dense = nn.Conv2d(C, C, 1)

    def forward(self, ctx):
        emb = ctx.features.per_query(ctx.queries_per_image).embedding
        return Prompts(self.token.expand(ctx.num_queries, -1, -1), self.dense(emb))


def stm(**kw) -> SpaceTimeMemory:
    cfg = STMConfig(**{"key_dim": 16, "value_dim": 16, "mask_channels": 8, **kw})
    return build_stm(cfg, BuildContext(image_size=S, embed_dim=C, embed_size=(H, H)))


def tiny_model(temporal=None, prompt="auto") -> SegmentationModel:
    gens = {"auto": TinyAuto(), "clicks": Clicks(), "none": NoPrompt()}
    pe = SamPromptEncoder(C, (H, H), S, mask_in_chans=4)
    return SegmentationModel(TinyEncoder(), pe, TinyDecoder(), gens, prompt, temporal=temporal)


def clip_batch(b=2, t=10, seed=0):
    """Frames with a moving disc (label 1) inside a ring (label 2)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    labels = torch.zeros(b, t, S, S, dtype=torch.long)
    for i in range(b):
        for j in range(t):
            r = 6 + 3 * math.sin(j / 3 + i) + float(torch.rand(1, generator=g))
            d = ((yy - 16) ** 2 + (xx - 16) ** 2).float().sqrt()
            labels[i, j][d < r + 3] = 2
            labels[i, j][d < r] = 1
    frames = (labels.float() / 2 + 0.1 * torch.rand(b, t, S, S, generator=g)).unsqueeze(2).expand(-1, -1, 3, -1, -1)
    return frames.contiguous(), labels


def clip_loss(out, labeled):
    """The engine's clip loss (every labeled frame and class) with the SAMUS authors' Dice + BCE."""
    from samfx.engine.train.steps import clip_loss as engine_clip_loss
    from samfx_plugins.losses.losses import DiceBCE

    assert torch.equal(out.labeled, labeled)
    return engine_clip_loss(out, DiceBCE(0.8, 0.2, 2.0, 1.0))


# -- forward / backward -----------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["auto", "clicks"])
def test_clip_forward_backward_b2_t10_reaches_every_memory_parameter(prompt):
    torch.manual_seed(0)
    model = tiny_model(stm(hidden_dim=8, memory_frames=3), prompt)
    frames, labels = clip_batch(2, 10)
    labeled = torch.ones(2, 10, dtype=torch.bool)
    labeled[1, 4] = False
    out = model.forward_clip(frames, [1, 2], labels, labeled)
    assert out.logits.shape == (2, 10, 2, S, S)
    assert out.iou.shape == (2, 10, 2)
    assert out.targets.shape == (2, 10, 2, S, S)
    assert torch.equal(out.targets[0, 3, 1], (labels[0, 3] == 2).float())
    clip_loss(out, labeled).backward()
    names = [n for n, _ in model.temporal.named_parameters()]
    assert {n.split(".")[0] for n in names} == {"key_proj", "mask_encoder", "pixel_proj", "value_fuser", "gru_gates",
                                              "gru_cand", "readout_proj"}
    for name, p in model.temporal.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches temporal.{name}"


def test_loss_counts_every_labeled_frame_not_just_frame_0():
    torch.manual_seed(0)
    model = tiny_model(stm())
    frames, labels = clip_batch(2, 5)
    labeled = torch.tensor([[1, 0, 1, 1, 0], [1, 1, 0, 1, 1]], dtype=torch.bool)
    out = model.forward_clip(frames, [1], labels, labeled)
    out.logits.retain_grad()
    clip_loss(out, labeled).backward()
    per_frame = out.logits.grad.abs().sum((2, 3, 4))
    assert torch.equal(per_frame > 0, labeled)


def test_batched_clips_do_not_leak_into_each_other():
    """State is batched over clips x classes: clip 0 alone == clip 0 next to another clip."""
    torch.manual_seed(0)
    model = tiny_model(stm(hidden_dim=4)).eval()
    frames, labels = clip_batch(2, 6)
    with torch.no_grad():
        both = model.forward_clip(frames, [1, 2], labels)
        alone = model.forward_clip(frames[1:], [1, 2], labels[1:])
        again = model.forward_clip(frames, [1, 2], labels)
    torch.testing.assert_close(both.logits[1], alone.logits[0], rtol=1e-4, atol=1e-5)
    assert torch.equal(both.logits, again.logits)  # deterministic at inference


def test_memory_changes_later_frames_but_not_frame_0():
    torch.manual_seed(0)
    frames, labels = clip_batch(1, 4)
    model = tiny_model(stm()).eval()
    with torch.no_grad():
        with_mem = model.forward_clip(frames, [1], labels).logits
        model.temporal = None
        without = model.forward_clip(frames, [1], labels).logits
    torch.testing.assert_close(with_mem[:, 0], without[:, 0])
    assert (with_mem[:, 1:] - without[:, 1:]).abs().amax() > 1e-4


def test_clicks_prompt_frame_0_only_then_memory():
    torch.manual_seed(0)
    model = tiny_model(stm(), "clicks").eval()
    frames, labels = clip_batch(1, 3)
    seen = []
    out = model.forward_clip(frames, [1], labels, on_frame=lambda t, o: seen.append((t, o.prompts)))
    assert out.logits is None and out.targets is None
    assert [t for t, _ in seen] == [0, 1, 2]
    assert seen[0][1].points is not None and seen[0][1].sparse.shape[1] >= 1
    assert all(p.points is None and p.sparse.shape[1] == 0 for _, p in seen[1:])


def test_prompted_frames_follow_the_schedule_and_temporal_modules_see_it():
    torch.manual_seed(0)
    model = tiny_model(stm(), "clicks").eval()
    frames, labels = clip_batch(1, 4)
    seen, infos = [], []
    read = model.temporal.read
    model.temporal.read = lambda st, f, info: infos.append(info) or read(st, f, info)
    model.forward_clip(frames, [1, 2], labels, prompt_frames=[0, 2], on_frame=lambda t, o: seen.append(o.prompts))
    assert [p.points is not None for p in seen] == [True, False, True, False]
    assert [(i.t, i.num_frames, i.prompted, i.queries_per_image) for i in infos] == [
        (0, 4, True, 2), (1, 4, False, 2), (2, 4, True, 2), (3, 4, False, 2)]
    with pytest.raises(SamfxError, match=r"prompt_frames \[5\] are outside the clip's 4 frames"):
        model.forward_clip(frames, [1], labels, prompt_frames=[5])


def test_clicks_without_frame0_labels_is_a_clear_error():
    model = tiny_model(stm(), "clicks")
    frames, labels = clip_batch(2, 3)
    labeled = torch.ones(2, 3, dtype=torch.bool)
    labeled[1, 0] = False
    with pytest.raises(SamfxError, match=r"prompt 'clicks' needs the labels of every frame it prompts from the "
                                         r"truth \(\[0\]\), but clip\(s\) \[1\] lack labels there"):
        model.forward_clip(frames, [1], labels, labeled)
    with pytest.raises(SamfxError, match="but no labels were given"):
        model.forward_clip(frames, [1])
    auto = tiny_model(stm(), "auto")
    assert auto.forward_clip(frames, [1]).targets is None  # automatic: nothing needed


def test_forward_clip_shape_errors():
    model = tiny_model(stm())
    frames, labels = clip_batch(1, 2)
    with pytest.raises(SamfxError, match=r"frames must be \(B,T,3,S,S\), got \(2, 3, 32, 32\)"):
        model.forward_clip(frames[0], [1])
    with pytest.raises(SamfxError, match=r"labels must be \(B,T,S,S\)"):
        model.forward_clip(frames, [1], labels[:, :1])


# -- the memory bank -------------------------------------------------------------------------------
FRAME = FrameInfo(t=0, num_frames=1, prompted=True)


def _read(mem, state, emb):
    """(embedding the decoder gets, extra dense prompt or None) for per-query embeddings `emb`."""
    out = mem.read(state, ImageFeatures(emb), FRAME)
    return (emb if out.features is None else out.features.embedding), out.dense


def _write_probs(mem, state, emb, probs):
    """Write a frame whose decoder predicted `probs` (N,1,S,S) (as low-res logits, 4x the embedding)."""
    small = F.interpolate(probs, size=(4 * H, 4 * H), mode="area").clamp(1e-6, 1 - 1e-6)
    return mem.write(state, ImageFeatures(emb), DecoderOutput(torch.logit(small), torch.ones(len(emb), 1)), FRAME)


def _write(mem, state, n, value=0.5):
    emb = torch.randn(state.batch_size, C, H, H)
    return _write_probs(mem, state, emb, torch.full((state.batch_size, 1, S, S), value))


def test_bank_keeps_first_plus_last_n_frames_and_stays_bounded():
    mem = stm(memory_frames=3, hidden_dim=4)
    state = mem.init_state(6, torch.device("cpu"))
    sizes = []
    with torch.no_grad():
        for t in range(40):
            state = _write(mem, state, t)
            sizes.append((state.num_frames, state.nbytes()))
            if t == 0:
                first = state.first[0]
    assert [n for n, _ in sizes[:6]] == [1, 2, 3, 4, 4, 4]
    assert len({b for _, b in sizes[3:]}) == 1                 # bytes constant once full
    assert state.first[0] is first                             # the prompted frame is never evicted
    key_bytes = 6 * H * H * (16 + 1) * 4
    value_bytes = 6 * H * H * 16 * 4
    assert sizes[-1][1] == 4 * (key_bytes + value_bytes) + 6 * 4 * H * H * 4


def test_bank_without_first_frame_and_write_every():
    mem = stm(memory_frames=2, keep_first=False, write_every=3)
    state = mem.init_state(1, torch.device("cpu"))
    keys = []
    with torch.no_grad():
        for t in range(10):
            state = _write(mem, state, t)
            keys.append(state.recent[-1][0] if state.recent else None)
    assert state.first is None and state.num_frames == 2 and state.frames_seen == 10
    # stored frames are 0, 3, 6, 9 -> bank holds 6 and 9
    assert state.recent[0][0] is keys[6] and state.recent[1][0] is keys[9]


@pytest.mark.parametrize("affinity", ["l2", "dot"])
def test_readout_matches_explicit_affinity(affinity):
    torch.manual_seed(0)
    mem = stm(affinity=affinity, memory_frames=2)
    state = mem.init_state(2, torch.device("cpu"))
    with torch.no_grad():
        for _ in range(3):
            state = _write(mem, state, 0, value=float(torch.rand(1)))
        emb = torch.randn(2, C, H, H)
        _, extra = _read(mem, state, emb)
        q = mem.key_proj(emb).flatten(2).transpose(1, 2)                    # (N,HW,Dk)
        keys, values = state.memory()
        k = keys[..., :16]
        if affinity == "l2":
            logits = -torch.cdist(q, k).pow(2) / math.sqrt(16)
        else:
            logits = q @ k.transpose(1, 2) / math.sqrt(16)
        readout = (logits.softmax(-1) @ values).transpose(1, 2).reshape(2, 16, H, H)
        torch.testing.assert_close(extra, mem.readout_proj(readout), rtol=1e-4, atol=1e-5)


def test_read_on_empty_memory_is_identity_and_inject_modes():
    emb = torch.randn(2, C, H, H)
    for inject in ["dense", "embedding", "both"]:
        mem = stm(inject=inject)
        state = mem.init_state(2, torch.device("cpu"))
        out, extra = _read(mem, state, emb)
        assert out is emb and extra is None
        state = _write(mem, state, 0)
        out, extra = _read(mem, state, emb)
        if inject == "dense":
            assert out is emb and extra.shape == emb.shape
        elif inject == "embedding":
            assert extra is None and (out - emb).abs().amax() > 0
        else:
            torch.testing.assert_close(out, emb + extra)


def test_written_probabilities_change_the_readout():
    torch.manual_seed(0)
    mem = stm()
    emb = torch.randn(1, C, H, H)
    reads = []
    with torch.no_grad():
        for p in (0.0, 1.0):
            state = _write_probs(mem, mem.init_state(1, torch.device("cpu")), emb, torch.full((1, 1, S, S), p))
            reads.append(_read(mem, state, emb)[1])
    assert (reads[0] - reads[1]).abs().amax() > 1e-4


def test_memory_input_errors_are_one_line():
    mem = stm()
    state = mem.init_state(2, torch.device("cpu"))
    with pytest.raises(STMError, match=r"image embedding has shape \(2, 16, 8, 8\), expected \(N,32,8,8\)"):
        _read(mem, state, torch.randn(2, 16, H, H))
    with pytest.raises(STMError, match=r"embedding batch 3 != state batch 2"):
        _read(mem, state, torch.randn(3, C, H, H))
    with pytest.raises(STMError, match=r"low-res logits must be \(N,1,h,w\) for N=2 queries"):
        mem.write(state, ImageFeatures(torch.randn(2, C, H, H)), DecoderOutput(torch.rand(2, 32, 32), None), FRAME)
    with pytest.raises(STMError, match="state must come from init_state"):
        _read(mem, {}, torch.randn(2, C, H, H))


@pytest.mark.parametrize("kw, msg", [
    ({"affinity": "cos"}, "model.temporal.affinity: 'cos' is not one of l2, dot"),
    ({"inject": "prompt"}, "model.temporal.inject: 'prompt' is not one of dense, embedding, both"),
    ({"memory_frames": 0, "keep_first": False}, "memory_frames=0 with keep_first=false keeps no frame"),
])
def test_config_errors(kw, msg):
    with pytest.raises(STMError, match=msg):
        stm(**kw)


@pytest.mark.parametrize("override, msg", [
    ("memory_frames=-1", "model.temporal.memory_frames: must be >= 0, got -1 (in command line)"),
    ("write_every=0", "model.temporal.write_every: must be >= 1, got 0 (in command line)"),
    ("hidden_dim=-1", "model.temporal.hidden_dim: must be >= 0 (0 disables the hidden state), got -1 "
                      "(in command line)"),
])
def test_ranges_are_checked_when_the_recipe_loads(override, msg):
    from samfx.config.recipe import load_recipe
    from samfx.contracts.errors import RecipeError
    from samfx.contracts.plugins import get_registry

    with pytest.raises(RecipeError) as err:
        load_recipe(None, ["model.temporal.name=stm", f"model.temporal.{override}"], registry=get_registry())
    assert str(err.value) == msg


def test_registered_with_schema_and_recipe_typos_are_caught():
    from samfx.config.recipe import load_recipe
    from samfx.contracts.plugins import get_registry

    reg = get_registry()
    comp = reg.get("temporal_module", "stm")
    assert comp.schema is STMConfig and comp.plugin == "stm"
    from samfx.contracts.errors import RecipeError
    with pytest.raises(RecipeError, match=r"model.temporal.memory_frame: unknown key, did you mean 'memory_frames'\?"):
        load_recipe(None, ["model.temporal.name=stm", "model.temporal.memory_frame=3"], registry=reg)


def test_values_carry_the_mask():
    """The memory is only a memory if what was segmented reaches the values. At initialisation, inside
    the structure, writing an empty instead of the true mask must move the values by a fair fraction
    of what writing another frame does (measured 0.21-0.51 over seeds 0-2). The first value encoder
    concatenated 16 weak mask channels to the C image channels: 0.015-0.027, and trained models then
    ignored even ground-truth masks in memory."""
    torch.manual_seed(0)
    mem = build_stm(STMConfig(), BuildContext(image_size=256, embed_dim=256, embed_size=(32, 32)))
    emb, other = torch.randn(2, 1, 256, 32, 32)
    yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    lv = (((yy - 120) / 70) ** 2 + ((xx - 128) / 40) ** 2 <= 1).float()[None, None]
    inside = F.interpolate(lv, size=(32, 32), mode="area")[0, 0] > 0.99
    with torch.no_grad():
        base = mem._values(emb, lv)
        by_mask = (mem._values(emb, torch.zeros_like(lv)) - base)[..., inside].pow(2).mean().sqrt()
        by_frame = (mem._values(other, lv) - base)[..., inside].pow(2).mean().sqrt()
    assert by_mask > 0.15 * by_frame


def test_default_parameter_count():
    """Defaults at C=256 (SAMUS): key 256*64+64 = 16,448; mask enc (1->4 k2) 20 + (4->16 k2) 272 + LN 32
    + (16->64 1x1) 1,088 = 1,412; pixel proj 256*64+64 = 16,448; fuser (64->64 3x3) 36,928 + LN 128
    + (64->64 1x1) 4,160 = 41,216; readout (64->256 3x3) 147,712 + (256->256 1x1) 65,792 = 213,504.
    Total 289,028."""
    mem = build_stm(STMConfig(), BuildContext(image_size=256, embed_dim=256, embed_size=(32, 32)))
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in mem.named_children()}
    assert counts == {"key_proj": 16448, "mask_encoder": 1412, "pixel_proj": 16448, "value_fuser": 41216,
                      "readout_proj": 213504}
    assert sum(counts.values()) == 289028
    assert isinstance(mem.init_state(1, torch.device("cpu")), MemoryBank)


def test_bf16_autocast_keeps_fp32_keys_and_finite_outputs():
    torch.manual_seed(0)
    model = tiny_model(stm(hidden_dim=4)).eval()
    frames, _ = clip_batch(1, 3)
    banks = []
    write = model.temporal.write
    model.temporal.write = lambda st, e, d, f: banks.append(write(st, e, d, f)) or banks[-1]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_clip(frames, [1])
    assert torch.isfinite(out.logits.float()).all()
    assert banks[-1].first[0].dtype == torch.float32


# -- engine helpers: clip step, sequence evaluation ---------------------------------------------
def test_clip_step_and_zero_loss_without_labeled_frames():
    from samfx.engine.train.steps import ClipStep
    from samfx.engine.train.steps import clip_loss as engine_clip_loss
    from samfx_plugins.losses.losses import Dice

    torch.manual_seed(0)
    model = tiny_model(stm())
    frames, labels = clip_batch(2, 3)
    step = ClipStep(model, [1, 2], Dice(1.0))
    loss, logits, aux = step(frames, labels, torch.ones(2, 3, dtype=torch.bool))
    assert logits.shape == (2, 3, 2, S, S) and 0 < float(loss.detach()) < 1 and aux == {}
    none = model.forward_clip(frames, [1], labels, torch.zeros(2, 3, dtype=torch.bool))
    zero = engine_clip_loss(none, Dice(1.0))
    assert float(zero.detach()) == 0.0 and zero.requires_grad


def test_area_change_loss_counts_unexplained_change_on_labeled_pairs():
    from types import SimpleNamespace

    from samfx.engine.train.steps import ClipStep, area_change_loss
    from samfx_plugins.losses.losses import Dice

    def masks(fractions):  # (1,T,1,4,4) binary masks covering the given fraction of 16 pixels
        m = torch.zeros(1, len(fractions), 1, 16)
        for t, f in enumerate(fractions):
            m[0, t, 0, : int(f * 16)] = 1
        return m.view(1, len(fractions), 1, 4, 4)

    true = masks([0.25, 0.25, 0.5])
    logits = (masks([0.25, 0.5, 0.5]) * 2 - 1) * 50        # sigmoid is 0/1 up to 2e-22
    out = SimpleNamespace(logits=logits, targets=true, labeled=torch.ones(1, 3, dtype=torch.bool))
    # pairs (0,1): |0.25 - 0| and (1,2): |0 - 0.25|, each over the mean true area 1/3
    assert float(area_change_loss(out)) == pytest.approx(0.75, abs=1e-6)
    out.labeled = torch.tensor([[True, True, False]])       # only pair (0,1) counts, mean true area 1/4
    assert float(area_change_loss(out)) == pytest.approx(1.0, abs=1e-6)
    out.labeled = torch.tensor([[True, False, True]])       # no consecutive labeled pair
    assert float(area_change_loss(out)) == 0.0
    out = SimpleNamespace(logits=(true * 2 - 1) * 50, targets=true, labeled=torch.ones(1, 3, dtype=torch.bool))
    assert float(area_change_loss(out)) == pytest.approx(0.0, abs=1e-6)

    torch.manual_seed(0)
    model = tiny_model(stm())
    frames, labels = clip_batch(2, 3)
    labeled = torch.ones(2, 3, dtype=torch.bool)
    plain, *_ = ClipStep(model, [1], Dice(1.0))(frames, labels, labeled)
    torch.manual_seed(0)
    model = tiny_model(stm())
    with_term, *_ = ClipStep(model, [1], Dice(1.0), area_change_weight=2.0)(frames, labels, labeled)
    assert float((with_term - plain).detach()) > 0


def test_evaluate_sequences_on_a_synthetic_store(tmp_path):
    from samfx.data.datasets import SequenceDataset
    from samfx.data.synth.store import generate
    from samfx.engine.eval.clinical import analyze_clip
    from samfx.engine.eval.sequences import evaluate_sequences

    store = generate(tmp_path / "s.h5", patients=3, frames=4, size=(48, 48))
    ds = SequenceDataset(store, None, S)
    torch.manual_seed(0)
    res = evaluate_sequences(tiny_model(stm()), ds, [1, 2], torch.device("cpu"), limit=2)
    rows = res["sequences"]
    assert len(rows) == 2 and res["summary"]["n"] == 2
    for row, i in zip(rows, range(2)):
        assert row["frames"] == 4 and set(row["dice"]) == {1, 2}
        assert all(0.0 <= d <= 1.0 for d in row["dice"].values())
        item = ds[i]
        gt = analyze_clip(item["labels"].numpy(), item["spacing"].double().numpy())
        assert row["ef_gt_masks"] == pytest.approx(gt.ef, nan_ok=True)
        assert row["ed_gt"] == gt.ed and "jitter_mm2" in row
        assert row["jitter_residual_mm2"] >= 0.0 and "lv_area_gain" in row
    assert set(res["summary"]) >= {"dice_1", "dice_2", "jitter_mm2", "jitter_residual_mm2", "lv_area_gain",
                                   "ef_mae_vs_gt_masks", "ef_undefined", "hd95_1", "dice_edes_2", "hd95_edes_1",
                                   "hd95_inf_frames_2", "ms_per_frame"}
    assert res["summary"]["ms_per_frame"] > 0 and all(row["seconds"] > 0 for row in rows)


def test_frame_scores_every_frame_and_ed_es():
    from samfx.engine.eval.sequences import _frame_scores

    labels = np.zeros((4, 20, 20), np.uint8)
    labels[:, 5:15, 5:15] = 1
    pred = labels.copy()
    pred[1] = 0                          # frame 1: LV missed entirely (HD95 infinite, Dice 0)
    pred[3, 5:15, 15:17] = 1             # frame 3 (ES): 2 columns too wide
    labeled = np.array([True, True, False, True])
    out = _frame_scores(pred, labels, labeled, np.array([0.5, 0.5]), [1], [0, 3])
    d3 = 2 * 100 / (100 + 120)
    assert out["dice"][1] == pytest.approx((1.0 + 0.0 + d3) / 3)
    assert out["dice_edes"][1] == pytest.approx((1.0 + d3) / 2)
    assert out["hd95_inf"][1] == 1                       # frame 1, left out of the HD95 means
    assert out["hd95"][1] == pytest.approx(out["hd95_edes"][1])
    assert 0 < out["hd95_edes"][1] <= 1.0   # at most the 2 extra columns (1 mm)
    dice_only = _frame_scores(pred, labels, labeled, np.array([0.5, 0.5]), [1], [0, 3], with_hd95=False)
    assert dice_only == {"dice": out["dice"], "dice_edes": out["dice_edes"]}   # validation's: no distances


def test_summary_without_distances_has_no_hd95_keys():
    from samfx.engine.eval.sequences import summarize_sequences

    rows = [{"frames": 2, "seconds": 0.5, "dice": {1: 0.8}, "dice_edes": {1: 0.6}}]
    assert summarize_sequences(rows, [1]) == {"n": 1, "dice_1": 0.8, "dice_edes_1": 0.6, "ms_per_frame": 250.0}


# -- the shipped recipes with the real components --------------------------------------------------
TINY = ["model.image_encoder.size=tiny", "model.image_encoder.image_size=128", "model.mask_decoder.mlp_dim=64",
        "model.prompt.mlp_dim=64", "model.prompt.tokens=4", "data.classes=[1]", "data.class_names=[LV]"]


def _recipe_model(name, extra=()):
    from samfx.config.recipe import load_recipe
    from samfx.contracts.plugins import get_registry
    from samfx.model.build import build_model
    from tests.conftest import ROOT

    reg = get_registry()
    overrides = [o for o in TINY if not (name == "samus_stm.yaml" and o.startswith("model.prompt."))]
    recipe = load_recipe(ROOT / "recipes" / name, [*overrides, *extra], registry=reg)
    torch.manual_seed(0)
    return recipe, build_model(recipe, reg)


@pytest.mark.parametrize("name, prompt", [("samus_stm.yaml", "clicks"), ("autosamus_msff_stm.yaml", "apg")])
def test_recipes_build_and_segment_a_clip(name, prompt):
    recipe, model = _recipe_model(name)
    assert recipe.config["data"]["clip_length"] > 0
    assert recipe.config["model"]["temporal"]["name"] == "stm/stm" and model.active_prompt == prompt
    if name.startswith("autosamus"):
        assert [a["name"] for a in recipe.config["model"]["adapters"]] == ["msff/msff"]
        assert recipe.config["train"]["stages"][-1]["trainable"] == ["prompt:apg", "temporal"]
    frames, labels = torch.rand(1, 2, 3, 128, 128), torch.randint(0, 4, (1, 2, 128, 128))
    with torch.no_grad():
        out = model.eval().forward_clip(frames, [1], labels if prompt == "clicks" else None)
    assert out.logits.shape == (1, 2, 1, 128, 128) and torch.isfinite(out.logits).all()


@pytest.mark.slow
def test_real_components_b2_t10_backward_reaches_memory():
    _, model = _recipe_model("autosamus_msff_stm.yaml")
    frames, labels = torch.rand(2, 10, 3, 128, 128), torch.randint(0, 4, (2, 10, 128, 128))
    out = model.forward_clip(frames, [1], labels)
    clip_loss(out, torch.ones(2, 10, dtype=torch.bool)).backward()
    for name, p in model.temporal.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
