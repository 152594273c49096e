"""The report of several prompts (one page, a per-class comparison ahead of the first prompt's sections),
and write errors while `samfx eval` writes its overlays or `samfx report` its page as one line naming the
file and the reason (a full disk included), never confused with a read error of the data."""
from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

from tests.cli_inprocess import cli, one_line
from tests.toy_runs import train_toy

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(scope="module")
def toy_run(plugins, tmp_path_factory):
    """A toy run evaluated on 'val' with its default prompt (toy_class) and with prompt 'none'."""
    from samfx.engine.eval.evaluate import evaluate

    run = train_toy(tmp_path_factory.mktemp("toy") / "run", plugins, "train.stages.0.max_steps=2")
    evaluate(run, split="val", registry=plugins.registry)
    evaluate(run, split="val", prompt="none", registry=plugins.registry)
    return run


@pytest.fixture
def cached_plugins(plugins, monkeypatch):
    import samfx.contracts.plugins as pm

    monkeypatch.setattr(pm, "_CACHE", plugins)
    return plugins


# -- several prompts on one page -------------------------------------------------------------------------
def test_two_prompts_give_one_page_with_a_comparison_before_the_first_prompts_sections(plugins, toy_run):
    from samfx import api

    html = api.report(toy_run, split="val", prompt=["toy_class", "none"], registry=plugins.registry)
    assert html == toy_run / "report-val-toy_class+none.html"
    text = html.read_text()
    assert "(val, prompts toy_class, none)" in text
    assert text.index('id="compare"') < text.index('id="eval"') < text.index('id="images"')
    compare = text[text.index('id="compare"'):text.index('id="eval"')]
    for prompt in ("toy_class", "none"):
        assert f"Dice % {prompt}" in compare and "HD95 " in compare and f"{prompt}</th>" in compare
    assert "eval-val.json" in compare and "eval-val-none.json" in compare
    assert compare.count('class="muted">[') >= 2  # the bootstrap intervals, one per prompt at least
    assert "toy_class (the checkpoint" in text  # the single-prompt sections are the first prompt's
    assert 'href="#compare"' in text


def test_prompt_all_compares_every_evaluation_of_the_split(plugins, toy_run):
    from samfx.report.collect import find_evals

    assert find_evals(toy_run, "val", ["all"]) == [toy_run / "eval-val.json", toy_run / "eval-val-none.json"]
    assert find_evals(toy_run, None, ["none", "all"]) == [toy_run / "eval-val-none.json", toy_run / "eval-val.json"]


def test_cli_repeated_prompt_and_all(cached_plugins, toy_run, tmp_path):
    res = cli("report", toy_run, "--prompt", "all", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    out = tmp_path / "report-val-toy_class+none.html"
    assert res.output.strip() == f"html report: {out}" and 'id="compare"' in out.read_text()
    res = cli("report", toy_run, "--prompt", "none", "--prompt", "toy_class", "--out", tmp_path / "r.html")
    assert res.exit_code == 0, res.output
    assert "(val, prompts none, toy_class)" in (tmp_path / "r.html").read_text()
    one_line(cli("report", toy_run, "--prompt", "none", "--prompt", "clicks"),
             "no evaluation of split 'val' and prompt 'clicks' yet")


def test_one_prompt_page_has_no_comparison(plugins, toy_run):
    from samfx import api

    for prompt in ("none", ["none"], ["none", "none"]):
        html = api.report(toy_run, split="val", prompt=prompt, registry=plugins.registry)
        text = html.read_text()
        assert html == toy_run / "report-val-none.html" and 'id="compare"' not in text
        assert "(val, prompt none)" in text


# -- write errors ----------------------------------------------------------------------------------------
def test_full_disk_while_writing_overlays_is_one_line_naming_the_png(cached_plugins, toy_run, monkeypatch):
    from PIL import Image

    def full(self, fp, *a, **k):
        raise NO_SPACE

    monkeypatch.setattr(Image.Image, "save", full)
    line = one_line(cli("eval", toy_run, "--split", "val", "--device", "cpu", "--limit", "1"),
                    "cannot write the evaluation (No space left on device)", "free disk space")
    assert re.search(r"overlays/eval-val/000-[^ ]*\.png: ", line), line


def test_bare_errno_and_unwritable_folder_reasons():
    from samfx.engine.eval.overlays import write_error

    assert write_error(OSError(errno.ENOSPC), "x.png", "cannot write") == \
        "x.png: cannot write (No space left on device); free disk space (or quota) and run again"
    denied = write_error(PermissionError(errno.EACCES, "Permission denied", "/ro/x.png"), "x.png", "cannot write")
    assert denied.startswith("/ro/x.png: cannot write (Permission denied); the run folder must be writable")


def test_a_read_error_of_the_data_is_not_called_a_write_error(cached_plugins, toy_run, monkeypatch):
    from samfx.data import datasets

    def unreadable(self, i):
        raise OSError(errno.EIO, "Input/output error", "store/images/0.png")

    monkeypatch.setattr(datasets.ImageDataset, "__getitem__", unreadable)
    res = cli("eval", toy_run, "--split", "val", "--device", "cpu", "--limit", "1")
    assert res.exit_code != 0
    assert "cannot write" not in res.output + (res.stderr or "")


def test_full_disk_while_writing_the_report_page_is_one_line(cached_plugins, toy_run, monkeypatch, tmp_path):
    import samfx.report.write as W

    def full(path, text):
        raise NO_SPACE

    monkeypatch.setattr(W, "write_text", full)
    out = tmp_path / "r.html"
    one_line(cli("report", toy_run, "--split", "val", "--out", out),
             f"{out}: cannot write the report (No space left on device)", "free disk space")
    assert not Path(out).exists()
