"""Undo / redo for an annotation session: each step keeps, for the frames and prompts it changed, their
values before and after (not whole copies of the loop), bounded in bytes (the oldest steps go first)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Step:
    """One operation's changes: ``before`` / ``after`` map a frame index to its label map (H,W), and a
    (frame, class) key to its prompts (or None); ``labeled`` the frames' labeled flags."""

    name: str
    labels_before: dict[int, Any] = field(default_factory=dict)
    labels_after: dict[int, Any] = field(default_factory=dict)
    prompts_before: dict[tuple[int, int], Any] = field(default_factory=dict)
    prompts_after: dict[tuple[int, int], Any] = field(default_factory=dict)
    labeled_before: dict[int, bool] = field(default_factory=dict)
    labeled_after: dict[int, bool] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in (*self.labels_before.values(), *self.labels_after.values())))


class History:
    """Undo and redo stacks; a new step clears redo. ``limit_mb`` bounds the label maps kept."""

    def __init__(self, limit_mb: float = 256.0):
        self.limit = int(limit_mb * 2**20)
        self.undo_stack: list[Step] = []
        self.redo_stack: list[Step] = []

    def push(self, step: Step) -> None:
        self.undo_stack.append(step)
        self.redo_stack.clear()
        while len(self.undo_stack) > 1 and sum(s.nbytes for s in self.undo_stack) > self.limit:
            self.undo_stack.pop(0)

    def pop_undo(self) -> Step | None:
        if not self.undo_stack:
            return None
        step = self.undo_stack.pop()
        self.redo_stack.append(step)
        return step

    def pop_redo(self) -> Step | None:
        if not self.redo_stack:
            return None
        step = self.redo_stack.pop()
        self.undo_stack.append(step)
        return step

    def counts(self) -> dict[str, int]:
        return {"undo": len(self.undo_stack), "redo": len(self.redo_stack)}
