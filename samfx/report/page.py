"""The report page: one HTML string from a :class:`samfx.report.collect.RunData` (docs/report.md)."""
from __future__ import annotations

import math
import time
from typing import Any

from samfx.engine.eval.clinical import detect_ed_es
from samfx.engine.eval.evaluate import eval_file
from samfx.report import figures as F
from samfx.report.collect import RunData
from samfx.report.compare import ci_text, comparison_section, prompts_of
from samfx.report.html import cell, esc, img, num, page, table
from samfx.report.stats import CI_METHOD, bland_altman, class_table, image_score

METRIC_LABELS = {"dice": "Dice %", "iou": "IoU %", "hd": "HD", "hd95": "HD95"}
PCT = {"dice": 100.0, "iou": 100.0, "hd": 1.0, "hd95": 1.0}
SECTIONS = [("eval", "Evaluation"), ("images", "Worst / best images"), ("patients", "Per patient"),
            ("sequences", "Sequences"), ("curves", "Training curves"), ("params", "Parameters"),
            ("recipe", "Recipe and versions")]


def render(data: RunData) -> str:
    """The whole page; with several prompts (``data.compared``) the title names them all and their
    comparison comes before the sections of the first one."""
    rep = data.report
    shown = f"prompts {', '.join(prompts_of(data))}" if data.compared else f"prompt {rep['prompt']}"
    title = f"samfx report: {data.run.name} ({rep['split']}, {shown})"
    sections = [header(data, title), comparison_section(data), eval_section(data), images_section(data),
                patients_section(data), sequences_section(data), curves_section(data), params_section(data),
                recipe_section(data)]
    return page(title, "\n".join(s for s in sections if s))


def header(data: RunData, title: str) -> str:
    rep = data.report
    facts = [("run folder", str(data.run)), ("checkpoint", rep["checkpoint"]), ("data", rep["store"]),
             ("split", rep["split"]), ("images / patients", f"{rep['n_images']} / {rep['n_patients']}"),
             ("prompt", _prompt_fact(data)), ("image size", f"{rep['image_size']}²"),
             ("distances in", rep["distance_unit"]), ("evaluation file", data.eval_path.name),
             ("written", time.strftime("%Y-%m-%d %H:%M %Z"))]
    rows = [[cell(esc(k), cls="l"), cell(esc(v), cls="l")] for k, v in facts]
    has_seq = bool((rep.get("sequences") or {}).get("sequences"))
    shown = [("compare", "Prompt comparison")] * bool(data.compared) + SECTIONS
    links = " ".join(f'<a href="#{i}">{esc(t)}</a>' for i, t in shown if i != "sequences" or has_seq)
    notes = "".join(f'<p class="note bad">{esc(n)}</p>' for n in data.notes)
    return (f"<header><h1>{esc(title)}</h1><nav>{links}</nav></header>\n"
            f'{table(["", ""], rows, cls="facts")}{notes}')


def _prompt_fact(data: RunData) -> str:
    """The evaluated prompt generator, and whether it was the checkpoint's default or chosen with --prompt
    (the evaluation file's name says: samfx.engine.eval.evaluate.eval_file)."""
    rep = data.report
    default = data.eval_path.name == eval_file(str(rep["split"]))
    how = "the checkpoint's default" if default else "chosen with --prompt"
    return f"{rep['prompt']} ({how})"


def eval_section(data: RunData) -> str:
    """Per class: mean over patients with its 95 % interval, and the image-level mean ± SD."""
    rep, unit = data.report, data.report["distance_unit"]
    ci = class_table(rep)
    head = ["class", "patients"] + [f"{METRIC_LABELS[m]}{'' if PCT[m] == 100 else ' ' + unit}"
                                    for m in METRIC_LABELS]
    rows = []
    for name in rep["classes"]:
        row = [cell(esc(name), cls="l"), cell(ci[name]["dice"]["n"] + ci[name]["dice"]["n_inf"])]
        row += [cell(ci_text(ci[name][m], PCT[m]), ci[name][m]["mean"]) for m in METRIC_LABELS]
        rows.append(row)
    img_rows = []
    for name in rep["classes"]:
        per = rep["per_image"][name]
        img_rows.append([cell(esc(name), cls="l"), cell(per["dice"]["n"] + per["dice"].get("n_inf", 0))]
                        + [cell(_mean_sd(per[m], PCT[m])) for m in METRIC_LABELS])
    return (f'<section id="eval"><h2>Evaluation per class</h2>'
            f'<p class="note">Mean over patients (a patient = the mean of its images) with the 95 % confidence '
            f"interval in brackets: {esc(CI_METHOD)}. Dice and IoU in %, HD and HD95 in {esc(unit)}.</p>"
            f"{table(head, rows)}"
            f'<h3>Over images</h3><p class="note">Mean ± SD over images, as `samfx eval` prints it.</p>'
            f"{table(['class', 'images'] + head[2:], img_rows)}</section>")


