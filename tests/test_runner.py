"""Tests for the headless runner (helpers.runner), on tiny notebooks written into tmp_path.

The notebooks import only json/sys/matplotlib (no torch) so each runs in a few seconds.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from helpers import export, runner
from helpers.profiles import PROFILES

ROOT = Path(__file__).resolve().parent.parent

PARAMETERS = """\
profile = "full"
dataset = "cifar10"
seed = 0
device = "cpu"
output_dir = "."
width = 8"""
SETUP = "import json, os, sys\nimport matplotlib.pyplot as plt"
FIGURE = """\
os.makedirs(os.path.join(output_dir, "figures"), exist_ok=True)
fig, ax = plt.subplots(figsize=(4, 3))
ax.plot([0, 1, 2], [width, 2 * width, 4 * width])
fig.savefig(os.path.join(output_dir, "figures", "curve.png"))
plt.show()
metrics = {"profile": profile, "dataset": dataset, "seed": seed, "width": width,
           "accuracy": 0.5, "python": sys.executable, "cwd": os.getcwd(),
           "backend": plt.get_backend(), "figures": ["curve.png"]}
with open(os.path.join(output_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f)"""
BOOM = 'x = 1\nraise ValueError("boom on purpose")'
# Written by the kernel process to file descriptor 2, past ipykernel's stream capture: it used to
# land in the runner's terminal, like ipykernel's own "running over TCP without encryption" log.
NOISE = '_ = os.write(2, b"kernel-level noise\\n")'


def notebook(folder: Path, stem: str, *cells: str, title: bool = True) -> Path:
    """Write a notebook: a markdown title (unless title=False), the parameters cell, then cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {stem}")] * title + [params]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    path = folder / f"{stem}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def nbdir(tmp_path):
    """Two notebooks: 01_good runs; 02_bad fails in its 3rd cell (parameters, setup, boom)."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    notebook(folder, "01_good", SETUP, FIGURE, NOISE)
    notebook(folder, "02_bad", SETUP, BOOM, FIGURE, title=False)
    return folder


def run_cli(*args, cwd=ROOT, env=None):
    """Run ``python -m helpers.runner`` in a subprocess; return the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "helpers.runner", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


# --- validation: nothing runs, nothing is written --------------------------------------------

def test_cli_bad_notebook_exits_2_before_running(nbdir, tmp_path):
    """Through the real command line: one clear line, status 2, no traceback, nothing written."""
    out = tmp_path / "out"
    proc = run_cli("nope", "--notebooks-dir", str(nbdir), "--output", str(out))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "python -m helpers.runner: error: unknown notebook 'nope' (valid: 01_good, 02_bad)")
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["1", "bad", "3"], "unknown notebook '3' (valid: 01_good, 02_bad)"),
    (["--profile", "huge"], "unknown profile 'huge' (valid: smoke, quick, full)"),
    (["01", "-p", "lr", "0.1"],
     "unknown parameter 'lr' for 01_good (valid: profile, dataset, seed, device, output_dir, width)"),
    (["01", "-p", "output_dir", "x"], "parameter 'output_dir' is set by the runner; use --output"),
])
def test_bad_request_exits_2_before_running(nbdir, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        runner.main([*args, "--notebooks-dir", str(nbdir), "--output", str(out)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"error: {message}")
    assert not out.exists()


def test_help_lists_the_profiles():
    assert all(p in runner.parser().format_help() for p in PROFILES)


def test_api_raises_usage_error(nbdir, tmp_path):
    with pytest.raises(runner.UsageError, match="valid: 01_good, 02_bad"):
        runner.run_notebooks(["03"], notebooks_dir=nbdir, output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_names_resolve_by_stem_number_and_short_name():
    stems = ["01_stress_test", "05_bn_ablation"]
    for name in ("05_bn_ablation", "05", "5", "bn_ablation", "notebooks/05_bn_ablation.ipynb"):
        assert runner.resolve_notebook(name, stems) == "05_bn_ablation"


def test_values_parse_like_papermill():
    assert [runner.parse_value(v) for v in ("3", "0.5", "True", "None", "cpu")] == [
        3, 0.5, True, None, "cpu"]


def test_list(nbdir):
    proc = run_cli("--list", "--notebooks-dir", str(nbdir))
    assert proc.returncode == 0
    assert "01_good (no study): profile=\"full\"" in proc.stdout


# --- running --------------------------------------------------------------------------------

class Page(HTMLParser):
    """An HTML page's links (href/src), visible text and the class attribute of each tag."""

    def __init__(self, text: str):
        super().__init__()
        self.links, self.text, self.classes = [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [attrs[k] for k in ("href", "src") if attrs.get(k)]
        self.classes.append(attrs.get("class") or "")

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.slow
def test_cli_runs_good_and_reports_bad(nbdir, tmp_path):
    """One good and one failing notebook through the real command line, MPLBACKEND=Agg set;
    stdout is a pipe, so progress comes as plain lines (one per cell with HELPERS_PROGRESS_SLOW=0)."""
    out = tmp_path / "out"
    proc = run_cli("--notebooks-dir", str(nbdir), "--output", str(out), "--profile", "smoke",
                   "--dataset", "synthetic", "-p", "seed", "7", "--no-pdf",
                   env={"MPLBACKEND": "Agg", "HELPERS_PROGRESS_SLOW": "0"}, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr

    # Progress: a plain line per executed cell, numbered as in the source notebook (4 cells + title).
    lines = re.findall(r"^\[1/2\] 01_good: cell (\d)/5 \(01_good\) took \d+ s, \d+:\d\d elapsed$",
                       proc.stdout, re.M)
    assert lines == ["2", "3", "4", "5"], proc.stdout
    assert "\r" not in proc.stdout
    # The kernel's own output stays out of the runner's and goes to the notebook's kernel.log.
    for noise in ("without encryption", "kernel-level noise", "IPKernelApp"):
        assert noise not in proc.stdout + proc.stderr
    assert "kernel-level noise" in (out / "smoke" / "01_good" / "kernel.log").read_text()

    # The failure names the notebook, the cell (3rd of 02_bad), its first line and the error.
    assert "02_bad: failed at cell 3" in proc.stdout
    assert "ValueError: boom on purpose" in proc.stdout
    assert "cell 3: x = 1" in proc.stdout

    good = out / "smoke" / "01_good"
    metrics = json.loads((good / "metrics.json").read_text())
    assert metrics["profile"] == "smoke" and metrics["dataset"] == "synthetic"
    assert metrics["seed"] == 7 and metrics["width"] == 8
    assert Path(metrics["cwd"]) == nbdir  # cwd is the notebook's folder, not the caller's
    assert Path(metrics["python"]).parent == Path(sys.executable).parent  # this env's kernel
    assert "inline" in metrics["backend"]  # MPLBACKEND=Agg was not passed to the kernel
    assert (good / "figures" / "curve.png").stat().st_size > 1000

    executed = nbformat.read(good / "01_good.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert f'output_dir = "{good}"' in injected[0].source
    images = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, "the inline figure should be in the executed notebook"
    assert "data:image/png;base64" in (good / "01_good.html").read_text()

    # The failed notebook's partial run is kept and exported for inspection.
    bad = out / "smoke" / "02_bad"
    assert (bad / "02_bad.ipynb").exists() and (bad / "02_bad.html").exists()
    assert not (bad / "02_bad.pdf").exists()

    # The index: a card each, the failing one with its cell and error; every link resolves.
    index = out / "smoke" / "index.html"
    page = Page(index.read_text())
    assert "01_good/01_good.html" in page.links and "01_good/01_good-code.html" in page.links
    assert "01_good/thumbnail.png" in page.links  # the figure it saved, as a thumbnail
    assert "02_bad/02_bad.pdf" not in page.links and "02_bad/02_bad-code.html" in page.links
    assert all((index.parent / link).is_file() for link in page.links), page.links
    text = "".join(page.text)
    assert "failed at cell 3" in text and "ValueError: boom on purpose" in text
    assert 'x = 1\nraise ValueError("boom on purpose")' in text  # the failing cell itself
    assert "Verdict: —" in text  # these notebooks write no verdict
    # The closing table: notebook, status, time, headline, verdict, where the report is.
    summary = [re.split(r"\s{2,}", line.strip())
               for line in proc.stdout.split("\nindex:")[0].strip().splitlines()[-3:]]
    assert summary[0] == ["notebook", "status", "time", "headline (report)", "verdict", "report"]
    assert summary[1][:2] == ["01_good", "ok"] and summary[1][3:5] == ["—", "—"]
    assert Path(tmp_path, summary[1][5]) == good / "01_good.html"  # relative to the working folder
    assert summary[2][:2] == ["02_bad", "failed at cell 3"]


@pytest.mark.slow
def test_api_rerun_replaces_stale_outputs_and_keeps_index(nbdir, tmp_path):
    out = tmp_path / "out"
    [first] = runner.run_notebooks(["good"], profile="smoke", output=out, pdf=False,
                                    notebooks_dir=nbdir)
    assert first.ok and first.metrics["width"] == 8 and "figures" not in first.metrics
    assert (out / "smoke" / "01_good" / "kernel.log").is_file()
    # Break 01_good after its parameters cell: the rerun must not show the old metrics.
    notebook(nbdir, "01_good", BOOM, FIGURE)
    [second] = runner.run_notebooks(["01"], profile="smoke", output=out, pdf=False,
                                     notebooks_dir=nbdir, params={"width": 3})
    assert second.status == "failed at cell 3" and second.metrics == {}
    folder = out / "smoke" / "01_good"
    assert not (folder / "figures").exists() and not (folder / "thumbnail.png").exists()
    page = Page((out / "smoke" / "index.html").read_text())
    assert "01_good/thumbnail.png" not in page.links
    assert "card skipped" in page.classes and "not run for this profile" in "".join(page.text)


@pytest.mark.slow
def test_kernel_prefers_this_environment(nbdir, tmp_path, monkeypatch):
    """A user-level python3 kernelspec for another Python must not be the one papermill gets."""
    user = tmp_path / "jupyter-user"
    spec = user / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": ["/opt/other/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Other Python", "language": "python"}))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(user))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")
    assert not runner.kernel_is_ours(runner.find_kernel())
    folder = runner.ensure_kernel()
    assert Path(folder).resolve() != spec.resolve()
    assert runner.kernel_is_ours(runner.find_kernel())
    # And the kernel papermill starts is this environment's Python.
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")  # ensure_kernel set it; undo for the run
    [result] = runner.run_notebooks(["01"], profile="smoke", output=tmp_path / "out", pdf=False,
                                     notebooks_dir=nbdir)
    assert result.ok, result.error
    assert Path(result.metrics["python"]).parent == Path(sys.executable).parent


# --- PDF --------------------------------------------------------------------------------------

@pytest.mark.slow
# CI sets REQUIRE_PDF=1 after installing the engine: there a missing engine fails instead of skipping.
@pytest.mark.skipif(bool(runner.pdf_engine_missing()) and not os.environ.get("REQUIRE_PDF"),
                    reason="xelatex/pandoc not installed (apt-get install texlive-xetex "
                           "texlive-fonts-recommended texlive-plain-generic pandoc)")
def test_pdf_has_the_figure(nbdir, tmp_path):
    out = tmp_path / "out"
    [ok] = runner.run_notebooks(["01"], profile="smoke", output=out, notebooks_dir=nbdir)
    pdf = out / "smoke" / "01_good" / "01_good.pdf"
    assert ok.ok and ok.pdf_note == "yes" and ok.pdf == pdf.name
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    assert b"/Subtype /Image" in data or b"/Subtype/Image" in data  # the figure is embedded
    assert len(data) > 10_000
    assert 'href="01_good/01_good.pdf"' in (out / "smoke" / "index.html").read_text()


def test_pdf_hint_when_engine_missing(nbdir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "pdf_engine_missing", lambda: ["xelatex"])
    monkeypatch.setattr(runner, "run_one",
                        lambda *a, **k: runner.Result("01_good", "ok", pdf_note="skipped"))
    runner.run_notebooks(["01"], output=tmp_path / "out", notebooks_dir=nbdir)
    printed = capsys.readouterr().out
    assert printed.count(runner.PDF_HINT) == 1


@pytest.mark.slow
def test_export_failure_exits_1(nbdir, tmp_path, monkeypatch, capsys):
    """A notebook that ran but whose PDF could not be made still fails the run (it is the hand-in)."""
    def broken(executed):
        raise RuntimeError("LaTeX said no")

    monkeypatch.setattr(runner, "pdf_engine_missing", lambda: [])
    monkeypatch.setattr(runner, "export_pdf", broken)
    code = runner.main(["01", "--notebooks-dir", str(nbdir), "--output", str(tmp_path),
                         "--profile", "smoke"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "export failed: RuntimeError: LaTeX said no" in printed
    assert (tmp_path / "smoke" / "01_good" / "01_good.html").exists()


# --- jupytext pairing -------------------------------------------------------------------------

def test_sync_pairs_and_strips(tmp_path):
    pytest.importorskip("jupytext")
    path = notebook(tmp_path, "01_x", "print(1)")
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells[-1].execution_count = 1
    nbformat.write(nb, path)
    export.sync_notebooks(tmp_path)
    script = (tmp_path / "01_x.py").read_text()
    assert "# %% tags=[\"parameters\"]" in script and "print(1)" in script
    cells = nbformat.read(path, as_version=4).cells
    assert cells[-1].outputs == [] and cells[-1].execution_count is None


# --- progress, index page, screenshot ---------------------------------------------------------

def test_progress_on_a_terminal_redraws_one_line():
    """On a TTY: one status line redrawn with \r (cell, section, the notebook's last printed line),
    nothing printed per cell, and the line cleared at the end."""
    from helpers.progress import Progress

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Study\n## Training"),
                                         nbformat.v4.new_code_cell("fit()"), nbformat.v4.new_code_cell("x")])
    stream = io.StringIO()
    with Progress("[1/1] 01_x", nb, lambda i: i + 1, stream=stream, tty=True) as p:
        p.on_cell_start(cell=nb.cells[1], cell_index=1)
        p.write("epoch 1/3\nepoch 2/3 loss 0.91\n")
        p.draw()
        p.on_cell_executed(cell=nb.cells[1], cell_index=1)
    text = stream.getvalue()
    assert "\n" not in text and text.startswith("\r[1/1] 01_x: 0:00  cell 2/3 (Training)")
    assert "| epoch 2/3 loss 0.91" in text
    assert text.endswith("\r") and text.rsplit("\r", 2)[-2].strip() == ""  # cleared


def test_progress_plain_lines_only_for_slow_cells(monkeypatch):
    from helpers import progress

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("a"), nbformat.v4.new_code_cell("b")])
    stream = io.StringIO()
    monkeypatch.setenv("HELPERS_PROGRESS_SLOW", "0.2")
    p = progress.Progress("01_x", nb, lambda i: i + 1, stream=stream, tty=False)
    p.on_cell_start(cell=nb.cells[0], cell_index=0)
    p.on_cell_executed(cell=nb.cells[0], cell_index=0)  # fast: no line
    p.on_cell_start(cell=nb.cells[1], cell_index=1)
    p.cell_start -= 3  # as if it had run for 3 s
    p.on_cell_executed(cell=nb.cells[1], cell_index=1)
    assert stream.getvalue() == "01_x: cell 2/2 took 3 s, 0:00 elapsed\n"
    monkeypatch.setenv("HELPERS_PROGRESS_SLOW", "soon")
    with pytest.raises(ValueError, match="HELPERS_PROGRESS_SLOW must be a number of seconds, not 'soon'"):
        progress.Progress("01_x", nb, lambda i: i + 1, stream=stream, tty=False)


VERDICT = {"quantity": "test accuracy, residual - plain", "unit": "percentage points", "reported": 1.35,
           "measured": 2.1, "ci": [0.4, 3.8], "p_value": 0.01, "test": "paired t-test over seeds",
           "seeds": [1, 2, 3], "verdict": "same direction, significant", "scale": {"profile": "quick"}}


def fake_reports(profile_dir: Path) -> list:
    """Result folders as the runner leaves them: a finished study with every metrics key and its
    files, one from today's notebooks (no headline, verdict or title), a failure, and a notebook
    never run for this profile."""
    from PIL import Image

    def folder(stem, metrics=None, files=(), figure=None):
        f = profile_dir / stem
        (f / "figures").mkdir(parents=True)
        for name in files:
            (f / name).write_text("x")
        if figure:
            Image.new("RGB", (900, 500), (30, 90, 160)).save(f / figure)
        if metrics is not None:
            (f / "metrics.json").write_text(json.dumps(metrics))
        return str(f)

    full = {"title": "Plain vs residual CNN", "reference_report": "000", "profile": "quick",
            "dataset": "synthetic", "dataset_note": "CIFAR-10 was not found; synthetic shapes stand in",
            "seeds": [1, 2, 3], "headline": [{"name": "test acc residual", "value": 85.75, "report": 93.41,
                                              "unit": "%"}],
            "verdict": VERDICT, "key_figure": "figures/loss_curves.png", "figures": ["figures/loss_curves.png"]}
    names = ("{0}.html", "{0}.pdf", "{0}.ipynb", "{0}-code.html")
    runs = [
        runner.Result("01_full", "ok", 244.0, 9.0, folder("01_full", full, [n.format("01_full") for n in names],
                                                          "figures/loss_curves.png"),
                      "01_full.html", "01_full.pdf", "01_full-code.html", "yes", metrics=full,
                      finished="2026-11-23T12:00:00"),
        runner.Result("02_today", "ok", 100.0, 9.0,
                      folder("02_today", {"gain_points": -7.4, "figures": []}, [n.format("02_today") for n in names]),
                      "02_today.html", "02_today.pdf", "02_today-code.html", "yes",
                      metrics={"gain_points": -7.4}, finished="2026-11-23T12:05:00"),
        runner.Result("03_broken", "failed at cell 7", 12.0, 1.0,
                      folder("03_broken", None, ["03_broken.html", "03_broken.ipynb", "03_broken-code.html",
                                                 "kernel.log"]),
                      "03_broken.html", None, "03_broken-code.html", "no",
                      error="ValueError: boom\n    cell 7: x = 1", failed_source="x = 1\nraise ValueError('boom')",
                      finished="2026-11-23T12:06:00"),
        runner.Result("04_never", "skipped"),
    ]
    return runs


def test_index_links_resolve_and_cards_degrade_gracefully(tmp_path):
    from helpers.index import write_index

    index = write_index(tmp_path, fake_reports(tmp_path))
    page = Page(index.read_text())
    text = "".join(page.text)
    assert [c for c in page.classes if c.startswith("card")] == ["card ok", "card ok", "card failed", "card skipped"]
    assert page.links and all((tmp_path / link).is_file() for link in page.links), page.links
    assert not any(link.startswith(("http:", "https:", "/", "file:")) for link in page.links)
    assert "<script" not in index.read_text() and "<link" not in index.read_text()  # self-contained
    # The finished study: thumbnail of its key figure, headline beside the report's, verdict, files.
    assert {"01_full/thumbnail.png", "01_full/01_full.pdf", "01_full/01_full.html", "01_full/01_full.ipynb",
            "01_full/01_full-code.html"} <= set(page.links)
    from PIL import Image
    with Image.open(tmp_path / "01_full" / "thumbnail.png") as thumb:
        assert thumb.size[0] <= 560 and thumb.size[1] <= 360
    assert "85.75%" in text and "93.41%" in text and "4 min 04 s" in text
    assert "Verdict: same direction, significant" in text and "CIFAR-10 was not found; synthetic shapes stand in" in text
    # Today's notebooks: no headline/verdict keys, no figure: dashes, no crash.
    assert "Headline: —" in text and "Verdict: —" in text and "no figure" in text
    # The failure: its cell and error, the kernel log, no PDF link.
    assert "raise ValueError('boom')" in text and "ValueError: boom" in text
    assert "03_broken/kernel.log" in page.links and "03_broken/03_broken.pdf" not in page.links
    assert "not run for this profile" in text


def test_index_cards_use_the_reports_boxes_and_escaping(tmp_path):
    """A card's data note and verdict are the report's own boxes (helpers.page.box_html), the
    verdict in the report's colour for it; the card's text is escaped by page's esc."""
    from helpers import index, page

    full = fake_reports(tmp_path)[0]
    card = index.card(tmp_path, full)
    verdict = page.box_html(page.verdict_kind(VERDICT), "", "Verdict: <b>same direction, significant</b>")
    assert page.verdict_kind(VERDICT) == "good" and verdict in card
    assert page.box_html("note", "", "CIFAR-10 was not found; synthetic shapes stand in") in card
    assert index.esc is page.esc
    odd = runner.Result("05_odd", "ok", 1.0, metrics={"title": "A <b> & c", "verdict": {"verdict": "x < y"}})
    card = index.card(tmp_path, odd)
    assert "A &lt;b&gt; &amp; c" in card and "<b>x &lt; y</b>" in card and "A <b>" not in card
    assert page.box_html("neutral", "", "Verdict: <b>x &lt; y</b>") in card  # unknown wording: neutral


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# CI installs Debian's chromium and sets REQUIRE_CHROMIUM=1: there a missing browser fails the test.
@pytest.mark.skipif(not CHROMIUM and not os.environ.get("REQUIRE_CHROMIUM"),
                    reason="chromium not installed (apt-get install chromium)")
def test_index_renders_in_headless_chromium(tmp_path):
    """The index page, opened from the file system by a real browser, draws something: several
    colours (header, cards, thumbnail, verdict) rather than a blank page."""
    from PIL import Image

    from helpers.index import write_index
    from helpers.screenshots import screenshot_html

    index = write_index(tmp_path / "quick", fake_reports(tmp_path / "quick"))
    png = screenshot_html(index, tmp_path / "index.png", (1200, 900))
    with Image.open(png) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        assert rgb.size == (1200, 900)
    assert len(colours) > 20, "the page rendered blank"
    blue = sum(n for n, c in colours if c == (30, 90, 160))  # the key figure's colour, as a thumbnail
    assert blue > 10_000
