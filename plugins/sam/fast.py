"""The fast path of SAM's modules: same parameters, same maths, fewer and cheaper kernels.

:func:`set_fast_path` swaps the class of segment-anything modules inside a built component (no
state is added, parameter names and counts are unchanged) and swaps them back for the reference
path (``fast_attention: false``: segment-anything's exact forward code):

- ViT ``Attention`` -> :class:`~samfx_plugins.sam.attention.FastAttention` (SDPA + rel-pos);
- ViT ``Block`` -> :class:`FastBlock`: in window blocks the qkv and output projections run on the
  unpadded token grid (segment-anything pads the grid to whole windows first: at SAMUS's 32x32
  tokens with 14x14 windows that is 1764 tokens instead of 1024);
- ``LayerNorm2d`` -> :class:`FastLayerNorm2d`: one ``layer_norm`` kernel over channels-last
  instead of seven elementwise ops; under autocast it runs in the autocast dtype, so the CNN
  activations it feeds stay bf16 (segment-anything's version promotes them to fp32);
- mask decoder ``Attention`` -> :class:`FastDecoderAttention` (SDPA instead of matmul/softmax).

Convolution weights keep their layout: the convolutions follow the channels-last maps that
:class:`FastLayerNorm2d` returns, and ``train.channels_last`` makes the weights channels-last too
(measured on CPU: no difference; mkldnn's channels-first weight gradients then trigger torch's
"gradient layout contract" warning).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.image_encoder import Block, window_partition, window_unpartition
from segment_anything.modeling.transformer import Attention as DecoderAttention
from torch import Tensor, nn

from samfx_plugins.sam.attention import FastAttention, set_fast_attention

__all__ = ["FastBlock", "FastLayerNorm2d", "FastDecoderAttention", "set_fast_path"]


class FastLayerNorm2d(LayerNorm2d):
    """segment-anything's LayerNorm2d (channels of a (B,C,H,W) map) as one ``F.layer_norm`` call.

    The output has channels-last strides, which the convolutions after it keep.
    """

    def forward(self, x: Tensor) -> Tensor:
        y = x.permute(0, 2, 3, 1)
        dev = x.device.type
        if torch.is_autocast_enabled(dev) and x.dtype == torch.get_autocast_dtype(dev):
            # autocast would run layer_norm in fp32 and return fp32; the kernel accumulates in fp32 anyway
            with torch.autocast(dev, enabled=False):
                y = F.layer_norm(y, (y.shape[-1],), self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)
        else:
            y = F.layer_norm(y, (y.shape[-1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class FastBlock(Block):
    """segment-anything's ViT block; window blocks project qkv before window partition.

    segment-anything pads the normalised tokens with zeros up to whole windows and projects every
    padded token; a zero token's qkv is ``qkv(0)``, so the padding is filled with that one row
    instead (exact, also with adapters hooked on ``attn.qkv``: they see the unpadded (B,H,W,C)
    grid plus that (1,1,1,C) zero token). The output projection runs after unpartition.
    """

    def forward(self, x: Tensor) -> Tensor:
        attn = self.attn
        if self.window_size == 0 or not isinstance(attn, FastAttention):
            return super().forward(x)
        shortcut = x
        x = self.norm1(x)
        b, h, w, c = x.shape
        ws = self.window_size
        qkv = attn.qkv(x)
        pad_h, pad_w = -h % ws, -w % ws
        if pad_h or pad_w:
            fill = attn.qkv(x.new_zeros(1, 1, 1, c))
            qkv = torch.cat([qkv, fill.expand(b, h, pad_w, -1)], dim=2)
            qkv = torch.cat([qkv, fill.expand(b, pad_h, w + pad_w, -1)], dim=1)
        windows, pad_hw = window_partition(qkv, ws)
        out = window_unpartition(attn.attend(windows), ws, pad_hw, (h, w))
        x = shortcut + attn.proj(out)
        return x + self.mlp(self.norm2(x))


class FastDecoderAttention(DecoderAttention):
    """The mask decoder's attention (q/k/v projections, heads, softmax(qk^T/sqrt(c))v) by SDPA."""

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q = self._separate_heads(self.q_proj(q), self.num_heads)
        k = self._separate_heads(self.k_proj(k), self.num_heads)
        v = self._separate_heads(self.v_proj(v), self.num_heads)
        return self.out_proj(self._recombine_heads(F.scaled_dot_product_attention(q, k, v)))


_PAIRS: tuple[tuple[type, type], ...] = ((LayerNorm2d, FastLayerNorm2d), (Block, FastBlock),
                                         (DecoderAttention, FastDecoderAttention))


def set_fast_path(module: nn.Module, enabled: bool = True, rel_pos_mode: str | None = None) -> int:
    """Switch the segment-anything modules inside `module` to the fast (or reference) forward.

    Only modules whose class is exactly segment-anything's (or its fast twin) change; subclasses
    with their own forward (e.g. SAMUS's global block) are left alone. Returns the number switched.
    """
    count = set_fast_attention(module, enabled, rel_pos_mode)
    for m in module.modules():
        for ref, fast in _PAIRS:
            if type(m) in (ref, fast):
                m.__class__ = fast if enabled else ref
                count += 1
    return count
