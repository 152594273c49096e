"""Discover plugins through entry points, isolate their failures, fill the registry.

Environment:
  SAMFX_DISABLE_PLUGINS=a,b   skip these plugins (entry-point names; an unknown name is a warning)
  SAMFX_STRICT_PLUGINS=1      raise on the first plugin that fails to load or register
  SAMFX_PLUGIN_TIMEOUT=S      seconds one plugin's import may take (default 60); past it the plugin is
                              recorded as failed, naming itself and the timeout, and the others load.
                              0 imports in the calling thread without a limit.
"""
from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from samfx.contracts.errors import SamfxError, did_you_mean
from samfx.contracts.hookspecs import PROJECT, SamfxHooks
from samfx.contracts.registry import Component, Registry

ENTRY_POINT_GROUP = "samfx.plugins"
DEFAULT_TIMEOUT = 60.0


class PluginLoadError(SamfxError):
    """Raised under SAMFX_STRICT_PLUGINS=1 when a plugin fails."""


@dataclass
class PluginInfo:
    """What `samfx list-plugins` shows for one plugin."""

    name: str
    version: str
    status: str  # "ok" | "failed" | "disabled"
    target: str = ""
    error: str = ""
    traceback: str = ""
    components: list[Component] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        by_kind: dict[str, list[str]] = {}
        for comp in self.components:
            by_kind.setdefault(comp.kind, []).append(comp.name)
        out: dict[str, Any] = {"name": self.name, "version": self.version, "status": self.status,
                               "target": self.target, "components": by_kind}
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class Plugins:
    manager: pluggy.PluginManager
    registry: Registry
    infos: list[PluginInfo]

    def info(self, name: str) -> PluginInfo | None:
        return next((i for i in self.infos if i.name == name), None)

    def versions(self, plugin_names: set[str] | None = None) -> dict[str, str]:
        return {i.name: i.version for i in self.infos if plugin_names is None or i.name in plugin_names}


def _env_list(var: str) -> set[str]:
    return {s.strip() for s in os.environ.get(var, "").split(",") if s.strip()}


def strict_mode() -> bool:
    return os.environ.get("SAMFX_STRICT_PLUGINS", "").lower() in {"1", "true", "yes", "on"}


class PluginTimeout(SamfxError):
    """A plugin's import did not finish within SAMFX_PLUGIN_TIMEOUT seconds."""


def import_timeout() -> float:
    """SAMFX_PLUGIN_TIMEOUT in seconds (default 60; 0: no limit)."""
    raw = os.environ.get("SAMFX_PLUGIN_TIMEOUT", "").strip()
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_TIMEOUT
    except ValueError:
        print(f"warning: SAMFX_PLUGIN_TIMEOUT={raw!r} is not a number of seconds; using {DEFAULT_TIMEOUT:g}",
              file=sys.stderr)
        return DEFAULT_TIMEOUT


def bounded_load(name: str, loader: Callable[[], Any], timeout: float) -> Any:
    """``loader()`` in a daemon thread, waiting at most `timeout` seconds (0: called here, no limit).

    Past the timeout :class:`PluginTimeout` names the plugin, the limit and both escapes; the stuck
    thread is abandoned (a daemon: it does not keep the process alive). Its exception is re-raised here.
    """
    if timeout <= 0:
        return loader()
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = loader()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"samfx-plugin-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise PluginTimeout(f"import did not finish within {timeout:g} s (it blocks or hangs); skip it with "
                            f"SAMFX_DISABLE_PLUGINS={name} or allow longer with SAMFX_PLUGIN_TIMEOUT")
    if "error" in result:
        raise result["error"]
    return result["value"]


def _dist_version(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else "unknown"


def load_plugins(extra: dict[str, Any] | None = None, strict: bool | None = None) -> Plugins:
    """Load every entry-point plugin (plus `extra` objects, for tests) and register its components.

    A plugin whose import or registration raises, or whose import takes longer than
    SAMFX_PLUGIN_TIMEOUT, is recorded as failed and the others continue, unless strict mode is on,
    in which case PluginLoadError carries the traceback.
    """
    strict = strict_mode() if strict is None else strict
    disabled = _env_list("SAMFX_DISABLE_PLUGINS")
    timeout = import_timeout()
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(SamfxHooks)
    registry = Registry()
    infos: list[PluginInfo] = []

    candidates: list[tuple[str, str, str, Any]] = []  # name, version, target, loader
    seen: set[str] = set()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(ep.name)
        candidates.append((ep.name, _dist_version(ep), ep.value, ep.load))
    for name, obj in (extra or {}).items():
        candidates.append((name, "unknown", repr(obj), lambda obj=obj: obj))

    names = [c[0] for c in candidates]
    for name in sorted(disabled - set(names)):
        print(f"warning: SAMFX_DISABLE_PLUGINS names '{name}', which is not an installed plugin"
              f"{did_you_mean(name, names) or '; installed: ' + ', '.join(names)}", file=sys.stderr)
    for name, version, target, loader in candidates:
        info = PluginInfo(name=name, version=version, status="ok", target=target)
        infos.append(info)
        if name in disabled:
            info.status = "disabled"
            registry.unavailable[name] = (f"is disabled by SAMFX_DISABLE_PLUGINS={os.environ['SAMFX_DISABLE_PLUGINS']} "
                                          f"(remove it from there to use it)")
            continue
        try:
            obj = bounded_load(name, loader, timeout)
            pm.register(obj, name=name)
            for impl in pm.hook.samfx_register.get_hookimpls():
                if impl.plugin_name == name:
                    scoped = registry.scoped(name)
                    impl.function(registry=scoped)
                    info.components = scoped.added
        except Exception as exc:
            _record_failure(info, exc, pm, registry)
            if strict:
                raise PluginLoadError(
                    f"plugin '{name}' ({target}) failed to load: {info.error}\n{info.traceback}"
                ) from exc
    return Plugins(pm, registry, infos)


def _record_failure(info: PluginInfo, exc: Exception, pm: pluggy.PluginManager, registry: Registry) -> None:
    """Mark `info` failed with `exc` (being handled) and drop whatever the plugin registered before failing."""
    name = info.name
    info.status = "failed"
    info.error = f"{type(exc).__name__}: {exc}"
    info.traceback = traceback.format_exc()
    for key in [k for k, c in registry.components.items() if c.plugin == name]:
        del registry.components[key]
    info.components = []
    registry.unavailable[name] = (f"failed to load: {info.error.splitlines()[0]} "
                                  f"(run `samfx doctor` for the traceback)")
    if pm.get_plugin(name) is not None:
        pm.unregister(name=name)


_CACHE: Plugins | None = None


def get_plugins(refresh: bool = False) -> Plugins:
    """The process-wide plugin set (loaded once)."""
    global _CACHE
    if _CACHE is None or refresh:
        _CACHE = load_plugins()
    return _CACHE


def get_registry() -> Registry:
    return get_plugins().registry
