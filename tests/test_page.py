"""Page elements (helpers.page): what each publishes for JupyterLab/HTML (text/html) and for the PDF
(text/latex), tables that fit the page, numbered figures, and the metrics file the index reads."""

import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import evidence, page

VERDICT = {"quantity": "test accuracy, residual - plain", "unit": "percentage points", "reported": 1.35,
           "measured": -7.4, "ci": [-9.1, -5.6], "level": 0.95, "p_value": 0.0004, "test": "exact McNemar, 1 seed",
           "seeds": [2026], "verdict": "opposite direction, significant",
           "scale": {"profile": "quick", "dataset": "synthetic", "epochs": 8}}
HEADLINE = [{"name": "test acc plain", "value": 85.75, "report": 92.06, "unit": "%"},
            {"name": "parameters", "value": 4754218, "report": 4754218, "unit": ""}]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def bundle(element):
    data = element._repr_mimebundle_()
    return data if isinstance(data, dict) else data[0]


def braces_balance(latex: str) -> bool:
    unescaped = re.sub(r"\\[{}]", "", latex)
    return unescaped.count("{") == unescaped.count("}")


@pytest.mark.parametrize("element", [
    page.title_block("A <study> & 100% of it", "000", "quick", "synthetic", [1, 2], "2026-11-23", 243.5,
                     dataset_note="CIFAR-10 missing"),
    page.summary_box(), page.summary_box(HEADLINE, VERDICT), page.verdict_box(VERDICT),
    page.banner("Using the synthetic stand-in: 50% of $x_1$"), page.table(pd.DataFrame({"a_b": [1.5]}), "c#"),
    page.caption("Figure 2", "loss & accuracy"),
], ids=["title", "summary-empty", "summary", "verdict", "banner", "table", "caption"])
def test_each_element_publishes_html_latex_and_plain(element):
    data = bundle(element)
    assert set(data) == {"text/html", "text/latex", "text/plain"}
    assert all(isinstance(v, str) and v.strip() for v in data.values())
    assert braces_balance(data["text/latex"]), data["text/latex"]
    assert "<script" not in data["text/html"]


def test_text_is_escaped_for_html_and_latex():
    data = bundle(page.title_block("A <study> & 100% of it", "000", "quick", "synthetic", 1))
    assert "A &lt;study&gt; &amp; 100% of it" in data["text/html"]
    assert r"A <study> \& 100\% of it" in data["text/latex"]
    assert bundle(page.banner("50% of $x_1$"))["text/latex"].count(r"\$x\_1\$") == 1


def test_title_block_states_the_run_and_marks_itself_for_the_exporter():
    data, meta = page.title_block("Plain vs residual", "000", "quick", "synthetic", [1, 2], "2026-11-23",
                                  243.5)._repr_mimebundle_()
    for fact in ("report 000", "quick", "synthetic", "1, 2", "2026-11-23", "4 min 04 s"):
        assert fact in data["text/html"] and fact in data["text/latex"]
    assert meta == {"helpers.page": {"element": "title_block", "title": "Plain vs residual"}}
    assert "running…" in bundle(page.title_block("T", "000", "quick", "synthetic", 1))["text/plain"]
    note = "Using the synthetic stand-in: CIFAR-10 is not in data/"  # the data choice's own sentence, as it is
    assert bundle(page.title_block("T", None, "quick", "synthetic", 1, dataset_note=note))["text/plain"].endswith(note)


def test_summary_box_puts_each_number_beside_the_report():
    data = bundle(page.summary_box(HEADLINE, VERDICT))
    assert "test acc plain & \\textbf{85.75\\%} & 92.06\\%" in data["text/latex"]
    assert "parameters: 4,754,218 (report 4,754,218)" in data["text/plain"]
    assert "Verdict: opposite direction, significant" in data["text/plain"]
    assert "Filled in when" in bundle(page.summary_box())["text/plain"]


