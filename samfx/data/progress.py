"""A rich progress bar (on stderr) for importers, generators and training; a no-op when disabled."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True, *, show_loss: bool = False,
                 transient: bool = False) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, loss=None)``; draws a bar with a rate and ETA when `enabled`, plus the
    last ``loss`` given when `show_loss`."""
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

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if show_loss:
        columns.append(TextColumn("loss {task.fields[loss]:.4f}"))
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=transient) as bar:
        task = bar.add_task(description, total=total, loss=float("nan"))

        def advance(n: int = 1, loss: float | None = None) -> None:
            fields: dict[str, Any] = {} if loss is None else {"loss": loss}
            bar.update(task, advance=n, **fields)

        yield advance
