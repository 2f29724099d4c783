"""Tests for the headless runner (helpers.runner), on tiny notebooks written into tmp_path.

The notebooks import only json/sys/matplotlib (no torch) so each runs in a few seconds.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import runner
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
    notebook(folder, "01_good", SETUP, FIGURE)
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
    assert "01_good: profile=\"full\"" in proc.stdout


# --- running --------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_runs_good_and_reports_bad(nbdir, tmp_path):
    """One good and one failing notebook through the real command line, MPLBACKEND=Agg set."""
    out = tmp_path / "out"
    proc = run_cli("--notebooks-dir", str(nbdir), "--output", str(out), "--profile", "smoke",
                   "--dataset", "synthetic", "-p", "seed", "7", "--no-pdf",
                   env={"MPLBACKEND": "Agg"}, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr

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

    index = (out / "smoke" / "index.html").read_text()
    assert 'href="01_good/01_good.html"' in index
    assert "failed at cell 3<br><small>ValueError: boom on purpose" in index and ">ok<" in index
    assert "accuracy: 0.5" in index and "figures" not in index
    summary = proc.stdout.split("index:")[0].strip().splitlines()[-3:]
    assert summary[0].split() == ["notebook", "status", "seconds", "PDF"]
    assert summary[1].split()[:2] == ["01_good", "ok"] and summary[1].split()[-1] == "skipped"


@pytest.mark.slow
def test_api_rerun_replaces_stale_outputs_and_keeps_index(nbdir, tmp_path):
    out = tmp_path / "out"
    [first] = runner.run_notebooks(["good"], profile="smoke", output=out, pdf=False,
                                    notebooks_dir=nbdir)
    assert first.ok and first.metrics["width"] == 8 and "figures" not in first.metrics
    # Break 01_good after its parameters cell: the rerun must not show the old metrics.
    notebook(nbdir, "01_good", BOOM, FIGURE)
    [second] = runner.run_notebooks(["01"], profile="smoke", output=out, pdf=False,
                                     notebooks_dir=nbdir, params={"width": 3})
    assert second.status == "failed at cell 3" and second.metrics == {}
    assert not (out / "smoke" / "01_good" / "figures").exists()
    index = (out / "smoke" / "index.html").read_text()
    assert "02_bad</td><td class=\"\">skipped" in index  # never run for this profile


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
                        lambda *a: runner.Result("01_good", "ok", pdf_note="skipped"))
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
    runner.sync_notebooks(tmp_path)
    script = (tmp_path / "01_x.py").read_text()
    assert "# %% tags=[\"parameters\"]" in script and "print(1)" in script
    cells = nbformat.read(path, as_version=4).cells
    assert cells[-1].outputs == [] and cells[-1].execution_count is None
