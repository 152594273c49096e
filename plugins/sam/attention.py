"""Fast attention for SAM's ViT blocks: ``scaled_dot_product_attention`` with SAM's decomposed
relative position added as an additive attention bias.

:class:`FastAttention` subclasses segment-anything's ``Attention`` and only replaces ``forward``:
it has the same parameters (``qkv``, ``proj``, ``rel_pos_h``, ``rel_pos_w``) and no state of its
own, so :func:`set_fast_attention` switches a built encoder either way by changing the class of its
attention modules. Outputs match segment-anything's within float rounding (tests: <= 1e-4 fp32).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention as SamAttention
from segment_anything.modeling.image_encoder import get_rel_pos
from torch import Tensor, nn

__all__ = ["FastAttention", "SamAttention", "rel_pos_table", "rel_pos_bias", "set_fast_attention"]


def rel_pos_table(q_size: int, k_size: int, rel_pos: Tensor) -> Tensor:
    """(q_size, k_size, C) embeddings of each query/key offset, as segment-anything's ``get_rel_pos``.

    The common case (square attention, table already 2n-1 long) gathers with an index built on the
    table's device, avoiding a host-to-device copy per call.
    """
    if q_size == k_size and rel_pos.shape[0] == 2 * q_size - 1:
        pos = torch.arange(q_size, device=rel_pos.device)
        return rel_pos[pos[:, None] - pos[None, :] + (k_size - 1)]
    return get_rel_pos(q_size, k_size, rel_pos)


def rel_pos_bias(q: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor, q_size: tuple[int, int],
                 k_size: tuple[int, int]) -> Tensor:
    """Additive bias (B,heads,Nq,Nk) equal to what SAM's ``add_decomposed_rel_pos`` adds to the logits.

    ``q`` is (B,heads,Nq,C), unscaled (SAM uses the raw query for the rel-pos terms).
    """
    b, n, _, c = q.shape
    qh, qw = q_size
    kh, kw = k_size
    rh = rel_pos_table(qh, kh, rel_pos_h).to(q.dtype)
    rw = rel_pos_table(qw, kw, rel_pos_w).to(q.dtype)
    r_q = q.reshape(b, n, qh, qw, c)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rh)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rw)
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, n, qh * qw, kh * kw)


class FastAttention(SamAttention):
    """segment-anything's ViT attention computed by ``F.scaled_dot_product_attention``."""

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B,heads,N,C) each
        bias = rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w), (h, w)) if self.use_rel_pos else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


def set_fast_attention(module: nn.Module, enabled: bool = True) -> int:
    """Switch every SAM ViT attention inside `module` to the fast (or the reference) forward.

    Returns how many attention modules were switched. Parameters and hooks are untouched.
    """
    target = FastAttention if enabled else SamAttention
    count = 0
    for m in module.modules():
        if isinstance(m, SamAttention) and type(m) in (FastAttention, SamAttention):
            m.__class__ = target
            count += 1
    return count
