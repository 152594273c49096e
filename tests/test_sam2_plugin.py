"""The `sam2` plugin: registration, parameter counts against the sam2 package, geometry, sites,
checkpoints in SAM2's official layout and their errors, the APG and LoRA on SAM2 (tiny, CPU)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from samfx.config.recipe import load_recipe
from samfx.contracts.errors import CheckpointError, RecipeError
from samfx.contracts.plugins import get_registry
from samfx.model.build import build_model
from samfx.model.trainable import apply_stage
from samfx.model.weights import load_weights
from samfx_plugins.sam2.config import PACKAGE_CONFIGS
from samfx_plugins.sam2.encoder import Sam2ImageEncoder
from samfx_plugins.sam2.keys import is_memory_key
from tests.sam2_files import package_model, save_official

torch.set_num_threads(1)
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
# SAM2.1's totals (the issue): everything of SAM2Base, memory included
TOTALS = {"tiny": 38_962_498, "small": 46_060_354, "base_plus": 80_850_178, "large": 224_446_642}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _package_parts(model: torch.nn.Module) -> dict[str, int]:
    enc = _count(model.image_encoder) + model.no_mem_embed.numel()
    return {"image_encoder": enc, "prompt_encoder": _count(model.sam_prompt_encoder),
            "mask_decoder": _count(model.sam_mask_decoder)}


def _ours(size: str, image_size: int = 1024, *extra: str):
    rec = load_recipe(RECIPES / "sam2_hiera_t.yaml", [f"model.image_encoder.size={size}",
                                                      f"model.image_encoder.image_size={image_size}", *extra])
    return rec, build_model(rec)


def test_registered_with_schemas_and_registration_is_light():
    reg = get_registry()
    for kind in ("image_encoder", "prompt_encoder", "mask_decoder"):
        comp = reg.get(kind, "sam2")
        assert comp.plugin == "sam2" and comp.schema is not None and comp.description
    code = "import sys, samfx_plugins.sam2.plugin; print('torch' in sys.modules, 'sam2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_missing_sam2_is_one_line_naming_the_install_command():
    code = ("import sys; sys.modules['sam2'] = None\n"
            "from samfx_plugins.sam2.deps import require_sam2\n"
            "try:\n    require_sam2()\nexcept Exception as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out.startswith("ComponentError") and "\n" not in out
    assert "SAM2_BUILD_CUDA=0 pip install --no-build-isolation 'sam2==1.1.0'" in out


def test_tiny_parameter_counts_equal_the_package_by_component():
    from sam2.build_sam import build_sam2

    pkg = build_sam2(PACKAGE_CONFIGS["tiny"], None, device="cpu")
    assert _count(pkg) == TOTALS["tiny"]
    _, model = _ours("tiny")
    parts = {k: _count(m) for k, m in model.component_modules().items() if not k.startswith("prompt:")}
    assert parts == _package_parts(pkg) == {"image_encoder": 27_219_392, "prompt_encoder": 6_220,
                                            "mask_decoder": 4_215_109}
    # parameter names are SAM2's: the package's state dict maps onto ours key for key
    ours = set(model.state_dict())
    theirs = {("prompt_encoder." + k[19:] if k.startswith("sam_prompt_encoder.") else
               "mask_decoder." + k[17:] if k.startswith("sam_mask_decoder.") else
               "image_encoder.no_mem_embed" if k == "no_mem_embed" else k)
              for k in pkg.state_dict() if not is_memory_key(k) or k == "no_mem_embed"}
    assert ours == theirs


@pytest.mark.parametrize("size", ["small", "base_plus", "large"])
def test_other_sizes_parameter_counts_on_meta(size, monkeypatch):
    from sam2.build_sam import build_sam2

    linspace = torch.linspace   # Hiera reads its drop-path rates with .item(): those stay on the CPU
    monkeypatch.setattr(torch, "linspace", lambda *a, **k: linspace(*a, **{**k, "device": "cpu"}))
    with torch.device("meta"):
        pkg = build_sam2(PACKAGE_CONFIGS[size], None, device="meta")
        enc = Sam2ImageEncoder(size, 1024)
    assert _count(pkg) == TOTALS[size]
    assert _count(enc) == _package_parts(pkg)["image_encoder"]
    assert {k: tuple(v.shape) for k, v in enc.trunk.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in pkg.image_encoder.trunk.state_dict().items()}


def test_geometry_sizes_and_bad_image_size():
    enc = Sam2ImageEncoder("tiny", 128)
    assert (enc.image_size, enc.embed_dim, enc.embed_size, enc.encoder_dim, enc.high_res_dims) == \
        (128, 256, (8, 8), 768, (256, 256))
    with torch.no_grad():
        f = enc(torch.rand(2, 3, 128, 128))
    assert f.embedding.shape == (2, 256, 8, 8) and f.pos is not None and f.pos.shape[1:] == (256, 8, 8)
    assert [t.shape for t in f.high_res] == [(2, 256, 32, 32), (2, 256, 16, 16)]
    with pytest.raises(RecipeError, match="multiple of 32"):
        Sam2ImageEncoder("tiny", 240)
    with pytest.raises(RecipeError, match="unknown size 'tin'.*did you mean 'tiny'"):
        Sam2ImageEncoder("tin", 256)
    video = Sam2ImageEncoder("tiny", 128, no_memory_embed=False)
    assert video.no_mem_embed is None and _count(enc) - _count(video) == 256


def test_sites_default_trainable_and_activation_checkpointing():
    torch.manual_seed(0)
    enc = Sam2ImageEncoder("tiny", 128)
    assert enc.default_trainable() == [n for n, _ in enc.named_parameters()]
    sites = enc.sites()
    assert len([s for s in sites if s.endswith(".attn.qkv")]) == 12
    q0, q1, q3 = sites["blocks.0.attn.qkv"], sites["blocks.1.attn.qkv"], sites["blocks.5.attn.qkv"]
    assert (q0.layout, q0.in_dim, q0.out_dim, q0.spatial) == ("linear", 96, 288, (8, 8))
    assert (q1.in_dim, q1.out_dim) == (96, 576)             # stage change: 96 -> 192, queries pooled
    assert q3.spatial == (8, 8)                               # global block at stride 16 (128 / 16)
    x = torch.rand(1, 3, 128, 128)
    plain = enc(x).embedding
    enc.set_activation_checkpointing(True)
    again = enc(x).embedding
    assert torch.allclose(plain, again)
    again.sum().backward()
    assert enc.trunk.blocks[0].attn.qkv.weight.grad is not None


def test_official_file_loads_into_the_image_recipe_memory_keys_ignored(tmp_path):
    pkg = package_model("tiny", 128)
    path = save_official(pkg, tmp_path / "sam2.1_hiera_tiny.pt")
    _, model = _ours("tiny", 128, f"model.checkpoint={path}")
    sd = pkg.state_dict()
    assert torch.equal(model.image_encoder.no_mem_embed, sd["no_mem_embed"])
    assert torch.equal(model.mask_decoder.conv_s0.weight, sd["sam_mask_decoder.conv_s0.weight"])
    assert torch.equal(model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix,
                       sd["sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"])
    assert torch.equal(model.image_encoder.trunk.pos_embed, sd["image_encoder.trunk.pos_embed"])
    # a plain state dict (no {"model": ...} wrapper, as some fine-tuning scripts save) loads the same way
    torch.save(sd, tmp_path / "plain.pt")
    load_weights(model, tmp_path / "plain.pt")
    # no weight depends on the image size (Hiera interpolates its position embedding): any S loads it
    _, other = _ours("tiny", 64, f"model.checkpoint={path}")
    assert torch.equal(other.image_encoder.trunk.pos_embed, sd["image_encoder.trunk.pos_embed"])


def test_wrong_size_is_one_line_naming_the_file(tmp_path):
    path = save_official(package_model("tiny", 128), tmp_path / "sam2.1_hiera_tiny.pt")
    with pytest.raises(CheckpointError) as err:
        _ours("small", 128, f"model.checkpoint={path}")
    msg = str(err.value)
    assert "\n" not in msg and "sam2.1_hiera_tiny.pt" in msg and "wrong model size" in msg
    # video mode without a temporal module: the memory keys have no owner and are reported
    with pytest.raises(CheckpointError, match="keys the model does not have, first: .*(memory|maskmem|no_mem)"):
        _ours("tiny", 128, f"model.checkpoint={path}", "model.image_encoder.no_memory_embed=false")


def test_apg_trains_on_sam2_only_the_apg_gets_gradients():
    torch.manual_seed(0)
    rec = load_recipe(RECIPES / "apg_on_sam2_quick.yaml", ["model.image_encoder.image_size=128"])
    model = build_model(rec)
    chosen = apply_stage(model, rec, 0)
    assert chosen and all(n.startswith("prompt_generators.apg.") for n in chosen)
    images = torch.rand(2, 3, 128, 128)
    targets = (torch.rand(2, 1, 128, 128) > 0.5).float()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model(images)                                        # no prompt input, no targets
    assert out.logits.shape == (2, 1, 128, 128) and torch.isfinite(out.logits).all()
    torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad and with_grad <= chosen
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= chosen


def test_lora_on_hiera_qkv_trains_with_the_decoder():
    torch.manual_seed(0)
    rec = load_recipe(RECIPES / "sam2_lora_quick.yaml", ["model.image_encoder.image_size=128"])
    model = build_model(rec)
    assert len(model.adapters) == 12
    chosen = apply_stage(model, rec, 0)
    assert chosen and all(n.startswith(("adapters.", "mask_decoder.")) for n in chosen)
    images = torch.rand(2, 3, 128, 128)
    targets = torch.zeros(2, 1, 128, 128)
    targets[:, :, 40:90, 30:100] = 1
    out = model(images, targets=targets)
    torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert any(n.startswith("adapters.") for n in with_grad) and with_grad <= chosen


def test_doctor_reports_sam2_and_its_optional_extension():
    from samfx.cli.doctor import collect

    out = collect()
    assert out["sam2"] == "1.1.0" and out["sam2_C"].startswith(("absent", "built"))


def test_inspect_kind_recognises_official_files_and_their_size(monkeypatch):
    from sam2.build_sam import build_sam2

    from samfx_plugins.sam2.kinds import SAM2

    linspace = torch.linspace
    monkeypatch.setattr(torch, "linspace", lambda *a, **k: linspace(*a, **{**k, "device": "cpu"}))
    for size, want in (("tiny", []), ("small", ["model.image_encoder.size=small"]),
                       ("large", ["model.image_encoder.size=large"])):
        with torch.device("meta"):
            pkg = build_sam2(PACKAGE_CONFIGS[size], None, device="meta")
        shapes = {k: tuple(v.shape) for k, v in pkg.state_dict().items()}
        assert SAM2.matches(shapes) and SAM2.overrides(shapes) == want
        assert SAM2.size_for(shapes).startswith(f"{size} (Hiera, first-stage width ")
    assert not SAM2.matches({"image_encoder.patch_embed.proj.weight": (768, 3, 16, 16)})


@pytest.mark.slow
def test_bench_runs_on_the_quick_recipe(samfx_cli):
    import json

    res = samfx_cli("bench", "recipes/sam2_hiera_t_quick.yaml", "model.image_encoder.image_size=128",
                    "--steps", "1", "--warmup", "0", "--mode", "eager", "--precision", "fp32", "--batch", "2",
                    "--infer-batch", "1", "--device", "cpu", "--threads", "1", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["complete"] is True and report["info"]["image_size"] == 128
    assert [r["mode"] for r in report["results"]] == ["train", "infer"]
    assert all(r["error"] == "" and r["img_per_s"] > 0 for r in report["results"])


def test_convert_to_sam2_layout_round_trips_the_image_part(tmp_path):
    from samfx.deploy.convert import convert

    pkg = package_model("tiny", 128)
    src = save_official(pkg, tmp_path / "sam2.1_hiera_tiny.pt")
    out = convert(src, "sam2", tmp_path / "back.pt", recipe=str(RECIPES / "sam2_hiera_t_quick.yaml"),
                  overrides=["model.image_encoder.image_size=128"])
    back = torch.load(out, weights_only=True)["model"]
    official = {k: v for k, v in pkg.state_dict().items() if not is_memory_key(k) or k == "no_mem_embed"}
    assert set(back) == set(official)
    assert all(torch.equal(back[k], official[k]) for k in official)
    pkg.load_state_dict(back, strict=False)   # sam2's own model takes it (its memory keys stay as they were)


def test_eval_gates_absent_objects_to_no_object_logits_only_when_asked():
    """gate_by_object_score (the video recipes): in eval, a query whose object score is <= 0 gets SAM2's
    -1024 on every pixel; training never gates (the mask would get no gradient)."""
    for gate in (False, True):
        _, model = _ours("tiny", 128, "model.prompt.name=none", f"model.mask_decoder.gate_by_object_score={gate}")
        head = model.mask_decoder.pred_obj_score_head
        last = head.layers[-1] if hasattr(head, "layers") else head
        with torch.no_grad():
            last.bias.fill_(-50.0)                                  # every object absent
        images = torch.rand(2, 3, 128, 128)
        with torch.no_grad():
            evaluated = model.eval()(images)
            trained = model.train()(images)
        assert (evaluated.decoded.object_score <= 0).all()
        assert bool((evaluated.low_res == -1024.0).all()) is gate
        assert not (trained.low_res == -1024.0).any()
