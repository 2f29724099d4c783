"""How ``helpers.page.table`` lays out a DataFrame: pandas' Styler for the HTML, and for the PDF a
LaTeX table that fits the page's width and breaks across pages.

The LaTeX route measures each column's natural width with the PDF's font (DejaVu Serif, the font
``helpers.export`` picks, at ``\\small``; Latin Modern, its fallback, is narrower) and then:

- a table that fits the line is a ``longtable`` (Styler's ``environment="longtable"``): LaTeX
  breaks it between rows at the page's end and repeats the header on each continuation page;
- a wider table with long text columns (the protocol card's "why") wraps them in ``p`` columns
  sharing what the other columns leave, and is a ``longtable`` too, at a smaller font where the
  words still do not fit (:data:`SIZES`): shrinking a table of sentences into a box would make it
  unreadable and unbreakable;
- a wider table with nothing to wrap (many short numeric columns) is shrunk to the line width
  (adjustbox ``max width``). A box cannot break across pages, so such a table is cut into boxes of
  TABLE_ROWS rows (one line each), each with the header.

The caption is a row of the longtable's first head, which LaTeX never separates from the first
rows (nbconvert's template sets ``\\caption`` to print nothing); a shrunk table's caption is
kept on its first box's page with ``\\nopagebreak``.
"""

from __future__ import annotations

import functools
import html
import itertools
import numbers
from pathlib import Path
from typing import NamedTuple

import matplotlib
import pandas as pd
from matplotlib.ft2font import FT2Font
from nbconvert.filters import escape_latex

