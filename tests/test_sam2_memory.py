"""Temporal module `sam2_memory` against the contract and against SAM2Base's own memory functions
(random features and decoder outputs; no image encoder or decoder involved)."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("sam2")

from samfx.contracts.errors import CheckpointError
from samfx.contracts.interfaces import BuildContext, DecoderOutput, FrameInfo, ImageFeatures
from samfx_plugins.sam2.keys import is_memory_key
from samfx_plugins.sam2.memory import Sam2Memory, Sam2MemoryError, Sam2MemoryState, build_sam2_memory
from samfx_plugins.sam2.memory_config import Sam2MemoryConfig

S, H, C = 64, 4, 256          # image side, embedding side (S/16), SAM2's width
MEMORY_PARAMS = 7_522_033     # SAM2.1 (every size): memory attention, memory encoder, pointers, embeddings
GATE_PARAMS = C               # samfx's per-channel gate (memory_gate), which no SAM2 file has


def memory(gate: float | None = 1.0, **kw) -> Sam2Memory:
    """A seeded memory; `gate`: its gate's value (1: open, SAM2's readout; None: as built, 0)."""
    torch.manual_seed(0)
    mem = build_sam2_memory(Sam2MemoryConfig(**kw), BuildContext(image_size=S, embed_dim=C, embed_size=(H, H)))
    if gate is not None:
        with torch.no_grad():
            mem.memory_gate.fill_(gate)
    return mem


def features(b: int, seed: int) -> ImageFeatures:
    g = torch.Generator().manual_seed(seed)
    return ImageFeatures(torch.randn(b, C, H, H, generator=g), (torch.randn(b, C, 4 * H, 4 * H, generator=g),
                                                                torch.randn(b, C, 2 * H, 2 * H, generator=g)),
                         torch.randn(b, C, H, H, generator=g))


def decoded(q: int, seed: int, absent: tuple[int, ...] = ()) -> DecoderOutput:
    g = torch.Generator().manual_seed(1000 + seed)
    score = torch.rand(q, 1, generator=g) + 0.1
    for i in absent:
        score[i] = -1.0
    return DecoderOutput(3 * torch.randn(q, 1, 4 * H, 4 * H, generator=g), torch.rand(q, 1, generator=g),
                         torch.randn(q, 1, C, generator=g), score)


def run(mem: Sam2Memory, n: int, prompted: set[int], b: int = 1, k: int = 1):
    state = mem.init_state(b * k, torch.device("cpu"))
    readouts, sizes = [], []
    for t in range(n):
        frame = FrameInfo(t, n, t in prompted, k)
        feats = features(b, t)
        readouts.append(mem.read(state, feats, frame).features)
        state = mem.write(state, feats, decoded(b * k, t, absent=(0,) if t == 3 else ()), frame)
        sizes.append((len(state.cond), state.num_memories(), state.num_pointers(), state.nbytes()))
    return state, readouts, sizes


def test_parameters_are_the_packages_memory():
    from hydra.utils import instantiate

    from samfx_plugins.sam2.memory import _package_config

    mem = memory()
    assert sum(p.numel() for p in mem.parameters()) == MEMORY_PARAMS + GATE_PARAMS
    cfg = _package_config()
    cfg.image_size = S
    base = instantiate(cfg, _recursive_=True)
    theirs = {k: v.shape for k, v in base.state_dict().items() if is_memory_key(k)}
    assert {k: v.shape for k, v in mem.state_dict().items() if k != "memory_gate"} == theirs


def _sam2_base(mem: Sam2Memory):
    from hydra.utils import instantiate

    from samfx_plugins.sam2.memory import _package_config

    cfg = _package_config()
    cfg.image_size = S
    cfg.max_cond_frames_in_attn = mem.max_cond_frames
    base = instantiate(cfg, _recursive_=True).eval()
    missing, unexpected = base.load_state_dict(mem.export_foreign_state("sam2", mem.state_dict(), ""),
                                               strict=False)
    assert not unexpected and all(not is_memory_key(k) for k in missing)
    return base


def _flat(x):
    return x.flatten(2).permute(2, 0, 1)


@pytest.mark.parametrize("prompted", [{0}, {0, 5, 6, 7, 8, 9, 10, 14}])
def test_read_and_write_match_sam2base(prompted):
    """Readout features of every frame == SAM2Base._prepare_memory_conditioned_features over the outputs
    SAM2Base._encode_new_memory / its object-pointer head make of the same features and decoder outputs."""
    mem = memory(max_cond_frames=3).eval()
    base = _sam2_base(mem)
    n, q = 18, 2
    state = mem.init_state(q, torch.device("cpu"))
    out_dict: dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    with torch.no_grad():
        for t in range(n):
            frame = FrameInfo(t, n, t in prompted, q)
            feats = features(1, t)
            ours = mem.read(state, feats, frame).features.embedding
            rep = feats.per_query(q)
            pos = rep.pos.expand(q, -1, -1, -1)
            theirs = base._prepare_memory_conditioned_features(
                t, t == 0, [_flat(rep.embedding)], [_flat(pos)], [(H, H)], out_dict, n)
            assert (ours - theirs).abs().max() <= 1e-5, t
            dec = decoded(q, t, absent=(1,) if t in (3, 9) else ())
            state = mem.write(state, feats, dec, frame)
            low = torch.where(dec.object_score[:, :, None, None] > 0, dec.low_res, -1024.0)
            high = torch.nn.functional.interpolate(low, size=(S, S), mode="bilinear", align_corners=False)
            feats_mem, pos_mem = base._encode_new_memory([_flat(rep.embedding)], [(H, H)], high, dec.object_score,
                                                         frame.prompted)
            appear = (dec.object_score > 0).float()
            ptr = appear * base.obj_ptr_proj(dec.mask_tokens[:, 0]) + (1 - appear) * base.no_obj_ptr
            key = "cond_frame_outputs" if frame.prompted else "non_cond_frame_outputs"
            out_dict[key][t] = {"maskmem_features": feats_mem, "maskmem_pos_enc": pos_mem, "obj_ptr": ptr}
            entry = (state.cond if frame.prompted else state.recent)[t]
            assert (entry.features - feats_mem).abs().max() <= 1e-5
            assert (entry.obj_ptr - ptr).abs().max() <= 1e-5


def test_first_frame_adds_no_mem_embed():
    mem = memory()
    state = mem.init_state(2, torch.device("cpu"))
    feats = features(1, 0)
    out = mem.read(state, feats, FrameInfo(0, 5, True, 2)).features
    assert out.embedding.shape == (2, C, H, H)
    assert torch.allclose(out.embedding, feats.embedding + mem.no_mem_embed.view(1, -1, 1, 1))
    assert len(out.high_res) == 2 and out.high_res[0].shape[0] == 2


@pytest.mark.parametrize("prompted", [{0}, set(range(40)), set(range(0, 40, 5))])
def test_state_is_bounded_over_40_frames(prompted):
    mem = memory()
    state, _, sizes = run(mem, 40, prompted, b=2, k=2)
    cond, mems, ptrs, nbytes = zip(*sizes)
    assert max(cond) <= mem.max_cond_frames
    assert max(mems) <= mem.max_cond_frames + mem.num_maskmem - 1
    assert max(ptrs) <= mem.max_cond_frames + mem.max_obj_ptrs - 1
    assert max(nbytes[20:]) == nbytes[-1]            # flat once the windows are full
    assert all(s >= 40 - mem.max_obj_ptrs for s in state.recent)


def test_conditioning_frames_are_kept_apart():
    mem = memory(max_cond_frames=3)
    state, _, _ = run(mem, 40, {0})
    assert list(state.cond) == [0] and state.cond[0].features is not None      # frame 0, 39 frames later
    state, _, _ = run(mem, 40, {0, 10, 20, 30})
    assert sorted(state.cond) == [10, 20, 30]          # the most recent 3; frame 0 joined the old recent ones
    assert 0 not in state.recent                       # ... and aged out of every window
    assert all(m.features is not None for m in state.cond.values())
    assert sorted(s for s, m in state.recent.items() if m.features is not None) == list(range(34, 40))


def test_num_maskmem_and_pointers_limit_what_is_read():
    mem = memory(num_maskmem=3, max_obj_ptrs=4)
    state, _, _ = run(mem, 12, {0})
    assert sorted(s for s, m in state.recent.items() if m.features is not None) == [10, 11]
    assert sorted(state.recent) == [9, 10, 11]
    mem2 = memory(use_obj_ptrs=False)
    state, readouts, _ = run(mem2, 6, {0})
    assert readouts[-1].embedding.shape == (1, C, H, H) and torch.isfinite(readouts[-1].embedding).all()


def test_memory_changes_the_features_and_gradients_flow():
    mem = memory()
    state = mem.init_state(1, torch.device("cpu"))
    f0 = features(1, 0)
    mem.write(state, f0, decoded(1, 0), FrameInfo(0, 3, True))
    out = mem.read(state, features(1, 1), FrameInfo(1, 3, False)).features.embedding
    assert not torch.allclose(out, features(1, 1).embedding)
    out.square().mean().backward()
    grads = {n for n, p in mem.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert {"maskmem_tpos_enc", "obj_ptr_tpos_proj.weight", "memory_encoder.pix_feat_proj.weight"} <= grads
    assert any(n.startswith("memory_attention.layers.3.") for n in grads)


def test_checkpoint_keys_round_trip():
    mem = memory(gate=None)
    official = {**{k: v.clone() for k, v in mem.state_dict().items() if k != "memory_gate"},
                "sam_mask_decoder.iou_token.weight": torch.zeros(1, C), "image_encoder.neck.x": torch.zeros(1)}
    renamed = mem.import_foreign_state(official, "temporal.")
    assert "temporal.memory_attention.layers.0.self_attn.q_proj.weight" in renamed
    assert "temporal.no_mem_embed" in renamed and "temporal.no_obj_ptr" in renamed
    assert torch.equal(renamed["temporal.memory_gate"], torch.ones(C))    # a SAM2 file: SAM2's readout
    assert "sam_mask_decoder.iou_token.weight" in renamed and "image_encoder.neck.x" in renamed
    assert mem.export_foreign_state("sam2", renamed, "temporal.").keys() == official.keys()
    assert mem.export_foreign_state("sam", renamed, "temporal.") is renamed
    bad = dict(official, maskmem_tpos_enc=torch.zeros(5, 1, 1, 64))
    with pytest.raises(CheckpointError, match="num_maskmem: 5"):
        mem.import_foreign_state(bad, "temporal.")


@pytest.mark.parametrize("override, match", [
    ("num_maskmem=0", r"num_maskmem: must be >= 1 \(SAM2: 7\), got 0"),
    ("max_obj_ptrs=0", r"max_obj_ptrs: must be >= 1 \(SAM2: 16\), got 0"),
    ("max_cond_frames=1", r"max_cond_frames: must be >= 2 \(SAM2 keeps .*\), got 1")])
def test_config_errors(override, match):
    from samfx.config.recipe import load_recipe
    from samfx.contracts.errors import RecipeError
    from samfx.contracts.plugins import get_registry

    with pytest.raises(RecipeError, match="model.temporal." + match):
        load_recipe(None, ["model.temporal.name=sam2_memory", f"model.temporal.{override}"],
                    registry=get_registry())
    with pytest.raises(Sam2MemoryError, match="256-channel"):
        build_sam2_memory(Sam2MemoryConfig(), BuildContext(image_size=S, embed_dim=64, embed_size=(H, H)))


def test_input_errors():
    mem = memory()
    state = mem.init_state(2, torch.device("cpu"))
    with pytest.raises(Sam2MemoryError, match="init_state"):
        mem.read({}, features(2, 0), FrameInfo(0, 2, True))  # type: ignore[arg-type]
    with pytest.raises(Sam2MemoryError, match="state batch 2"):
        mem.read(state, features(1, 0), FrameInfo(0, 2, True))
    f = features(2, 0)
    with pytest.raises(Sam2MemoryError, match="positional encoding"):
        mem.read(state, ImageFeatures(f.embedding, f.high_res), FrameInfo(0, 2, True))
    with pytest.raises(Sam2MemoryError, match="expected"):
        mem.read(state, ImageFeatures(f.embedding[:, :, :2]), FrameInfo(0, 2, True))
    with pytest.raises(Sam2MemoryError, match=r"\(Q,1,h,w\)"):
        mem.write(state, f, DecoderOutput(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3)), FrameInfo(0, 2, True))
    with pytest.raises(Sam2MemoryError, match="mask tokens"):
        mem.write(state, f, DecoderOutput(torch.zeros(2, 1, 16, 16), torch.zeros(2, 1)), FrameInfo(0, 2, True))
    with pytest.raises(Sam2MemoryError, match="batch_size"):
        mem.init_state(0, torch.device("cpu"))
    assert isinstance(mem.init_state(1, torch.device("cpu")), Sam2MemoryState)


@pytest.mark.parametrize("name, stage, prompt", [("sam2_video_quick", 0, "clicks"),
                                                 ("autosam2_video_quick", 1, "apg")])
def test_video_recipes_train_a_clip(name, stage, prompt):
    """The video recipes build (encoder in video mode), run a clip through the memory and train the
    stage's components from the loss over every frame."""
    from samfx.config.recipe import load_recipe
    from samfx.model.build import build_model
    from samfx.model.trainable import apply_stage

    rec = load_recipe(f"recipes/{name}.yaml", ["model.image_encoder.image_size=128"])
    model = build_model(rec)
    assert isinstance(model.temporal, Sam2Memory) and model.image_encoder.no_mem_embed is None
    assert torch.equal(model.temporal.memory_gate, torch.zeros(C))   # no file: the per-frame start
    with torch.no_grad():
        model.temporal.memory_gate.fill_(0.5)     # half open, so every memory part takes part
    chosen = apply_stage(model, rec, stage)
    assert any(n.startswith("temporal.") for n in chosen)
    torch.manual_seed(0)
    frames = torch.rand(1, 3, 3, 128, 128)
    labels = torch.zeros(1, 3, 128, 128, dtype=torch.long)
    labels[..., 40:90, 30:80] = 1
    out = model.forward_clip(frames, [1], labels, prompt=prompt)
    assert out.logits is not None and out.logits.shape == (1, 3, 1, 128, 128)
    out.logits.sigmoid().mean().backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(n.startswith("temporal.memory_attention.") for n in got)
    assert any(n.startswith("temporal.memory_encoder.") for n in got)
    if prompt == "apg":
        assert any(n.startswith("prompt_generators.apg.") for n in got)


