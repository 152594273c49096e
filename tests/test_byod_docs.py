"""docs/data.md "Your own data": the worked examples run as written and print what the page shows."""
from __future__ import annotations

import glob
import re
import shlex
import subprocess
import sys

from typer.testing import CliRunner

from samfx.cli.main import app
from tests.conftest import ROOT

SAMPLE = "/tmp/byod"


def examples() -> list[tuple[list[str], list[str]]]:
    """(command words, expected output lines) of each `samfx data folder|dicom|video` example."""
    section = (ROOT / "docs" / "data.md").read_text().split("## Your own data", 1)[1]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
    found = []
    for (lang, code), (_, output) in zip(blocks, blocks[1:]):
        if lang == "bash" and re.match(r"samfx data (folder|dicom|video) ", code):
            found.append((shlex.split(code.replace("\\\n", " ")), output.strip().splitlines()))
    return found


def test_worked_examples_print_what_the_docs_show(tmp_path):
    cases = examples()
    assert [words[2] for words, _ in cases] == ["folder", "dicom", "video"]
    script = subprocess.run([sys.executable, str(ROOT / "examples" / "byod_sample.py"), str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert script.returncode == 0, script.stderr
    for words, expected in cases:
        args: list[str] = []
        for w in words[1:]:
            w = w.replace(SAMPLE, str(tmp_path))
            args += sorted(glob.glob(w)) if "*" in w else [w]
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, (args, r.output)
        assert r.stdout.splitlines() == [line.replace(SAMPLE, str(tmp_path)) for line in expected]