def _mean_sd(stat: dict[str, Any], scale: float) -> str:
    if stat.get("mean") is None:
        return "n/a"
    digits = 1 if scale == 100.0 else 2
    inf = f' <span class="bad">({stat["n_inf"]} inf)</span>' if stat.get("n_inf") else ""
    return f"{num(stat['mean'], digits, scale)} ± {num(stat['std'], digits, scale)}{inf}"


def _tile(seg: dict[str, Any], classes: list[int]) -> str:
    r = seg["record"]
    per = ", ".join(f"{esc(n)} {num(c['dice'], 0, 100)}" for n, c in r["classes"].items())
    cap = (f"<b>{esc(r.get('id'))}</b> · {esc(r.get('patient'))}<br>mean Dice "
           f"{num(image_score(r), 1, 100)} % ({per})")
    png = F.overlay_png(seg["image"], seg["pred"], seg["gt"], classes)
    alt = f"overlay of {r.get('id')}"
    return f'<figure class="tile">{img(png, alt, "ov")}<figcaption>{cap}</figcaption></figure>'


def images_section(data: RunData) -> str:
    """Worst and best images by mean Dice over classes, prediction vs truth contours."""
    if not data.worst and not data.best:
        why = "no images to show" if data.notes else "the evaluation holds no images"
        return f'<section id="images"><h2>Worst / best images</h2><p class="note">{esc(why)}.</p></section>'
    names = data.report["classes"]
    key = img(F.legend_png(data.class_ids, names), "legend: class colours, solid prediction, dashed truth")
    worst = "".join(_tile(s, data.class_ids) for s in data.worst)
    best = "".join(_tile(s, data.class_ids) for s in data.best)
    return (f'<section id="images"><h2>Worst and best images</h2>'
            f'<p class="note">Ranked by the mean Dice over classes of each image. Prediction: solid contour and '
            f"light fill; truth: dashed contour; one colour per class.</p>{key}"
            f'<h3>Worst {len(data.worst)}</h3><div class="grid">{worst}</div>'
            f'<h3>Best {len(data.best)}</h3><div class="grid">{best}</div></section>')


def patients_section(data: RunData) -> str:
    """Every patient, every class and metric; sortable by clicking a header."""
    rep, unit = data.report, data.report["distance_unit"]
    metrics = list(METRIC_LABELS)
    head = ["patient", "images", "mean Dice %"]
    group = '<tr><th class="l" colspan="3"></th>' + "".join(
        f'<th class="grp" colspan="{len(metrics)}">{esc(n)}</th>' for n in rep["classes"]) + "</tr>"
    head += [f"{METRIC_LABELS[m].split()[0]}{' %' if PCT[m] == 100 else ' ' + unit}"
             for _ in rep["classes"] for m in metrics]
    rows = []
    for p in rep.get("patients") or []:
        dices = [p["classes"][n]["dice"] for n in rep["classes"] if p["classes"][n].get("dice") is not None]
        mean = sum(dices) / len(dices) if dices else None
        row = [cell(esc(p["patient"]), cls="l"), cell(p["n_images"], p["n_images"]),
               cell(num(mean, 1, 100), mean)]
        for n in rep["classes"]:
            for m in metrics:
                v = p["classes"][n].get(m)
                row.append(cell(num(v, 1 if PCT[m] == 100 else 2, PCT[m]) if v is not None or PCT[m] == 100
                                else '<span class="bad">inf</span>', v))
        rows.append(row)
    return (f'<section id="patients"><h2>Per patient</h2><p class="note">{len(rows)} patients; a value is the '
            f"mean over the patient's images (inf: the class is missing from every prediction or truth). "
            f"Click a column header to sort.</p>"
            f'<div class="scroll">{table(head, rows, cls="sortable", group_head=group)}</div></section>')


def sequences_section(data: RunData) -> str:
    """Per-sequence Dice and EF, LV-area curves with ED/ES, EF Bland–Altman (temporal models only)."""
    seqs = (data.report.get("sequences") or {}).get("sequences") or []
    if not seqs:
        return ""
    names = list(seqs[0]["dice"])
    head = ["sequence", "frames"] + [f"Dice {n} %" for n in names] + ["EF pred %", "EF truth %", "|EF error|"]
    rows = []
    for s in seqs:
        ef_p, ef_t = s.get("ef_pred"), s.get("ef_gt_masks")
        err = abs(ef_p - ef_t) if ef_p is not None and ef_t is not None else None
        rows.append([cell(esc(s.get("id")), cls="l"), cell(s["frames"], s["frames"])]
                    + [cell(num(s["dice"][n], 1, 100), s["dice"][n]) for n in names]
                    + [cell(num(ef_p, 1), ef_p), cell(num(ef_t, 1), ef_t), cell(num(err, 1), err)])
    parts = [f'<section id="sequences"><h2>Sequences</h2><p class="note">Dice per class on the labeled frames; '
             f"EF (single-plane area-length) from the predicted masks against the EF of the ground-truth masks "
             f'(same method).</p><div class="scroll">{table(head, rows, cls="sortable")}</div>']
    parts.append(_area_curves(seqs))
    parts.append(_bland_altman(seqs))
    return "".join(parts) + "</section>"


