"""The layered core (docs/architecture.md): import-linter's contracts hold and catch a planted upward
import; no module imports another module's private name; the top level of samfx/ stays small."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("samfx", "plugins", "examples", "benchmarks")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("lint-imports is not installed (the `test` extra)")
    return subprocess.run([str(exe), "--no-cache", "--config", str(ROOT / "pyproject.toml")], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def private_imports(root: Path) -> list[str]:
    """`from X import _name` where X is a samfx module or plugin: 'file:line: X._name' for each."""
    found = []
    for path in sorted(p for d in SOURCES for p in (root / d).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level \
                    and node.module.split(".")[0] in ("samfx", "samfx_plugins"):
                found += [f"{path.relative_to(root)}:{node.lineno}: {node.module}.{a.name}"
                          for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_module_imports_a_private_name():
    assert private_imports(ROOT) == []


def test_a_planted_private_import_is_found(tmp_path):
    for d in SOURCES:
        (tmp_path / d).mkdir()
    planted = "from samfx.data.synth.v1 import _flicker\nfrom samfx import __version__\n"
    (tmp_path / "samfx" / "a.py").write_text(planted)
    assert private_imports(tmp_path) == ["samfx/a.py:1: samfx.data.synth.v1._flicker"]


def test_top_level_has_at_most_twelve_entries():
    entries = sorted(p.name for p in (ROOT / "samfx").iterdir() if p.name != "__pycache__")
    assert len(entries) <= 12, entries
    assert {"contracts", "config", "data", "checkpoints", "model", "engine", "deploy", "report", "cli",
            "api.py"} <= set(entries)


def test_import_contracts_hold():
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert "0 broken" in out.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    """A copy of the tree where data imports the engine: the layers contract names that import."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "samfx", tree / "samfx", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "plugins", tree / "samfx_plugins", ignore=shutil.ignore_patterns("__pycache__"))
    planted = tree / "samfx" / "data" / "cache.py"
    planted.write_text(planted.read_text() + "\n\ndef _late():\n    from samfx.engine.train import trainer  # noqa\n")
    out = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache", "--config",
                          str(ROOT / "pyproject.toml")], cwd=tree, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(tree), "PATH": ""})
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr
    assert "samfx.data.cache -> samfx.engine.train.trainer" in out.stdout, out.stdout[-3000:]
