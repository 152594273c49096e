"""`make test` lints and type-checks before the tests: ruff and mypy, configured in pyproject.toml, fail
on planted errors. Each check runs on a small temporary package (not the tree), clean first, so a
failure is the planted error and not the set-up. Size limits: no module of samfx/ or plugins/ over 400
lines, no function of samfx/ over 60."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"

CLEAN = '''"""A module that passes both checkers."""
from __future__ import annotations


def area(width: int, height: int) -> int:
    return width * height


TOTAL = area(3, 4)
'''


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _ruff(path: Path) -> subprocess.CompletedProcess[str]:
    return _run("ruff", "check", "--config", str(CONFIG), "--no-cache", str(path), cwd=path.parent)


def _mypy(pkg: Path) -> subprocess.CompletedProcess[str]:
    return _run("mypy", "--config-file", str(CONFIG), "--cache-dir", str(pkg.parent / ".mypy"), "-p", pkg.name,
                cwd=pkg.parent)


def test_ruff_fails_on_an_unused_import(tmp_path):
    mod = tmp_path / "snippet.py"
    mod.write_text(CLEAN)
    ok = _ruff(mod)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    mod.write_text(CLEAN.replace("from __future__ import annotations\n",
                                 "from __future__ import annotations\n\nimport os\n"))
    bad = _ruff(mod)
    assert bad.returncode != 0
    assert "F401" in bad.stdout and "`os` imported but unused" in bad.stdout, bad.stdout


def test_mypy_fails_on_a_wrong_argument_type(tmp_path):
    pkg = tmp_path / "planted"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(CLEAN)
    ok = _mypy(pkg)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (pkg / "__init__.py").write_text(CLEAN.replace("area(3, 4)", 'area("3", 4)'))
    bad = _mypy(pkg)
    assert bad.returncode == 1
    assert '__init__.py:9: error: Argument 1 to "area" has incompatible type "str"; expected "int"  [arg-type]' \
        in bad.stdout, bad.stdout


def test_contract_modules_are_checked_strictly(tmp_path):
    # The same unannotated function: an error in a contract module (samfx.contracts.registry), allowed elsewhere.
    pkg = tmp_path / "samfx"
    (pkg / "contracts").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "contracts" / "__init__.py").write_text("")
    for name in ("contracts/registry", "bench"):
        (pkg / f"{name}.py").write_text("def lookup(name):\n    return name\n")
    out = _mypy(pkg)
    assert out.returncode == 1
    assert "registry.py:1: error: Function is missing a type annotation  [no-untyped-def]" in out.stdout, out.stdout
    assert "bench.py" not in out.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_test_lints_and_type_checks_before_pytest():
    plan = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    steps = [line for line in plan.splitlines() if line.startswith(".venv/bin/")]
    tools = [line.split()[0].rsplit("/", 1)[-1] for line in steps]
    assert tools[-4:] == ["ruff", "lint-imports", "mypy", "python"] and "pytest" in steps[-1], plan


MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60  # def line to last line, inclusive
LONG_FUNCTIONS_ALLOWED: set[str] = set()   # "file:function" exceptions, each with its reason; none today


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_no_module_over_400_lines():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in _sources("samfx", "plugins")}
    long = [f"{name}: {n} lines" for name, n in sizes.items() if n > MAX_FILE_LINES]
    assert not long, f"modules over {MAX_FILE_LINES} lines (split them by meaning): " + "; ".join(long)


def test_no_function_over_60_lines():
    long = []
    for path in _sources("samfx"):
        name = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=name)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES and f"{name}:{node.name}" not in LONG_FUNCTIONS_ALLOWED:
                    long.append(f"{name}:{node.name} {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps): " + "; ".join(long)
