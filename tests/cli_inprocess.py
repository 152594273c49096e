"""The CLI in this process (typer's CliRunner) and the one-line error contract, for fast CLI tests."""
from __future__ import annotations

from typer.testing import CliRunner, Result

from samfx.cli.main import app


def cli(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(result: Result, *parts: str) -> str:
    """Assert exit 2 with exactly one `error: ...` line on stderr holding every part; return it."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]