def _area_curves(seqs: list[dict[str, Any]]) -> str:

    curves = []
    for s in seqs:
        pred = s.get("lv_area_pred_mm2")
        if not pred:
            continue
        ed, es = (s["ed_pred"], s["es_pred"]) if "ed_pred" in s else detect_ed_es(pred)
        curves.append({"id": s.get("id"), "pred": pred, "truth": s.get("lv_area_gt_mm2") or [], "ed_pred": ed,
                       "es_pred": es, "ed_truth": s.get("ed_gt", s.get("ed_stored")),
                       "es_truth": s.get("es_gt", s.get("es_stored"))})
    if not curves:
        return ('<h3>LV area</h3><p class="note">No LV-area curves in this evaluation (no LV class, unknown '
                "spacing, or an eval file written before samfx stored them: run `samfx eval` again).</p>")
    shown = f"The first 6 of {len(curves)}" if len(curves) > 6 else f"All {len(curves)}"
    return (f'<h3>LV area over the cycle</h3><p class="note">{shown} sequences. Red: predicted LV area, '
            f"triangles at its ED (maximum) and ES (minimum); black: truth on labeled frames; blue lines: ED / ES "
            f"of the truth (from the full ground-truth curve, else the dataset's stored frames).</p>"
            f"{img(F.lv_area_png(curves), 'LV area curves')}")


def _bland_altman(seqs: list[dict[str, Any]]) -> str:
    pairs = [(s["ef_pred"], s["ef_gt_masks"]) for s in seqs if "ef_pred" in s]
    if not pairs:
        return ('<h3>EF agreement</h3><p class="note">No EF: it needs every frame labeled and a known '
                "spacing.</p>")
    ba = bland_altman([p if p is not None else math.nan for p, _ in pairs],
                      [t if t is not None else math.nan for _, t in pairs])
    lo, hi = ba["loa"]
    stats = (f"n = {ba['n']} sequences ({ba['n_undefined']} with an undefined EF left out); bias "
             f"{num(ba['bias'], 2)} points, 95 % limits of agreement {num(lo, 2)} to {num(hi, 2)} "
             f"(bias ± 1.96 SD of the differences)")
    body = img(F.bland_altman_png(ba), "EF Bland-Altman plot") if ba["n"] else ""
    return f'<h3>EF agreement (Bland–Altman)</h3><p class="note">{esc(stats)}.</p>{body}'


def _empty(sid: str, title: str, why: str) -> str:
    return f'<section id="{sid}"><h2>{esc(title)}</h2><p class="note">{esc(why)}</p></section>'


def curves_section(data: RunData) -> str:
    if not data.log_rows:
        return _empty("curves", "Training curves", "No log.csv in the run folder.")
    figs = "".join(f"{img(png, f'curves of stage {stage}')}" for stage, png in F.stage_curves(data.log_rows))
    return (f'<section id="curves"><h2>Training curves</h2><p class="note">From log.csv, one row per stage: '
            f"losses (train/step_loss per step, train/loss and val/loss per epoch), validation metrics and the "
            f"learning rate, against the run's optimizer step.</p>{figs}</section>")


def params_section(data: RunData) -> str:
    p = data.params
    if p is None:
        return _empty("params", "Parameters", "Not available (see the note at the top).")
    stages = p["stages"]
    head = ["component", "total"] + [f"trainable in {s['name']}" for s in stages]
    rows = [[cell(esc(n), cls="l"), cell(f"{t:,}", t)] + [cell(f"{s['by_component'][n]:,}") for s in stages]
            for n, t in p["components"].items()]
    rows.append([cell("<b>model</b>", cls="l"), cell(f"<b>{p['total']:,}</b>")]
                + [cell(f"<b>{s['trainable']:,}</b>") for s in stages])
    return (f'<section id="params"><h2>Parameters</h2><p class="note">Per component: all parameters, and those '
            f"each stage trains (its <code>trainable</code> list).</p>{table(head, rows)}</section>")


def recipe_section(data: RunData) -> str:
    v = data.versions or {}
    flat = [(k, val) for k, val in v.items() if k != "plugins"]
    flat += [(f"plugin {k}", val) for k, val in (v.get("plugins") or {}).items()]
    rows = [[cell(esc(k), cls="l"), cell(esc(val), cls="l")] for k, val in flat]
    vt = table(["package", "version"], rows) if rows else '<p class="note">No versions.json in the run folder.</p>'
    return (f'<section id="recipe"><h2>Recipe and versions</h2><div class="cols"><div><h3>Versions</h3>{vt}</div>'
            f'<div style="flex:1;min-width:480px"><h3>Resolved recipe (recipe.yaml)</h3>'
            f"<pre>{esc(data.recipe_text or 'not recorded')}</pre></div></div></section>")
