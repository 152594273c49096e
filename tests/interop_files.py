"""Small random checkpoints in exactly the layouts other projects write (key names, shapes, dtypes,
wrappers), built from a tiny samfx SAM so they load into the recipes at size tiny."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from samfx.config.recipe import load_recipe
from samfx.model.build import build_model

TINY_SAM = ["model.image_encoder.size=tiny", "model.image_encoder.image_size=64"]
TINY_WIDTH, TINY_BLOCKS = 96, 4


def random_sam_state(seed: int = 0) -> dict[str, Tensor]:
    """A SAM state dict (image_encoder / prompt_encoder / mask_decoder, SAM's names) of the tiny size."""
    model = build_model(load_recipe("recipes/sam_vit_b.yaml", TINY_SAM))
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.05 if v.is_floating_point() else v
            for k, v in model.state_dict().items()}


def samed_file(folder: Path, rank: int = 4, suffix: str = ".pth", mask_tokens: int = 4, seed: int = 1) -> Path:
    """SAMed's save_lora_parameters: w_a_{i:03d} (r, dim) / w_b_{i:03d} (dim, r), q and v of each block in
    turn, plus SAM's prompt_encoder.* and mask_decoder.* (no image encoder)."""
    g = torch.Generator().manual_seed(seed)
    state = {f"w_a_{i:03d}": torch.randn(rank, TINY_WIDTH, generator=g) for i in range(2 * TINY_BLOCKS)}
    state |= {f"w_b_{i:03d}": torch.randn(TINY_WIDTH, rank, generator=g) for i in range(2 * TINY_BLOCKS)}
    state |= {k: v for k, v in random_sam_state(seed).items() if k.startswith(("prompt_encoder.", "mask_decoder."))}
    if mask_tokens != 4:  # SAMed's decoder with num_multimask_outputs = num_classes
        width = state["mask_decoder.mask_tokens.weight"].shape[1]
        state["mask_decoder.mask_tokens.weight"] = torch.randn(mask_tokens, width, generator=g)
    path = folder / f"samed_lora{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def base_sam_file(folder: Path, seed: int = 2) -> Path:
    path = folder / "sam_tiny.pth"
    torch.save(random_sam_state(seed), path)
    return path


def msa_state(seed: int = 3, hidden: int = TINY_WIDTH // 4) -> dict[str, Tensor]:
    """Medical-SAM-Adapter's net.state_dict(): SAM + per block MLP_/Space_/Depth_Adapter.D_fc1/D_fc2."""
    state = random_sam_state(seed)
    g = torch.Generator().manual_seed(seed + 100)
    for n in range(TINY_BLOCKS):
        for name in ("MLP_Adapter", "Space_Adapter", "Depth_Adapter"):
            head = f"image_encoder.blocks.{n}.{name}"
            state[f"{head}.D_fc1.weight"] = torch.randn(hidden, TINY_WIDTH, generator=g) * 0.2
            state[f"{head}.D_fc1.bias"] = torch.randn(hidden, generator=g) * 0.2
            state[f"{head}.D_fc2.weight"] = torch.randn(TINY_WIDTH, hidden, generator=g) * 0.2
            state[f"{head}.D_fc2.bias"] = torch.randn(TINY_WIDTH, generator=g) * 0.2
    return state


def msa_file(folder: Path) -> Path:
    """MSA's train.py save_checkpoint: {'epoch', 'model', 'state_dict', 'optimizer', 'best_tol', 'path_helper'}."""
    path = folder / "best_dice_checkpoint.pth"
    torch.save({"epoch": 3, "model": "sam", "state_dict": msa_state(), "optimizer": {"state": {}, "param_groups": []},
                "best_tol": 0.71, "path_helper": {"ckpt_path": "logs/msa/Model"}}, path)
    return path


def memsam_file(folder: Path, samus_authors_state: dict[str, Tensor]) -> Path:
    """MemSAM's model.state_dict(): SAMUS (authors' layout) + memory.* (the key encoder is the image encoder,
    so its weights appear twice) + the memory's own parts."""
    g = torch.Generator().manual_seed(9)
    state = dict(samus_authors_state)
    state |= {f"memory.key_encoder.{k[len('image_encoder.'):]}": v for k, v in samus_authors_state.items()
              if k.startswith("image_encoder.")}
    state["memory.value_encoder.conv1.weight"] = torch.randn(64, 5, 7, 7, generator=g)
    state["memory.key_proj.key_proj.weight"] = torch.randn(64, 256, 3, 3, generator=g)
    state["memory.key_proj.key_proj.bias"] = torch.randn(64, generator=g)
    path = folder / "memsam.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)  # MemSAM saves in the legacy format
    return path
