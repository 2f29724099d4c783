"""What a study notebook displays, so that one output reads well in JupyterLab, the HTML report and
the PDF (01-05): a title block, a summary box filled in at the end, verdict boxes, banners, tables
that fit the page, and numbered figures with captions; plus ``metrics.json`` for the index page.

Why mime bundles: nbconvert shows one representation per output. JupyterLab and the HTML export
take ``text/html``; the LaTeX route (PDF) takes ``text/latex`` before anything else and never
``text/html``, and falls back to printing ``text/plain`` as verbatim text (which is how a wide
DataFrame overflows the page). So each element here carries ``text/html``, ``text/latex`` and a
short ``text/plain``. The LaTeX uses only packages nbconvert's own template loads (tcolorbox,
adjustbox, booktabs, longtable, xcolor). Tables are laid out by :mod:`helpers.tables`.

Typical use, top to bottom of a notebook::

    head = page.Header("Plain vs residual CNN", reference_report="000", profile=profile,
                       dataset=S.dataset, seeds=[S.train.seed], dataset_note=None)
    head.show()                                 # title block + an empty summary box
    figs = page.Figures(output_dir)
    figs.show(fig, "loss_curves", "Training loss per epoch: the residual model ...")
    figs.table(df, "summary", "Test accuracy of each model ...")
    page.write_metrics(output_dir, {**head.finish(headline, verdict), "epochs": 8}, figs)
"""

from __future__ import annotations

import html
import json
import time
from datetime import date
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython import display as ipython_display  # display() looked up at each call: tests replace it
from IPython import get_ipython
from matplotlib_inline.backend_inline import InlineBackend
from nbconvert.filters import escape_latex

from . import tables
from .evidence import VERDICTS

DPI = 200          # saved and shown PNGs: sharp when a page is printed (the inline backend uses 100)
SCREEN_DPI = 100   # figures are shown at the size the inline backend would give them
SCHEMA = ("title", "reference_report", "profile", "dataset", "dataset_note", "seeds", "headline",
          "verdict", "key_figure", "figures")
# helpers.evidence's verdicts: the report's finding holds and is significant, or is reversed and
# significant; the others, and anything else, get the neutral colour.
VERDICT_COLOURS = {VERDICTS[0]: "good", VERDICTS[3]: "bad"}
COLOURS = {  # name: (html border, html background, LaTeX frame, LaTeX background)
    "good": ("#2e7d32", "#edf7ee", "green!50!black", "green!4"),
    "bad": ("#c62828", "#fdecea", "red!70!black", "red!4"),
    "neutral": ("#b26a00", "#fff6e5", "orange!80!black", "orange!5"),
    "note": ("#8a6d00", "#fffbe6", "yellow!50!black", "yellow!8"),
    "plain": ("#666666", "#f7f7f7", "black!50", "black!2"),
}


# --- the displayable element ----------------------------------------------------------------------

class Element:
    """A mime bundle IPython displays: ``display(el)``, ``display(el, display_id=True)``, or the
    last expression of a cell. ``meta`` goes into the output's metadata under "helpers.page"
    (the exporter looks for the title block there)."""

    def __init__(self, html_text: str, latex: str, plain: str, meta: dict | None = None):
        self.html, self.latex, self.plain, self.meta = html_text, latex, plain, meta

    def _repr_mimebundle_(self, include=None, exclude=None):
        data = {"text/plain": self.plain, "text/html": self.html, "text/latex": self.latex}
        return (data, {"helpers.page": self.meta}) if self.meta else data

    def __repr__(self) -> str:
        return self.plain


def tex(text) -> str:
    """Escape plain text for LaTeX (nbconvert's own filter, as its templates use)."""
    return escape_latex(str(text))


def esc(text) -> str:
    """Escape plain text for HTML."""
    return html.escape(str(text))


def number(value, unit: str = "") -> str:
    """A value for a reader: "85.75%", "+1.35 points", "4,754,218", "—" for None/NaN (01-05)."""
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        text = str(value)
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
    if not unit:
        return text
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}"