def test_verdict_box_shows_the_evidence_and_colours_the_verdict():
    plain = bundle(page.verdict_box(VERDICT))["text/plain"]
    for fact in ("report: +1.35", "this run: -7.40", "95% interval: [-9.10, -5.60]", "p: < 0.001",
                 "test: exact McNemar, 1 seed", "seeds: 2026", "scale: profile quick, dataset synthetic, epochs 8"):
        assert fact in plain
    assert page.verdict_kind(VERDICT) == "bad"
    assert page.verdict_kind(None) == "neutral" and page.verdict_kind({"verdict": "reworded"}) == "neutral"
    # A verdict missing most keys still renders, with dashes.
    sparse = bundle(page.verdict_box({"verdict": "no detectable difference", "ci": [None, None], "p_value": None}))
    assert "interval: —" in sparse["text/plain"] and "p: —" in sparse["text/plain"]
    assert COLOUR_OF["bad"] in bundle(page.verdict_box(VERDICT))["text/html"]


COLOUR_OF = {k: v[0] for k, v in page.COLOURS.items()}


def test_verdict_colours_follow_the_verdicts_of_evidence():
    """The colours key on helpers.evidence's own wording, so a reworded verdict keeps its colour."""
    kinds = [page.verdict_kind({"verdict": v}) for v in evidence.VERDICTS]
    assert kinds == ["good", "neutral", "neutral", "bad"]
    assert set(page.VERDICT_COLOURS) <= set(evidence.VERDICTS)


def longtables(latex: str) -> list[str]:
    return re.findall(r"\\begin\{longtable\}.*?\\end\{longtable\}", latex, re.S)


def body_rows(longtable: str) -> list[str]:
    """The rows after the heads and feet, each with its line end (\\\\ or \\\\*)."""
    return longtable.split("\\endlastfoot\n")[1].split("\\end{longtable}")[0].splitlines()


def test_a_long_table_is_one_longtable_with_its_caption_and_a_repeated_header():
    long = pd.DataFrame({"epoch": range(1, 101), "loss": np.linspace(2, 0.1, 100)})
    latex = bundle(page.table(long, "Loss per epoch", index=False, label="Table 2"))["text/latex"]
    assert "adjustbox" not in latex and len(longtables(latex)) == 1
    first_head, rest = latex.split("\\endfirsthead")
    # The caption is in the first head, which LaTeX keeps with the first rows: never alone at a page's end.
    assert r"\textbf{Table 2.} Loss per epoch" in first_head and "epoch & loss" in first_head
    head = rest.split("\\endhead")[0]  # atop each continuation page
    assert r"Table 2 (continued)" in head and "epoch & loss" in head and "Loss per epoch" not in head
    rows = body_rows(latex)
    assert len(rows) == 100 and rows[0].startswith("1 & 2.000") and rows[-1].startswith("100 & 0.100")
    # A page break leaves at least KEEP_ROWS rows on each page.
    keep = page.tables.KEEP_ROWS
    assert [r.endswith(r"\\*") for r in rows] == [i < keep - 1 or i >= 100 - keep for i in range(100)]


def test_a_short_table_cannot_break():
    latex = bundle(page.table(pd.DataFrame({"a": [1, 2, 3, 4]})))["text/latex"]
    assert all(r.endswith(r"\\*") for r in body_rows(latex)) and len(body_rows(latex)) == 4
    assert "textbf" not in latex and "continued)" not in latex  # no caption, no label: no caption rows


