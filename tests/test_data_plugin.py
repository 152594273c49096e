"""The datasets plugin: registration, recipe validation, cached sources, the preview command."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from samfx.cli.main import app
from samfx.config.recipe import load_recipe
from samfx.contracts.errors import DataError, RecipeError
from samfx.contracts.interfaces import DataSource
from samfx.contracts.plugins import get_registry
from samfx.data.cache import cache_dir
from samfx.data.store import read_index
from samfx.data.synth.v2.options import SynthV2Options
from samfx.model.build import make_config


def _source(cfg):
    reg = get_registry()
    comp = reg.get("dataset", cfg["name"])
    return comp.load_factory()(make_config(comp, cfg), None)


def test_registered_and_light():
    reg = get_registry()
    assert {c.name for c in reg.of_kind("dataset")} >= {"synthetic_echo", "h5", "camus", "us30k", "echonet"}
    code = ("import sys, samfx_plugins.datasets.plugin, samfx.cli.main; "
            "print([m for m in ('torch', 'h5py', 'numpy', 'samfx_plugins.datasets.sources') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_recipe_typo_is_named(tmp_path):
    with pytest.raises(RecipeError, match=r"data.source.patiens: unknown key, did you mean 'patients'\?"):
        load_recipe(None, ["data.source.patiens=3"], registry=get_registry())
    rec = load_recipe(None, ["data.source.patients=3", "data.source.size=[40,48]"], registry=get_registry())
    source = dict(rec.config["data"]["source"])
    assert source.pop("v2") == SynthV2Options().to_dict()
    assert source == {"name": "datasets/synthetic_echo", "patients": 3, "seed": 0, "frames": 12,
                      "size": [40, 48], "wall_flicker": 0.0, "version": 1, "cache_dir": None}
    rec = load_recipe(None, ["data.source.version=2", "data.source.v2.shadow=0"], registry=get_registry())
    assert rec.config["data"]["source"]["version"] == 2 and rec.config["data"]["source"]["v2"]["shadow"] == 0
    with pytest.raises(RecipeError, match=r"data.source.v2.shadw: unknown key, did you mean 'shadow'\?"):
        load_recipe(None, ["data.source.v2.shadw=0"], registry=get_registry())


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("SAMFX_CACHE", raising=False)
    assert cache_dir() == cache_dir(None) and str(cache_dir()).endswith(".cache/samfx")
    monkeypatch.setenv("SAMFX_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env" and cache_dir(tmp_path / "x") == tmp_path / "x"


def test_synthetic_source_generates_once(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMFX_CACHE", str(tmp_path / "cache"))
    src = _source({"name": "synthetic_echo", "patients": 2, "frames": 2, "size": [40, 48], "seed": 4})
    assert isinstance(src, DataSource)
    path = src.path(None)
    assert path == tmp_path / "cache" / "synthetic_echo-p2-s4-f2-40x48-g1.h5"
    assert read_index(path).items["patient0002_4CH"].shape == (2, 40, 48)
    stamp = os.stat(path).st_mtime_ns
    assert src.path(None) == path and os.stat(path).st_mtime_ns == stamp  # reused
    assert src.path(str(tmp_path / "other")) == tmp_path / "other" / path.name  # the caller's folder
    path.write_bytes(b"damaged")
    assert read_index(src.path(None)).source == "synthetic_echo"  # damaged cache rebuilt
    pinned = _source({"name": "synthetic_echo", "patients": 1, "frames": 2, "size": [40, 48],
                      "cache_dir": str(tmp_path / "pinned")})
    assert pinned.path(str(tmp_path / "ignored")).parent == tmp_path / "pinned"
    flicker = _source({"name": "synthetic_echo", "patients": 2, "frames": 2, "size": [40, 48], "seed": 4,
                       "wall_flicker": 0.5}).path(None)
    assert flicker.name == "synthetic_echo-p2-s4-f2-40x48-wf0.5-g1.h5"   # its own cache file
    v2 = _source({"name": "synthetic_echo", "patients": 1, "frames": 2, "size": [40, 48], "seed": 4, "version": 2})
    assert v2.path(None).name.startswith("synthetic_echo-p1-s4-f2-40x48-g2-")   # v2: its own file, per options
    assert read_index(v2.path(None)).items["patient0001_2CH"].attrs["cycle"] in ("full", "half")
    other = _source({"name": "synthetic_echo", "patients": 1, "frames": 2, "size": [40, 48], "seed": 4,
                     "version": 2, "v2": {"shadow": 0.0}}).path(None)
    assert other.name != v2.path(None).name
    with pytest.raises(DataError, match=r"data.source.v2.tgc: must be in \[0, 1\], got 2"):
        _source({"name": "synthetic_echo", "version": 2, "v2": {"tgc": 2.0}}).path(None)
    with pytest.raises(DataError, match=r"data.source.version: .* versions 1 and 2, got 3"):
        _source({"name": "synthetic_echo", "version": 3}).path(None)
    with pytest.raises(DataError, match=r"data.source.wall_flicker: must be in \[0, 1\].*got -0.1"):
        _source({"name": "synthetic_echo", "wall_flicker": -0.1}).path(None)


def test_h5_source_errors(tmp_path):
    with pytest.raises(DataError, match="data.source.path: no store file set"):
        _source({"name": "h5"}).path(None)
    with pytest.raises(DataError, match=r"data.source.path: store file '.*nope.h5' not found"):
        _source({"name": "h5", "path": str(tmp_path / "nope.h5")}).path(None)
    (tmp_path / "bad.h5").write_bytes(b"x")
    with pytest.raises(DataError, match="bad.h5: not a readable HDF5 file"):
        _source({"name": "h5", "path": str(tmp_path / "bad.h5")}).path(None)


def test_import_sources_need_a_root(tmp_path):
    with pytest.raises(DataError, match="data.source.root: the camus folder is not set"):
        _source({"name": "camus"}).path(str(tmp_path))
    with pytest.raises(DataError, match=r"data.source.root: us30k folder '.*nowhere' not found"):
        _source({"name": "us30k", "root": str(tmp_path / "nowhere")}).path(str(tmp_path))


def test_us30k_source_imports_into_cache(tmp_path):
    sample = Path("/work/shared/fixtures/us30k_layout_sample")
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared/fixtures/us30k_layout_sample").is_dir():
            sample = parent / "shared/fixtures/us30k_layout_sample"
            break
    if not sample.is_dir():
        pytest.skip("shared/fixtures/us30k_layout_sample not present")
    src = _source({"name": "us30k", "root": str(sample), "datasets": ["Breast-BUSI"]})
    path = src.path(str(tmp_path))
    assert path.parent == tmp_path and path.name.startswith("us30k-") and path.suffix == ".h5"
    assert list(read_index(path).items) == ["Breast-BUSI:benign0001"]
    assert src.path(str(tmp_path)) == path


def test_preview_command(tmp_path):
    from samfx.data.synth.store import generate

    store = generate(tmp_path / "s.h5", patients=2, frames=3, size=(48, 40))
    out = tmp_path / "img" / "p.png"
    r = CliRunner().invoke(app, ["data", "preview", str(store), "--out", str(out), "--count", "2", "--frames", "3"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