def duration(seconds) -> str:
    """Seconds as "4 min 03 s" / "12.3 s"; "—" for None (01-05, the index)."""
    if seconds is None:
        return "—"
    minutes, secs = divmod(float(seconds), 60)
    return f"{int(minutes)} min {secs:02.0f} s" if minutes else f"{secs:.1f} s"


def box_html(kind: str, title: str, body_html: str) -> str:
    """The HTML of :func:`box` (also the index page's cards' boxes): a tinted block with a coloured
    left bar, ``title`` (plain text) in bold above ``body_html``."""
    border, back, *_ = COLOURS[kind]
    head_html = f'<div style="font-weight:bold;margin-bottom:.3em">{esc(title)}</div>' if title else ""
    return (f'<div style="border:1px solid {border};border-left:6px solid {border};background:{back};'
            f'padding:.6em .9em;margin:.6em 0;color:#222">{head_html}{body_html}</div>')


def box(kind: str, title: str, body_html: str, body_latex: str, plain: str, meta=None,
        breakable: bool = True) -> Element:
    """A framed, tinted box in all three renderings (kind: a key of COLOURS); a short box that must
    not be split across two PDF pages says ``breakable=False``."""
    _, _, frame, fill = COLOURS[kind]
    title_opt = f",title={{{tex(title)}}},fonttitle=\\bfseries,coltitle=black,colbacktitle={fill}" if title else ""
    page_latex = (f"\\begin{{tcolorbox}}[{'breakable,' if breakable else ''}colframe={frame},colback={fill},boxrule=0.6pt,"
                  f"left=6pt,right=6pt{title_opt}]\n{body_latex}\n\\end{{tcolorbox}}")
    return Element(box_html(kind, title, body_html), page_latex, plain, meta)


# --- title block, summary, verdict, banner --------------------------------------------------------

def title_block(title: str, reference_report: str | None, profile: str, dataset: str, seeds,
                date_text: str | None = None, run_time: float | None = None,
                dataset_note: str | None = None, training: str | None = None) -> Element:
    """The report's first lines (01-05): the study's title, then the reference report it reproduces,
    profile, dataset, seeds, date and run time ("running…" until known), and ``training``, what its
    runs took to train when known (the notebook may have loaded them, trained earlier or by the runner's
    workers, so its own run time does not include it). A ``dataset_note`` (why
    a stand-in dataset was used) adds a banner under it. The exporter finds this element and uses
    its title for the PDF and HTML in place of nbconvert's file-name title."""
    seeds_text = ", ".join(map(str, seeds)) if isinstance(seeds, (list, tuple)) else str(seeds)
    facts = [("Reproduces", f"report {reference_report}" if reference_report else "—"),
             ("Profile", profile), ("Dataset", dataset), ("Seeds", seeds_text),
             ("Date", date_text or date.today().isoformat()),
             ("Run time", duration(run_time) if run_time is not None else "running…")]
    if training:
        facts.append(("Training", training))
    cells = "".join(f'<span style="margin-right:1.6em"><span style="color:#666">{esc(k)}</span> '
                    f"<b>{esc(v)}</b></span>" for k, v in facts)
    page_html = (f'<div style="border-bottom:2px solid #333;padding-bottom:.4em;margin-bottom:.6em">'
                 f'<div style="font-size:1.7em;font-weight:bold;line-height:1.2">{esc(title)}</div>'
                 f'<div style="margin-top:.4em;font-size:.95em">{cells}</div></div>')
    rows = [facts[i:i + 2] for i in range(0, len(facts), 2)]
    body = " \\\\\n".join(" & ".join(f"\\textcolor{{black!60}}{{{tex(k)}}} & \\textbf{{{tex(v)}}}"
                                     for k, v in row) for row in rows)
    page_latex = (f"{{\\centering{{\\LARGE\\bfseries {tex(title)}\\par}}\\vspace{{0.8em}}\n"
                  f"{{\\small\\begin{{tabular}}{{@{{}}ll@{{\\hspace{{2.5em}}}}ll@{{}}}}\n{body}\n"
                  f"\\end{{tabular}}\\par}}}}\\vspace{{0.6em}}\\hrule\\vspace{{1em}}")
    plain = f"{title}\n" + "  ".join(f"{k}: {v}" for k, v in facts)
    el = Element(page_html, page_latex, plain, {"element": "title_block", "title": title})
    if dataset_note:
        note = banner(dataset_note)
        el = Element(el.html + note.html, el.latex + "\n" + note.latex, f"{plain}\n{note.plain}", el.meta)
    return el