FONT_SIZE = 10      # pt: \small in nbconvert's 11pt article
FONT = FT2Font(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSerif.ttf"))
FONT.set_size(FONT_SIZE, 72)  # a pixel a point
LINE_WIDTH = 469.0  # pt: \linewidth of nbconvert's letter page with 1 in margins (6.5 in)
FILL = 0.96         # share of the line a table may take: the measure ignores kerning and ligatures
TABCOLSEP = 4.0     # pt: \tabcolsep on each side of a column
WRAP_FROM = 140.0   # pt (about 24 characters): a text column wider than this may wrap
MIN_WRAP = 60.0     # pt (about 10 characters): the narrowest a wrapped column may become
KEEP_ROWS = 3       # a longtable's page break leaves at least this many rows on each page
TABLE_ROWS = 40     # rows of each box of a shrunk table (one line each; a page holds about 55)
DELIMITER = "\x1f"  # between the cells of Styler.to_string, which the measure reads
# The font sizes a table of wrapped text may take, and their size against \small (9 and 8 pt of 10):
# before a too-wide table of sentences becomes unbreakable boxes, it is set smaller.
SIZES = (("small", 1.0), ("footnotesize", 0.9), ("scriptsize", 0.8))


def frame(df) -> pd.DataFrame:
    """A DataFrame from a DataFrame, a Series or a dict of columns."""
    if isinstance(df, dict):
        df = pd.DataFrame(df)
    return df.to_frame() if isinstance(df, pd.Series) else df


def escaped(formats, fn):
    """``formats`` (a format string, a callable, or a dict of them per column) with each formatted
    value escaped by ``fn``: Styler escapes the data but not what a formatter adds ("{:.1%}" -> "%")."""
    if formats is None:
        return None
    if isinstance(formats, dict):
        return {k: escaped(v, fn) for k, v in formats.items()}
    if isinstance(formats, str):
        return lambda v, f=formats: fn(f.format(v)) if isinstance(v, numbers.Number) else fn(v)
    return lambda v, f=formats: fn(f(v))


def _tex(text) -> str:
    return escape_latex(str(text))  # as helpers.page.tex, which imports this module


def styled(df: pd.DataFrame, escape: str | None, digits: int = 3, index: bool = True, formats=None):
    """The Styler of every rendering: ``escape`` "html", "latex" or None (the plain text the measure
    reads). Headers are escaped too: format() escapes only the cells ("(%)" in a column name ends a
    LaTeX line), and neither escapes the axis names."""
    fn = {"latex": _tex, "html": html.escape}.get(escape, str)
    part = df.copy(deep=False)
    part.index = part.index.set_names([None if n is None else fn(n) for n in part.index.names])
    part.columns = part.columns.set_names([None if n is None else fn(n) for n in part.columns.names])
    s = part.style.format(escaped(formats, fn) if escape == "latex" else formats, precision=digits,
                          thousands=",", na_rep="—", escape=escape)
    s = s.format_index(escape=escape, axis=0).format_index(escape=escape, axis=1)
    return s if index else s.hide(axis="index")


@functools.cache
def advance(char: str) -> float:
    """Width in points of one character in the PDF's table font (unhinted: FONT is set to 72 dpi)."""
    return FONT.load_char(ord(char)).linearHoriAdvance / 65536


def text_width(text: str) -> float:
    """Width in points of one line of ``text`` in the PDF's table font, without kerning."""
    return sum(map(advance, text))


class Measure(NamedTuple):
    """Per column, index levels first, in points: the widest cell or header, the sum of its cells'
    widths (how much text it holds) and its widest word (the narrowest it can wrap to)."""
    widest: list
    total: list
    word: list


def measure(df: pd.DataFrame, digits: int = 3, index: bool = True, formats=None) -> Measure:
    """The table's columns as it prints them (Styler's plain text). A header spanning several
    columns (a MultiIndex's upper level) counts a share of its width in each."""
    text = styled(df, None, digits, index, formats).to_string(delimiter=DELIMITER, sparse_index=False,
                                                              sparse_columns=False)
    n = (df.index.nlevels if index else 0) + df.shape[1]
    rows = [cells for cells in (line.split(DELIMITER) for line in text.splitlines()) if len(cells) == n]
    m = Measure([0.0] * n, [0.0] * n, [0.0] * n)
    for r, cells in enumerate(rows):
        spans = [1] * n
        if r < df.columns.nlevels - 1:  # an upper header level: runs of one label span their columns
            spans = [k for k in (len(list(g)) for _, g in itertools.groupby(cells)) for _ in range(k)]
        for i, (cell, span) in enumerate(zip(cells, spans)):
            w = text_width(cell) / span
            m.widest[i], m.total[i] = max(m.widest[i], w), m.total[i] + w
            m.word[i] = max([m.word[i]] + [text_width(word) / span for word in cell.split()])
    return m


def numeric(df: pd.DataFrame, index: bool = True) -> list[bool]:
    """Which columns hold numbers (right-aligned, never wrapped), index levels first (labels: no)."""
    return [False] * (df.index.nlevels if index else 0) + \
           [pd.api.types.is_numeric_dtype(df.iloc[:, i]) for i in range(df.shape[1])]


def share_out(m: Measure, wrappable: list, room: float) -> list[float]:
    """Column widths that fit ``room`` where they can: the wrappable columns share what the others
    leave, in proportion to their text, none wider than it needs nor narrower than its widest word
    or MIN_WRAP (so the widths may add up to more than ``room``)."""
    widths = list(m.widest)
    wrap = [i for i, w in enumerate(wrappable) if w]
    free = room - sum(w for i, w in enumerate(m.widest) if not wrappable[i])
    while wrap:
        text = sum(m.total[i] for i in wrap)
        share = {i: free * m.total[i] / text for i in wrap}
        floor = {i: min(m.widest[i], max(MIN_WRAP, m.word[i])) for i in wrap}
        # first the columns that need no more than their share (not wrapped), then those that
        # would get less than they can wrap to; the others share what is left
        done = ([i for i in wrap if share[i] >= m.widest[i]] or [i for i in wrap if share[i] < floor[i]])
        if not done:
            for i in wrap:
                widths[i] = share[i]
            break
        for i in done:
            widths[i] = min(m.widest[i], max(share[i], floor[i]))
            free -= widths[i]
        wrap = [i for i in wrap if i not in done]
    return widths


def layout(df: pd.DataFrame, digits: int = 3, index: bool = True, formats=None,
           scale: float = 1.0) -> tuple[bool, str | None]:
    """(fits, column spec): ``fits`` when the table, its long text columns wrapped where needed, is
    no wider than the line at ``scale`` times the table font's size; the spec gives the wrapped
    columns their ``p`` widths (None, Styler's own spec, when none wraps)."""
    m = Measure(*([scale * w for w in part] for part in measure(df, digits, index, formats)))
    nums = numeric(df, index)
    room = LINE_WIDTH * FILL - 2 * TABCOLSEP * len(m.widest)
    if sum(m.widest) <= room:
        return True, None
    widths = share_out(m, [w > WRAP_FROM and not n for w, n in zip(m.widest, nums)], room)
    wrapped = [w < x for w, x in zip(widths, m.widest)]
    if not any(wrapped):
        return False, None
    spec = "".join(f">{{\\raggedright\\arraybackslash}}p{{{w / LINE_WIDTH:.3f}\\linewidth}}" if wrap
                   else "r" if n else "l" for w, wrap, n in zip(widths, wrapped, nums))
    return sum(widths) <= room + 0.5, spec


def longtable(s, columns: int, spec: str | None, caption: str | None, continued: str | None,
              size: str = "small") -> str:
    """Styler ``s`` as a longtable whose first head starts with the caption and whose later heads
    with ``continued``. The caption sits in a zero-width box centred on the table (longtable's
    own way with captions), so a long caption takes the line's width without widening the table."""
    body = s.to_latex(environment="longtable", hrules=True, multirow_align="naive", column_format=spec)
    first, rest = body.split("\n", 1)
    if caption:
        first += (f"\n\\multicolumn{{{columns}}}{{c}}{{\\hbox to 0pt{{\\hss\\parbox[t]{{\\textwidth}}"
                  f"{{\\centering {caption}}}\\hss}}}} \\\\[\\smallskipamount]")
    # The lines atop and under each page's part are zero-width too: they would widen a narrow table.
    if continued:
        rest = rest.replace("\\endfirsthead\n", f"\\endfirsthead\n\\multicolumn{{{columns}}}{{l}}"
                            f"{{\\hbox to 0pt{{\\textit{{{continued}}}\\hss}}}} \\\\[\\smallskipamount]\n", 1)
    rest = rest.replace("{r}{Continued on next page}", "{r}{\\hbox to 0pt{\\hss\\textit{continued on the next page}}}")
    head, rows = rest.split("\\endlastfoot\n")
    return (f"\\begingroup\\{size}\\setlength{{\\tabcolsep}}{{{TABCOLSEP:g}pt}}\n{first}\n{head}\\endlastfoot\n"
            f"{kept_together(rows)}\\endgroup")


def kept_together(rows: str, ends: int = KEEP_ROWS) -> str:
    """A longtable's rows with no page break (``\\\\*``) where it would leave fewer than ``ends`` rows
    on a page: a table of up to 2 * ``ends`` - 1 rows stays whole."""
    *lines, end = rows.split(" \\\\\n")  # Styler ends each row so; a cell's own backslash is escaped
    marks = ["\\\\*" if i < ends - 1 or i >= len(lines) - ends else "\\\\" for i in range(len(lines))]
    return "".join(f"{line} {mark}\n" for line, mark in zip(lines, marks)) + end


def shrunk(df: pd.DataFrame, spec: str | None, caption: str | None, **options) -> str:
    """The table in boxes of TABLE_ROWS rows, each shrunk to the line width when wider (a page break
    can fall only between boxes); the caption stays on the first one's page."""
    blocks = [styled(df.iloc[r:r + TABLE_ROWS], "latex", **options).to_latex(
        hrules=True, multirow_align="naive", column_format=spec) for r in range(0, max(len(df), 1), TABLE_ROWS)]
    body = "\n\\par\\smallskip\n".join(
        f"\\begin{{adjustbox}}{{max width=\\linewidth}}\n{b}\\end{{adjustbox}}" for b in blocks)
    cap = f"{caption}\\par\\nopagebreak\\smallskip\n" if caption else ""
    return (f"\\begin{{center}}\\small\\setlength{{\\tabcolsep}}{{{TABCOLSEP:g}pt}}\n{cap}{body}\n"
            "\\end{center}")


def latex(df: pd.DataFrame, caption: str | None = None, continued: str | None = None, *, digits: int = 3,
          index: bool = True, formats=None) -> str:
    """The table's LaTeX (see the module doc). ``caption``, ``continued``: LaTeX, already escaped:
    the caption above the table and the line atop each continuation page ("Table 2 (continued)")."""
    options = dict(digits=digits, index=index, formats=formats)
    for size, scale in SIZES:  # a table of wrapped text too wide at \small: a smaller font, still breakable
        fits, spec = layout(df, **options, scale=scale)
        if fits or spec is None:
            break
    if not fits or df.empty:  # an empty longtable would print Styler's "\multicolumn{0}" footer
        return shrunk(df, spec, caption, **options)
    columns = (df.index.nlevels if index else 0) + df.shape[1]
    return longtable(styled(df, "latex", **options), columns, spec, caption, continued, size)


def to_html(df: pd.DataFrame, caption: str | None = None, *, digits: int = 3, index: bool = True,
            formats=None) -> str:
    """The table's HTML (pandas' Styler), ``caption`` (HTML) above it."""
    table = styled(df, "html", digits, index, formats).set_table_attributes('class="dataframe"').to_html()
    return f'<div style="margin:.4em 0 .2em">{caption}</div>{table}' if caption else table
