"""Exports of an executed notebook through nbconvert: the report without code, and the notebook with it.

Called by the runner (``helpers.runner``) after each notebook, into the executed notebook's folder:

- ``<stem>.html`` and ``<stem>.pdf``: the report. nbconvert's own switches drop every code input
  and prompt (``exclude_input``, ``exclude_input_prompt``, ``exclude_output_prompt``), and its
  ``TagRemovePreprocessor`` drops cells tagged ``remove-cell`` (bookkeeping: writing metrics,
  saving files), inputs tagged ``remove-input`` and outputs tagged ``remove-output``. Markdown,
  figures, tables and other outputs stay.
- ``<stem>-code.html``: the executed notebook as it ran, code included (the ``.ipynb`` itself is the
  other with-code export).

Also the pairing of the source notebooks with their py:percent scripts (``python -m helpers.runner
--sync``, jupytext), which strips their outputs.

Widgets: a report has no kernel to drive them, and nbconvert would give a widget's output as an
empty placeholder (HTML, with a script fetched from a CDN) or its "VBox(children=...)" text (PDF).
:func:`drop_widgets` removes widget views from the exported copy; an output that carries another
representation keeps it (``helpers.explorer``'s widgets carry a note saying where the live one is).

Title: a notebook that displays ``helpers.page.title_block`` gets that title in the HTML ``<title>``
and the PDF's metadata, and nbconvert's own LaTeX title page line (``\\maketitle`` with the file
name and today's date) is left out, since the title block already says it. A notebook without one
keeps nbconvert's title.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter, PDFExporter
from traitlets.config import Config

REPORT_TAGS = {"remove_cell_tags": {"remove-cell"}, "remove_input_tags": {"remove-input"},
               "remove_all_outputs_tags": {"remove-output"}}

# nbconvert's LaTeX uses Latin Modern, which silently drops Greek text, "≈", "≥", "✓"... from
# the PDF; switch to DejaVu where it is installed (fontspec's test keeps other machines working).
# A notebook with its own title block (resources "own_title") skips \maketitle; headings are not
# numbered (the notebooks' sections are "##", which LaTeX would number 0.1, 0.2, ...); a figure
# shown by helpers.page.Figures (output metadata "helpers.page") cannot be split from its caption.
PDF_TEMPLATE = r"""((* extends 'index.tex.j2' *))
((* block packages *))
((( super() )))
    \ifdefined\IfFontExistsTF
        \IfFontExistsTF{DejaVu Serif}{\setmainfont{DejaVu Serif}}{}
        \IfFontExistsTF{DejaVu Sans}{\setsansfont{DejaVu Sans}}{}
        \IfFontExistsTF{DejaVu Sans Mono}{\setmonofont{DejaVu Sans Mono}[Scale=0.85]}{}
    \fi
((* endblock packages *))
((* block commands *))
((( super() )))
    \setcounter{secnumdepth}{0}
    \hypersetup{pdftitle={((( (nb.metadata.get('title', '') or resources['metadata']['name']) | escape_latex )))}}
((* endblock commands *))
((* block maketitle *))((* if not resources.get('own_title') *))\maketitle((* endif *))((* endblock maketitle *))
((*- block data_png -*))
((*- if output.metadata.get('helpers.page') -*))
    {\centering\adjustimage{max size={0.9\linewidth}{0.7\textheight}}{((( output.metadata.filenames['image/png'] | posix_path )))}\par}\nopagebreak
