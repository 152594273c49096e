"""docs/plugins.md's walkthrough runs as written: every python block of its section, in order."""
from __future__ import annotations

import contextlib
import io
import re
import sys
import types

from tests.conftest import ROOT

SECTION = "## Walkthrough: a prompt generator, an adapter, a temporal module and a loss"


def walkthrough_blocks() -> list[str]:
    text = (ROOT / "docs" / "plugins.md").read_text()
    assert SECTION in text
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_walkthrough_runs(tmp_path, monkeypatch):
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    blocks = walkthrough_blocks()
    assert len(blocks) == 8
    module = types.ModuleType("walkthrough")  # dataclasses look their module up in sys.modules
    monkeypatch.setitem(sys.modules, "walkthrough", module)
    namespace = module.__dict__
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/plugins.md walkthrough block {i + 1}", "exec"), namespace)
    printed = out.getvalue().splitlines()
    assert printed == ["['box_prompt', 'ema_memory', 'focal', 'gate']", "2",
                       "['train/aux/box', 'train/loss', 'train/lr', 'train/step_loss']", "2"]
    import torch

    # the components trained: the gates in the image run, the memory's mix in the clip run
    image_run = torch.load(tmp_path / "runs" / "walkthrough" / "last.pt", map_location="cpu", weights_only=False)
    gates = [v for k, v in image_run["model"].items() if k.startswith("adapters.gate-") and k.endswith(".gate")]
    assert len(gates) == 4 and all(bool(g.abs().sum() > 0) for g in gates)
    clip_run = torch.load(tmp_path / "runs" / "walkthrough-clips" / "last.pt", map_location="cpu", weights_only=False)
    assert float(clip_run["model"]["temporal.mix"]) != 0.0
