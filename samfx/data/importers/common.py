"""Shared pieces of the importers: the import report, item ids, list files. Image reading is in
samfx.data.images."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from samfx.contracts.errors import DataError
from samfx.data.importers.summary import store_summary, summary_line

T = TypeVar("T")

SHOW = 5  # how many missing/bad entries a report names


@dataclass
class ImportReport:
    """What an importer did: counts, and the files it could not use (missing ones are not errors)."""

    out: str
    source: str
    counts: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # "file: why", with skip_bad
    notes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)  # samfx.data.importers.summary, set by finish()

    def finish(self) -> ImportReport:
        """Fill `stats` from the store written to `out` (call after the writer closed); returns self."""

        self.stats = store_summary(self.out)
        return self

    def attempt(self, skip_bad: bool, fn: Callable[[], T]) -> T | None:
        """``fn()``; its DataError is raised, or with ``skip_bad`` recorded in ``skipped`` (result None)."""
        try:
            return fn()
        except DataError as exc:
            if not skip_bad:
                raise
            self.skipped.append(str(exc))
            return None

    def summary_lines(self) -> list[str]:
        lines = [f"wrote {self.out}: " + ", ".join(f"{v} {k}" for k, v in self.counts.items())]
        for what, items in (("listed but missing", self.missing), ("skipped (bad)", self.skipped)):
            if items:
                more = f" (+{len(items) - SHOW} more)" if len(items) > SHOW else ""
                lines.append(f"{len(items)} {what}: " + "; ".join(items[:SHOW]) + more)
        lines += self.notes
        if self.stats:
            lines.append(summary_line(self.stats))
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"out": self.out, "source": self.source, "counts": self.counts,
                "missing": {"count": len(self.missing), "first": self.missing[:SHOW]},
                "skipped": {"count": len(self.skipped), "first": self.skipped[:SHOW]}, "notes": self.notes,
                "stats": self.stats}


def safe_id(text: str) -> str:
    """An item id from free text: characters the store does not allow become '_'."""
    return re.sub(r"[^A-Za-z0-9_.:+=@,()\-]", "_", text)


def read_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
