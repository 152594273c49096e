"""SAMed, Medical-SAM-Adapter, MedSAM and MemSAM files through the user path (recipe + model.checkpoint),
`samfx inspect` / `samfx convert`, and .safetensors everywhere."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from segment_anything.modeling.image_encoder import window_partition, window_unpartition
from torch import nn
from typer.testing import CliRunner

from samfx.checkpoints.files import read_checkpoint
from samfx.checkpoints.inspect import inspect_checkpoint
from samfx.cli.main import app
from samfx.config.recipe import load_recipe
from samfx.contracts.errors import CheckpointError, RecipeError
from samfx.model.build import build_model
from samfx_plugins.samus.keys import export_authors_state_dict
from tests.interop_files import (
    TINY_BLOCKS,
    TINY_SAM,
    TINY_WIDTH,
    base_sam_file,
    memsam_file,
    msa_file,
    msa_state,
    random_sam_state,
    samed_file,
)
from tests.test_samus import _randomize


def _samed(base, lora, *extra: str):
    return build_model(load_recipe("recipes/samed.yaml", [*TINY_SAM, f"model.base_checkpoint={base}",
                                                          f"model.checkpoint={lora}", *extra]))


# -- SAMed ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_samed_lora_gives_samed_qkv(tmp_path, suffix):
    base, lora = base_sam_file(tmp_path), samed_file(tmp_path, suffix=suffix)
    model = _samed(base, lora).eval()
    theirs = read_checkpoint(lora)
    qkv = model.image_encoder.blocks[2].attn.qkv
    x = torch.randn(1, 4, 4, TINY_WIDTH)
    expected = nn.functional.linear(x, qkv.weight, qkv.bias)           # SAMed's _LoRA_qkv, block 2
    expected[..., :TINY_WIDTH] += x @ theirs["w_a_004"].T @ theirs["w_b_004"].T
    expected[..., -TINY_WIDTH:] += x @ theirs["w_a_005"].T @ theirs["w_b_005"].T
    with torch.no_grad():
        assert torch.allclose(qkv(x), expected, atol=1e-5)
    sam = torch.load(base, weights_only=True)
    key = "image_encoder.blocks.0.attn.qkv.weight"
    assert torch.equal(model.state_dict()[key], sam[key])
    assert torch.equal(model.mask_decoder.iou_token.weight, theirs["mask_decoder.iou_token.weight"])


def test_samed_rank_from_the_file(tmp_path):
    from samfx.engine.run.checkpoints import load_model

    base, lora = base_sam_file(tmp_path), samed_file(tmp_path, rank=8)
    model = _samed(base, lora)
    assert model.adapters["lora-blocks-3-attn-qkv"].a[1].weight.shape == (8, TINY_WIDTH)
    with pytest.raises(CheckpointError, match=r"samed_lora\.pth: its SAMed LoRA has rank 8 but the recipe's lora "
                                              r"adapter rank 4; set rank: 8 on it, or rank: null"):
        _samed(base, lora, "model.adapters.0.rank=4")
    out = tmp_path / "samed_samfx.pt"                  # the stored recipe says rank: null; eval rebuilds rank 8
    result = CliRunner().invoke(app, ["convert", str(lora), *TINY_SAM, f"model.base_checkpoint={base}",
                                      "--recipe", "recipes/samed.yaml", "--to", "samfx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rebuilt, recipe, _ = load_model(out)
    assert recipe.config["model"]["adapters"][0]["rank"] is None
    assert rebuilt.adapters["lora-blocks-0-attn-qkv"].b[0].weight.shape == (TINY_WIDTH, 8)
    fresh = build_model(load_recipe("recipes/samed.yaml", TINY_SAM))   # nothing to read the rank from: SAMed's 4
    assert fresh.adapters["lora-blocks-0-attn-qkv"].a[0].weight.shape == (4, TINY_WIDTH)


def test_samed_multiclass_decoder_and_corrupt_file_are_one_line(tmp_path):
    base = base_sam_file(tmp_path)
    multi = samed_file(tmp_path, mask_tokens=9)
    assert "SAMed num_classes=8" in inspect_checkpoint(multi)["note"]
    with pytest.raises(CheckpointError, match=r"samed_lora\.pth: .*mask_decoder\.mask_tokens\.weight file\(9,"):
        _samed(base, multi)
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(samed_file(tmp_path, suffix=".safetensors").read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: cannot read safetensors file"):
        _samed(base, bad)


def test_samed_round_trip_and_base_needed(tmp_path):
    base, lora = base_sam_file(tmp_path), samed_file(tmp_path)
    out = tmp_path / "back.safetensors"
    result = CliRunner().invoke(app, ["convert", str(lora), *TINY_SAM, f"model.base_checkpoint={base}",
                                      "--recipe", "recipes/samed.yaml", "--to", "samed", "--out", str(out)])
    assert result.exit_code == 0, result.output
    theirs, back = torch.load(lora, weights_only=True), load_file(str(out))
    assert sorted(back) == sorted(theirs) and all(torch.equal(back[k], theirs[k]) for k in theirs)
    with pytest.raises(CheckpointError, match=r"samed_lora\.pth: \d+ model keys missing from the file, first: "
                                              r"image_encoder\."):
        build_model(load_recipe("recipes/samed.yaml", [*TINY_SAM, f"model.checkpoint={lora}"]))


# -- Medical-SAM-Adapter -------------------------------------------------------------------------
def _msa_block(blk: nn.Module, x: torch.Tensor, mlp_ad: dict, space_ad: dict) -> torch.Tensor:
    """MSA's AdapterBlock.forward (2-D) on a hook-free SAM block and the adapters' D_fc1/D_fc2 tensors."""
    def adapter(t: torch.Tensor, w: dict) -> torch.Tensor:
        hidden = nn.functional.gelu(nn.functional.linear(t, w["D_fc1.weight"], w["D_fc1.bias"]))
        return nn.functional.linear(hidden, w["D_fc2.weight"], w["D_fc2.bias"])

    shortcut, x = x, blk.norm1(x)
    if blk.window_size > 0:
        h, w = x.shape[1:3]
        x, pad = window_partition(x, blk.window_size)
    x = blk.attn(x)
    x = x + adapter(x, space_ad)
    if blk.window_size > 0:
        x = window_unpartition(x, blk.window_size, pad, (h, w))
    x = shortcut + x
    xn = blk.norm2(x)
    return x + blk.mlp(xn) + 0.5 * adapter(xn, mlp_ad)


@pytest.mark.parametrize("fast", [True, False])
def test_msa_checkpoint_gives_msa_blocks(tmp_path, fast):
    path = msa_file(tmp_path)
    flag = f"model.image_encoder.fast_attention={str(fast).lower()}"
    model = build_model(load_recipe("recipes/msa.yaml", [*TINY_SAM, flag, f"model.checkpoint={path}"])).eval()
    plain = build_model(load_recipe("recipes/msa.yaml", [*TINY_SAM, flag, "model.adapters=[]"])).eval()
    state = msa_state()
    plain.load_state_dict({k: v for k, v in state.items() if "_Adapter." not in k})
    x = torch.randn(1, 4, 4, TINY_WIDTH)
    for n in range(TINY_BLOCKS):              # window and global blocks
        part = {name: {k.split(f"{name}.")[1]: v for k, v in state.items() if f"blocks.{n}.{name}." in k}
                for name in ("MLP_Adapter", "Space_Adapter")}
        with torch.no_grad():
            ours = model.image_encoder.blocks[n](x)
            theirs = _msa_block(plain.image_encoder.blocks[n], x, part["MLP_Adapter"], part["Space_Adapter"])
        assert (ours - theirs).abs().max() <= 1e-5
        assert (ours - plain.image_encoder.blocks[n](x)).abs().max() > 1e-3     # the adapters do act


def test_msa_wrong_recipe_and_corrupt_file(tmp_path):
    path = msa_file(tmp_path)
    with pytest.raises(CheckpointError, match=r"best_dice_checkpoint\.pth: MSA's adapter at 'blocks\.0\.mlp' is "
                                              r"parallel, scale 0\.5, act gelu; .* act relu"):
        build_model(load_recipe("recipes/msa.yaml", [*TINY_SAM, "model.adapters.0.act=relu",
                                                     f"model.checkpoint={path}"]))
    with pytest.raises(CheckpointError, match=r"best_dice_checkpoint\.pth: \d+ keys the model does not have, first: "
                                              r"image_encoder\.blocks\.0\.MLP_Adapter"):
        build_model(load_recipe("recipes/sam_vit_b.yaml", [*TINY_SAM, f"model.checkpoint={path}"]))
    bad = tmp_path / "cut.pth"
    bad.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=r"cut\.pth: cannot read checkpoint"):
        build_model(load_recipe("recipes/msa.yaml", [*TINY_SAM, f"model.checkpoint={bad}"]))


# -- MedSAM ----------------------------------------------------------------------------------------
def test_medsam_is_a_sam_file_with_unnormalised_inputs(tmp_path):
    from samfx_plugins.sam.reference import reference_sam

    path = tmp_path / "medsam_vit_b.pth"
    torch.save(random_sam_state(4), path)
    model = build_model(load_recipe("recipes/medsam.yaml", [*TINY_SAM, f"model.checkpoint={path}"])).eval()
    ref = reference_sam("tiny", 64).eval()
    ref.load_state_dict(torch.load(path, weights_only=True))
    x = torch.rand(1, 3, 64, 64)                       # MedSAM: min-max [0,1] images, no SAM mean/std
    with torch.no_grad():
        assert (model.image_encoder(x).embedding - ref.image_encoder(x)).abs().max() <= 1e-4
    report = inspect_checkpoint(path)
    assert report["recipe"] == "recipes/sam_vit_b.yaml" and "recipes/medsam.yaml" in report["note"]
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"medsam_vit_b\.pth: cannot read checkpoint"):
        build_model(load_recipe("recipes/medsam.yaml", [*TINY_SAM, f"model.checkpoint={path}"]))


# -- MemSAM ----------------------------------------------------------------------------------------
def test_memsam_memory_is_refused_with_the_reason_and_its_samus_part_loads(tmp_path):
    samus = build_model(load_recipe("recipes/samus.yaml", ["model.image_encoder.size=tiny", "model.prompt.name=none"]))
    _randomize(samus, seed=8)
    path = memsam_file(tmp_path, export_authors_state_dict(samus.state_dict()))
    stm = ["model.image_encoder.size=tiny"]
    with pytest.raises(CheckpointError, match=r"memsam\.pth: it is a MemSAM checkpoint whose memory .* does not "
                                              r"map onto stm"):
        build_model(load_recipe("recipes/samus_stm.yaml", [*stm, f"model.checkpoint={path}"]))
    part = tmp_path / "memsam_samus.pth"
    result = CliRunner().invoke(app, ["convert", str(path), "model.image_encoder.size=tiny", "--drop", "memory.*",
                                      "--to", "authors", "--recipe", "recipes/samus.yaml", "--out", str(part)])
    assert result.exit_code == 0, result.output
    model = build_model(load_recipe("recipes/samus_stm.yaml", [*stm, f"model.checkpoint={part}"]))
    assert torch.equal(model.image_encoder.patch_embed.proj.weight, samus.image_encoder.patch_embed.proj.weight)
    assert inspect_checkpoint(path)["load_with"].startswith(f"samfx convert {path} --drop 'memory.*'")
    cut = tmp_path / "memsam_cut.pth"
    cut.write_bytes(path.read_bytes()[:5000])
    result = CliRunner().invoke(app, ["convert", str(cut), "--drop", "memory.*", "--to", "authors",
                                      "--recipe", "recipes/samus.yaml", "--out", str(tmp_path / "x.pth")])
    assert result.exit_code == 2 and f"error: {cut}: cannot read checkpoint" in result.output


# -- inspect / convert / safetensors ------------------------------------------------------------
def test_inspect_names_the_recipe_of_each_kind(tmp_path):
    samus = build_model(load_recipe("recipes/samus.yaml", ["model.image_encoder.size=tiny", "model.prompt.name=none"]))
    samus_path = tmp_path / "samus_authors.pth"
    torch.save(export_authors_state_dict(samus.state_dict()), samus_path)
    sam_path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(random_sam_state(), sam_path)
    kinds = {samed_file(tmp_path): "recipes/samed.yaml", msa_file(tmp_path): "recipes/msa.yaml",
             sam_path: "recipes/sam_vit_b.yaml", samus_path: "recipes/samus.yaml",
             memsam_file(tmp_path, export_authors_state_dict(samus.state_dict())): "recipes/samus_stm.yaml"}
    for path, recipe in kinds.items():
        result = CliRunner().invoke(app, ["inspect", str(path)])
        assert result.exit_code == 0, result.output
        assert f"recipe:     {recipe}" in result.output, result.output
    assert "model size: tiny (ViT width 96, 4 blocks)" in CliRunner().invoke(app, ["inspect", str(sam_path)]).output
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "other.pth")])
    assert result.exit_code == 2
    assert "other.pth: not a checkpoint layout samfx knows (first keys: conv.weight)" in result.output


def test_samfx_checkpoint_as_safetensors_round_trip(tmp_path):
    sam_path = tmp_path / "sam.pth"
    torch.save(random_sam_state(), sam_path)
    st = tmp_path / "model.safetensors"
    result = CliRunner().invoke(app, ["convert", str(sam_path), *TINY_SAM, "--recipe", "recipes/sam_vit_b.yaml",
                                      "--to", "samfx", "--out", str(st)])
    assert result.exit_code == 0, result.output
    obj = read_checkpoint(st)
    assert obj["format"] == "samfx" and obj["recipe"]["model"]["image_encoder"]["size"] == "tiny"
    assert "samfx checkpoint" in inspect_checkpoint(st)["format"]
    back = tmp_path / "sam_again.pth"
    result = CliRunner().invoke(app, ["convert", str(st), "--to", "sam", "--out", str(back)])
    assert result.exit_code == 0, result.output
    sam, again = torch.load(sam_path, weights_only=True), torch.load(back, weights_only=True)
    assert sorted(sam) == sorted(again) and all(torch.equal(sam[k], again[k]) for k in sam)
    result = CliRunner().invoke(app, ["convert", str(sam_path), "--to", "sam", "--out", str(back)])
    assert result.exit_code == 2 and "not a samfx checkpoint, so convert needs --recipe" in result.output


def test_train_writes_best_as_safetensors_that_eval_reads(tmp_path):
    from samfx.engine.eval.evaluate import evaluate
    from samfx.engine.testing import toy_plugins
    from samfx.engine.train.trainer import Trainer

    plugins = toy_plugins()
    overrides = ["train.stages.0.max_steps=2", "train.checkpoint_format=safetensors"]
    recipe = load_recipe("tests/recipes/toy.yaml", overrides, plugins.registry)
    run = tmp_path / "run"
    Trainer(recipe, run, registry=plugins.registry, quiet=True).fit()
    assert (run / "best.safetensors").is_file() and not (run / "best.pt").exists() and (run / "last.pt").is_file()
    best = read_checkpoint(run / "best.safetensors")
    assert best["format"] == "samfx" and best["metric"]["metric"] == "val/dice" and best["recipe"] == recipe.config
    report = evaluate(run, split="test", registry=plugins.registry, write=False)
    assert report["checkpoint"].endswith("best.safetensors")
    with pytest.raises(RecipeError, match=r"train\.checkpoint_format: unknown 'onnx'; use pt or safetensors"):
        load_recipe("tests/recipes/toy.yaml", ["train.checkpoint_format=onnx"], plugins.registry)


def test_apg_file_as_safetensors(tmp_path):
    from samfx_plugins.apg.io import load_apg, save_apg
    from samfx_plugins.apg.module import AutoPromptGenerator

    source, target = AutoPromptGenerator(32, tokens=4), AutoPromptGenerator(32, tokens=4)
    path = save_apg(source, tmp_path / "apg.safetensors")
    load_apg(target, path)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"apg\.safetensors: cannot read safetensors file"):
        load_apg(target, path)
