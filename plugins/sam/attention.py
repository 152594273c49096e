"""Fast attention for SAM's ViT blocks: ``scaled_dot_product_attention`` with SAM's decomposed
relative position terms.

:class:`FastAttention` subclasses segment-anything's ``Attention`` and only replaces ``forward``:
it has the same parameters (``qkv``, ``proj``, ``rel_pos_h``, ``rel_pos_w``) and no state of its
own, so :func:`set_fast_attention` switches a built encoder either way by changing the class of its
attention modules. Outputs match segment-anything's within float rounding (tests: <= 1e-4 fp32).

The rel-pos terms reach SDPA in one of two ways (``rel_pos_mode``):

- ``bias``: an additive float mask (B,heads,N,N). SDPA's CPU flash kernel and CUDA's
  memory-efficient kernel accept it, but it is materialised, kept for backward and given a
  gradient of the same size (about 1.3 GiB for SAMUS vit_b at batch 8 in bf16).
- ``fold``: the terms folded into the dot product. With ``rel_h[q,kh]`` and ``rel_w[q,kw]`` the
  per-query tables SAM adds, ``q'=[q*scale, rel_h, rel_w]`` and ``k'=[k, onehot(kh), onehot(kw)]``
  give ``q'.k' = scale*q.k + rel_h[q,kh] + rel_w[q,kw]`` exactly, with no mask, so CUDA's flash
  kernel runs (v is zero-padded to the same head width). Twice the attention FLOPs, no N² tensors.
- ``auto`` (default): ``fold`` on CUDA, ``bias`` elsewhere (on CPU the masked flash kernel is
  about 2x faster than the folded one). The ``SAMFX_REL_POS`` environment variable overrides
  the default when modules are built (for benchmarks: see docs/performance.md).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention as SamAttention
from segment_anything.modeling.image_encoder import get_rel_pos
from torch import Tensor, nn

from samfx.contracts.errors import SamfxError

__all__ = ["FastAttention", "SamAttention", "REL_POS_MODES", "rel_pos_table", "rel_pos_bias",
           "folded_attention", "set_fast_attention", "default_rel_pos_mode"]

REL_POS_MODES = ("auto", "bias", "fold")
REL_POS_ENV = "SAMFX_REL_POS"


def default_rel_pos_mode() -> str:
    """``$SAMFX_REL_POS`` or ``auto``; a clear error for anything else."""
    mode = os.environ.get(REL_POS_ENV, "auto").strip().lower() or "auto"
    if mode not in REL_POS_MODES:
        raise SamfxError(f"{REL_POS_ENV}={mode!r}: not one of {', '.join(REL_POS_MODES)}; unset it to use auto")
    return mode


def rel_pos_table(q_size: int, k_size: int, rel_pos: Tensor) -> Tensor:
    """(q_size, k_size, C) embeddings of each query/key offset, as segment-anything's ``get_rel_pos``.

    The common case (square attention, table already 2n-1 long) gathers with an index built on the
    table's device, avoiding a host-to-device copy per call.
    """
    if q_size == k_size and rel_pos.shape[0] == 2 * q_size - 1:
        pos = torch.arange(q_size, device=rel_pos.device)
        return rel_pos[pos[:, None] - pos[None, :] + (k_size - 1)]
    return get_rel_pos(q_size, k_size, rel_pos)


def _rel_terms(q: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor, q_size: tuple[int, int],
               k_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """SAM's rel-pos logit terms: rel_h (B,heads,qh,qw,kh) and rel_w (B,heads,qh,qw,kw), one einsum each."""
    b, n, _, c = q.shape
    qh, qw = q_size
    kh, kw = k_size
    rh = rel_pos_table(qh, kh, rel_pos_h).to(q.dtype)
    rw = rel_pos_table(qw, kw, rel_pos_w).to(q.dtype)
    r_q = q.reshape(b, n, qh, qw, c)
    return torch.einsum("bnhwc,hkc->bnhwk", r_q, rh), torch.einsum("bnhwc,wkc->bnhwk", r_q, rw)


