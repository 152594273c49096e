"""Entry-point loading: failure isolation, disabling, strict mode, and the light CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from samfx.contracts.plugins import PluginLoadError, load_plugins
from tests.conftest import ROOT, run_samfx

BUILTINS = {"sam", "samus", "prompts", "losses", "datasets", "apg", "lora", "msa_adapter", "msff", "stm"}


def fake_dist(tmp_path: Path, name: str, module_src: str) -> dict[str, str]:
    """A distribution on PYTHONPATH whose `samfx.plugins` entry point is `name`."""
    (tmp_path / f"{name}_mod.py").write_text(textwrap.dedent(module_src))
    dist = tmp_path / f"{name}-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(f"[samfx.plugins]\n{name} = {name}_mod\n")
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}


BROKEN = "raise RuntimeError('boom: cannot find libfoo')\n"


def test_builtin_plugins_load_ok():
    plugins = load_plugins(strict=True)
    statuses = {i.name: i.status for i in plugins.infos}
    assert BUILTINS <= set(statuses)
    assert all(statuses[n] == "ok" for n in BUILTINS)
    assert plugins.registry.get("prompt_generator", "clicks").plugin == "prompts"


def test_broken_plugin_is_listed_as_failed_and_others_work(tmp_path):
    env = fake_dist(tmp_path, "brokenplug", BROKEN)
    res = run_samfx("list-plugins", "--json", env=env)
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["brokenplug"]["status"] == "failed"
    assert rows["brokenplug"]["error"] == "RuntimeError: boom: cannot find libfoo"
    assert rows["brokenplug"]["version"] == "0.3"
    assert rows["losses"]["status"] == "ok" and "dice_bce" in rows["losses"]["components"]["loss"]


def test_strict_mode_exits_nonzero_with_traceback(tmp_path):
    env = fake_dist(tmp_path, "brokenplug", BROKEN)
    res = run_samfx("list-plugins", env={**env, "SAMFX_STRICT_PLUGINS": "1"})
    assert res.returncode != 0
    assert "plugin 'brokenplug' (brokenplug_mod) failed to load: RuntimeError: boom" in res.stderr
    assert "Traceback (most recent call last)" in res.stderr


def test_disabled_plugin_is_shown_and_not_loaded(tmp_path):
    env = fake_dist(tmp_path, "brokenplug", BROKEN)
    res = run_samfx("list-plugins", "--json", env={**env, "SAMFX_DISABLE_PLUGINS": "brokenplug,msff"})
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["brokenplug"]["status"] == "disabled" and rows["msff"]["status"] == "disabled"
    assert rows["msff"]["components"] == {}


def test_plugin_failing_in_registration_is_isolated():
    class Bad:
        from samfx import hookimpl

        @hookimpl
        def samfx_register(self, registry):
            registry.add("loss", "half", "x:y")
            raise ValueError("schema missing")

    plugins = load_plugins(extra={"bad": Bad()}, strict=False)
    info = plugins.info("bad")
    assert info.status == "failed" and info.error == "ValueError: schema missing"
    assert not [c for c in plugins.registry.of_kind("loss") if c.plugin == "bad"]
    with pytest.raises(PluginLoadError, match="plugin 'bad'"):
        load_plugins(extra={"bad": Bad()}, strict=True)


def test_list_plugins_filters_by_kind():
    res = run_samfx("list-plugins", "--json", "--kind", "loss")
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert set(rows["losses"]["components"]) == {"loss"}
    assert "prompts" not in rows  # no loss among its components
    bad = run_samfx("list-plugins", "--kind", "lossy")
    assert bad.returncode == 2 and "--kind: unknown kind 'lossy'" in bad.stderr


@pytest.mark.parametrize("args", [["--help"], ["list-plugins", "--json"]])
def test_light_commands_do_not_import_torch(args):
    code = (f"import sys, runpy; sys.argv=['samfx', *{args!r}]\n"
            "try:\n    runpy.run_module('samfx.cli.main', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print('NO_TORCH')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "NO_TORCH" in res.stdout, res.stderr
