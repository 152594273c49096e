"""SAM2's memory as a samfx temporal module (``sam2_memory``), built from the sam2 package's own layers.

The layers are instantiated from the SAM2.1 config (``memory_attention``, ``memory_encoder``) and the
parameters carry SAM2Base's names (``maskmem_tpos_enc``, ``no_mem_embed``, ``no_mem_pos_enc``,
``no_obj_ptr``, ``no_obj_embed_spatial``, ``obj_ptr_proj``, ``obj_ptr_tpos_proj``, ``mask_downsample``),
so an official checkpoint's top-level memory keys map 1:1 onto ``temporal.*``.

Per frame t (Q = B*K queries, image-major), as ``SAM2Base.track_step`` does it:
- ``read``: no memory yet (the initial conditioning frame) -> the stride-16 features + ``no_mem_embed``;
  otherwise the memory attention of the current features (with the encoder's positional encoding)
  over [memories of the kept conditioning frames (t_pos 0) and of the last ``num_maskmem-1`` frames
  (t_pos by distance), + ``maskmem_tpos_enc``] and the object pointers (conditioning frames' + the last
  ``max_obj_ptrs-1`` frames', split into C/64 tokens, sine temporal encoding through ``obj_ptr_tpos_proj``),
  mixed into the per-frame features (the stride-16 features + ``no_mem_embed``, as in image mode) by the
  learned per-channel gate ``memory_gate``: ``lerp(per-frame, attention, gate)``. Gate 0 is the per-frame
  model exactly (a memory that was not loaded from a file starts so); gate 1 is SAM2's readout exactly
  (an official SAM2 / SAM2.1 file, which has no gate, loads it open).
- ``write``: the memory encoder on the raw features and the frame's mask (low-res logits upsampled to
  S, sigmoid x20 - 10; binarized on prompted frames in eval when asked), + ``no_obj_embed_spatial`` where
  the object score says absent; the object pointer = ``obj_ptr_proj(mask token)``, or ``no_obj_ptr``
  where absent. Prompted frames are SAM2's conditioning frames, kept apart (the most recent
  ``max_cond_frames``); older ones fall back to ordinary recent frames, as SAM2's unselected ones.
The state is bounded: <= max_cond_frames + num_maskmem - 1 memories and <= max_obj_ptrs pointers.
In eval with ``bf16_memory`` the spatial memories are stored in bf16, as SAM2VideoPredictor stores them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samfx.contracts.errors import CheckpointError, SamfxError
from samfx.contracts.interfaces import (
    BuildContext,
    DecoderOutput,
    FrameInfo,
    ImageFeatures,
    MemoryReadout,
    TemporalModule,
)
from samfx_plugins.sam2.config import NO_OBJ_SCORE, SAM2_DIM
from samfx_plugins.sam2.deps import require_sam2
from samfx_plugins.sam2.keys import is_memory_key

MEM_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"  # the memory part is the same in every SAM2.1 size
GATE = "memory_gate"  # samfx's own parameter (no SAM2 file has it)
# SAM2Base's fixed settings of the SAM2.1 configs
SIGMOID_SCALE, SIGMOID_BIAS = 20.0, -10.0


class Sam2MemoryError(SamfxError):
    """Bad configuration or input of the SAM2 memory."""


@dataclass
class FrameMemory:
    """One stored frame: memory features (Q,64,h,w) (None once only its pointer is still needed) and
    its object pointer (Q,C)."""

    features: Tensor | None
    obj_ptr: Tensor


@dataclass
class Sam2MemoryState:
    """Per-clip state over Q queries: conditioning (prompted) frames and other recent frames by index."""

    batch_size: int
    cond: dict[int, FrameMemory] = field(default_factory=dict)
    recent: dict[int, FrameMemory] = field(default_factory=dict)
    pos: Tensor | None = None     # (Q,64,h,w) the memory encoder's spatial encoding (same for every frame)

    @property
    def empty(self) -> bool:
        return not self.cond and not self.recent

    def num_memories(self) -> int:
        """Frames whose spatial memory is held."""
        return sum(m.features is not None for m in (*self.cond.values(), *self.recent.values()))

    def num_pointers(self) -> int:
        return len(self.cond) + len(self.recent)

    def nbytes(self) -> int:
        ts = [t for m in (*self.cond.values(), *self.recent.values()) for t in (m.features, m.obj_ptr)
              if t is not None]
        if self.pos is not None:
            ts.append(self.pos)
        return sum(t.numel() * t.element_size() for t in ts)


def _package_config() -> Any:
    """The SAM2.1 model config (OmegaConf) from the sam2 package."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    require_sam2()
    return OmegaConf.load(str(files("sam2").joinpath(MEM_CONFIG))).model


