"""The two exports of a notebook that uses every page element, run through the runner (papermill):
the report (HTML, PDF) without code or bookkeeping cells, and the notebook with its code."""

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from helpers import runner

PDF_READY = not runner.pdf_engine_missing() and bool(shutil.which("pdftotext"))
TITLE = "Plain vs residual CNN: a tiny study"
CELLS = [
    ("code", 'profile = "smoke"\ndataset = "synthetic"\noutput_dir = "."', ["parameters"]),
    ("code", "import numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt\nfrom helpers import page\n"
             f'head = page.Header("{TITLE}", "000", profile, dataset, [2026],\n'
             '                   dataset_note="CIFAR-10 was not found, synthetic shapes stand in")\n'
             "head.show()\nfigs = page.Figures(output_dir)", []),
    ("markdown", "## Training\n\nThe loss falls, then rises once the learning rate drops.", []),
    ("code", "def curve():\n    fig, ax = plt.subplots(figsize=(6, 2.5))\n    ax.plot([3, 1, 2])\n    return fig\n"
             'figs.show(curve(), "loss_curves", "Training loss: notice the dip at epoch 2.", key=True)', []),
    ("code", 'wide = pd.DataFrame(np.arange(50.0).reshape(5, 10), columns=[f"column {i} (%)" for i in range(10)])\n'
             'figs.table(wide, "wide", "Ten columns that must fit the page.")', []),
    ("code", 'why = "the report is silent here, so the value is ours, and this sentence says why " * 3\n'
             'card = pd.DataFrame({"report": "not stated", "this run": "a value of some length " * 3, "why": why},\n'
             '                    index=[f"setting {i}" for i in range(30)])\n'
             'figs.table(card, "card", "Thirty rows of sentences, too tall for one page.")', []),
    ("code", 'display(pd.DataFrame({"epoch": range(100), "loss": np.linspace(2, 0.1, 100)}))', []),
    ("code", 'page.banner("Using the synthetic stand-in.")', []),
    ("code", "fig, ax = plt.subplots(figsize=(3, 2))\nax.plot([1, 2])  # shown by the inline backend", []),
    ("markdown", "Bookkeeping below: SECRET-MARKDOWN must not reach the report.", ["remove-cell"]),
    ("code", 'print("SECRET-OUTPUT")\nverdict = {"quantity": "test accuracy, residual - plain", "unit": "points",\n'
             '           "reported": 1.35, "measured": -7.4, "ci": [-9.1, -5.6], "p_value": 0.0004,\n'
             '           "test": "exact McNemar, 1 seed", "seeds": [2026], "verdict": "opposite direction, significant",\n'
             '           "scale": {"profile": profile}}\n'
             'headline = [{"name": "test acc plain", "value": 85.75, "report": 92.06, "unit": "%"}]\n'
             "page.write_metrics(output_dir, head.finish(headline, verdict), figs)", ["remove-cell"]),
]
CODE = ("import ", "display(", "figs.", "def ", "head.", "page.banner", "SECRET")


def demo_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source, tags in CELLS:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        cell.metadata["tags"] = tags
        nb.cells.append(cell)
    path = folder / "01_demo.ipynb"
    nbformat.write(nb, path)
    return path


class Text(HTMLParser):
    """Visible text of an HTML page (no <style>/<script>) and the class names it uses."""

    def __init__(self, page: str):
        super().__init__()
        self.parts, self.classes, self.skip = [], set(), 0
        self.feed(page)
        self.text = "".join(self.parts)

    def handle_starttag(self, tag, attrs):
        self.skip += tag in ("style", "script")
        self.classes.update((dict(attrs).get("class") or "").split())

    def handle_endtag(self, tag):
        self.skip -= tag in ("style", "script")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    (tmp / "notebooks").mkdir()
    demo_notebook(tmp / "notebooks")
    [result] = runner.run_notebooks(["01"], profile="smoke", output=tmp / "out", notebooks_dir=tmp / "notebooks",
                                     pdf=PDF_READY or bool(os.environ.get("REQUIRE_PDF")), timeout=600)
    assert result.ok, f"{result.status}: {result.error}"
    return result, Path(result.folder)


@pytest.mark.slow
def test_report_html_has_no_code_and_no_bookkeeping(demo):
    result, folder = demo
    report = Text((folder / result.html).read_text())
    assert "jp-InputArea-editor" not in report.classes and "jp-InputPrompt" not in report.classes
    assert not [c for c in CODE if c in report.text], "code or a remove-cell cell reached the report"
    assert f"<title>{TITLE}</title>" in (folder / result.html).read_text()
    for kept in ("Training", "The loss falls", "Figure 1.", "Table 1.", "Using the synthetic stand-in.",
                 "Ten columns that must fit"):
        assert kept in report.text
    assert report.text.count("data:image/png") == 0 and (folder / result.html).read_text().count(
        "data:image/png;base64") >= 1  # the figure, embedded


