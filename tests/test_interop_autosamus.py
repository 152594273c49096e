"""AutoSAMUS authors' checkpoints: load into recipes/autosamus.yaml (form: reference) with the same
low-res logits as their model, and export back to their layout with identical tensors."""
from __future__ import annotations

import pytest
import torch
from segment_anything.modeling import MaskDecoder, TwoWayTransformer

from samfx.config.recipe import load_recipe
from samfx.contracts.errors import CheckpointError
from samfx.deploy.convert import export_state
from samfx.model.build import build_model
from samfx_plugins.samus.keys import export_authors_state_dict
from tests.authors_autosamus import AuthorsAPG
from tests.conftest import run_samfx

TINY = ["model.image_encoder.size=tiny"]
REFERENCE = [*TINY, "model.prompt.form=reference"]


def _randomize(module: torch.nn.Module, seed: int, std: float = 0.05) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


@pytest.fixture(scope="module")
def authors_file(tmp_path_factory):
    """(path, state, their APG): a tiny AutoSAMUS checkpoint in exactly the authors' layout."""
    samus = build_model(load_recipe("recipes/samus.yaml", [*TINY, "model.prompt.name=none"]))
    _randomize(samus, seed=5)
    _randomize(samus.mask_decoder, seed=7, std=0.2)         # logits of order 1, so 1e-4 is a tight bound
    apg = AuthorsAPG(256)
    apg.randomize(seed=6)
    state = {**export_authors_state_dict(samus.state_dict()), **apg.state_dict()}
    path = tmp_path_factory.mktemp("autosamus") / "autosamus_authors.pth"
    torch.save(state, path)
    return path, state, apg.eval()


def _load(path, *extra: str):
    return build_model(load_recipe("recipes/autosamus.yaml", [*REFERENCE, f"model.checkpoint={path}", *extra]))


def _their_low_res(model, apg: AuthorsAPG, state: dict, images: torch.Tensor) -> torch.Tensor:
    """Their forward: encoder -> prompt_generator(embedding, decoder tokens) -> feature_adapter -> SAM's
    decoder with their object token as the sparse prompt (segment-anything's MaskDecoder, one image at a time)."""
    decoder = MaskDecoder(transformer_dim=256, transformer=TwoWayTransformer(depth=2, embedding_dim=256,
                                                                             mlp_dim=2048, num_heads=8))
    decoder.load_state_dict({k[len("mask_decoder."):]: v for k, v in state.items() if k.startswith("mask_decoder.")})
    decoder.eval()
    emb = model.image_encoder(images).embedding
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight]).expand(len(images), -1, -1)
    new_emb, sparse = apg.prompt_generator(emb, tokens)
    dense = apg.feature_adapter(new_emb)
    pe = model.prompt_encoder.get_dense_pe()
    return torch.cat([decoder.predict_masks(new_emb[i:i + 1], pe, sparse[i:i + 1], dense[i:i + 1])[0][:, :1]
                      for i in range(len(images))])


@pytest.mark.parametrize("prefix", ["", "module."])
def test_loads_with_their_low_res_logits(authors_file, tmp_path, prefix):
    path, state, apg = authors_file
    if prefix:
        path = tmp_path / "ddp.pth"
        torch.save({prefix + k: v for k, v in state.items()}, path)
    model = _load(path).eval()
    assert model.active_prompt == "apg"
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(images).low_res
        theirs = _their_low_res(model, apg, state, images)
    assert ours.shape == theirs.shape == (2, 1, 128, 128)   # 32x32 embedding at 256²
    assert theirs.abs().max() > 0.1                       # not a degenerate all-zero comparison
    assert (ours - theirs).abs().max() <= 1e-4


def test_round_trip_gives_their_tensors_back(authors_file, tmp_path):
    path, state, _ = authors_file
    back = export_state(_load(path), "authors")
    assert sorted(back) == sorted(state)
    assert all(torch.equal(back[k], state[k]) for k in state)
    out = tmp_path / "again.pth"
    result = run_samfx("convert", str(path), *REFERENCE, "--recipe", "recipes/autosamus.yaml", "--to", "authors",
                       "--out", str(out))
    assert result.returncode == 0, result.stderr
    again = torch.load(out, weights_only=True)
    assert sorted(again) == sorted(state) and all(torch.equal(again[k], state[k]) for k in state)


def test_paper_form_names_the_setting(authors_file):
    path, _, _ = authors_file
    with pytest.raises(CheckpointError, match=r"autosamus_authors\.pth: it holds the AutoSAMUS authors' APG .*"
                                              r"set model\.prompt\.form=reference"):
        build_model(load_recipe("recipes/autosamus.yaml", [*TINY, f"model.checkpoint={path}"]))


def test_truncated_file_is_one_line_naming_it(authors_file, tmp_path):
    path, _, _ = authors_file
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(path.read_bytes()[:4096])
    result = run_samfx("train", "recipes/autosamus.yaml", *REFERENCE, f"model.checkpoint={bad}",
                       "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {bad}: cannot read checkpoint") and len(result.stderr.splitlines()) == 1


def test_export_of_a_paper_form_apg_is_refused():
    model = build_model(load_recipe("recipes/autosamus.yaml", TINY))
    with pytest.raises(CheckpointError, match="form=paper"):
        export_state(model, "authors")
