"""Recipe schema of the ``apg`` prompt generator (torch-free, imported by plugin.py)."""
from __future__ import annotations

from dataclasses import dataclass

from samfx.contracts.bounds import bounded

FORMS = ("paper", "reference")
# Keys that fix the APG's architecture: a saved APG loads only where these agree.
ARCH_KEYS = ("form", "tokens", "tasks", "mlp_dim", "residual")


@dataclass
class APGConfig:
    """AutoSAMUS's Auto Prompt Generator (docs/apg.md).

    form: ``paper`` (the paper's equations, default) or ``reference`` (the SAMUS authors' code).
    tokens: k learnable task tokens per task set.
    sparse_tokens: how many tokens of T' go to the decoder (None: k for paper, 1 for reference).
    tasks: independent task-token sets; query i uses set ``class_ids[i]-1`` (1: all classes share).
    mlp_dim: hidden width of the MLPs / FFNs (None: 4 x embedding width).
    residual: paper form only: F_i' = F_i + C(..) and T' = T + C(..) (false: the literal equations).
    weights: an APG file written by ``save_apg`` / ``python -m samfx_plugins.apg export``,
        loaded when the APG is built (path, ``~`` expanded).
    """

    form: str = "paper"
    tokens: int = bounded(50, ge=1)
    sparse_tokens: int | None = bounded(None, ge=1, note="at most tokens; null: k for paper, 1 for reference")
    tasks: int = bounded(1, ge=1, note="1 shares one task-token set")
    mlp_dim: int | None = bounded(None, ge=1, note="null: 4 x width")
    residual: bool = True
    weights: str | None = None
