"""The report's comparison of several prompts' evaluations of one split (docs/report.md): per class,
Dice and HD95 per prompt as the mean over patients with its bootstrap interval (samfx.report.stats)."""
from __future__ import annotations

from typing import Any

from samfx.report.collect import RunData
from samfx.report.html import cell, esc, num, table
from samfx.report.stats import CI_METHOD, class_table


def ci_text(s: dict[str, Any], scale: float) -> str:
    """A metric_ci as HTML: the mean in bold, its interval in brackets, the infinite count in red."""
    if s["mean"] is None:
        return "n/a"
    digits = 1 if scale == 100.0 else 2
    text = f"<b>{num(s['mean'], digits, scale)}</b>"
    if s["lo"] is not None:
        text += f' <span class="muted">[{num(s["lo"], digits, scale)}, {num(s["hi"], digits, scale)}]</span>'
    if s["n_inf"]:
        text += f' <span class="bad">({s["n_inf"]} inf)</span>'
    return text


def prompts_of(data: RunData) -> list[str]:
    """The compared prompt generators, in page order ([] for a one-prompt page, or data without
    ``compared``)."""
    return [str(rep["prompt"]) for _, rep in getattr(data, "compared", None) or []]


def comparison_section(data: RunData) -> str:
    """Per class, one Dice and one HD95 column per compared prompt; '' for a one-prompt page. Classes
    missing from an evaluation show n/a; each prompt's distance unit is in its header."""
    if not data.compared:
        return ""
    tables = [(rep, class_table(rep)) for _, rep in data.compared]
    head = ["class"] + [f"Dice % {esc(rep['prompt'])}" for rep, _ in tables] + [
        f"HD95 {esc(rep['distance_unit'])} {esc(rep['prompt'])}" for rep, _ in tables]
    names = list(dict.fromkeys(n for rep, _ in tables for n in rep["classes"]))
    rows = []
    for name in names:
        row = [cell(esc(name), cls="l")]
        for metric, scale in (("dice", 100.0), ("hd95", 1.0)):
            for _, ci in tables:
                s = ci.get(name, {}).get(metric)
                row.append(cell(ci_text(s, scale), s["mean"]) if s else cell("n/a"))
        rows.append(row)
    files = ", ".join(f"{esc(rep['prompt'])}: <code>{esc(path.name)}</code> "
                      f"({rep['n_images']} images, {rep['n_patients']} patients)" for path, rep in data.compared)
    return (f'<section id="compare"><h2>Prompt comparison</h2><p class="note">Per class, mean over patients '
            f"with the 95 % confidence interval in brackets ({esc(CI_METHOD)}), one column per prompt generator. "
            f"Evaluations: {files}. The sections below show prompt {esc(data.report['prompt'])}.</p>"
            f'<div class="scroll">{table(head, rows)}</div></section>')