class Sam2Memory(TemporalModule[Sam2MemoryState]):
    """See the module docstring. ``embed_dim`` (256), ``embed_size`` and ``image_size`` come from the encoder."""

    def __init__(self, embed_dim: int, embed_size: tuple[int, int], image_size: int, num_maskmem: int = 7,
                 max_obj_ptrs: int = 16, max_cond_frames: int = 4, binarize_prompted_masks: bool = False,
                 use_obj_ptrs: bool = True):
        super().__init__()
        from hydra.utils import instantiate
        from sam2.modeling.sam2_utils import MLP
        from torch.nn.init import trunc_normal_

        cfg = _package_config()
        self.embed_dim, self.embed_size, self.image_size = embed_dim, tuple(embed_size), image_size
        self.num_maskmem, self.max_obj_ptrs, self.max_cond_frames = num_maskmem, max_obj_ptrs, max_cond_frames
        self.binarize_prompted_masks, self.use_obj_ptrs = binarize_prompted_masks, use_obj_ptrs
        self.bf16_memory = False  # eval: store the spatial memories in bf16 (set by build_sam2_memory)
        self.memory_attention = instantiate(cfg.memory_attention, _recursive_=True)
        self.memory_encoder = instantiate(cfg.memory_encoder, _recursive_=True)
        c = embed_dim
        self.mem_dim = int(self.memory_encoder.out_proj.weight.shape[0])
        # SAM2Base's parameters, same names, shapes and initialisation
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(num_maskmem, 1, 1, self.mem_dim))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, self.mem_dim))
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc, self.no_obj_ptr,
                  self.no_obj_embed_spatial):
            trunc_normal_(p, std=0.02)
        self.obj_ptr_proj = MLP(c, c, c, 3)
        self.obj_ptr_tpos_proj = nn.Linear(c, self.mem_dim)
        # samfx's gate (per channel): 0 = the per-frame features (identity start), 1 = SAM2's readout
        self.memory_gate = nn.Parameter(torch.zeros(c))

    # -- helpers ------------------------------------------------------------------------------
    def _check(self, state: Sam2MemoryState, features: ImageFeatures, k: int, what: str) -> None:
        if not isinstance(state, Sam2MemoryState):
            raise Sam2MemoryError(f"sam2_memory.{what}: state must come from init_state(), got {type(state).__name__}")
        emb = features.embedding
        if emb.ndim != 4 or emb.shape[1] != self.embed_dim or tuple(emb.shape[2:]) != self.embed_size:
            raise Sam2MemoryError(
                f"sam2_memory.{what}: image embedding has shape {tuple(emb.shape)}, expected "
                f"(B,{self.embed_dim},{self.embed_size[0]},{self.embed_size[1]}) from the encoder; build the "
                f"memory with the same model (model.temporal) and the sam2 image encoder")
        if emb.shape[0] * k != state.batch_size:
            raise Sam2MemoryError(f"sam2_memory.{what}: {emb.shape[0]} images x {k} queries != state batch "
                                  f"{state.batch_size}; call init_state(B*K) at the start of each clip")
        if what == "read" and features.pos is None:
            raise Sam2MemoryError("sam2_memory.read: the image features carry no positional encoding (pos); "
                                  "use the sam2 image encoder, whose neck gives it")

    def _selected_cond(self, state: Sam2MemoryState, t: int) -> tuple[dict[int, FrameMemory], dict[int, FrameMemory]]:
        from sam2.modeling.sam2_utils import select_closest_cond_frames

        return select_closest_cond_frames(t, state.cond, self.max_cond_frames)

    def _memory_tokens(self, state: Sam2MemoryState, frame: FrameInfo, q: int) -> tuple[Tensor, Tensor, int]:
        """(memory (N,Q,64), memory_pos (N,Q,64), number of object-pointer tokens) as SAM2's
        _prepare_memory_conditioned_features builds them (forward tracking)."""
        t = frame.t
        selected, unselected = self._selected_cond(state, t)
        prevs: list[tuple[int, FrameMemory | None]] = [(0, m) for m in selected.values()]
        for t_pos in range(1, self.num_maskmem):
            prev = t - (self.num_maskmem - t_pos)
            prevs.append((t_pos, state.recent.get(prev, unselected.get(prev))))
        mems, poss = [], []
        for t_pos, m in prevs:
            if m is None or m.features is None:
                continue
            assert state.pos is not None
            mems.append(m.features.float().flatten(2).permute(2, 0, 1))  # bf16-stored: back to fp32 as SAM2
            pos = state.pos.flatten(2).permute(2, 0, 1)
            poss.append(pos + self.maskmem_tpos_enc[self.num_maskmem - t_pos - 1])
        n_ptr = 0
        if self.use_obj_ptrs:
            max_ptrs = min(frame.num_frames, self.max_obj_ptrs)
            cond_ptrs = selected if self.training else {s: m for s, m in selected.items() if s <= t}
            pos_ptrs = [(t - s, m.obj_ptr) for s, m in cond_ptrs.items()]
            for t_diff in range(1, max_ptrs):
                s = t - t_diff
                if s < 0:
                    break
                m = state.recent.get(s, unselected.get(s))
                if m is not None:
                    pos_ptrs.append((t_diff, m.obj_ptr))
            if pos_ptrs:
                from sam2.modeling.sam2_utils import get_1d_sine_pe

                c, md = self.embed_dim, self.mem_dim
                ptrs = torch.stack([p for _, p in pos_ptrs], 0)                       # (P,Q,C)
                tpos = torch.tensor([d for d, _ in pos_ptrs], device=ptrs.device)
                obj_pos = self.obj_ptr_tpos_proj(get_1d_sine_pe(tpos / max(max_ptrs - 1, 1), dim=c))
                obj_pos = obj_pos.unsqueeze(1).expand(-1, q, md)
                if md < c:  # a pointer as C/64 tokens
                    ptrs = ptrs.reshape(-1, q, c // md, md).permute(0, 2, 1, 3).flatten(0, 1)
                    obj_pos = obj_pos.repeat_interleave(c // md, dim=0)
                mems.append(ptrs)
                poss.append(obj_pos)
                n_ptr = ptrs.shape[0]
        return torch.cat(mems, 0), torch.cat(poss, 0), n_ptr

    def _prune(self, state: Sam2MemoryState, t: int) -> None:
        """Keep what frames after `t` can still attend: the most recent `max_cond_frames` conditioning
        frames apart; older conditioning frames join the recent ones; recent frames hold their memory
        for num_maskmem-1 frames and their pointer for max_obj_ptrs-1 frames."""
        while len(state.cond) > self.max_cond_frames:
            oldest = min(state.cond)
            state.recent[oldest] = state.cond.pop(oldest)
        ptr_window = self.max_obj_ptrs - 1 if self.use_obj_ptrs else 0
        for s in list(state.recent):
            age = t + 1 - s              # distance from the next frame
            if age > max(ptr_window, self.num_maskmem - 1):
                del state.recent[s]
            elif age > self.num_maskmem - 1:
                state.recent[s].features = None

    # -- TemporalModule -----------------------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device) -> Sam2MemoryState:
        if batch_size < 1:
            raise Sam2MemoryError(f"sam2_memory.init_state: batch_size must be >= 1, got {batch_size}")
        return Sam2MemoryState(batch_size)

    def read(self, state: Sam2MemoryState, features: ImageFeatures, frame: FrameInfo) -> MemoryReadout:
        k = frame.queries_per_image
        self._check(state, features, k, "read")
        per_query = features.per_query(k)
        emb = per_query.embedding
        # the per-frame features: SAM2's directly_add_no_mem_embed (a frame with no memory yet, and image mode)
        per_frame = emb + self.no_mem_embed.view(1, -1, 1, 1).to(emb.dtype)
        if state.empty:
            return MemoryReadout(ImageFeatures(per_frame, per_query.high_res, per_query.pos))
        q, c, h, w = emb.shape
        memory, memory_pos, n_ptr = self._memory_tokens(state, frame, q)
        assert per_query.pos is not None
        pos = per_query.pos.expand(q, -1, -1, -1)
        out = self.memory_attention(curr=[emb.flatten(2).permute(2, 0, 1)], curr_pos=[pos.flatten(2).permute(2, 0, 1)],
                                    memory=memory, memory_pos=memory_pos, num_obj_ptr_tokens=n_ptr)
        attended = out.permute(1, 2, 0).reshape(q, c, h, w).to(emb.dtype)
        # lerp is exact at both ends: gate 0 -> per_frame, gate 1 -> attended (SAM2)
        gate = self.memory_gate.view(1, -1, 1, 1).to(emb.dtype).expand_as(emb)
        fused = torch.lerp(per_frame, attended, gate)
        return MemoryReadout(ImageFeatures(fused, per_query.high_res, per_query.pos))

    def write(self, state: Sam2MemoryState, features: ImageFeatures, decoded: DecoderOutput,
              frame: FrameInfo) -> Sam2MemoryState:
        k = frame.queries_per_image
        self._check(state, features, k, "write")
        emb = features.per_query(k).embedding
        q = emb.shape[0]
        low_res = decoded.low_res
        if low_res.ndim != 4 or low_res.shape[:2] != (q, 1):
            raise Sam2MemoryError(f"sam2_memory.write: the decoder's low-res logits must be (Q,1,h,w) for Q={q} "
                                  f"queries, got {tuple(low_res.shape)}; write the frame's single (best) mask")
        score = decoded.object_score
        appearing = (score > 0).to(emb.dtype) if score is not None else emb.new_ones(q, 1)
        if score is not None:  # SAM2's hard choice (idempotent when the decoder already made it)
            low_res = torch.where(score[:, :, None, None] > 0, low_res, NO_OBJ_SCORE)
        s = self.image_size
        high_res = F.interpolate(low_res.float(), size=(s, s), mode="bilinear", align_corners=False)
        if self.binarize_prompted_masks and frame.prompted and not self.training:
            mask = (high_res > 0).float()
        else:
            mask = torch.sigmoid(high_res)
        mask = mask * SIGMOID_SCALE + SIGMOID_BIAS
        out = self.memory_encoder(emb, mask.to(emb.dtype), skip_mask_sigmoid=True)
        mem = out["vision_features"]
        mem = mem + (1 - appearing[..., None, None]) * self.no_obj_embed_spatial[..., None, None].expand(*mem.shape)
        state.pos = out["vision_pos_enc"][-1]
        if self.bf16_memory and not self.training:  # SAM2VideoPredictor's storage (read back as fp32)
            mem = mem.to(torch.bfloat16)
        entry = FrameMemory(mem, self._object_pointer(decoded, appearing, q))
        (state.cond if frame.prompted else state.recent)[frame.t] = entry
        self._prune(state, frame.t)
        return state

    def _object_pointer(self, decoded: DecoderOutput, appearing: Tensor, q: int) -> Tensor:
        tokens = decoded.mask_tokens
        if tokens is None:
            if self.use_obj_ptrs:
                raise Sam2MemoryError("sam2_memory.write: the decoder gave no mask tokens for the object pointer; "
                                      "use the sam2 mask decoder (or set model.temporal.use_obj_ptrs: false)")
            return appearing.new_zeros(q, self.embed_dim)
        if tokens.shape[1] > 1 and decoded.iou.shape[1] == tokens.shape[1]:  # the best of a multimask output
            tokens = tokens[torch.arange(q, device=tokens.device), decoded.iou.argmax(-1)]
        else:
            tokens = tokens[:, 0]
        ptr = self.obj_ptr_proj(tokens)
        lam = appearing.to(ptr.dtype)
        return lam * ptr + (1 - lam) * self.no_obj_ptr

    # -- checkpoints --------------------------------------------------------------------------
    def import_foreign_state(self, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """SAM2's top-level memory keys (memory_attention.*, memory_encoder.*, no_mem_embed, ...) -> temporal.*.

        The gate follows the memory attention: a file whose memory attention is there but whose gate is
        not (an official SAM2 / SAM2.1 file, or a samfx run from before the gate) gets the gate open (1),
        i.e. SAM2's readout exactly; a file with a gate keeps it; a file without memory attention (none, or
        a per-frame run, whose no_mem_embed the image encoder hands over) leaves the gate as built (0), so
        a memory that starts from fresh weights starts as the per-frame model."""
        out = {(prefix + k if is_memory_key(k) else k): v for k, v in state.items()}
        tpos = out.get(prefix + "maskmem_tpos_enc")
        if tpos is not None and tuple(tpos.shape) != tuple(self.maskmem_tpos_enc.shape):
            raise CheckpointError(f"its maskmem_tpos_enc holds {tpos.shape[0]} memory frames; set "
                                  f"model.temporal.num_maskmem: {tpos.shape[0]}")
        if prefix + GATE not in out and any(k.startswith(prefix + "memory_attention.") for k in out):
            out[prefix + GATE] = torch.ones(tuple(self.memory_gate.shape))
        return out

    def export_foreign_state(self, fmt: str, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """SAM2's layout: ``temporal.*`` back at the top level; the gate, which SAM2 has no place for, is
        dropped when fully open (SAM2's readout) and refused otherwise (a one-line CheckpointError)."""
        if fmt != "sam2":
            return state
        gate = state.get(prefix + GATE)
        if gate is not None and not bool((gate == 1).all()):
            raise CheckpointError(
                f"{prefix}{GATE} (the sam2_memory gate between per-frame and memory features) is not fully "
                f"open (min {gate.min().item():.3g}, max {gate.max().item():.3g}), and SAM2's layout has no "
                f"gate, so --to sam2 cannot write this memory; keep the samfx checkpoint (--to samfx), or train "
                f"from an official SAM2 file (which loads the gate open) with {prefix}{GATE} frozen")
        return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items() if k != prefix + GATE}


def build_sam2_memory(cfg: Any, ctx: BuildContext) -> Sam2Memory:
    """Factory: checks the model's geometry (the numeric ranges of ``model.temporal.*``, declared in
    :class:`Sam2MemoryConfig`, are checked when the recipe is loaded) and builds the memory."""
    where = "model.temporal"
    if ctx.embed_dim != SAM2_DIM:
        raise Sam2MemoryError(f"{where}: sam2_memory needs the sam2 image encoder's {SAM2_DIM}-channel "
                              f"embedding, the model's is {ctx.embed_dim}")
    if ctx.image_size % 16:
        raise Sam2MemoryError(f"{where}: image size {ctx.image_size} is not divisible by 16")
    mem = Sam2Memory(ctx.embed_dim, ctx.embed_size, ctx.image_size, cfg.num_maskmem, cfg.max_obj_ptrs,
                     cfg.max_cond_frames, cfg.binarize_prompted_masks, cfg.use_obj_ptrs)
    mem.bf16_memory = cfg.bf16_memory
    return mem
