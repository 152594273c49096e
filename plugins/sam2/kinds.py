"""Official SAM2 / SAM2.1 checkpoints, for ``samfx inspect``, ``samfx convert`` and ``samfx doctor`` (torch-free)."""
from __future__ import annotations

from typing import Any

from samfx.contracts.kinds import CheckpointKind, Shapes, WeightLayout

# Hiera's first-stage width and depth -> size (tiny and small are both 96 wide: the depth tells them apart)
_WIDTH = {112: "base_plus", 144: "large"}
_DEPTH_96 = {12: "tiny", 16: "small"}


def _is_sam2(shapes: Shapes) -> bool:
    return "image_encoder.trunk.patch_embed.proj.weight" in shapes and \
        any(k.startswith("sam_mask_decoder.") for k in shapes)


def _size(shapes: Shapes) -> str | None:
    width = shapes["image_encoder.trunk.patch_embed.proj.weight"][0]
    if width != 96:
        return _WIDTH.get(width)
    depth = len({k.split(".")[3] for k in shapes if k.startswith("image_encoder.trunk.blocks.")})
    return _DEPTH_96.get(depth)


def _size_text(shapes: Shapes) -> str:
    width = shapes["image_encoder.trunk.patch_embed.proj.weight"][0]
    depth = len({k.split(".")[3] for k in shapes if k.startswith("image_encoder.trunk.blocks.")})
    return f"{_size(shapes) or 'unknown'} (Hiera, first-stage width {width}, {depth} blocks)"


def _overrides(shapes: Shapes) -> list[str]:
    size = _size(shapes)
    return [f"model.image_encoder.size={size}"] if size and size != "tiny" else []


SAM2 = CheckpointKind(
    "SAM2 / SAM2.1 checkpoint (official {'model': ...} file or a fine-tune in its layout, e.g. MedSAM2)",
    "recipes/sam2_hiera_t.yaml", _is_sam2, _overrides,
    note="image recipes use its encoder, prompt encoder, mask decoder and no_mem_embed and ignore its memory "
         "keys; video recipes give the memory keys to the sam2_memory temporal module", priority=20,
    size=_size_text)

SAM2_LAYOUT = WeightLayout("sam2", "SAM2's official {'model': state_dict} file (sam_prompt_encoder.*, "
                           "sam_mask_decoder.*, no_mem_embed, ...)", wrap="model")


def doctor() -> dict[str, Any]:
    """sam2's version and whether its optional CUDA extension ``sam2._C`` is built, without importing sam2."""
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec
    from pathlib import Path

    try:
        ver = version("sam2")
    except PackageNotFoundError:
        from samfx_plugins.sam2.config import INSTALL

        return {"sam2": f"not installed: {INSTALL}"}
    spec = find_spec("sam2")
    where = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    ext = any(any(d.glob("_C.*")) for d in where)
    return {"sam2": ver, "sam2_C": "built (optional, unused by samfx)" if ext else "absent (optional: not needed)"}