((*- else -*))((( super() )))((*- endif -*))
((*- endblock data_png -*))
"""


def report_config():
    """nbconvert settings of the report export: no code, no prompts, tagged cells removed."""
    c = Config()
    c.TemplateExporter.exclude_input = True
    c.TemplateExporter.exclude_input_prompt = True
    c.TemplateExporter.exclude_output_prompt = True
    c.TagRemovePreprocessor.enabled = True
    for name, tags in REPORT_TAGS.items():
        setattr(c.TagRemovePreprocessor, name, set(tags))
    return c


def own_title(nb) -> str | None:
    """The title of the notebook's ``helpers.page`` title block, if it displays one."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("helpers.page") or {}
            if meta.get("element") == "title_block":
                return meta.get("title")
    return None


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def drop_widgets(nb) -> int:
    """Remove widget views from a notebook's outputs (in place) and its saved widget state; an output
    left with nothing but a text/plain repr goes altogether. Returns the number of views removed."""
    removed = 0
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                removed += 1
                del data[WIDGET_VIEW]
                if set(data) <= {"text/plain"}:
                    continue
            kept.append(out)
        if cell.cell_type == "code":
            cell.outputs = kept
    nb.metadata.pop("widgets", None)
    return removed


def read(executed: Path):
    """The executed notebook without widget views (:func:`drop_widgets`), its title (or None) and
    nbconvert resources for its folder."""
    nb = nbformat.read(executed, as_version=4)
    drop_widgets(nb)
    title = own_title(nb)
    if title:
        nb = copy.deepcopy(nb)
        nb.metadata["title"] = title  # nbconvert's templates use it for <title> and \title
    # metadata.path lets LaTeX find files the notebook refers to by relative path.
    resources = {"metadata": {"path": str(executed.parent), "name": executed.stem}, "own_title": bool(title)}
    return nb, resources


def export_html(executed: Path) -> Path:
    """Write the report ``<stem>.html`` (no code; figures embedded as data URIs) next to the
    executed notebook."""
    nb, resources = read(executed)
    body, _ = HTMLExporter(config=report_config()).from_notebook_node(nb, resources)
    target = executed.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def export_code_html(executed: Path) -> Path:
    """Write ``<stem>-code.html``: the executed notebook with its code, as it ran."""
    nb, resources = read(executed)
    body, _ = HTMLExporter().from_notebook_node(nb, resources)
    target = executed.with_name(f"{executed.stem}-code.html")
    target.write_text(body, encoding="utf-8")
    return target


def pdf_engine_missing() -> list[str]:
    """Return the tools nbconvert's PDF export needs that are not on PATH."""
    return [tool for tool in ("xelatex", "pandoc") if not shutil.which(tool)]


def export_pdf(executed: Path) -> Path:
    """Write the report ``<stem>.pdf`` (no code) next to the executed notebook via nbconvert's
    LaTeX route (xelatex)."""
    exporter = PDFExporter(config=report_config(), template_file="reports.tex.j2",
                           extra_loaders=[DictLoader({"reports.tex.j2": PDF_TEMPLATE})])
    nb, resources = read(executed)
    body, _ = exporter.from_notebook_node(nb, resources)
    target = executed.with_suffix(".pdf")
    target.write_bytes(body)
    return target


# --- jupytext pairing ---------------------------------------------------------------------------

def strip_outputs(path: Path) -> bool:
    """Remove outputs and execution counts from a notebook file; return True if it changed."""
    nb = nbformat.read(path, as_version=4)
    dirty = [c for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
    for cell in dirty:
        cell.outputs, cell.execution_count = [], None
    if dirty:
        nbformat.write(nb, path)
    return bool(dirty)


def sync_notebooks(notebooks_dir: str | Path) -> list[Path]:
    """Pair every notebook with a py:percent script and sync them (the newer file wins, as in
    ``jupytext --sync``), then strip outputs from the .ipynb; return the notebooks touched."""
    from jupytext.cli import jupytext  # a development extra (pip install -e '.[test]')

    paths = sorted(Path(notebooks_dir).glob("*.ipynb"))
    for path in paths:
        # Sync before stripping: stripping rewrites the .ipynb, making it the newer file.
        jupytext(["--set-formats", "ipynb,py:percent", "--sync", str(path)])
        strip_outputs(path)
    return paths