@pytest.mark.slow
def test_inline_figures_are_drawn_at_print_resolution(demo):
    """A figure the inline backend shows (not through Figures.show) is a 2x PNG shown at 1x."""
    import base64
    import io

    from PIL import Image

    result, folder = demo
    executed = nbformat.read(folder / "01_demo.ipynb", as_version=4)
    [cell] = [c for c in executed.cells if "inline backend" in c.source]
    [out] = [o for o in cell.outputs if "image/png" in o.get("data", {})]
    with Image.open(io.BytesIO(base64.b64decode(out["data"]["image/png"]))) as png:
        width = png.size[0]
    assert width > 2 * 250 and out["metadata"]["image/png"]["width"] == width // 2


@pytest.mark.slow
def test_code_export_keeps_every_cell(demo):
    result, folder = demo
    assert result.code_html == "01_demo-code.html"
    code = Text((folder / result.code_html).read_text())
    assert "jp-InputArea-editor" in code.classes
    for text in ("SECRET-MARKDOWN", "SECRET-OUTPUT", "head.show()", "def curve"):
        assert text in code.text.replace("\n", " ") or text in code.text
    assert (folder / "01_demo.ipynb").is_file()


@pytest.mark.slow
def test_summary_box_is_filled_in_the_saved_notebook_and_exports(demo):
    """update_display at the end replaced the placeholder: nbclient applied it under papermill."""
    result, folder = demo
    executed = nbformat.read(folder / "01_demo.ipynb", as_version=4)
    shown = [o for c in executed.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    text = " ".join(o["data"]["text/plain"] for o in shown)
    assert "Filled in when" not in text and "running…" not in text
    assert "test acc plain: 85.75% (report 92.06%)" in text and "Verdict: opposite direction, significant" in text
    report = Text((folder / result.html).read_text()).text
    assert "85.75%" in report and "Filled in when" not in report and "Run time" in report


@pytest.mark.slow
# CI sets REQUIRE_PDF=1 after installing the engine and poppler: there these checks cannot skip.
@pytest.mark.skipif(not PDF_READY and not os.environ.get("REQUIRE_PDF"),
                    reason="needs xelatex, pandoc and pdftotext (apt-get install texlive-xetex "
                           "texlive-fonts-recommended texlive-plain-generic pandoc poppler-utils)")
def test_report_pdf_has_no_code_and_keeps_figures_with_captions(demo):
    result, folder = demo
    pdf = folder / result.pdf
    pages = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                           check=True).stdout.split("\f")
    text = "\f".join(pages)
    assert not [c for c in CODE if c in text], "code reached the PDF"
    assert TITLE in text and "01_demo" not in text  # the title block, not nbconvert's file-name title
    for kept in ("Figure 1.", "Table 1.", "85.75%", "92.06%", "opposite direction, significant",
                 "column 9 (%)"):
        assert kept in text
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert re.search(rf"^Title:\s+{re.escape(TITLE)}$", info, re.M)
    # The figure and its caption share a page: the page with "Figure 1." holds an image.
    images = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    image_pages = {int(line.split()[0]) for line in images.splitlines()[2:]}
    caption_page = next(i for i, p in enumerate(pages, 1) if "Figure 1." in p)
    assert caption_page in image_pages
    # The table caption shares a page with its table, whose last column fits on that page
    # (an overflowing table is cut at the page edge).
    assert "column 9 (%)" in pages[next(i for i, p in enumerate(pages) if "Table 1." in p)]
    # The card of sentences: one table across pages, its caption with its first rows, its header again
    # atop the next page, every row once.
    first = next(i for i, p in enumerate(pages) if "Table 2." in p)
    assert "setting 0 " in pages[first] and "setting 29" not in pages[first]
    assert "Table 2 (continued)" in pages[first + 1] and "this run" in pages[first + 1]
    assert all(text.count(f"setting {i} ") == 1 for i in range(30))
    # Nothing runs into the right or bottom margin: every word but the page numbers lies inside the
    # page's 1-inch margins.
    boxes = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    width, height = map(float, re.search(r'<page width="([\d.]+)" height="([\d.]+)"', boxes).groups())
    words = re.findall(r'xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>', boxes)
    right = max(float(x) for x, _, _ in words)
    assert right <= width - 72 + 1, f"text reaches x={right:.0f} of a {width:.0f} pt page"
    bottom = max(float(y) for _, y, w in words if not w.isdigit())
    assert bottom <= height - 72 + 1, f"text reaches y={bottom:.0f} of a {height:.0f} pt page"
