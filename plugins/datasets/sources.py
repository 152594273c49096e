"""DataSource factories of the datasets plugin: each returns an object with ``path(cache_dir)``."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from samfx.contracts.errors import DataError
from samfx.contracts.interfaces import DataSource
from samfx.data.cache import cache_dir as resolve_cache
from samfx.data.cache import cached
from samfx.data.store import read_index
from samfx_plugins.datasets.config import BusiConfig, EchoNetPediatricConfig


class _Cached(DataSource):
    kind = ""

    def __init__(self, config):
        self.config = config

    def _dir(self, cache_dir) -> Path:
        return resolve_cache(self.config.cache_dir or cache_dir)

    def _root(self) -> Path:
        root = str(self.config.root or "")
        if not root:
            raise DataError(f"data.source.root: the {self.kind} folder is not set; add root: /path/to/{self.kind}")
        path = Path(root).expanduser().resolve()
        if not path.is_dir():
            raise DataError(f"data.source.root: {self.kind} folder '{path}' not found")
        return path

    def _name(self, **options) -> str:
        key = json.dumps({"root": str(self._root()), **options}, sort_keys=True)
        return f"{self.kind}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.h5"


class SyntheticEcho(_Cached):
    kind = "synthetic_echo"

    def path(self, cache_dir=None) -> Path:
        from samfx.data.synth.store import generate
        from samfx.data.synth.v1 import GENERATOR_VERSION, check_wall_flicker

        c = self.config
        if len(c.size) != 2:
            raise DataError(f"data.source.size: expected [H, W], got {c.size}")
        h, w = (int(s) for s in c.size)
        check_wall_flicker(c.wall_flicker, "data.source.wall_flicker")
        if c.version not in (1, 2):
            raise DataError(f"data.source.version: the synthetic echo generator has versions 1 and 2, got {c.version}")
        flicker = f"-wf{c.wall_flicker:g}" if c.wall_flicker else ""
        v2 = None
        if c.version == 2:
            from samfx.data.synth.v2.options import v2_options

            if c.wall_flicker:
                raise DataError("data.source.wall_flicker: a generator v1 option; v2 has its own dropouts "
                                "(data.source.v2.specular_dropout)")
            v2 = v2_options(dataclasses.asdict(c.v2), "data.source.v2").to_dict()
            key = hashlib.sha1(json.dumps(v2, sort_keys=True).encode()).hexdigest()[:10]
            tag = f"-g2-{key}"
        else:
            tag = f"-g{GENERATOR_VERSION}"
        name = f"synthetic_echo-p{c.patients}-s{c.seed}-f{c.frames}-{h}x{w}{flicker}{tag}.h5"
        return cached(self._dir(cache_dir) / name,
                      lambda p: generate(p, patients=c.patients, seed=c.seed, frames=c.frames, size=(h, w),
                                         wall_flicker=c.wall_flicker, version=c.version, v2=v2))


class H5(DataSource):
    def __init__(self, config):
        self.config = config

    def path(self, cache_dir=None) -> Path:
        if not self.config.path:
            raise DataError("data.source.path: no store file set; add path: /path/to/store.h5")
        path = Path(self.config.path).expanduser()
        if not path.is_file():
            raise DataError(f"data.source.path: store file '{path}' not found; create it with "
                            f"`samfx data synth --out {path}` or an importer")
        read_index(path)  # DataError when it is not a samfx store
        return path


class Camus(_Cached):
    kind = "camus"

    def path(self, cache_dir=None) -> Path:
        from samfx.data.importers.camus import import_camus

        c = self.config
        file = self._dir(cache_dir) / self._name(seed=c.seed, sequences=c.sequences, v=1)
        return cached(file, lambda p: import_camus(self._root(), p, seed=c.seed, sequences=c.sequences))


class US30K(_Cached):
    kind = "us30k"

    def path(self, cache_dir=None) -> Path:
        from samfx.data.importers.us30k import import_us30k

        c = self.config
        file = self._dir(cache_dir) / self._name(datasets=sorted(c.datasets), v=1)
        return cached(file, lambda p: import_us30k(self._root(), p, datasets=list(c.datasets) or None))


class EchoNet(_Cached):
    kind = "echonet"

    def path(self, cache_dir=None) -> Path:
        from samfx.data.importers.echonet import import_echonet

        c = self.config
        file = self._dir(cache_dir) / self._name(limit=c.limit, v=1)
        return cached(file, lambda p: import_echonet(self._root(), p, limit=c.limit))


class Busi(_Cached):
    kind = "busi"

    def path(self, cache_dir: str | Path | None = None) -> Path:
        from samfx.data.importers.busi import import_busi

        c = self.config
        file = self._dir(cache_dir) / self._name(seed=c.seed, v=1)
        return cached(file, lambda p: import_busi(self._root(), p, seed=c.seed))


class EchoNetPediatric(_Cached):
    kind = "echonet_pediatric"

    def path(self, cache_dir: str | Path | None = None) -> Path:
        from samfx.data.importers.echonet_pediatric import import_echonet_pediatric

        c = self.config
        file = self._dir(cache_dir) / self._name(val_fold=c.val_fold, test_fold=c.test_fold, limit=c.limit, v=1)
        return cached(file, lambda p: import_echonet_pediatric(self._root(), p, val_fold=c.val_fold,
                                                               test_fold=c.test_fold, limit=c.limit))


def synthetic_echo(config, ctx=None) -> SyntheticEcho:
    return SyntheticEcho(config)


def h5(config, ctx=None) -> H5:
    return H5(config)


def camus(config, ctx=None) -> Camus:
    return Camus(config)


def us30k(config, ctx=None) -> US30K:
    return US30K(config)


def echonet(config, ctx=None) -> EchoNet:
    return EchoNet(config)


def busi(config: BusiConfig, ctx: object = None) -> Busi:
    return Busi(config)


def echonet_pediatric(config: EchoNetPediatricConfig, ctx: object = None) -> EchoNetPediatric:
    return EchoNetPediatric(config)
