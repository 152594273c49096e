"""HTML building blocks of the report: escaping, tables, the style sheet and the page's two scripts
(sortable tables; a load check that marks the page once every image has decoded)."""
from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dde5; --band: #f4f6f9; --accent: #b42318; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 1240px; padding: 16px 20px 40px; }
h1 { font-size: 22px; margin: 4px 0 2px; }
h2 { font-size: 17px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 14px; margin: 14px 0 6px; }
p.note, .muted { color: var(--muted); font-size: 12.5px; margin: 4px 0 8px; }
nav { font-size: 13px; margin: 6px 0 4px; }
nav a { margin-right: 12px; color: #2454a6; text-decoration: none; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0; }
th, td { border: 1px solid var(--line); padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: var(--band); font-weight: 600; }
td.l, th.l { text-align: left; }
th.grp { text-align: center; }
tbody tr:nth-child(even) { background: #fafbfc; }
table.sortable th[data-col] { cursor: pointer; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: 9px; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; font-size: 9px; }
.scroll { max-height: 560px; overflow: auto; border: 1px solid var(--line); display: inline-block; max-width: 100%; }
.scroll table { margin: 0; }
.scroll thead th { position: sticky; top: 0; z-index: 1; }
pre { background: var(--band); border: 1px solid var(--line); padding: 8px 10px; font-size: 12px;
      overflow: auto; max-height: 420px; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; }
figure.tile { width: 228px; }
figure.tile img { width: 228px; height: 228px; display: block; border: 1px solid var(--line); }
figcaption { font-size: 11.5px; color: var(--muted); margin-top: 3px; }
img.plot { max-width: 100%; height: auto; display: block; margin: 4px 0; }
.cols { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.bad { color: var(--accent); }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  nav { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  table, figure, img.plot, pre { break-inside: avoid; page-break-inside: avoid; }
  .scroll { max-height: none; overflow: visible; border: 0; }
  pre { max-height: none; white-space: pre-wrap; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

# Sort a table.sortable by a header cell's column: numbers by data-v (empty = last), text otherwise.
SORT_JS = """
function sortTable(th) {
  var table = th.closest('table'), col = +th.dataset.col, body = table.tBodies[0];
  var asc = th.getAttribute('aria-sort') !== 'ascending';
  table.querySelectorAll('th[data-col]').forEach(function (h) { h.removeAttribute('aria-sort'); });
  th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
  var num = th.dataset.type === 'num';
  var key = function (tr) { var td = tr.cells[col]; return num ? parseFloat(td.dataset.v) : td.textContent; };
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = key(a), y = key(b);
    if (num) { if (isNaN(x)) return isNaN(y) ? 0 : 1; if (isNaN(y)) return -1; return asc ? x - y : y - x; }
    return asc ? x.localeCompare(y) : y.localeCompare(x);
  });
  rows.forEach(function (tr) { body.appendChild(tr); });
}
document.querySelectorAll('table.sortable th[data-col]').forEach(function (th) {
  th.addEventListener('click', function () { sortTable(th); });
});
"""

# After load: every <img> decoded with a non-zero natural size -> <html data-rendered="ok">.
CHECK_JS = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0); });
  var root = document.documentElement;
  root.dataset.images = String(imgs.length);
  root.dataset.imagesBad = String(bad.length);
  root.dataset.tables = String(document.querySelectorAll('table').length);
  root.dataset.rendered = bad.length === 0 ? 'ok' : 'broken';
});
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(value: float | None, digits: int = 2, scale: float = 1.0) -> str:
    """A number for a cell, or an en dash for a missing one."""
    return "–" if value is None or value != value else f"{value * scale:.{digits}f}"  # None or NaN


def cell(value: Any, sort_value: float | None = None, cls: str = "") -> str:
    """A <td>; `sort_value` becomes data-v for numeric sorting (missing sorts last)."""
    attr = f' class="{cls}"' if cls else ""
    if sort_value is not None or cls != "l":
        attr += f' data-v="{"" if sort_value is None else repr(float(sort_value))}"'
    return f"<td{attr}>{value}</td>"


def table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "", left: int = 1,
          group_head: str = "") -> str:
    """A table of pre-rendered <td> cells; head labels are escaped. ``cls="sortable"`` makes every
    header sortable (the first `left` columns as text, the rest as numbers)."""
    sortable = "sortable" in cls
    ths = []
    for i, h in enumerate(head):
        kind = "text" if i < left else "num"
        extra = f' data-col="{i}" data-type="{kind}" title="click to sort"' if sortable else ""
        left_cls = ' class="l"' if i < left else ""
        ths.append(f"<th{left_cls}{extra}>{esc(h)}</th>")
    body = "\n".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    thead = f'<thead>{group_head}<tr>{"".join(ths)}</tr></thead>' if any(head) else ""
    return (f'<table class="{cls}">{thead}'
            f"<tbody>\n{body}\n</tbody></table>")


def img(b64: str, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" alt="{esc(alt)}" src="data:image/png;base64,{b64}">'


def page(title: str, body: str) -> str:
    """The whole document: inline style and scripts, nothing fetched."""
    return (f'<!DOCTYPE html>\n<html lang="en" data-rendered="pending">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
            f"<script>{SORT_JS}{CHECK_JS}</script>\n</body>\n</html>\n")
