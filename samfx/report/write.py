"""Write a run's report page: collect the numbers, render the page, replace the file atomically."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from samfx.contracts.errors import SamfxError
from samfx.data.files import write_text
from samfx.engine.eval.overlays import write_error
from samfx.engine.run.rundir import safe_name
from samfx.report.collect import collect
from samfx.report.compare import prompts_of
from samfx.report.page import render


def default_out(run: Path, split: str, eval_path: Path | None = None, prompts: Sequence[str] = ()) -> Path:
    """RUN/report-<split>.html, or for an evaluation file eval-<name>.json RUN/report-<name>.html (so the
    report of eval-val-clicks.json is report-val-clicks.html); a page of several `prompts` is
    RUN/report-<split>-<prompt>+<prompt>....html."""
    if len(prompts) > 1:
        return run / f"report-{safe_name(split)}-{'+'.join(safe_name(p) for p in prompts)}.html"
    if eval_path is not None and eval_path.stem.startswith("eval-"):
        return run / f"report-{eval_path.stem[len('eval-'):]}.html"
    return run / f"report-{safe_name(split)}.html"


def write_report(run: str | Path, *, split: str | None = None, out: str | Path | None = None,
                 registry: Any = None, device: str = "cpu", prompt: str | Sequence[str] | None = None) -> Path:
    """Write the report of run folder `run` (the evaluation samfx.report.collect.find_eval picks for
    `split` and `prompt`; for several prompts or ``all``, one page comparing those find_evals picks) to
    `out` (default: :func:`default_out`); returns the path written."""
    data = collect(run, split, registry=registry, device=device, prompt=prompt)
    name = default_out(data.run, data.report["split"], data.eval_path, prompts_of(data))
    path = Path(out).expanduser() if out else name
    if path.is_dir():
        path = path / name.name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, render(data))
    except OSError as exc:
        raise SamfxError(write_error(exc, path, "cannot write the report", "choose another --out",
                                     own_name=False)) from None
    return path
