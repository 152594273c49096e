"""SAMed's LoRA files (``save_lora_parameters``) <-> samfx's ``lora`` adapters.

SAMed keeps two (A, B) pairs per ViT block, q then v, in flat lists saved as ``w_a_{i:03d}`` (rank,
dim) and ``w_b_{i:03d}`` (dim, rank): block n's q pair is i = 2n, its v pair i = 2n + 1 (LoRA on
every block, SAMed's default), next to SAM's ``prompt_encoder.*`` and ``mask_decoder.*`` tensors.
samfx's adapter at ``blocks.n.attn.qkv`` with ``targets: qv`` holds the same pairs as ``a.0`` / ``b.0``
(q) and ``a.1`` / ``b.1`` (v); scale 1 (``alpha: null``) is SAMed's.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from samfx.contracts.errors import CheckpointError

_SITE = re.compile(r"^blocks\.(\d+)\.attn\.qkv$")


_KEY = re.compile(r"^w_[ab]_\d{3}$")


def is_samed(state: dict[str, Tensor]) -> bool:
    """True while `state` holds SAMed pairs (each adapter renames its own, so look at any)."""
    return any(_KEY.match(k) for k in state)


def samed_rank(state: dict[str, Tensor]) -> int:
    return int(next(v for k, v in state.items() if k.startswith("w_a_")).shape[0])


def pair_names(site: str) -> dict[str, str]:
    """samfx key (relative to the adapter) -> SAMed key, for the adapter at `site`."""
    m = _SITE.match(site)
    if m is None:
        raise CheckpointError(f"SAMed's LoRA sits on blocks.N.attn.qkv, not on '{site}'")
    n = int(m.group(1))
    return {f"{ab}.{j}.weight": f"w_{ab}_{2 * n + j:03d}" for ab in "ab" for j in (0, 1)}


def check_fits(state: dict[str, Tensor], rank: int, targets: str, scale: float) -> None:
    """One-line errors for a SAMed file the adapter cannot hold exactly."""
    if targets != "qv" or scale != 1.0:
        raise CheckpointError(f"a SAMed LoRA file needs the lora adapter with targets: qv and alpha: null "
                              f"(scale 1), this one has targets: {targets}, scale {scale:g}")
    if samed_rank(state) != rank:
        raise CheckpointError(f"its SAMed LoRA has rank {samed_rank(state)} but the recipe's lora adapter "
                              f"rank {rank}; set rank: {samed_rank(state)} on it, or rank: null to take the "
                              f"file's")


def rank_in(shapes: Mapping[str, tuple[int, ...]], site: str) -> int | None:
    """The rank of the LoRA pair for `site` in a key -> shape table: a samfx checkpoint's
    ``adapters.<name>-<site>.a.0.weight`` or a SAMed file's ``w_a_*``; None when it holds neither."""
    tail = f"-{site.replace('.', '-')}.a.0.weight"
    for key, shape in shapes.items():
        if key.startswith("adapters.") and key.endswith(tail):
            return shape[0]
    m = _SITE.match(site)
    theirs = f"w_a_{2 * int(m.group(1)):03d}" if m else ""
    return shapes[theirs][0] if theirs in shapes else None