def rel_pos_bias(q: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor, q_size: tuple[int, int],
                 k_size: tuple[int, int]) -> Tensor:
    """Additive bias (B,heads,Nq,Nk) equal to what SAM's ``add_decomposed_rel_pos`` adds to the logits.

    ``q`` is (B,heads,Nq,C), unscaled (SAM uses the raw query for the rel-pos terms).
    """
    b, n = q.shape[:2]
    rel_h, rel_w = _rel_terms(q, rel_pos_h, rel_pos_w, q_size, k_size)
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, n, q_size[0] * q_size[1], k_size[0] * k_size[1])


def folded_attention(q: Tensor, k: Tensor, v: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor,
                     size: tuple[int, int], scale: float) -> Tensor:
    """Self-attention over an (h,w) grid with SAM's rel-pos folded into q/k (see module doc).

    q, k, v (B,heads,h*w,C) -> (B,heads,h*w,C). Head width becomes C+h+w, padded to a multiple of 8.
    """
    b, n, length, c = q.shape
    h, w = size
    rel_h, rel_w = _rel_terms(q, rel_pos_h, rel_pos_w, size, size)
    pad = -(c + h + w) % 8
    eye_h = torch.eye(h, dtype=q.dtype, device=q.device)
    eye_w = torch.eye(w, dtype=q.dtype, device=q.device)
    # key j = (kh, kw) carries onehot(kh) and onehot(kw)
    k_rows = eye_h[:, None, :].expand(h, w, h).reshape(1, 1, length, h).expand(b, n, -1, -1)
    k_cols = eye_w[None, :, :].expand(h, w, w).reshape(1, 1, length, w).expand(b, n, -1, -1)
    parts_q = [q * scale, rel_h.reshape(b, n, length, h), rel_w.reshape(b, n, length, w)]
    parts_k = [k, k_rows, k_cols]
    if pad:
        zeros = q.new_zeros(b, n, length, pad)
        parts_q.append(zeros)
        parts_k.append(zeros)
    q2, k2 = torch.cat(parts_q, -1), torch.cat(parts_k, -1)
    v2 = F.pad(v, (0, q2.shape[-1] - c))   # same head width as q/k so the flash kernel qualifies
    return F.scaled_dot_product_attention(q2, k2, v2, scale=1.0)[..., :c]


class FastAttention(SamAttention):
    """segment-anything's ViT attention computed by ``F.scaled_dot_product_attention``."""

    rel_pos_mode = "auto"   # per instance once set_fast_attention ran; see the module doc

    def attend(self, qkv: Tensor) -> Tensor:
        """The attention itself, between the qkv and output projections: (B,h,w,3C) -> (B,h,w,C)."""
        b, h, w, _ = qkv.shape
        qkv = qkv.reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B,heads,N,C) each
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v)
        elif self.rel_pos_mode == "fold" or (self.rel_pos_mode == "auto" and q.is_cuda):
            out = folded_attention(q, k, v, self.rel_pos_h, self.rel_pos_w, (h, w), self.scale)
        else:
            bias = rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w), (h, w))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return out.transpose(1, 2).reshape(b, h, w, -1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.attend(self.qkv(x)))


def set_fast_attention(module: nn.Module, enabled: bool = True, rel_pos_mode: str | None = None) -> int:
    """Switch every SAM ViT attention inside `module` to the fast (or the reference) forward.

    ``rel_pos_mode`` (auto | bias | fold; default ``$SAMFX_REL_POS`` or auto) is set on the fast
    modules. Returns how many attention modules were switched. Parameters and hooks are untouched.
    """
    mode = default_rel_pos_mode() if rel_pos_mode is None else rel_pos_mode
    if mode not in REL_POS_MODES:
        raise SamfxError(f"rel_pos_mode {mode!r}: not one of {', '.join(REL_POS_MODES)}")
    target = FastAttention if enabled else SamAttention
    count = 0
    for m in module.modules():
        if isinstance(m, SamAttention) and type(m) in (FastAttention, SamAttention):
            m.__class__ = target
            if enabled:
                m.rel_pos_mode = mode
            count += 1
    return count
