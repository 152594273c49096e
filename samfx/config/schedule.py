"""Prompt schedules: which frames of a clip a prompt generator prompts (torch-free).

A prompt generator's recipe entry may carry ``schedule`` (docs/temporal.md, "Prompt schedules")::

    first          frame 0 only (a user who clicks once, then lets the model track)
    every          every frame (automatic prompts; tracking by prompting from the previous frame)
    ed_es          the ED and ES frames of the clip, when it holds them (CAMUS's labeled frames)
    [0, 5, 11]     these frame indices (those past a clip's end are not in that clip)

Without the key a generator's ``default_schedule`` applies: ``first`` for the simulated user (clicks,
boxes, masks), ``every`` for the others. Unprompted frames get the no-prompt embedding and the memory.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from samfx.contracts.errors import RecipeError, did_you_mean

SCHEDULES = ("first", "every", "ed_es")
Schedule = str | list[int]


def check_schedule(value: Any, where: str) -> Schedule:
    """`value` as a schedule, or a one-line RecipeError naming `where`."""
    if isinstance(value, str):
        if value in SCHEDULES:
            return value
        hint = did_you_mean(value, SCHEDULES)
        raise RecipeError(f"{where}: '{value}' is not a prompt schedule; use one of {', '.join(SCHEDULES)} "
                          f"or a list of frame indices{hint}")
    if isinstance(value, (list, tuple)) and value and all(type(t) is int and t >= 0 for t in value):
        return sorted(set(value))
    raise RecipeError(f"{where}: expected first, every, ed_es or a non-empty list of frame indices >= 0, "
                      f"got {value!r}")


def prompted_frames(schedule: Schedule, num_frames: int, key_frames: Sequence[int] = ()) -> list[bool]:
    """Per frame of a `num_frames` clip: whether `schedule` prompts it. `key_frames`: the clip's ED and
    ES frame indices (those it holds), for ``ed_es``."""
    if schedule == "first":
        chosen: set[int] = {0}
    elif schedule == "every":
        chosen = set(range(num_frames))
    elif schedule == "ed_es":
        chosen = set(key_frames)
    elif isinstance(schedule, list):
        chosen = set(schedule)
    else:
        raise ValueError(f"not a prompt schedule: {schedule!r}")   # recipes are checked by check_schedule
    return [t in chosen for t in range(num_frames)]
