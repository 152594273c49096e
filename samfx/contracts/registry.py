"""The component registry: (kind, name) -> factory, filled by plugins, resolved by the core.

Names resolve as ``plugin/name`` (always unique) or as a short ``name`` when only one plugin
registered it. Registering the same factory twice is harmless; two different factories under
one qualified name is an error naming both.
"""
from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from samfx.contracts.errors import RegistryError, nearest

KINDS = (
    "image_encoder",
    "prompt_encoder",
    "mask_decoder",
    "adapter",
    "prompt_generator",
    "temporal_module",
    "dataset",
    "loss",
)


@dataclass(frozen=True)
class Component:
    """One registered component. ``factory(config, context)`` builds it; ``schema`` types its config."""

    kind: str
    name: str
    plugin: str
    factory: Callable[..., Any] | str
    schema: type | None = None
    description: str = ""

    @property
    def qualname(self) -> str:
        return f"{self.plugin}/{self.name}"

    def load_factory(self) -> Callable[..., Any]:
        """Import a lazy ``"module:attr"`` factory on first use."""
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            factory: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
            return factory
        except Exception as exc:  # a broken plugin must name itself
            raise RegistryError(
                f"{self.kind} '{self.qualname}': cannot import factory '{self.factory}': "
                f"{type(exc).__name__}: {exc}; set SAMFX_DEBUG=1 for the traceback"
            ) from exc

    def default_config(self) -> Any:
        return self.schema() if self.schema is not None else None


@dataclass
class Registry:
    """All components, keyed by (kind, qualified name)."""

    components: dict[tuple[str, str], Component] = field(default_factory=dict)
    # plugin -> why its components are missing ("failed to load: ... (run `samfx doctor` ...)")
    unavailable: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, name: str, factory: Callable[..., Any] | str, *, plugin: str,
            schema: type | None = None, description: str = "") -> Component:
        if kind not in KINDS:
            raise RegistryError(
                f"plugin '{plugin}' registers '{name}' under unknown kind '{kind}'; kinds are: {', '.join(KINDS)}"
            )
        if "/" in name or not name:
            raise RegistryError(f"plugin '{plugin}': component name '{name}' must be non-empty and contain no '/'")
        if schema is not None and not dataclasses.is_dataclass(schema):
            raise RegistryError(f"plugin '{plugin}': schema of {kind} '{name}' must be a dataclass, got {schema!r}")
        comp = Component(kind, name, plugin, factory, schema, description)
        key = (kind, comp.qualname)
        old = self.components.get(key)
        if old is not None and old != comp:
            raise RegistryError(
                f"{kind} '{comp.qualname}' registered twice with different factories "
                f"({old.factory!r} and {factory!r}); rename one of them"
            )
        self.components[key] = comp
        return comp

    def scoped(self, plugin: str) -> PluginRegistrar:
        return PluginRegistrar(self, plugin)

    def of_kind(self, kind: str) -> list[Component]:
        return sorted((c for (k, _), c in self.components.items() if k == kind), key=lambda c: c.qualname)

    def names(self, kind: str) -> list[str]:
        """Every name that resolves for `kind`: qualified names and unique short names."""
        comps = self.of_kind(kind)
        shorts = [c.name for c in comps]
        return sorted({c.qualname for c in comps} | {s for s in shorts if shorts.count(s) == 1})

    def get(self, kind: str, name: str, where: str = "") -> Component:
        """Resolve `name` of `kind`; `where` (e.g. a recipe key path) prefixes error messages."""
        if kind not in KINDS:
            raise RegistryError(f"unknown component kind '{kind}'; kinds are: {', '.join(KINDS)}")
        prefix = f"{where}: " if where else ""
        comps = self.of_kind(kind)
        if "/" in name:
            hits = [c for c in comps if c.qualname == name]
        else:
            hits = [c for c in comps if c.name == name]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            both = " or ".join(f"'{c.qualname}'" for c in hits)
            plugins = ", ".join(c.plugin for c in hits)
            raise RegistryError(
                f"{prefix}{kind} '{name}' is registered by several plugins ({plugins}); use {both}, "
                f"or disable one plugin with SAMFX_DISABLE_PLUGINS"
            )
        plugin = name.split("/")[0]
        if plugin in self.unavailable:  # `plugin/name`, or a short name its plugin shares
            raise RegistryError(f"{prefix}{kind} '{name}' is not available: plugin '{plugin}' "
                                f"{self.unavailable[plugin]}")
        known = self.names(kind)
        hint = ", ".join(nearest(name, known)) if known else "none registered"
        missing = "".join(f"; plugin '{p}', which {why}, may provide it" for p, why in self.unavailable.items())
        raise RegistryError(f"{prefix}unknown {kind} '{name}'; nearest registered: {hint} "
                            f"(see `samfx list-plugins`){missing}")


@dataclass
class PluginRegistrar:
    """What a plugin's ``samfx_register`` receives: ``add`` with the plugin name filled in."""

    registry: Registry
    plugin: str
    added: list[Component] = field(default_factory=list)

    def add(self, kind: str, name: str, factory: Callable[..., Any] | str, *,
            schema: type | None = None, description: str = "") -> Component:
        comp = self.registry.add(kind, name, factory, plugin=self.plugin, schema=schema, description=description)
        if comp not in self.added:
            self.added.append(comp)
        return comp
