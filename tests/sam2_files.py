"""The sam2 package's own SAM2.1 models with random weights, saved in the official layout
(``{"model": state_dict}``), for the sam2 plugin's tests."""
from __future__ import annotations

from pathlib import Path

import torch

from samfx_plugins.sam2.config import PACKAGE_CONFIGS


def package_model(size: str = "tiny", image_size: int = 256, seed: int = 0) -> torch.nn.Module:
    """sam2's ``build_sam2`` (eval, CPU, build_sam2's post-processing) at `image_size`; parameters that
    sam2 initialises to zero (Hiera's position embeddings, no_obj_ptr...) get small random values so that
    every weight takes part in the comparisons."""
    from sam2.build_sam import build_sam2

    torch.manual_seed(seed)
    model = build_sam2(PACKAGE_CONFIGS[size], None, device="cpu",
                       hydra_overrides_extra=[f"++model.image_size={image_size}"])
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().max() == 0:
                p.normal_(0, 0.02)
    return model.eval()


def save_official(model: torch.nn.Module, path: Path) -> Path:
    torch.save({"model": model.state_dict()}, path)
    return path
