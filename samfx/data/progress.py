"""A rich progress bar (on stderr) for importers, generators and training; a no-op when disabled."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True, *,
                 status: Callable[[float | None], tuple[str, str]] | None = None, transient: bool = False,
                 console: Any = None) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, loss=None)``; draws a bar with a count, elapsed time and ETA when `enabled`
    (on stderr, or `console`). ``status(loss)`` gives two texts, shown before and after the timers and
    updated at each advance (training: its last loss and the whole run's ETA)."""
    if not enabled:
        yield lambda n=1, loss=None: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[left]}"),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[right]}")]
    left, right = status(None) if status is not None else ("", "")
    with Progress(*columns, console=console or Console(stderr=True), transient=transient) as bar:
        task = bar.add_task(description, total=total, left=left, right=right)

        def advance(n: int = 1, loss: float | None = None) -> None:
            fields: dict[str, Any] = {}
            if status is not None:
                fields["left"], fields["right"] = status(loss)
            bar.update(task, advance=n, **fields)

        yield advance
