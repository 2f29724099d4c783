"""Exports of an executed notebook (HTML, PDF through nbconvert) and the index page of a profile.

Called by the runner (``helpers.runner``) after each notebook; ``write_index`` takes the runner's
records of every notebook run and links their reports.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path


def export_html(executed: Path) -> Path:
    """Write ``<stem>.html`` next to the executed notebook (figures embedded as data URIs)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(executed))
    target = executed.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def pdf_engine_missing() -> list[str]:
    """Return the tools nbconvert's PDF export needs that are not on PATH."""
    return [tool for tool in ("xelatex", "pandoc") if not shutil.which(tool)]


# nbconvert's LaTeX uses Latin Modern, which silently drops Greek text, "≈", "≥", "✓"... from
# the PDF; switch to DejaVu where it is installed (fontspec's test keeps other machines working).
PDF_TEMPLATE = r"""((* extends 'index.tex.j2' *))
((* block packages *))
((( super() )))
    \ifdefined\IfFontExistsTF
        \IfFontExistsTF{DejaVu Serif}{\setmainfont{DejaVu Serif}}{}
        \IfFontExistsTF{DejaVu Sans}{\setsansfont{DejaVu Sans}}{}
        \IfFontExistsTF{DejaVu Sans Mono}{\setmonofont{DejaVu Sans Mono}[Scale=0.85]}{}
    \fi
((* endblock packages *))
"""


def export_pdf(executed: Path) -> Path:
    """Write ``<stem>.pdf`` next to the executed notebook via nbconvert (LaTeX + xelatex)."""
    from jinja2 import DictLoader
    from nbconvert import PDFExporter

    exporter = PDFExporter(extra_loaders=[DictLoader({"reports.tex.j2": PDF_TEMPLATE})],
                           template_file="reports.tex.j2")
    # metadata.path lets LaTeX find files the notebook refers to by relative path.
    resources = {"metadata": {"path": str(executed.parent), "name": executed.stem}}
    body, _ = exporter.from_filename(str(executed), resources=resources)
    target = executed.with_suffix(".pdf")
    target.write_bytes(body)
    return target


def read_metrics(folder: Path) -> dict:
    """Return the headline metrics in ``folder/metrics.json``: top-level numbers and short
    strings (not the figures list); {} if the file is missing or not JSON."""
    try:
        data = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k != "figures" and (
        isinstance(v, (int, float)) or (isinstance(v, str) and len(v) <= 40))}


def link(href: str | None, label: str) -> str:
    """Return an HTML link, or an empty string when there is nothing to link to."""
    return f'<a href="{html.escape(href)}">{label}</a>' if href else ""


def write_index(profile_dir: Path, runs: list) -> Path:
    """Write ``index.html``: one row per notebook run (``helpers.runner.Result``) with links,
    status, time and headline metrics."""
    rows = []
    for r in runs:
        files = " ".join(filter(None, [link(r.html and f"{r.notebook}/{r.html}", "HTML"),
                                        link(r.pdf and f"{r.notebook}/{r.pdf}", "PDF")]))
        metrics = "<br>".join(f"{html.escape(k)}: {html.escape(fmt(v))}" for k, v in r.metrics.items())
        css = "ok" if r.ok else "bad" if r.status.startswith("failed") else ""
        error = f"<br><small>{html.escape(r.error.splitlines()[0])}</small>" if r.error else ""
        rows.append(f'<tr><td>{html.escape(r.notebook)}</td><td class="{css}">'
                    f'{html.escape(r.status)}{error}</td><td>{r.seconds if r.finished else ""}</td>'
                    f'<td>{html.escape(r.finished)}</td><td>{files}</td><td>{metrics}</td></tr>')
    title = f"Reports: profile {profile_dir.name}"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;vertical-align:top;text-align:left}}
.ok{{color:#070}} .bad{{color:#b00;font-weight:bold}}</style></head>
<body><h1>{html.escape(title)}</h1>
<table><tr><th>notebook</th><th>status</th><th>seconds</th><th>finished</th><th>report</th>
<th>headline metrics</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
    profile_dir.mkdir(parents=True, exist_ok=True)
    target = profile_dir / "index.html"
    target.write_text(page, encoding="utf-8")
    return target


def fmt(value) -> str:
    """Format a metric for a table: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