def test_an_image_mode_run_starts_the_video_recipe(tmp_path):
    """A per-frame SAM2 checkpoint (``image_encoder.no_mem_embed``) loads into a video recipe, whose
    memory owns that parameter, as SAM2's official files do; every other weight arrives unchanged."""
    from samfx.checkpoints.files import atomic_save
    from samfx.config.recipe import load_recipe
    from samfx.model.build import build_model

    small = ["model.image_encoder.image_size=64"]
    torch.manual_seed(0)
    image = build_model(load_recipe("recipes/autosam2_quick.yaml", small), load_checkpoint=False).state_dict()
    atomic_save(image, tmp_path / "image.pt")
    video = build_model(load_recipe("recipes/autosam2_video_quick.yaml",
                                    [*small, f"model.checkpoint={tmp_path / 'image.pt'}"])).state_dict()
    assert torch.equal(video["temporal.no_mem_embed"], image["image_encoder.no_mem_embed"])
    assert torch.equal(video["temporal.memory_gate"], torch.zeros(C))    # fresh memory: closed, per-frame start
    assert "image_encoder.no_mem_embed" not in video
    shared = [k for k in image if k in video]
    assert len(shared) == len(image) - 1 and all(torch.equal(image[k], video[k]) for k in shared)


def test_a_fresh_memory_reads_back_the_per_frame_features():
    """Gate 0 (as built): every frame's readout is the features + no_mem_embed (image mode's), exactly,
    though memories and pointers are written; half open, the memory moves the features."""
    mem = memory(gate=None)
    assert torch.equal(mem.memory_gate, torch.zeros(C))
    _, readouts, _ = run(mem, 6, {0}, b=2, k=2)
    for t, out in enumerate(readouts):
        want = features(2, t).per_query(2).embedding + mem.no_mem_embed.view(1, -1, 1, 1)
        assert torch.equal(out.embedding, want), t
    _, half, _ = run(memory(gate=0.5), 6, {0}, b=2, k=2)
    assert torch.equal(half[0].embedding, readouts[0].embedding)      # no memory yet: gate irrelevant
    assert (half[5].embedding - readouts[5].embedding).abs().max() > 0.1