def test_a_table_of_sentences_wraps_them_in_a_longtable_within_the_line():
    """The protocol card with a long "why": its long text columns wrap in p columns that, with the
    others, fit the line; one longtable breaks it across pages, rather than a shrunk box (unreadable)."""
    why = "the report is silent on this setting, so the value is ours and the reason is given here " * 2
    card = pd.DataFrame({"report": ["not stated"] * 22, "this run": ["a value of some length " * 2] * 22,
                         "mark": "chosen", "why": [why] * 22},
                        index=pd.Index([f"setting {i}" for i in range(22)], name="setting"))
    fits, spec = page.tables.layout(card)
    shares = [float(w) for w in re.findall(r"p\{([\d.]+)\\linewidth\}", spec)]
    assert fits and len(shares) == 2  # "this run" and "why"; setting, report and mark are short
    m = page.tables.measure(card)
    assert m.widest[0] < m.widest[2] < m.widest[4] and shares[0] < shares[1]  # the longer text gets more
    seps = 2 * page.tables.TABCOLSEP * 5
    unwrapped = m.widest[0] + m.widest[1] + m.widest[3]
    assert unwrapped + seps + sum(shares) * page.tables.LINE_WIDTH <= page.tables.LINE_WIDTH
    latex = bundle(page.table(card, "Settings", label="Table 1"))["text/latex"]
    assert len(longtables(latex)) == 1 and "adjustbox" not in latex and spec in latex
    assert latex.count("setting 21") == 1 and r"\endhead" in latex


def test_a_card_too_wide_at_small_is_a_longtable_at_a_smaller_font():
    """Six columns of sentences whose words do not fit the line at \\small (notebook 03's card with its
    code column): a smaller font, still one longtable that breaks across pages, never an unbreakable
    box that runs off the page's bottom."""
    text = ["protocol-card sentence of medium-length, with a hyphenated word-or-two " * 2] * 30
    card = pd.DataFrame({"report": text, "code": text, "this run": text, "mark": "code", "why": text},
                        index=pd.Index([f"test-time augmentation {i}" for i in range(30)], name="setting"))
    assert not page.tables.layout(card)[0]  # too wide at \small
    latex = bundle(page.table(card, "Settings", label="Table 1"))["text/latex"]
    assert len(longtables(latex)) == 1 and "adjustbox" not in latex
    assert "\\footnotesize" in latex or "\\scriptsize" in latex


def test_a_long_word_is_never_cut_to_a_narrower_column():
    """A p column cannot break a word: it is at least as wide as its longest word."""
    df = pd.DataFrame({"text": ["short words " * 20, "flexible_cnn,width=0.0625,residual=False;dropout=0.1"],
                       "other": ["also many short words here " * 6] * 2})
    m = page.tables.measure(df, index=False)
    spec = page.tables.layout(df, index=False)[1]
    shares = [float(w) * page.tables.LINE_WIDTH for w in re.findall(r"p\{([\d.]+)\\linewidth\}", spec)]
    assert len(shares) == 2 and shares[0] >= m.word[0] - 1 > 250


def test_a_wide_numeric_table_is_shrunk_to_the_line_width():
    """Nothing to wrap: the table is shrunk to the line (adjustbox); a box cannot break across
    pages, so a long one is cut into boxes of TABLE_ROWS rows, each with the header."""
    wide = pd.DataFrame(np.arange(30.0).reshape(3, 10) / 7, columns=[f"column {i}" for i in range(10)])
    assert page.tables.layout(wide) == (False, None)
    data = bundle(page.table(wide, "Ten columns", label="Table 1"))
    latex = data["text/latex"]
    assert latex.count(r"\begin{adjustbox}{max width=\linewidth}") == 1 and "longtable" not in latex
    assert r"\textbf{Table 1.} Ten columns\par\nopagebreak" in latex and r"\toprule" in latex
    assert latex.index("Ten columns") < latex.index("adjustbox")
    assert "0.143" in latex  # 1/7 at 3 decimals
    assert "<b>Table 1.</b> Ten columns" in data["text/html"] and data["text/html"].count("<th") >= 10
    long = pd.DataFrame(np.arange(100 * 14.0).reshape(100, 14), columns=[f"column {i}" for i in range(14)])
    blocks = bundle(page.table(long))["text/latex"].split(r"\begin{adjustbox}")[1:]
    rows = [len(re.findall(r"^\d+ & ", b, re.M)) for b in blocks]
    assert rows == [40, 40, 20] and all("column 13" in b for b in blocks)


