"""Medical-SAM-Adapter (MSA) checkpoints <-> samfx's ``msa_adapter`` adapters.

MSA's ViT block N holds ``image_encoder.blocks.N.MLP_Adapter`` (next to the MLP on norm2's output,
scaled 0.5, no skip), ``Space_Adapter`` (on the attention output, with skip) and ``Depth_Adapter`` (its
3-D branch only), each ``D_fc1`` (down) -> GELU -> ``D_fc2`` (up). samfx: the adapter at
``blocks.N.mlp`` (parallel) and the one at ``blocks.N.attn.proj`` (serial) hold the first two; the
3-D ``Depth_Adapter`` never runs on 2-D images and is dropped on import.
"""
from __future__ import annotations

import re

from torch import Tensor

from samfx.contracts.errors import CheckpointError

_SITE = re.compile(r"^blocks\.(\d+)\.(mlp|attn\.proj)$")
THEIRS = {"mlp": "MLP_Adapter", "attn.proj": "Space_Adapter"}
LAYERS = {"down": "D_fc1", "up": "D_fc2"}


_KEY = re.compile(r"^image_encoder\.blocks\.\d+\.(MLP|Space|Depth)_Adapter\.D_fc[12]\.")


def is_msa(state: dict[str, Tensor]) -> bool:
    """True while `state` holds MSA adapter keys (each adapter renames its own, so look at any)."""
    return any(_KEY.match(k) for k in state)


def names(site: str, prefix: str) -> dict[str, str]:
    """MSA key -> samfx key for the adapter at `site` (under `prefix`)."""
    m = _SITE.match(site)
    if m is None:
        raise CheckpointError(f"MSA's adapters sit on blocks.N.mlp and blocks.N.attn.proj, not on '{site}'; "
                              f"use recipes/msa.yaml")
    block, part = m.groups()
    return {f"image_encoder.blocks.{block}.{THEIRS[part]}.{theirs}.{p}": f"{prefix}{mine}.{p}"
            for mine, theirs in LAYERS.items() for p in ("weight", "bias")}


def check_fits(parallel: bool, scale: float, act: str, site: str) -> None:
    want = (site.endswith(".mlp"), 0.5 if site.endswith(".mlp") else 1.0)
    if (parallel, scale) != want or act != "gelu":
        raise CheckpointError(f"MSA's adapter at '{site}' is {'parallel' if want[0] else 'serial'}, scale "
                              f"{want[1]:g}, act gelu; this one is {'parallel' if parallel else 'serial'}, scale "
                              f"{scale:g}, act {act}; use recipes/msa.yaml")
