"""Docs that must stay in sync with code."""
import inspect
import re

from samfx.contracts.hookspecs import SamfxHooks
from samfx.contracts.registry import KINDS
from tests.conftest import ROOT


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("``", "`")).strip()


def test_hook_reference_matches_hookspecs():
    doc = _norm((ROOT / "docs" / "plugins.md").read_text())
    hooks = [n for n, f in inspect.getmembers(SamfxHooks, inspect.isfunction) if n.startswith("samfx_")]
    documented = re.findall(r"### `(samfx_\w+)\(", (ROOT / "docs" / "plugins.md").read_text())
    assert sorted(documented) == sorted(hooks)
    for name in hooks:
        docstring = _norm(inspect.getdoc(getattr(SamfxHooks, name)))
        assert docstring in doc, f"docs/plugins.md: docstring of {name} is out of date"


def test_every_kind_is_documented():
    doc = (ROOT / "docs" / "plugins.md").read_text()
    for kind in KINDS:
        assert f"| `{kind}` |" in doc


def test_data_passed_between_components_is_documented_field_by_field():
    import dataclasses

    from samfx.contracts import interfaces

    doc = (ROOT / "docs" / "plugins.md").read_text()
    for cls in (interfaces.ImageFeatures, interfaces.DecoderInput, interfaces.DecoderOutput, interfaces.PromptContext,
                interfaces.Prompts, interfaces.FrameInfo, interfaces.MemoryReadout, interfaces.BuildContext):
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{cls.__name__}` |")), None)
        assert row is not None, f"docs/plugins.md: no table row for {cls.__name__}"
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in row, f"docs/plugins.md: {cls.__name__}.{f.name} is not described"
