"""Key map between samfx's SAMUS encoder and the SAMUS authors' parameter names.

Keys are relative to the image encoder (no ``image_encoder.`` prefix). Everything SAM has keeps
SAM's name in both layouts; only SAMUS's additions differ:

=================================  ==============================================
samfx                              authors
=================================  ==============================================
cnn.stage0.conv / .norm            cnn_embed.inc.conv.0 / .1
cnn.stage{i+1}.conv / .norm        cnn_embed.downs.{i}.maxpool_conv.1 / .2
pos_adapter.{i}.conv / .norm       post_pos_embed.downs.{i}.maxpool_conv.1 / .2
input_adapter.down / .up           input_Adapter.D_fc1 / .D_fc2
blocks.N.mlp_adapter.down / .up    blocks.N.MLP_Adapter.D_fc1 / .D_fc2
blocks.N.cba.{q,k,v,proj}          blocks.N.Space_Adapter.{q,k,v,proj}
blocks.N.refine.conv / .norm       blocks.N.refine_Adapter.conv.0 / .1
=================================  ==============================================
"""
from __future__ import annotations

import re

from torch import Tensor

_N = "{n}"
# (samfx prefix, authors prefix); "{n}" stands for the same block / stage index on both sides.
PAIRS: list[tuple[str, str]] = [
    ("cnn.stage0.conv.", "cnn_embed.inc.conv.0."),
    ("cnn.stage0.norm.", "cnn_embed.inc.conv.1."),
    ("cnn.stage1.conv.", "cnn_embed.downs.0.maxpool_conv.1."),
    ("cnn.stage1.norm.", "cnn_embed.downs.0.maxpool_conv.2."),
    ("cnn.stage2.conv.", "cnn_embed.downs.1.maxpool_conv.1."),
    ("cnn.stage2.norm.", "cnn_embed.downs.1.maxpool_conv.2."),
    ("cnn.stage3.conv.", "cnn_embed.downs.2.maxpool_conv.1."),
    ("cnn.stage3.norm.", "cnn_embed.downs.2.maxpool_conv.2."),
    ("pos_adapter.{n}.conv.", "post_pos_embed.downs.{n}.maxpool_conv.1."),
    ("pos_adapter.{n}.norm.", "post_pos_embed.downs.{n}.maxpool_conv.2."),
    ("input_adapter.down.", "input_Adapter.D_fc1."),
    ("input_adapter.up.", "input_Adapter.D_fc2."),
    ("blocks.{n}.mlp_adapter.down.", "blocks.{n}.MLP_Adapter.D_fc1."),
    ("blocks.{n}.mlp_adapter.up.", "blocks.{n}.MLP_Adapter.D_fc2."),
    ("blocks.{n}.cba.", "blocks.{n}.Space_Adapter."),
    ("blocks.{n}.refine.conv.", "blocks.{n}.refine_Adapter.conv.0."),
    ("blocks.{n}.refine.norm.", "blocks.{n}.refine_Adapter.conv.1."),
]
AUTHORS_MARKERS = ("cnn_embed.", "post_pos_embed.", "input_Adapter.")


def _compile(prefix: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(prefix).replace(re.escape(_N), r"(\d+)"))


_TO_AUTHORS = [(_compile(a), b) for a, b in PAIRS]
_FROM_AUTHORS = [(_compile(b), a) for a, b in PAIRS]


def _rename(key: str, table: list[tuple[re.Pattern[str], str]]) -> str:
    for pattern, target in table:
        m = pattern.match(key)
        if m:
            head = target.replace(_N, m.group(1)) if m.groups() else target
            return head + key[m.end():]
    return key


def is_authors_layout(state: dict[str, Tensor]) -> bool:
    """True when encoder-relative `state` uses the SAMUS authors' names."""
    return any(k.startswith(AUTHORS_MARKERS) or "_Adapter." in k for k in state)


def from_authors(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Encoder-relative authors' keys -> samfx keys (unmapped keys, SAM's own, pass through)."""
    return {_rename(k, _FROM_AUTHORS): v for k, v in state.items()}


def to_authors(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Encoder-relative samfx keys -> the authors' keys."""
    return {_rename(k, _TO_AUTHORS): v for k, v in state.items()}


def export_authors_state_dict(model_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A samfx SAMUS model's state dict (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``)
    in the SAMUS authors' layout; samfx-only parts (prompt generators, adapters, temporal) are dropped.

    Save it with ``torch.save`` to give the authors' code (or samfx, which reads it back) a checkpoint.
    """
    enc = {k[len("image_encoder."):]: v for k, v in model_state.items() if k.startswith("image_encoder.")}
    out = {f"image_encoder.{k}": v for k, v in to_authors(enc).items()}
    out.update({k: v for k, v in model_state.items() if k.startswith(("prompt_encoder.", "mask_decoder."))})
    return out
