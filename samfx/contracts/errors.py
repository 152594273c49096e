"""One exception type for every user-facing error: one line naming what and where, plus a hint."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class SamfxError(Exception):
    """A user-facing error. `str(err)` is one line: what went wrong, where, and a suggestion."""


class RecipeError(SamfxError):
    """A recipe (file or command-line override) is invalid."""


class RegistryError(SamfxError):
    """A component name cannot be resolved, or two plugins claim the same name."""


class CheckpointError(SamfxError):
    """A checkpoint file cannot be read or does not fit the model."""


class DataError(SamfxError):
    """A dataset file or folder is missing, corrupt or inconsistent."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)  # KeyError adds quotes
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ", did you mean 'x'?" (or 'x' or 'y') for close matches, else ""."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=n, cutoff=0.6)
    if not close:
        return ""
    if len(close) == 1:
        return f", did you mean '{close[0]}'?"
    return ", did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def nearest(word: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """Closest names to `word` (best first), falling back to all choices when nothing is close."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=n, cutoff=0.4)
    return close or choices[:n]


class ComponentError(SamfxError):
    """For plugin authors: raise it from a component's factory or forward for a user error (a bad
    config value, an input it cannot take). The CLI prints one line, prefixed with the component
    and plugin, and exits 2; any other exception from plugin code is reported as a plugin failure."""


class PluginFailure(SamfxError):
    """An unexpected exception inside a plugin's code, summarised to one line; ``SAMFX_DEBUG=1``
    prints its traceback (the ``__cause__``)."""