def test_a_multiindex_is_measured_level_by_level():
    """Short level values are not one long tuple: such a table fits as it is, without wrapped columns."""
    index = pd.MultiIndex.from_product([["entropy", "on the object"], ["plain wrong", "plain right"]])
    df = pd.DataFrame({"plain": 1.0, "residual": 2.0, "95% interval": "[-17.33, -9.15]", "p": "p < 0.001"},
                      index=index)
    assert page.tables.layout(df) == (True, None)
    assert len(page.tables.measure(df).widest) == 6
    long_index = pd.MultiIndex.from_product([["a much longer measurement name " * 3], ["the second level " * 3]])
    fits, spec = page.tables.layout(pd.DataFrame({"text": ["some words " * 12]}, index=long_index))
    assert fits and spec.count("p{") == 3


def test_an_upper_header_counts_a_share_in_each_column_it_spans():
    columns = pd.MultiIndex.from_product([["a rather long group label over both"], ["x", "y"]])
    m = page.tables.measure(pd.DataFrame([[1, 2]], columns=columns), index=False)
    label = page.tables.text_width("a rather long group label over both")
    assert m.widest == [label / 2, label / 2]


def test_table_headers_and_cells_are_escaped():
    df = pd.DataFrame({"added (%)": [1.86], "a & b": ["x_1 <y>"]}, index=pd.Index(["res#1"], name="model_name"))
    df.columns.name = "<metric>"
    data = bundle(page.table(df))
    assert r"model\_name" in data["text/latex"] and "&lt;metric&gt;" in data["text/html"]
    assert r"added (\%)" in data["text/latex"] and r"a \& b" in data["text/latex"]
    assert r"x\_1" in data["text/latex"] and r"res\#1" in data["text/latex"]
    assert "a &amp; b" in data["text/html"] and "x_1 &lt;y&gt;" in data["text/html"]


def test_captions_and_labels_are_escaped_in_the_longtable():
    latex = bundle(page.table(pd.DataFrame({"a": [1]}), "50% of x_1 & y", label="Table #1"))["text/latex"]
    assert r"\textbf{Table \#1.} 50\% of x\_1 \& y" in latex and r"Table \#1 (continued)" in latex
    assert braces_balance(latex)


def test_series_and_missing_values():
    data = bundle(page.table(pd.Series({"a": 1.0, "b": None}, name="value")))
    assert "—" in data["text/latex"] and "—" in data["text/html"]


def test_numbers_and_durations():
    assert [page.number(v, u) for v, u in ((85.754, "%"), (-7.4, "points"), (4754218, ""), (0.00123, ""),
                                           (None, "%"), (float("nan"), ""), ("n/a", "%"))] == [
        "85.75%", "-7.40 points", "4,754,218", "0.00123", "—", "—", "n/a%"]
    assert [page.duration(s) for s in (None, 12.34, 243.5, 3600)] == ["—", "12.3 s", "4 min 04 s", "60 min 00 s"]


def test_figures_number_in_order_of_display_and_save_at_print_resolution(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append((obj, kw)))
    figs = page.Figures(tmp_path)
    for name in ("loss", "acc", "loss"):  # showing "loss" again (a re-run cell) keeps number 1
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.plot([0, 1])
        figs.show(fig, name, f"what to notice in {name}", key=name == "acc")
        assert not plt.fignum_exists(fig.number)  # closed: the inline backend will not show it again
    captions = [o.plain for o, _ in shown if isinstance(o, page.Element)]
    assert captions == ["Figure 1. what to notice in loss", "Figure 2. what to notice in acc",
                        "Figure 1. what to notice in loss"]
    image, kw = shown[0]
    assert kw["metadata"] == {"helpers.page": {"figure": 1}}
    with Image.open(tmp_path / "figures" / "loss.png") as png:
        assert round(png.info["dpi"][0]) == page.DPI
        assert abs(image.width - png.size[0] * page.SCREEN_DPI / page.DPI) <= 1  # shown at screen size
    figs.table(pd.DataFrame({"x": [1]}), "t", "first table")
    assert shown[-1][0].plain.startswith("Table 1. first table")
    assert figs.paths == ["figures/loss.png", "figures/acc.png"] and figs.key_path == "figures/acc.png"


