"""Numeric ranges of recipe keys, declared once: :class:`Range` for the core's keys (``schema.RANGES``) and
:func:`bounded` for a component schema's fields. Recipe validation checks both, after types, and fails
with one line naming the key, the value and the range (``model.temporal.write_every: must be >= 1, got 0``)."""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")
RANGE = "samfx.range"  # the field-metadata key that holds a field's Range


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed numeric values of one key: bounds ``ge`` / ``gt`` / ``le`` / ``lt`` (None: open); ``note`` says
    what an edge value means. ``None`` values (optional keys) are not checked."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    note: str = ""

    def allows(self, x: float) -> bool:
        return not ((self.ge is not None and x < self.ge) or (self.gt is not None and x <= self.gt)
                    or (self.le is not None and x > self.le) or (self.lt is not None and x >= self.lt))

    def text(self) -> str:
        low = f">= {self.ge:g}" if self.ge is not None else f"> {self.gt:g}" if self.gt is not None else ""
        high = f"<= {self.le:g}" if self.le is not None else f"< {self.lt:g}" if self.lt is not None else ""
        return " and ".join(p for p in (low, high) if p)

    def failure(self, value: Any) -> str | None:
        """None if `value` is allowed (or None), else ``must be >= 1 (note), got 0``."""
        if value is None or self.allows(value):
            return None
        note = f" ({self.note})" if self.note else ""
        return f"must be {self.text()}{note}, got {value!r}"


def bounded(default: T, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, note: str = "") -> T:
    """A schema field with `default` whose recipe value must lie in the range (``None`` always may):
    ``num_maskmem: int = bounded(7, ge=1, note="SAM2: 7")``."""
    rng = Range(ge=ge, gt=gt, le=le, lt=lt, note=note)
    out: T = dataclasses.field(default=default, metadata={RANGE: rng})
    return out


def field_ranges(schema: type) -> dict[str, Range]:
    """The declared range of each field of dataclass `schema` that has one."""
    return {f.name: f.metadata[RANGE] for f in dataclasses.fields(schema) if RANGE in f.metadata}
