"""Outputs and parameter counts of every built-in model family on fixed inputs, recorded before the
component contract v2 (tests/pins/contract_v1.json) so that the redesign is proven not to change them.

``python tests/contract_pins.py --write`` records them again (only when a change of outputs is meant);
``--save-tensors F`` / ``--compare-tensors F`` check bit-identity on one machine (the test compares
statistics with a tolerance because float sums may differ in the last bit between CPUs).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "tests" / "pins" / "contract_v1.json"
SIZE = 128
TINY = ["model.image_encoder.size=tiny", f"model.image_encoder.image_size={SIZE}"]
APG_TINY = ["model.prompt.tokens=4", "model.prompt.mlp_dim=64"]
STM = ["data.clip_length=3"]
# name -> (recipe, overrides, kind): kind "classes" = one image pass for all classes; "clip" = 3 frames
CASES: dict[str, tuple[str, list[str], str]] = {
    "sam_clicks": ("sam_vit_b", TINY, "classes"),
    "medsam_boxes": ("medsam", TINY, "classes"),
    "samus_clicks": ("samus", TINY, "classes"),
    "samus_from_authors_layout": ("samus", TINY, "classes"),
    "samus_msff_clicks": ("samus_msff", TINY, "classes"),
    "autosamus_paper": ("autosamus", TINY + APG_TINY, "classes"),
    "autosamus_reference": ("autosamus", TINY + APG_TINY + ["model.prompt.form=reference"], "classes"),
    "autosamus_msff": ("autosamus_msff", TINY + APG_TINY, "classes"),
    "samed_lora": ("samed", TINY, "classes"),
    "msa_adapter": ("msa", TINY, "classes"),
    "apg_on_sam": ("apg_on_sam", TINY + APG_TINY, "classes"),
    "apg_on_samed": ("apg_on_samed", TINY + APG_TINY, "classes"),
    "apg_on_msa": ("apg_on_msa", TINY + APG_TINY, "classes"),
    "samus_stm_clip": ("samus_stm", TINY + STM, "clip"),
    "autosamus_msff_stm_clip": ("autosamus_msff_stm", TINY + APG_TINY + STM, "clip"),
}


def _inputs(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    shape = (2, 3, 3, SIZE, SIZE) if kind == "clip" else (2, 3, SIZE, SIZE)
    images = torch.rand(*shape, generator=g)
    labels = torch.randint(0, 4, (*shape[:-3], SIZE, SIZE), generator=g)
    labels[..., 20:40, 20:40] = 1      # every class present, so clicks have somewhere to land
    labels[..., 5:15, 40:60] = 2
    labels[..., 45:60, 5:25] = 3
    return images, labels


def _model(case: str) -> tuple[Any, Any]:
    from samfx.config.recipe import load_recipe
    from samfx.contracts.plugins import get_registry
    from samfx.model.build import build_model

    recipe_name, overrides, _ = CASES[case]
    reg = get_registry()
    rec = load_recipe(ROOT / "recipes" / f"{recipe_name}.yaml", overrides, reg)
    torch.manual_seed(0)
    model = build_model(rec, reg)
    _perturb_adapters(model)
    if case == "samus_from_authors_layout":
        model = _reload_from_authors_layout(model, rec, reg)
    return rec, model.eval()


def _perturb_adapters(model: Any) -> None:
    """LoRA and MSA adapters start as the identity (zero up-projection); move them off it so the pin
    sees their path."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _, p in sorted(model.adapters.named_parameters()):
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def _reload_from_authors_layout(model: Any, rec: Any, reg: Any) -> Any:
    """The same weights written in the SAMUS authors' key layout and loaded through model.checkpoint."""
    from samfx.config.recipe import load_recipe
    from samfx.deploy.convert import export_state
    from samfx.model.build import build_model

    state = export_state(model, "authors")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "samus_authors.pth"
        torch.save(state, path)
        overrides = [*CASES["samus_from_authors_layout"][1], f"model.checkpoint={path}"]
        rec2 = load_recipe(ROOT / "recipes" / "samus.yaml", overrides, reg)
        torch.manual_seed(1)         # different init: only the loaded weights may decide the output
        return build_model(rec2, reg)


def run_case(case: str) -> dict[str, torch.Tensor]:
    """The named tensors one case produces (low-res logits, IoU, full-size logits)."""
    rec, model = _model(case)
    classes = list(range(1, len(rec.config["data"]["classes"]) + 1))
    images, labels = _inputs(CASES[case][2])
    torch.manual_seed(7)             # simulated clicks sample their points
    with torch.no_grad():
        if CASES[case][2] == "clip":
            out = model.forward_clip(images, classes, labels)
            return {"logits": out.logits, "iou": out.iou}
        _, seg = model.forward_classes(images, classes, labels)
    return {"low_res": seg.low_res, "iou": seg.iou, "logits": seg.logits}


def param_counts(case: str) -> dict[str, int]:
    _, model = _model(case)
    counts = {name: sum(p.numel() for p in mod.parameters()) for name, mod in model.component_modules().items()}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def stats(t: torch.Tensor) -> dict[str, Any]:
    d = t.detach().double()
    return {"shape": list(t.shape), "sum": d.sum().item(), "abs_sum": d.abs().sum().item(),
            "head": d.flatten()[:6].tolist()}


def record() -> dict[str, Any]:
    torch.set_num_threads(1)
    return {case: {"params": param_counts(case), "outputs": {k: stats(v) for k, v in run_case(case).items()}}
            for case in CASES}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--save-tensors")
    parser.add_argument("--compare-tensors")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.write:
        PINS.parent.mkdir(exist_ok=True)
        PINS.write_text(json.dumps(record(), indent=1) + "\n")
    if args.save_tensors:
        torch.save({case: run_case(case) for case in CASES}, args.save_tensors)
    if args.compare_tensors:
        before = torch.load(args.compare_tensors)
        for case in CASES:
            now = run_case(case)
            same = all(torch.equal(before[case][k], now[k]) for k in before[case])
            print(f"{case:28s} {'bit-identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(sys.argv[1:])
