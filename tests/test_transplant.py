"""The APG on SAM, MedSAM, SAMed, MSA and SAMUS: recipes build, train only the APG, and a trained
APG moves from one model to another (tiny sizes, CPU)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from samfx.config.recipe import load_recipe
from samfx.contracts.errors import CheckpointError
from samfx.contracts.interfaces import BuildContext
from samfx.contracts.plugins import get_registry
from samfx.model.build import build_model
from samfx.model.trainable import apply_stage
from samfx_plugins.apg.config import APGConfig
from samfx_plugins.apg.io import find_apg, load_apg, save_apg
from samfx_plugins.apg.module import AutoPromptGenerator, build_apg

torch.set_num_threads(1)
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TINY = ["model.image_encoder.size=tiny", "model.image_encoder.image_size=64",
        "model.prompt.tokens=4", "model.prompt.mlp_dim=64"]
TARGETS = ["apg_on_sam", "apg_on_medsam", "apg_on_samed", "apg_on_msa"]


def registry():
    reg = get_registry()
    if ("image_encoder", "sam/sam") not in reg.components:
        pytest.skip("sam plugin not available")
    return reg


def tiny_model(name: str, *extra: str):
    reg = registry()
    rec = load_recipe(RECIPES / f"{name}.yaml", [*TINY, *extra], reg)
    torch.manual_seed(0)
    return rec, build_model(rec, reg)


def batch(seed: int = 0, size: int = 64):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, size, size, generator=g)
    targets = (torch.rand(2, 1, size, size, generator=g) > 0.5).float()
    return images, targets


@pytest.mark.parametrize("name", TARGETS)
def test_apg_recipe_trains_only_the_apg_without_prompts(name):
    rec, model = tiny_model(name)
    chosen = apply_stage(model, rec, len(rec.config["train"]["stages"]) - 1)
    assert chosen and all(n.startswith("prompt_generators.apg.") for n in chosen)
    assert model.active_prompt == "apg" and not model.prompt_generator.needs_targets
    images, targets = batch()
    out = model(images)                                        # no prompt input, no targets
    assert out.logits.shape == (2, 1, 64, 64) and torch.isfinite(out.logits).all()
    torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == chosen                                  # paper form: every APG weight is used
    assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in ["prompt_generators.apg.task_tokens"])


def test_apg_on_medsam_first_stage_is_medsam():
    rec, model = tiny_model("apg_on_medsam")
    chosen = apply_stage(model, rec, 0)
    assert model.active_prompt == "boxes"
    assert {n.split(".")[0] for n in chosen} == {"image_encoder", "mask_decoder"}


def _train_apg(model, rec, steps: int = 3) -> None:
    chosen = apply_stage(model, rec, len(rec.config["train"]["stages"]) - 1)
    opt = torch.optim.Adam([model.get_parameter(n) for n in sorted(chosen)], lr=1e-3)
    for step in range(steps):
        images, targets = batch(step)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images).logits, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_trained_apg_moves_from_medsam_to_msa(tmp_path):
    rec_a, medsam = tiny_model("apg_on_medsam")
    before = {k: v.clone() for k, v in find_apg(medsam).state_dict().items()}
    _train_apg(medsam, rec_a)
    trained = find_apg(medsam).state_dict()
    assert any(not torch.equal(before[k], trained[k]) for k in before)
    path = save_apg(medsam, tmp_path / "apg.pt")

    _, msa = tiny_model("apg_on_msa")
    load_apg(msa, path)
    for k, v in find_apg(msa).state_dict().items():
        torch.testing.assert_close(v, trained[k])
    msa.eval()
    images, _ = batch(7)
    with torch.no_grad():
        one, two = msa(images), msa(images)
    assert torch.isfinite(one.logits).all()
    torch.testing.assert_close(one.logits, two.logits, rtol=0, atol=0)
    assert one.prompts.sparse.shape == (2, 4, 256)

    # the recipe way: model.prompt.weights loads the same file when the APG is built
    _, samed = tiny_model("apg_on_samed", f"model.prompt.weights={path}")
    for k, v in find_apg(samed).state_dict().items():
        torch.testing.assert_close(v, trained[k])


def test_weights_skipped_when_built_without_checkpoint(tmp_path):
    """eval/predict/show rebuild a model without its checkpoint: the APG file need not exist then."""
    reg = registry()
    rec = load_recipe(RECIPES / "apg_on_sam.yaml", [*TINY, f"model.prompt.weights={tmp_path / 'gone.pt'}"], reg)
    assert find_apg(build_model(rec, reg, load_checkpoint=False)).tokens == 4
    with pytest.raises(CheckpointError, match="gone.pt: APG file not found; check model.prompt.weights"):
        build_model(rec, reg)


def test_incompatible_width_and_settings_error(tmp_path):
    path = save_apg(AutoPromptGenerator(256, tokens=4, mlp_dim=64), tmp_path / "apg.pt")
    with pytest.raises(CheckpointError) as err:
        build_apg(APGConfig(tokens=4, mlp_dim=64, weights=str(path)), BuildContext(embed_dim=128))
    assert str(err.value) == (f"{path}: APG width 256 does not fit this model's prompt width 128; an APG "
                              f"moves only between models whose mask decoders have the same width")
    assert "\n" not in str(err.value)
    reg = registry()
    rec = load_recipe(RECIPES / "apg_on_sam.yaml", [*TINY, "model.prompt.form=reference",
                                                    f"model.prompt.weights={path}"], reg)
    with pytest.raises(CheckpointError, match="APG saved with form='paper' but this one has form='reference'"):
        build_model(rec, reg)


def test_apg_export_from_full_checkpoint(tmp_path):
    from samfx.checkpoints.files import atomic_save
    from samfx_plugins.apg.__main__ import main

    rec, model = tiny_model("apg_on_sam", "model.prompt.form=reference")
    ckpt = tmp_path / "run" / "best.pt"
    atomic_save({"format": "samfx", "model": model.state_dict(), "recipe": rec.config}, ckpt)
    assert main(["export", str(ckpt.parent), "--out", str(tmp_path / "apg.pt")]) == 0
    dst = AutoPromptGenerator(256, form="reference", tokens=4, mlp_dim=64, tasks=3)   # apg_on_sam: one set per class
    load_apg(dst, tmp_path / "apg.pt")
    for k, v in dst.state_dict().items():
        torch.testing.assert_close(v, find_apg(model).state_dict()[k])
    assert main(["export", str(ckpt), "--out", str(tmp_path / "x.pt"), "--key", "nope"]) == 2


def test_autosamus_reference_count():
    """`samfx show recipes/autosamus.yaml model.prompt.form=reference --json`: stages[-1] trains 8,861,312
    (the encoder size does not change the APG; tiny keeps the test fast)."""
    import json
    import subprocess
    import sys

    from samfx.model.summary import summarize

    registry()
    if ("image_encoder", "samus/samus") not in get_registry().components:
        pytest.skip("samus plugin not available")
    proc = subprocess.run([sys.executable, "-m", "samfx.cli.main", "show", "recipes/autosamus.yaml",
                           "model.prompt.form=reference", "model.image_encoder.size=tiny", "--json"],
                          capture_output=True, text=True, cwd=RECIPES.parent, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [s["name"] for s in out["stages"]] == ["samus", "apg"]
    assert out["stages"][-1]["params"]["trainable"] == 8_861_312
    assert out["params"]["by_component"]["prompt:apg"] == {"total": 8_861_312, "trainable": 8_861_312}
    paper = summarize(str(RECIPES / "autosamus.yaml"), ["model.image_encoder.size=tiny"])
    assert paper["stages"][-1]["params"]["trainable"] == 6_225_280
