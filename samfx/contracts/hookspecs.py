"""The plugin contract: every hook a samfx plugin may implement.

A plugin is any importable object (usually a module) named by an entry point in the
``samfx.plugins`` group. It implements hooks with ``@samfx.hookimpl``. Keep that module light:
import torch and build models lazily inside factories, so listing plugins stays fast.

docs/plugins.md documents these hooks; a test keeps that page in sync with this module.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from samfx.contracts.kinds import CheckpointKind, WeightLayout
    from samfx.contracts.registry import PluginRegistrar

PROJECT = "samfx"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class SamfxHooks:
    """Hook specifications of samfx."""

    @hookspec
    def samfx_register(self, registry: PluginRegistrar) -> None:
        """Register this plugin's components.

        Call ``registry.add(kind, name, factory, schema=..., description=...)`` once per component.
        ``kind`` is one of ``samfx.contracts.registry.KINDS``; ``factory`` is a callable or a lazy
        ``"module:attribute"`` string (imported only when the component is built); ``schema`` is a
        dataclass whose fields are the component's recipe keys with their types and defaults.
        The registry records which plugin registered what; do not resolve names here.
        """

    @hookspec
    def samfx_doctor(self) -> dict[str, Any]:  # type: ignore[empty-body]  # a spec; pluggy never calls it
        """Return a dict of extra diagnostics for ``samfx doctor`` (versions, optional features)."""

    @hookspec
    def samfx_checkpoint_kinds(self) -> list[CheckpointKind]:  # type: ignore[empty-body]  # a spec
        """Return a list of ``samfx.contracts.kinds.CheckpointKind``: the foreign checkpoint layouts this plugin
        reads, for ``samfx inspect`` (name, the recipe that loads such a file, a torch-free ``matches``
        on the file's key -> shape table). Loading itself goes through the components'
        ``import_foreign_state``.
        """

    @hookspec
    def samfx_weight_layouts(self) -> list[WeightLayout]:  # type: ignore[empty-body]  # a spec
        """Return a list of ``samfx.contracts.kinds.WeightLayout``: the foreign layouts ``samfx convert --to NAME``
        writes for this plugin (name, a one-line description, the key prefixes the layout never holds, the key
        the file wraps the state dict in). Renaming the keys itself goes through the components'
        ``export_foreign_state``; ``--to samfx`` is the core's own.
        """
