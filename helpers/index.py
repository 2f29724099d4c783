"""The index page of a profile's reports, ``reports/<profile>/index.html`` (runner).

One card per study: its key figure as a thumbnail, the headline numbers beside the report's, the
verdict (colour-coded), run time and status, links to the report (PDF, HTML) and the notebook
(.ipynb, HTML with code); a failed notebook's card shows the failing cell and the error, and a
study that ran on a stand-in dataset says so. The page is self-contained: inline CSS, no script,
no external resource, only relative links to files that exist, so it reads the same from the file
system. Anything metrics.json leaves out shows as "—".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

from PIL import Image

from .page import box_html, duration, esc, headline_rows, verdict_kind

THUMBNAIL = (560, 360)  # pixels, the largest a thumbnail may be
CSS = """
body{font-family:system-ui,"DejaVu Sans",sans-serif;margin:0;background:#f3f4f6;color:#1f2328}
header{background:#24292f;color:#fff;padding:1.2em 2em}
header h1{margin:0;font-size:1.5em} header p{margin:.3em 0 0;color:#d0d7de}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(430px,1fr));gap:1.2em;padding:1.5em 2em}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;overflow:hidden;display:flex;flex-direction:column}
.card.failed{border-color:#c62828}
.thumb{background:#fafafa;border-bottom:1px solid #eee;height:210px;display:flex;align-items:center;justify-content:center}
.thumb img{max-width:100%;max-height:210px} .thumb span{color:#888}
.body{padding:.8em 1em 1em;flex:1}
h2{font-size:1.1em;margin:0 0 .3em;display:flex;justify-content:space-between;gap:.5em}
.pill{font-size:.8em;padding:.1em .6em;border-radius:1em;white-space:nowrap;align-self:flex-start}
.pill.ok{background:#dafbe1;color:#116329} .pill.failed{background:#ffebe9;color:#a40e26}
.pill.skipped{background:#eaeef2;color:#57606a}
.meta{color:#57606a;font-size:.88em;margin-bottom:.5em}
table{border-collapse:collapse;font-size:.9em;margin:.4em 0}
td,th{padding:.15em .9em .15em 0;text-align:right} td:first-child,th:first-child{text-align:left}
th{color:#57606a;font-weight:normal}
.box{font-size:.9em}
pre{background:#fff5f5;border:1px solid #f0c0c0;padding:.5em;font-size:.8em;white-space:pre-wrap;margin:.5em 0}
nav{font-size:.9em;margin-top:.6em} nav a{margin-right:.7em}
footer{color:#57606a;font-size:.85em;padding:0 2em 2em}
"""


# --- the runner's records of each notebook ---------------------------------------------------

@dataclass
class Result:
    """What happened to one notebook: status is "ok", "failed at cell N" or "skipped"."""

    notebook: str
    status: str
    seconds: float = 0.0
    export_seconds: float = 0.0
    folder: str = ""
    html: str | None = None       # the report, no code
    pdf: str | None = None
    code_html: str | None = None  # the notebook with its code
    pdf_note: str = "no"
    error: str | None = None
    failed_source: str = ""       # the failing cell's code (its first lines)
    metrics: dict = field(default_factory=dict)  # metrics.json (helpers.page.write_metrics)
    finished: str = ""
    train_seconds: float = 0.0    # its runs trained before it (--workers, --ray), summed over the runs

    def time_text(self) -> str:
        """How long it took: the notebook, plus the training of its runs when they were trained first."""
        return duration(self.seconds) + (f" + {duration(self.train_seconds)} training" if self.train_seconds else "")

    @property
    def ok(self) -> bool:
        """True when the notebook ran to the end."""
        return self.status == "ok"


# The JSON types of Result's fields, by their annotation: a result.json that has others is skipped.
RESULT_TYPES = {"str": (str,), "float": (int, float), "str | None": (str, type(None)), "dict": (dict,)}
NAME_FIELDS = ("html", "pdf", "code_html")  # file names inside the notebook's folder


def result_problem(data, stem: str) -> str | None:
    """What is wrong with a parsed result.json of notebook ``stem``, or None."""
    if not isinstance(data, dict):
        return f"not a JSON object but {type(data).__name__}"
    known = {f.name: f.type for f in fields(Result)}
    for key, value in data.items():
        types = RESULT_TYPES.get(known.get(key), ())
        if isinstance(value, bool) or not isinstance(value, types) or (
                isinstance(value, float) and not math.isfinite(value)):
            return f"{key!r} is {value!r:.40}" + (f", not {known[key]}" if key in known else ", an unknown field")
    if data.get("notebook") != stem or not isinstance(data.get("status"), str):
        return f"its notebook is not {stem!r}, or it has no status"
    if any(isinstance(data.get(k), str) and ("/" in data[k] or "\\" in data[k] or data[k] in (".", ".."))
           for k in NAME_FIELDS):
        return "a file it names is not a plain file name in its folder"
    return None


def load_runs(profile_dir: Path, stems: list[str]) -> list[Result]:
    """Return the recorded run of every notebook known here (this run or earlier ones);
    notebooks with no record count as skipped, and so does a record that does not read as a Result
    (one line says which and why)."""
    recorded = {p.parent.name: p for p in profile_dir.glob("*/result.json")}
    runs = []
    for stem in sorted(set(stems) | set(recorded)):
        if stem not in recorded:
            runs.append(Result(stem, "skipped"))
            continue
        try:
            data = json.loads(recorded[stem].read_text())
            problem = result_problem(data, stem)
        except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
            problem = f"{type(err).__name__}: {' '.join(str(err).split())[:120]}"
        if problem:
            print(f"Skipping {recorded[stem]} on the index: {problem}; its notebook's next run writes it again",
                  flush=True)
        runs.append(Result(stem, "skipped") if problem else Result(**data))
    return runs


# --- the page ----------------------------------------------------------------------------------

def read_metrics(folder: Path) -> dict:
    """Return ``folder/metrics.json`` as a dict without its figures list; {} if missing or not a
    JSON object (helpers.page.write_metrics describes the keys)."""
    try:
        data = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if k != "figures"} if isinstance(data, dict) else {}


def link(root: Path, href: str | None, label: str) -> str:
    """A relative link to ``root/href`` if that file exists, else nothing."""
    return f'<a href="{esc(href)}">{esc(label)}</a>' if href and (root / href).is_file() else ""


def listed_figures(folder: Path) -> list:
    """The figures list of ``folder/metrics.json``; [] if there is none."""
    try:
        data = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return []
    figures = data.get("figures") if isinstance(data, dict) else None
    return figures if isinstance(figures, list) else []


def figure_for(folder: Path, metrics: dict) -> Path | None:
    """The study's key figure: metrics' key_figure, else its first figure, else any PNG in figures/."""
    names = [metrics.get("key_figure"), *listed_figures(folder)]
    names += sorted(f"figures/{p.name}" for p in (folder / "figures").glob("*.png"))
    inside = [n for n in names if isinstance(n, str) and not Path(n).is_absolute() and ".." not in Path(n).parts]
    return next((folder / n for n in inside if (folder / n).is_file()), None)


def thumbnail(folder: Path, metrics: dict) -> str | None:
    """Write ``thumbnail.png`` (the key figure, at most THUMBNAIL pixels) unless it is up to date;
    return its path relative to folder, or None without a readable figure."""
    figure = figure_for(folder, metrics)
    if figure is None:
        return None
    target = folder / "thumbnail.png"
    if not target.is_file() or target.stat().st_mtime < figure.stat().st_mtime:
        try:
            with Image.open(figure) as image:
                image.thumbnail(THUMBNAIL)
                image.save(target)
        except OSError:  # a damaged PNG: the card shows no figure rather than failing the index
            return None
    return target.name


def headline_html(metrics: dict) -> str:
    """The headline table: each number of this run beside the report's; "—" without a headline."""
    headline = metrics.get("headline") if isinstance(metrics.get("headline"), list) else []
    rows = headline_rows([h for h in headline if isinstance(h, dict)])  # a stale result.json may hold anything
    if not rows:
        return '<p class="meta">Headline: —</p>'
    body = "".join(f"<tr><td>{esc(n)}</td><td><b>{esc(v)}</b></td><td>{esc(r)}</td></tr>" for n, v, r in rows)
    return f"<table><tr><th></th><th>this run</th><th>report</th></tr>{body}</table>"


def box(kind: str, text_html: str) -> str:
    """A report's box (``helpers.page.box_html``: kind a key of page.COLOURS) at the card's smaller size."""
    return f'<div class="box">{box_html(kind, "", text_html)}</div>'


def card(profile_dir: Path, run) -> str:
    """One study's card (``run``: a helpers.runner.Result)."""
    folder, stem, m = profile_dir / run.notebook, run.notebook, run.metrics or {}
    state = "ok" if run.ok else "failed" if run.status.startswith("failed") else "skipped"
    thumb = thumbnail(folder, m) if folder.is_dir() else None
    report = link(profile_dir, run.html and f"{stem}/{run.html}", "HTML")
    picture = (f'<img src="{esc(f"{stem}/{thumb}")}" alt="key figure of {esc(stem)}">' if thumb
               else "<span>no figure</span>")
    if thumb and report:
        picture = f'<a href="{esc(f"{stem}/{run.html}")}">{picture}</a>'
    seeds = m.get("seeds")
    facts = [f"report {m['reference_report']}" if m.get("reference_report") else None,
             m.get("profile"), m.get("dataset"),
             "seeds " + ", ".join(map(str, seeds)) if isinstance(seeds, list) and seeds else None,
             run.time_text() if run.finished else None, run.finished.replace("T", " ")[:16] or None]
    parts = [f'<div class="thumb">{picture}</div><div class="body">',
             f'<h2><span>{esc(stem)}{" · " + esc(m["title"]) if m.get("title") else ""}</span>'
             f'<span class="pill {state}">{esc(run.status)}</span></h2>',
             f'<div class="meta">{esc(" · ".join(str(f) for f in facts if f) or "not run for this profile")}</div>']
    if m.get("dataset_note"):
        parts.append(box("note", esc(m["dataset_note"])))
    if state == "ok" or m:
        parts.append(headline_html(m))
        v = m.get("verdict") if isinstance(m.get("verdict"), dict) else None
        parts.append(box(verdict_kind(v), f"Verdict: <b>{esc(v.get('verdict') or '—')}</b>") if v
                     else '<p class="meta">Verdict: —</p>')
    if run.error:
        parts.append(f"<pre>{esc(run.error)}</pre>")
    if getattr(run, "failed_source", ""):
        parts.append(f'<div class="meta">The failing cell:</div><pre>{esc(run.failed_source)}</pre>')
    files = [("Report", [link(profile_dir, run.pdf and f"{stem}/{run.pdf}", "PDF"), report]),
             ("Notebook", [link(profile_dir, f"{stem}/{stem}.ipynb", ".ipynb"),
                           link(profile_dir, getattr(run, "code_html", None) and f"{stem}/{run.code_html}",
                                "HTML with code")]),
             ("", [link(profile_dir, f"{stem}/kernel.log", "kernel log") if state == "failed" else ""])]
    nav = " ".join(f"{label + ': ' if label else ''}{' '.join(filter(None, ls))}" for label, ls in files if any(ls))
    parts.append(f"<nav>{nav}</nav></div>" if nav else "</div>")
    return f'<article class="card {state}">{"".join(parts)}</article>'


def write_index(profile_dir: Path, runs: list) -> Path:
    """Write ``index.html``: one card per notebook run (``helpers.runner.Result``); return its path."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    counts = {s: sum(1 for r in runs if (r.ok if s == "ok" else r.status.startswith(s))) for s in ("ok", "failed")}
    title = f"CNN studies on CIFAR: reports of the {profile_dir.name} profile"
    summary = (f"{len(runs)} notebook{'s' * (len(runs) != 1)}: {counts['ok']} ok, {counts['failed']} failed, "
               f"{len(runs) - counts['ok'] - counts['failed']} not run · page written "
               f"{datetime.now().isoformat(sep=' ', timespec='minutes')}")
    cards = "\n".join(card(profile_dir, r) for r in runs)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{esc(title)}</title><style>{CSS}</style></head>
<body><header><h1>{esc(title)}</h1><p>{esc(summary)}</p></header>
<main>
{cards}
</main>
<footer>Each report (PDF, HTML) is the notebook without its code; the notebook links give the executed
.ipynb and an HTML of it with the code. Regenerate with <code>make reports PROFILE={esc(profile_dir.name)}</code>.</footer>
</body></html>
"""
    target = profile_dir / "index.html"
    target.write_text(page, encoding="utf-8")
    return target