def test_a_closed_gate_gets_a_gradient():
    """At gate 0 the loss reaches the gate (so the memory can open), and nothing behind it yet."""
    mem = memory(gate=None)
    state = mem.init_state(1, torch.device("cpu"))
    mem.write(state, features(1, 0), decoded(1, 0), FrameInfo(0, 3, True))
    out = mem.read(state, features(1, 1), FrameInfo(1, 3, False)).features.embedding
    out.square().mean().backward()
    assert mem.memory_gate.grad is not None and mem.memory_gate.grad.abs().min() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for n, p in mem.named_parameters()
               if n.startswith(("memory_attention.", "memory_encoder.")))


def test_the_gate_follows_the_file():
    """A file with the memory attention but no gate (official SAM2 / SAM2.1) loads it open; a samfx file's
    gate is kept; a file without memory attention (a per-frame run) leaves it as built. --to sam2 drops an
    open gate and refuses any other."""
    mem = memory(gate=None)
    sd = mem.state_dict()
    official = {k: v for k, v in sd.items() if k != "memory_gate"}
    assert torch.equal(mem.import_foreign_state(official, "temporal.")["temporal.memory_gate"], torch.ones(C))
    trained = {"temporal." + k: v for k, v in sd.items()}
    trained["temporal.memory_gate"] = torch.full((C,), 0.3)
    assert torch.equal(mem.import_foreign_state(trained, "temporal.")["temporal.memory_gate"], torch.full((C,), 0.3))
    per_frame = {"temporal.no_mem_embed": sd["no_mem_embed"], "mask_decoder.x": torch.zeros(1)}
    assert "temporal.memory_gate" not in mem.import_foreign_state(per_frame, "temporal.")
    opened = dict(trained, **{"temporal.memory_gate": torch.ones(C)})
    assert mem.export_foreign_state("sam2", opened, "temporal.").keys() == official.keys()
    with pytest.raises(CheckpointError, match=r"temporal.memory_gate .* not fully open \(min 0.3, max 0.3\)"):
        mem.export_foreign_state("sam2", trained, "temporal.")
