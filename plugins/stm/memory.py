"""Space-time memory for echo clips (XMem / MemSAM style, batched, bounded, deterministic).

Per frame t of a clip (queries batched as N = clips x classes):
- ``read(state, features, frame)``: query key k_t = P_k(emb); affinity of every query position with every memory
  position (softmax over the memory, negative squared L2 as in STCN or scaled dot product); readout =
  affinity-weighted memory values (+ ConvGRU hidden state) -> projection to C channels -> extra dense
  prompt and/or added to the image embedding (``inject``). Empty memory (frame 0) reads nothing.
- ``write(state, features, decoded, frame)``: value v_t = E_v(emb, probs) from the frame's *probabilities*
  (sigmoid of the decoder's low-res logits); the bank keeps the first frame plus the last
  ``memory_frames`` written frames, so memory is bounded by construction. No randomness anywhere:
  inference is deterministic.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
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

AFFINITIES = ("l2", "dot")
INJECTS = ("dense", "embedding", "both")


class STMError(SamfxError):
    """Bad configuration or input of the space-time memory."""


@dataclass
class MemoryBank:
    """Per-clip memory state, batched over N queries. Keys (N, HW, Dk'), values (N, HW, Dv) per frame."""

    batch_size: int
    first: tuple[Tensor, Tensor] | None = None
    recent: deque = field(default_factory=deque)
    hidden: Tensor | None = None            # (N, hidden_dim, h, w)
    frames_seen: int = 0                    # frames written so far (stored or not)

    @property
    def num_frames(self) -> int:
        """Frames currently held in the bank."""
        return len(self.recent) + (self.first is not None)

    def nbytes(self) -> int:
        """Bytes held by the bank's tensors (keys, values, hidden state)."""
        tensors = [t for kv in ([self.first] if self.first else []) + list(self.recent) for t in kv]
        if self.hidden is not None:
            tensors.append(self.hidden)
        return sum(t.numel() * t.element_size() for t in tensors)

    def memory(self) -> tuple[Tensor, Tensor] | None:
        items = ([self.first] if self.first is not None else []) + list(self.recent)
        if not items:
            return None
        return torch.cat([k for k, _ in items], 1), torch.cat([v for _, v in items], 1)


class SpaceTimeMemory(TemporalModule[MemoryBank]):
    """See the module docstring. ``embed_dim``/``embed_size``/``image_size`` come from the encoder."""

    def __init__(self, embed_dim: int, embed_size: tuple[int, int], image_size: int, key_dim: int = 64,  # noqa: PLR0913  (STMConfig's fields + the encoder geometry)
                 value_dim: int = 64, mask_channels: int = 16, hidden_dim: int = 0, memory_frames: int = 6,
                 keep_first: bool = True, write_every: int = 1, affinity: str = "l2", inject: str = "dense",
                 out_init_std: float = 0.01):
        super().__init__()
        self.embed_dim, self.embed_size, self.image_size = embed_dim, tuple(embed_size), image_size
        self.key_dim, self.value_dim, self.hidden_dim = key_dim, value_dim, hidden_dim
        self.memory_frames, self.keep_first, self.write_every = memory_frames, keep_first, write_every
        self.affinity, self.inject = affinity, inject
        c, m = embed_dim, mask_channels
        self.key_proj = nn.Conv2d(c, key_dim, 1)
        # Value = fuser(pixel_proj(emb) + mask_encoder(2 * probs - 1)), as SAM2's memory encoder: the mask
        # branch ends in value_dim channels normalised to the scale of the projected embedding, so the mask
        # is not drowned by the C image channels. Centred input and conv biases before the only norm
        # (over m channels: a norm over the m/4 first channels would keep little more than signs) keep
        # an all-0 and an all-1 mask apart.
        m4 = max(m // 4, 1)
        self.mask_encoder = nn.Sequential(
            nn.Conv2d(1, m4, 2, stride=2), nn.GELU(),
            nn.Conv2d(m4, m, 2, stride=2), LayerNorm2d(m), nn.GELU(), nn.Conv2d(m, value_dim, 1))
        self.pixel_proj = nn.Conv2d(c, value_dim, 1)
        self.value_fuser = nn.Sequential(
            nn.Conv2d(value_dim, value_dim, 3, padding=1), LayerNorm2d(value_dim), nn.GELU(),
            nn.Conv2d(value_dim, value_dim, 1))
        if hidden_dim:
            self.gru_gates = nn.Conv2d(value_dim + hidden_dim, 2 * hidden_dim, 3, padding=1)
            self.gru_cand = nn.Conv2d(value_dim + hidden_dim, hidden_dim, 3, padding=1)
        self.readout_proj = nn.Sequential(
            nn.Conv2d(value_dim + hidden_dim, c, 3, padding=1), nn.GELU(), nn.Conv2d(c, c, 1))
        last = cast(nn.Conv2d, self.readout_proj[-1])
        nn.init.normal_(last.weight, std=out_init_std)
        assert last.bias is not None
        nn.init.zeros_(last.bias)

    # -- helpers ------------------------------------------------------------------------------
    def _check(self, state: MemoryBank, emb: Tensor, what: str) -> None:
        if not isinstance(state, MemoryBank):
            raise STMError(f"stm.{what}: state must come from init_state(), got {type(state).__name__}")
        if emb.ndim != 4 or emb.shape[1] != self.embed_dim or tuple(emb.shape[2:]) != self.embed_size:
            raise STMError(f"stm.{what}: image embedding has shape {tuple(emb.shape)}, expected "
                           f"(N,{self.embed_dim},{self.embed_size[0]},{self.embed_size[1]}) from the encoder; "
                           f"build the memory with the same model (model.temporal)")
        if emb.shape[0] != state.batch_size:
            raise STMError(f"stm.{what}: embedding batch {emb.shape[0]} != state batch {state.batch_size}; "
                           f"call init_state(batch_size=clips*classes) at the start of each clip")

    def _project(self, emb: Tensor) -> Tensor:
        """(N, HW, Dk) fp32 key projection, shared by memory keys and queries (STCN)."""
        return self.key_proj(emb).flatten(2).transpose(1, 2).float()

    def _keys(self, emb: Tensor) -> Tensor:
        """(N, HW, Dk') fp32 keys; for L2 affinity a column -|k|^2/2 is appended (see ``read``)."""
        k = self._project(emb)
        if self.affinity == "l2":
            k = torch.cat([k, -0.5 * k.pow(2).sum(-1, keepdim=True)], -1)
        return k

    def _queries(self, emb: Tensor) -> Tensor:
        q = self._project(emb)
        if self.affinity == "l2":
            q = torch.cat([q, torch.ones_like(q[..., :1])], -1)
        return q

    def _values(self, emb: Tensor, probs: Tensor) -> Tensor:
        """Values from per-query embeddings and mask probabilities (N,1,H,W), area-resized to 4h x 4w
        (a no-op for SAM's decoder, whose low-res masks are 4h x 4w)."""
        h, w = self.embed_size
        small = F.interpolate(probs.to(emb.dtype), size=(4 * h, 4 * w), mode="area")
        return self.value_fuser(self.pixel_proj(emb) + self.mask_encoder(2 * small - 1))

    # -- TemporalModule -----------------------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device) -> MemoryBank:
        if batch_size < 1:
            raise STMError(f"stm.init_state: batch_size must be >= 1, got {batch_size}")
        return MemoryBank(batch_size)

    def read(self, state: MemoryBank, features: ImageFeatures, frame: FrameInfo) -> MemoryReadout:
        per_query = features.per_query(frame.queries_per_image)
        image_embedding = per_query.embedding
        self._check(state, image_embedding, "read")
        mem = state.memory()
        if mem is None and state.hidden is None:
            return MemoryReadout()
        n, _, h, w = image_embedding.shape
        if mem is not None:
            keys, values = mem
            q = self._queries(image_embedding)
            # -|q-k|^2/sqrt(d) = (2/sqrt(d)) * ([q,1] . [k,-|k|^2/2]) - |q|^2/sqrt(d); the last term is
            # constant over the memory, so softmax ignores it and SDPA computes the L2 affinity. fp32 even
            # under autocast: the -|k|^2/2 column is large and bf16 would blur the affinities.
            scale = (2.0 if self.affinity == "l2" else 1.0) / math.sqrt(self.key_dim)
            with torch.autocast(image_embedding.device.type, enabled=False):
                readout = F.scaled_dot_product_attention(q, keys, values.float(), scale=scale)
            readout = readout.transpose(1, 2).reshape(n, self.value_dim, h, w).to(values.dtype)
        else:
            readout = image_embedding.new_zeros(n, self.value_dim, h, w)
        if self.hidden_dim:
            hidden = state.hidden if state.hidden is not None else readout.new_zeros(n, self.hidden_dim, h, w)
            readout = torch.cat([readout, hidden.to(readout.dtype)], 1)
        extra = self.readout_proj(readout)
        if self.inject == "dense":
            return MemoryReadout(dense=extra)
        fused = ImageFeatures(image_embedding + extra.to(image_embedding.dtype), per_query.high_res, per_query.pos)
        return MemoryReadout(fused, extra if self.inject == "both" else None)

    def write(self, state: MemoryBank, features: ImageFeatures, decoded: DecoderOutput,
              frame: FrameInfo) -> MemoryBank:
        image_embedding = features.per_query(frame.queries_per_image).embedding
        self._check(state, image_embedding, "write")
        n = image_embedding.shape[0]
        low_res = decoded.low_res
        if low_res.ndim != 4 or low_res.shape[:2] != (n, 1):
            raise STMError(f"stm.write: the decoder's low-res logits must be (N,1,h,w) for N={n} queries, got "
                           f"{tuple(low_res.shape)}; write the frame's single-mask decoder output")
        # the decoder's own (4h,4w) probabilities: upsampling to S x S and area-pooling back (before the
        # contract had DecoderOutput) smoothed them a little and cost two full-size passes per frame
        values = self._values(image_embedding, torch.sigmoid(low_res))
        t = state.frames_seen
        state.frames_seen += 1
        if self.hidden_dim:
            state.hidden = self._gru(values, state.hidden)
        if t % self.write_every != 0:
            return state
        entry = (self._keys(image_embedding), values.flatten(2).transpose(1, 2))
        if state.first is None and self.keep_first:
            state.first = entry
            return state
        state.recent.append(entry)
        while len(state.recent) > self.memory_frames:
            state.recent.popleft()
        return state

    def _gru(self, x: Tensor, hidden: Tensor | None) -> Tensor:
        if hidden is None:
            hidden = x.new_zeros(x.shape[0], self.hidden_dim, *x.shape[2:])
        hidden = hidden.to(x.dtype)
        z, r = torch.sigmoid(self.gru_gates(torch.cat([x, hidden], 1))).chunk(2, 1)
        cand = torch.tanh(self.gru_cand(torch.cat([x, r * hidden], 1)))
        return (1 - z) * hidden + z * cand

    def import_foreign_state(self, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """MemSAM's memory (``memory.*``) has no counterpart here: say why instead of 'unexpected keys'."""
        if any(k.startswith("memory.value_encoder.") for k in state):
            raise CheckpointError(
                "it is a MemSAM checkpoint whose memory (memory.*: ResNet-18 value encoder, key projection, "
                "memory decoder) does not map onto stm (docs/checkpoints.md); load its SAMUS part: samfx convert "
                "FILE --drop 'memory.*' --to authors --recipe recipes/samus.yaml --out samus_part.pth")
        return state


def build_stm(cfg, ctx: BuildContext) -> SpaceTimeMemory:
    """Factory: checks the choices and the rule across keys of ``model.temporal.*`` (the numeric ranges,
    declared in :class:`STMConfig`, are checked when the recipe is loaded) and builds the memory."""
    where = "model.temporal"
    if cfg.affinity not in AFFINITIES:
        raise STMError(f"{where}.affinity: '{cfg.affinity}' is not one of {', '.join(AFFINITIES)}")
    if cfg.inject not in INJECTS:
        raise STMError(f"{where}.inject: '{cfg.inject}' is not one of {', '.join(INJECTS)}")
    if cfg.memory_frames == 0 and not cfg.keep_first:
        raise STMError(f"{where}: memory_frames=0 with keep_first=false keeps no frame; set one of them")
    return SpaceTimeMemory(ctx.embed_dim, ctx.embed_size, ctx.image_size, cfg.key_dim, cfg.value_dim,
                           cfg.mask_channels, cfg.hidden_dim, cfg.memory_frames, cfg.keep_first, cfg.write_every,
                           cfg.affinity, cfg.inject, cfg.out_init_std)
