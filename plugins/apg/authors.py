"""Key map between samfx's APG (``form: reference``) and the AutoSAMUS authors' checkpoints.

The authors' model keeps its APG in ``prompt_generator.*`` and the dense-prompt convs in
``feature_adapter.*`` (both at the model's top level). Each depth-2 cross transformer stores, per
layer i, four modules: ``layers.i.0`` / ``.1`` the attention of stream A / B (``norm1``, ``norm2``,
``fn.to_q``, ``fn.to_kv``, ``fn.to_out.0``) and ``layers.i.2`` / ``.3`` the feed-forward of A / B
(``norm``, ``fn.net.0``, ``fn.net.3``). samfx keeps one block per stream and layer
(``a_blocks.i`` / ``b_blocks.i``) holding both. Table: docs/checkpoints.md.
"""
from __future__ import annotations

import re

from torch import Tensor

GENERATOR = "prompt_generator."
DENSE = "feature_adapter."
MIXERS = {"token_mixer": "cross_token_token", "image_mixer": "cross_image_token"}
# samfx module inside a block -> (authors' slot for stream A, path inside that slot)
SLOTS = {"norm_q": (0, "norm1"), "norm_kv": (0, "norm2"), "to_q": (0, "fn.to_q"), "to_kv": (0, "fn.to_kv"),
         "to_out": (0, "fn.to_out.0"), "norm_ff": (2, "norm"), "ff.lin1": (2, "fn.net.0"),
         "ff.lin2": (2, "fn.net.3")}
_BLOCK = re.compile(r"^(token_mixer|image_mixer)\.([ab])_blocks\.(\d+)\.(.+)\.(weight|bias)$")


def authors_key(own: str) -> str:
    """The authors' model key of an APG parameter named `own` (relative to the APG)."""
    if own == "task_tokens":
        return GENERATOR + "object_token"
    if own.startswith("proj."):
        return GENERATOR + "token_" + own
    if own.startswith("dense."):
        return DENSE + own[len("dense."):]
    m = _BLOCK.match(own)
    if not m or m.group(4) not in SLOTS:
        raise KeyError(f"APG parameter '{own}' has no counterpart in the authors' layout")
    mixer, stream, layer, module, kind = m.groups()
    slot, path = SLOTS[module]
    slot += stream == "b"
    return f"{GENERATOR}{MIXERS[mixer]}.layers.{layer}.{slot}.{path}.{kind}"


def is_authors_apg(state: dict[str, Tensor]) -> bool:
    return any(k.startswith(GENERATOR) for k in state)


def from_authors(state: dict[str, Tensor], own_keys: list[str], prefix: str) -> dict[str, Tensor]:
    """`state` with the authors' APG keys renamed to ``prefix + own key`` (other keys unchanged)."""
    names = {authors_key(k): prefix + k for k in own_keys}
    return {names.get(k, k): v for k, v in state.items()}


def to_authors(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """`state` with the APG keys under `prefix` renamed to the authors' keys (other keys unchanged)."""
    return {(authors_key(k[len(prefix):]) if k.startswith(prefix) else k): v for k, v in state.items()}