def banner(text: str, kind: str = "note") -> Element:
    """A tinted one-paragraph notice (plain text), e.g. "Using the synthetic stand-in: ..." (01-05).
    kind: note (yellow), good, bad, neutral or plain."""
    if kind not in COLOURS:
        raise ValueError(f"unknown banner kind {kind!r} (valid: {', '.join(COLOURS)})")
    return box(kind, "", esc(text), tex(text), text)


def verdict_kind(verdict: dict | None) -> str:
    """Colour of a verdict: good (the report's finding holds and is significant), bad (reversed
    and significant) or neutral (anything else, including unknown wording) (01-05, the index)."""
    return VERDICT_COLOURS.get(str((verdict or {}).get("verdict", "")), "neutral")


def verdict_facts(v: dict) -> list[tuple[str, str]]:
    """The evidence behind a verdict as (label, text) pairs; missing keys are left out."""
    unit = v.get("unit") or ""
    signed = lambda x: "—" if x is None else f"{x:+.2f}"  # noqa: E731 (differences carry a sign)
    facts = [("quantity", f"{v.get('quantity', '—')}" + (f" ({unit})" if unit else "")),
             ("report", signed(v.get("reported"))), ("this run", signed(v.get("measured")))]
    ci = v.get("ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        level = v.get("level")
        label = f"{level:.0%} interval" if isinstance(level, float) else "interval"
        facts.append((label, "—" if None in ci else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"))
    p = v.get("p_value")
    if "p_value" in v:
        facts.append(("p", "—" if p is None else "< 0.001" if p < 0.001 else f"{p:.2g}"))
    for key in ("test", "seeds", "scale"):
        if v.get(key) not in (None, "", [], {}):
            facts.append((key, plain_value(v[key])))
    return facts


def plain_value(value) -> str:
    """Lists as "a, b", dicts as "k v, k v", the rest as str."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {plain_value(x)}" for k, x in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def verdict_box(verdict: dict) -> Element:
    """The headline comparison with the report and its verdict, colour-coded (01-05).

    ``verdict``: a plain dict with keys quantity, unit, reported, measured, ci [low, high],
    p_value, test, seeds, verdict, scale (``helpers.evidence.Evidence.to_dict()``); optional
    level and note. Missing keys show as "—" or are left out."""
    facts = verdict_facts(verdict)
    items_html = "".join(f'<li><span style="color:#555">{esc(k)}:</span> {esc(t)}</li>' for k, t in facts)
    items_latex = "\n".join(f"\\item \\textcolor{{black!60}}{{{tex(k)}:}} {tex(t)}" for k, t in facts)
    note = verdict.get("note") or ""
    body_html = f'<ul style="margin:.2em 0 0 1.2em;padding:0">{items_html}</ul>'
    body_latex = f"\\begin{{itemize}}\\setlength\\itemsep{{0pt}}\\small\n{items_latex}\n\\end{{itemize}}"
    if note:
        body_html += f'<div style="font-size:.9em;margin-top:.3em">{esc(note)}</div>'
        body_latex += f"\n{{\\small {tex(note)}}}"
    title = f"Verdict: {verdict.get('verdict') or '—'}"
    plain = title + "\n" + "\n".join(f"  {k}: {t}" for k, t in facts)
    return box(verdict_kind(verdict), title, body_html, body_latex, plain, breakable=False)


def headline_rows(headline) -> list[tuple[str, str, str]]:
    """(name, this run, report) per headline entry {name, value, report, unit} (01-05, the index)."""
    rows = []
    for h in headline or []:
        unit = h.get("unit") or ""
        rows.append((str(h.get("name", "—")), number(h.get("value"), unit), number(h.get("report"), unit)))
    return rows


def summary_box(headline=None, verdict: dict | None = None) -> Element:
    """The box near the top of a report (01-05): each headline number beside the report's, and the
    verdict when there is one. Without a headline it is the placeholder shown while the notebook
    runs (``Header`` replaces it at the end through its display id)."""
    if headline is None:
        text = "Filled in when the notebook has run to the end."
        return box("plain", "Summary", f"<i>{esc(text)}</i>", f"\\textit{{{tex(text)}}}", f"Summary: {text}")
    rows = headline_rows(headline)
    cell = 'style="padding:.15em .8em .15em 0;text-align:{}"'
    trs = "".join(f"<tr><td {cell.format('left')}>{esc(n)}</td><td {cell.format('right')}><b>{esc(v)}</b></td>"
                  f"<td {cell.format('right')}>{esc(r)}</td></tr>" for n, v, r in rows)
    body_html = (f'<table style="border-collapse:collapse;margin:0"><tr><th {cell.format("left")}></th>'
                 f'<th {cell.format("right")}>this run</th><th {cell.format("right")}>report</th></tr>{trs}</table>')
    lines = " \\\\\n".join(f"{tex(n)} & \\textbf{{{tex(v)}}} & {tex(r)}" for n, v, r in rows)
    body_latex = (f"{{\\small\\begin{{tabular}}{{@{{}}lrr@{{}}}}\n & this run & report \\\\ \\midrule\n"
                  f"{lines}\n\\end{{tabular}}}}")
    plain = "Summary\n" + "\n".join(f"  {n}: {v} (report {r})" for n, v, r in rows)
    if verdict:
        inner = verdict_box(verdict)
        body_html += inner.html
        body_latex += "\n\n" + inner.latex
        plain += "\n" + inner.plain
    return box("plain", "Summary", body_html, body_latex, plain)


class Header:
    """A study's title block and summary box: shown at the top, completed at the end (01-05).

    ``show()`` displays both with display ids; ``finish(headline, verdict, runs)`` replaces them (run
    time, the runs' training time, filled summary) with ``update_display``, which nbclient/papermill also apply to the saved
    notebook, so the exports show the final content. It returns the metrics.json fields it knows."""

    def __init__(self, title: str, reference_report: str | None, profile: str, dataset: str, seeds,
                 dataset_note: str | None = None):
        self.info = dict(title=title, reference_report=reference_report, profile=profile,
                         dataset=dataset, seeds=list(seeds) if isinstance(seeds, (list, tuple)) else [seeds],
                         dataset_note=dataset_note)
        self.date = date.today().isoformat()
        self.start = time.perf_counter()
        self.handles = None

    def title(self, run_time=None, training: str | None = None) -> Element:
        """The title block with the run time so far (None: "running…")."""
        i = self.info
        return title_block(i["title"], i["reference_report"], i["profile"], i["dataset"], i["seeds"],
                           self.date, run_time, i["dataset_note"], training)

    def show(self) -> None:
        """Display the title block and the placeholder summary box."""
        self.start = time.perf_counter()
        self.handles = (ipython_display.display(self.title(), display_id=True),
                        ipython_display.display(summary_box(), display_id=True))

    def finish(self, headline: list, verdict: dict | None = None, runs: dict | None = None) -> dict:
        """Fill in the summary, the run time and, given the study's ``runs`` (variant -> list of
        ``helpers.train.Run``), their training time from their histories; return the metrics.json
        fields (see write_metrics)."""
        seconds = round(time.perf_counter() - self.start, 1)
        trained = [r for variant_runs in (runs or {}).values() for r in variant_runs]
        training = (f"{duration(sum(float(r.history['seconds'].sum()) for r in trained))}, "
                    f"{len(trained)} run{'s' * (len(trained) != 1)}") if trained else None
        if self.handles:
            self.handles[0].update(self.title(seconds, training))
            self.handles[1].update(summary_box(headline, verdict))
        return {**self.info, "headline": list(headline), "verdict": verdict, "run_seconds": seconds}


# --- tables and captions ----------------------------------------------------------------------

def table(df, caption: str | None = None, *, digits: int = 3, index: bool = True, formats=None,
          label: str | None = None) -> Element:
    """A DataFrame (or a Series, or a dict of columns) as a table that fits the page in every export (01-05).

    HTML: pandas' Styler. LaTeX: a longtable, which breaks across pages with its header repeated,
    long text columns wrapped where the table would be wider than the line; or, for a wide table
    with nothing to wrap, boxes shrunk to the line width (:mod:`helpers.tables`). ``digits``:
    decimals of floats; ``formats``: Styler.format's formatter (a format string, a callable, or a
    dict per column); ``label``: e.g. "Table 2", printed bold before the caption."""
    df = tables.frame(df)
    head = " ".join(filter(None, [f"{label}." if label else None, caption]))
    options = dict(digits=digits, index=index, formats=formats)
    page_html = tables.to_html(df, caption_html(label, caption) if head else None, **options)
    page_latex = tables.latex(df, caption_latex(label, caption) if head else None,
                              tex(f"{label} (continued)") if label else None, **options)
    plain = (head + "\n" if head else "") + df.to_string(max_rows=20, max_cols=8)
    return Element(page_html, page_latex, plain)


def caption_html(label: str | None, text: str | None) -> str:
    """ "<b>Figure 2.</b> text" for HTML."""
    return " ".join(filter(None, [f"<b>{esc(label)}.</b>" if label else None, esc(text) if text else None]))


def caption_latex(label: str | None, text: str | None) -> str:
    """ "\\textbf{Figure 2.} text" for LaTeX."""
    return " ".join(filter(None, [f"\\textbf{{{tex(label)}.}}" if label else None, tex(text) if text else None]))


def caption(label: str, text: str) -> Element:
    """A caption line under a figure: "**Figure 2.** text", centred, slightly smaller (01-05)."""
    page_html = (f'<div style="font-size:.92em;margin:.1em 0 1.2em;max-width:48em">'
                 f"{caption_html(label, text)}</div>")
    # \nopagebreak (and no list environment such as center, which invites a break) keeps the caption
    # on its figure's page.
    page_latex = f"\\nopagebreak{{\\centering\\small {caption_latex(label, text)}\\par}}\\medskip"
    return Element(page_html, page_latex, f"{label}. {text}")


def setup() -> None:
    """Make what a notebook shows without these elements print well too (all notebooks; Figures
    calls it): every DataFrame and Series gets a ``text/latex`` representation through
    :func:`table`, so a plain ``display(df)`` fits the PDF page (nbconvert would print its text
    repr, which overflows), while JupyterLab and the HTML report keep pandas' HTML; the first
    ``display.max_rows`` rows are shown, with a note of how many were left out. And the inline
    backend draws figures at twice its resolution ("retina": 200 dpi, shown at the same size), so
    a figure shown without ``Figures.show`` still prints sharply. Outside IPython it does nothing."""
    shell = get_ipython()
    if shell is None:
        return

    def latex(df):
        limit = pd.get_option("display.max_rows") or len(df)
        shown = table(df.head(limit), f"(first {limit} of {len(df):,} rows)" if len(df) > limit else None)
        return shown.latex

    formatter = shell.display_formatter.formatters["text/latex"]
    formatter.for_type(pd.DataFrame, latex)
    formatter.for_type(pd.Series, latex)
    # The config, not only the formatter: the inline backend re-reads it when it is switched on.
    InlineBackend.instance().figure_formats = {"retina"}


# --- figures and the metrics file -----------------------------------------------------------------

class Figures:
    """Save, number and show a notebook's figures and tables (01-05).

    ``show(fig, name, caption)`` writes ``<output_dir>/figures/<name>.png`` at DPI, displays it and
    "**Figure k.** caption" under it, and closes the figure (so the inline backend does not show it
    twice). Numbers follow the order of first display; showing a name again (re-running a cell)
    keeps its number. ``table(df, name, caption)`` does the same for tables ("Table k.").
    ``save(fig, name)`` only writes the file (the inline backend then shows the figure, uncaptioned).
    Creating one also calls :func:`setup`."""

    def __init__(self, output_dir: str | Path, dpi: int = DPI):
        self.folder = Path(output_dir) / "figures"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dpi = dpi
        self.names: list[str] = []              # saved figures, in order of first save
        self.numbers: dict[str, int] = {}       # figure name -> number, in order of first show
        self.table_numbers: dict[str, int] = {}
        self.key: str | None = None
        setup()

    def save(self, fig, name: str) -> None:
        """Write the figure as PNG; it is not displayed here. Returns None, so a cell that ends with
        it prints nothing."""
        fig.savefig(self.folder / f"{name}.png", dpi=self.dpi, bbox_inches="tight")
        if name not in self.names:
            self.names.append(name)

    def show(self, fig, name: str, caption_text: str, key: bool = False) -> None:
        """Save, display with its numbered caption, close. ``key=True`` makes it the study's key
        figure (the index page's thumbnail; default: the first figure saved)."""
        self.save(fig, name)
        png = (self.folder / f"{name}.png").read_bytes()
        plt.close(fig)
        number_ = self.numbers.setdefault(name, len(self.numbers) + 1)
        width_px = int.from_bytes(png[16:20], "big")  # the PNG header's width field
        # the metadata tells the PDF template to keep the image and its caption on one page
        image = ipython_display.Image(data=png, format="png", width=round(width_px * SCREEN_DPI / self.dpi))
        ipython_display.display(image, metadata={"helpers.page": {"figure": number_}})
        ipython_display.display(caption(f"Figure {number_}", caption_text))
        if key:
            self.key = name

    def table(self, df, name: str, caption_text: str, **options) -> None:
        """Display a numbered table ("Table k. caption" above it); options go to :func:`table`."""
        number_ = self.table_numbers.setdefault(name, len(self.table_numbers) + 1)
        ipython_display.display(table(df, caption_text, label=f"Table {number_}", **options))

    @property
    def paths(self) -> list[str]:
        """Saved figures as paths relative to output_dir, in order."""
        return [f"figures/{n}.png" for n in self.names]

    @property
    def key_path(self) -> str | None:
        """The key figure's path (relative to output_dir), else the first saved one's."""
        name = self.key or (self.names[0] if self.names else None)
        return f"figures/{name}.png" if name else None


def write_metrics(output_dir: str | Path, metrics: dict, figures: Figures) -> None:
    """Write ``<output_dir>/metrics.json``, which the index page and the runner's summary read (01-05).

    Schema (keys a study should give; ``Header.finish`` returns the first six plus headline,
    verdict and run_seconds; every key is optional to the readers, which show "—"):

    - ``title``: the study's title; ``reference_report``: the report it reproduces, e.g. "000"
    - ``profile``, ``dataset``: as run; ``dataset_note``: why a stand-in dataset was used, or null
    - ``seeds``: list of training seeds
    - ``headline``: list of {name, value, report, unit}: this run's number beside the report's
      (unit "%" prints as 85.75%, any other unit after a space)
    - ``verdict``: the headline comparison as ``helpers.evidence.Evidence.to_dict()`` (keys
      quantity, unit, reported, measured, ci, p_value, test, seeds, verdict, scale), or null
    - ``key_figure``: a path under figures/ (unless given: ``show(..., key=True)``'s figure, else
      the first one saved); ``figures``: every saved figure (set here)
    - any study-specific keys (numbers, lists, dicts; numpy scalars become plain numbers).

    Returns None, so the notebook's last cell prints no path into the report.
    """
    path = Path(output_dir) / "metrics.json"
    clean = json.loads(json.dumps(metrics, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    extra = {"key_figure": figures.key_path} if figures.key_path else {}
    path.write_text(json.dumps({**extra, **clean, "figures": figures.paths}, indent=2))
