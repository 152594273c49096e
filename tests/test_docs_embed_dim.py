"""The docs give the embedding width as `context.embed_dim`, with the numbers the recipes build (issue #20, item 8)."""
from __future__ import annotations

from samfx.config.recipe import load_recipe
from samfx.model.build import build_model
from tests.conftest import ROOT


def test_docs_do_not_fix_the_embedding_at_256_channels():
    for doc in ("docs/architecture.md", "docs/models.md"):
        text = (ROOT / doc).read_text()
        assert "(B,256," not in text, doc
        assert "64 in" in text and "recipes/autosamus_msff_quick.yaml" in text, doc


def test_the_quick_recipe_embeds_at_64_channels_as_documented():
    model = build_model(load_recipe(ROOT / "recipes" / "autosamus_msff_quick.yaml"), load_checkpoint=False)
    assert model.image_encoder.embed_dim == 64


def test_predict_docs_accept_any_automatic_prompt():
    assert "any prompt generator that needs no ground truth" in (ROOT / "docs" / "engine.md").read_text()