def test_write_metrics_keeps_the_schema_and_lists_figures(tmp_path):
    figs = page.Figures(tmp_path)
    fig, ax = plt.subplots()
    figs.save(fig, "curve")
    head = page.Header("Plain vs residual", "000", "quick", "synthetic", 2026, dataset_note=None)
    fields = head.finish(HEADLINE, VERDICT)  # not shown: no display handles to update
    assert page.write_metrics(tmp_path, {**fields, "acc": np.float32(0.5), "n": np.int64(3)}, figs) is None
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(page.SCHEMA) <= set(metrics)
    assert metrics["seeds"] == [2026] and metrics["headline"] == HEADLINE and metrics["verdict"] == VERDICT
    assert metrics["key_figure"] == "figures/curve.png" and metrics["figures"] == ["figures/curve.png"]
    assert metrics["acc"] == 0.5 and metrics["n"] == 3 and metrics["run_seconds"] >= 0
    for name in metrics["figures"]:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_header_updates_its_displays_at_the_end(monkeypatch):
    class Handle:
        def __init__(self, obj):
            self.objects = [obj]

        def update(self, obj):
            self.objects.append(obj)

    handles = []
    monkeypatch.setattr("IPython.display.display", lambda obj, display_id=None: handles.append(Handle(obj))
                        or handles[-1])
    head = page.Header("T", "000", "quick", "synthetic", [1])
    head.show()
    head.finish(HEADLINE, VERDICT)
    title, summary = handles
    assert "running…" in title.objects[0].plain and "running…" not in title.objects[1].plain
    assert "Filled in" in summary.objects[0].plain and "85.75%" in summary.objects[1].plain
    assert "Training" not in title.objects[1].plain  # no runs given: no training time claimed


def test_title_block_gives_the_runs_training_time(monkeypatch):
    """Runs trained before the notebook (the runner's workers, an earlier session) are not in its run
    time: the title block adds what they took, from their histories' epoch seconds."""
    from types import SimpleNamespace

    handles = []

    class Handle:
        def update(self, obj):
            handles.append(obj)

    monkeypatch.setattr("IPython.display.display", lambda obj, display_id=None: Handle())
    run = lambda *secs: SimpleNamespace(history=pd.DataFrame({"seconds": secs}))  # noqa: E731
    head = page.Header("T", "000", "quick", "synthetic", [1, 2])
    head.show()
    head.finish(HEADLINE, VERDICT, {"plain": [run(60.0, 30.5), run(45.0)], "residual": [run(100.0), run(20.0)]})
    assert "Training: 4 min 16 s, 4 runs" in handles[0].plain
    assert "4 min 16 s, 4 runs" in handles[0].latex


def test_plain_dataframe_display_gets_a_fitting_latex_repr():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        page.setup()
        df = pd.DataFrame({f"c{i}": range(100) for i in range(10)})
        data, _ = shell.display_formatter.format(df)
        assert len(longtables(data["text/latex"])) == 1 and len(body_rows(data["text/latex"])) == 60
        assert "(first 60 of 100 rows)" in data["text/latex"]
        assert "text/html" in data  # JupyterLab and the HTML report keep pandas' own table
    finally:
        InteractiveShell.clear_instance()


def test_formatted_values_are_escaped_for_latex():
    """A format that adds a LaTeX special character ("{:.1%}" adds %) must not break the PDF."""
    df = pd.DataFrame({"acc": [0.523, np.nan], "n": np.array([3, 4], dtype=np.int64)}, index=["a", "b"])
    latex = bundle(page.table(df, formats={"acc": "{:.1%}", "n": "{:,} images"}))["text/latex"]
    assert "52.3\\%" in latex and "3 images" in latex and "—" in latex
    assert "52.3%" not in latex.replace("52.3\\%", "")
