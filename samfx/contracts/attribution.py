"""Errors raised inside plugin code, reported as one line naming the component and its plugin.

A plugin's :class:`~samfx.contracts.errors.ComponentError` gets the component's name in front; any other
samfx error passes unchanged; an unexpected exception (a plugin bug) becomes a
:class:`~samfx.contracts.errors.PluginFailure` whose first line says where it happened, with the original as
``__cause__`` (printed by the CLI under ``SAMFX_DEBUG=1``). ``BaseException``s that are not
``Exception`` (KeyboardInterrupt, samfx's ``Interrupted``) always pass through.
"""
from __future__ import annotations

import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from samfx.contracts.errors import ComponentError, PluginFailure, SamfxError
from samfx.contracts.registry import Component

# every built component -> its registry entry, to name the component a forward failed in
_BUILT: weakref.WeakKeyDictionary[Any, Component] = weakref.WeakKeyDictionary()


def remember(obj: Any, comp: Component) -> None:
    """Record that `obj` (a factory's result) is component `comp`."""
    try:
        _BUILT[obj] = comp
    except TypeError:  # not weak-referenceable: forwards of it are not attributed
        pass


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def debug_hint() -> str:
    return "set SAMFX_DEBUG=1 for the traceback"


def component_label(comp: Component) -> str:
    return f"plugin '{comp.plugin}', {comp.kind} '{comp.qualname}'"


@contextmanager
def building(comp: Component, where: str) -> Iterator[None]:
    """Around a factory call: name `comp` (at recipe key `where`) in what it raises."""
    try:
        yield
    except ComponentError as exc:
        raise ComponentError(f"{where}: {component_label(comp)}: {exc}") from exc
    except SamfxError:
        raise
    except Exception as exc:
        raise PluginFailure(f"{where}: {component_label(comp)} failed while building: {first_line(exc)}; "
                            f"{debug_hint()}") from exc


def _component_in(tb: TracebackType | None) -> Component | None:
    """The component whose code raised: the innermost traceback frame that is a method of a built
    component or of one of its submodules."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    owners: dict[int, Component] = {}
    for obj, comp in list(_BUILT.items()):
        owners[id(obj)] = comp
        for sub in getattr(obj, "modules", lambda: [])():
            owners.setdefault(id(sub), comp)
    for frame in reversed(frames):
        owner = frame.f_locals.get("self")
        if owner is not None and id(owner) in owners:
            return owners[id(owner)]
    return None


@contextmanager
def running(what: str) -> Iterator[None]:
    """Around a model forward (`what`, e.g. "train.stages.0 'apg'"): a plugin's exception names the
    component it came from; exceptions of samfx's own code pass unchanged."""
    try:
        yield
    except ComponentError as exc:
        comp = _component_in(sys.exc_info()[2])
        label = f"{component_label(comp)}: " if comp is not None else ""
        raise ComponentError(f"{what}: {label}{exc}") from exc
    except SamfxError:
        raise
    except Exception as exc:
        comp = _component_in(exc.__traceback__)
        if comp is None or isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
            raise  # samfx's own code, or out of memory: not the plugin's fault
        raise PluginFailure(f"{what}: {component_label(comp)} failed while running: {first_line(exc)}; "
                            f"{debug_hint()}") from exc
