"""Conventions every notebook in notebooks/ keeps (one test per notebook, as notebooks land).

Fix most failures with ``python -m helpers.runner --sync`` (strips outputs, syncs the .py pair).
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest

from helpers import runner, studies

NOTEBOOKS = sorted(runner.NOTEBOOKS_DIR.glob("*.ipynb"))
REQUIRED = {"profile", "dataset", "seed", "device", "output_dir"}
# Anything that picks a non-inline backend drops the figures from executed notebooks and reports.
BACKEND = re.compile(r"matplotlib\.use\(|switch_backend\(|MPLBACKEND|%matplotlib\s+(?!inline)\w")

# Figures each study must produce even at the smoke profile (its story depends on them).
KEY_FIGURES = {
    "01_stress_test": {"figures/accuracy_curves.png", "figures/confusion_matrices.png", "figures/failures.png",
                       "figures/gradcam_canonical_failures.png", "figures/attention_on_object.png"},
    "02_cutmix_study": {"figures/loss_curves.png", "figures/gradcam_baseline_failures.png",
                        "figures/confidence_histograms.png", "figures/reliability_diagrams.png",
                        "figures/risk_coverage.png"},
    "03_resnet_budget": {"figures/parameter_budget.png", "figures/loss_curves.png", "figures/accuracy_curves.png",
                         "figures/learning_rate.png", "figures/tta_accuracy.png", "figures/confusion_matrix.png"},
    "04_worksheet_analysis": {"figures/flops_per_layer.png", "figures/gradient_flow.png",
                              "figures/weight_updates.png", "figures/weight_stats.png", "figures/learning_rate.png"},
    "05_bn_ablation": {"figures/loss_curves.png", "figures/accuracy_curves.png", "figures/confusion_matrices.png",
                       "figures/training_time.png"},
}

MAX_CELL_LINES = 15
each = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
# Code that must not reach the report PDF (it has no code cells; these would be code text).
CODE = ("import ", "display(", "figs.", "def ")
# What a widget leaves in a report that cannot run it (helpers.explorer shows a static panel there).
WIDGET_JUNK = ("VBox(", "HBox(", "children=", "application/vnd.jupyter.widget-view+json")
POPPLER_HINT = "pdftotext/pdfimages not installed (apt-get install poppler-utils): report PDF text not checked"


def read(path: Path):
    """Read a notebook as nbformat v4."""
    return nbformat.read(path, as_version=4)


@each
def test_parameters_cell(path):
    """Exactly one ``parameters`` cell, before all code but at most one (imports) cell."""
    code = [c for c in read(path).cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"want exactly one cell tagged 'parameters', found {len(tagged)}"
    assert tagged[0] <= 1, "the parameters cell should be the first or second code cell"
    missing = REQUIRED - set(papermill.inspect_notebook(str(path)))
    assert not missing, f"parameters cell does not define {sorted(missing)}"


def test_every_study_has_its_notebook_and_every_notebook_a_study():
    """The registry (helpers.studies) and notebooks/ agree: adding a study is one module and one notebook."""
    assert sorted(s.notebook for s in studies.STUDIES.values()) == [p.stem for p in NOTEBOOKS]
    assert set(KEY_FIGURES) == {p.stem for p in NOTEBOOKS}


@each
def test_kernelspec_is_python3(path):
    assert read(path).metadata.get("kernelspec", {}).get("name") == "python3"


@each
def test_committed_without_outputs(path):
    dirty = [i for i, c in enumerate(read(path).cells)
             if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"cells {dirty} have outputs/execution counts: run python -m helpers.runner --sync"


@each
def test_no_non_inline_matplotlib_backend(path):
    hits = [line for c in read(path).cells if c.cell_type == "code"
            for line in c.source.splitlines() if BACKEND.search(line)]
    assert not hits, f"sets a matplotlib backend (figures would vanish): {hits[0]}"


@each
def test_cells_stay_short_and_build_no_prose(path):
    """A cell reads in one glance in JupyterLab (issue 16: about 15 lines at most), and prose that
    depends on the numbers comes from tested package functions, not from f-strings with branches."""
    code = [c.source for c in read(path).cells if c.cell_type == "code"]
    long = {i: len(s.splitlines()) for i, s in enumerate(code) if len(s.splitlines()) > MAX_CELL_LINES}
    assert not long, f"code cells over {MAX_CELL_LINES} lines (cell index: lines): {long}"
    prose = [s.splitlines()[0] for s in code if re.search(r"Markdown\(f[\"']", s) and re.search(r"\bif\b", s)]
    assert not prose, f"a cell builds prose from numbers with branches: {prose}"


@each
def test_py_pair_in_sync(path):
    """If notebooks/<name>.py exists, its cells match the .ipynb's (type, source, tags)."""
    script = path.with_suffix(".py")
    if not script.exists():
        pytest.skip("no py:percent pair")
    jupytext = pytest.importorskip("jupytext")

    def cells(nb):
        return [(c.cell_type, c.source.strip(), c.metadata.get("tags", [])) for c in nb.cells]

    assert cells(jupytext.read(script)) == cells(read(path)), (
        f"{script.name} and {path.name} differ: run python -m helpers.runner --sync")


@pytest.mark.slow
@each
def test_smoke_run_writes_metrics_and_figures(path, tmp_path):
    """The notebook runs under papermill (via the runner) with profile smoke and leaves
    metrics.json with a figures list, each a non-empty PNG under figures/."""
    pdf = not runner.pdf_engine_missing() or bool(os.environ.get("REQUIRE_PDF"))
    [result] = runner.run_notebooks([path.stem], profile="smoke", output=tmp_path, pdf=pdf,
                                     notebooks_dir=path.parent,
                                     timeout=900)
    assert result.ok, f"{result.status}: {result.error}"
    folder = Path(result.folder)
    if pdf:  # the hand-in format: the report must convert
        assert (folder / result.pdf).read_bytes()[:4] == b"%PDF"
    # The notebook-with-code exports stay beside the report.
    assert (folder / f"{path.stem}-code.html").is_file() and (folder / f"{path.stem}.ipynb").is_file()
    assert (folder / "metrics.json").is_file(), "the notebook should write <output_dir>/metrics.json"
    metrics = json.loads((folder / "metrics.json").read_text())
    listed = metrics.get("figures")
    assert isinstance(listed, list), "metrics.json needs a 'figures' list"
    missing = KEY_FIGURES[path.stem] - set(listed)
    assert not missing, f"key figures not saved: {sorted(missing)}"
    written = {f"figures/{p.name}" for p in (folder / "figures").glob("*.png")}
    assert set(listed) == written, f"listed but not written: {set(listed) - written}; not listed: {written - set(listed)}"
    for name in listed:  # paths relative to output_dir, e.g. figures/loss_curves.png
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG"
    html = (folder / f"{path.stem}.html").read_text(encoding="utf-8")
    assert not [j for j in WIDGET_JUNK if j in html], "a widget's placeholder or repr in the HTML report"
    if pdf:
        check_report_pdf(folder / result.pdf, len(listed))


def check_report_pdf(pdf: Path, figures: int) -> None:
    """The report PDF holds no code and at least one image per saved figure. CI sets REQUIRE_PDF
    and installs poppler-utils: there a missing pdftotext fails instead of skipping."""
    if not (shutil.which("pdftotext") and shutil.which("pdfimages")):
        if os.environ.get("REQUIRE_PDF"):
            pytest.fail(POPPLER_HINT)
        pytest.skip(POPPLER_HINT)
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    found = [c for c in CODE + WIDGET_JUNK if c in text]
    assert not found, f"code or a widget's repr in the report PDF: {found}"
    images = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    shown = [line for line in images.splitlines()[2:] if line.split()[2] == "image"]  # not "smask" rows
    assert len(shown) >= figures, f"{figures} figures saved, {len(shown)} images in the report PDF"


@pytest.mark.slow
def test_cutmix_notebook_on_a_100_class_dataset(tmp_path):
    """Notebook 02's full profile is CIFAR-100: its tables and figures must cope with 100 classes.
    (CIFAR-100 itself cannot be downloaded here; tests/test_data.py reads a torchvision-format
    archive. This runs the notebook on a 100-class folder dataset of the same shape.)"""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for c in range(100):
            folder = tmp_path / "c100" / split / f"class{c:03d}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    [result] = runner.run_notebooks(["02_cutmix_study"], profile="smoke", dataset=f"folder:{tmp_path / 'c100'}",
                                     output=tmp_path / "out", pdf=False, timeout=900,
                                     notebooks_dir=NOTEBOOKS[0].parent)
    assert result.ok, f"{result.status}: {result.error}"
    metrics = json.loads((Path(result.folder) / "metrics.json").read_text())
    n_test = 100  # the smoke profile keeps 100 of the 200 test images (one per class)
    assert metrics["summary"]["baseline"]["wrong"] + round(n_test * metrics["test_acc"]["baseline"][0]) == n_test
    assert "figures/per_class_change.png" in metrics["figures"]
    # 001's confident-error counts come with their paired test; the all-wrong row is the accuracy's
    errors = metrics["confident_errors"]
    assert set(errors) == {"0", "0.5", "0.7", "0.9", "0.99"}
    wrong = {name: metrics["summary"][name]["wrong"] for name in ("baseline", "cutmix")}
    assert errors["0"]["only_b"] - errors["0"]["only_a"] == wrong["cutmix"] - wrong["baseline"]
    assert metrics["verdict"]["names"] == ["baseline", "CutMix + label smoothing"]


@pytest.mark.slow
def test_budget_notebook_writes_a_checked_prediction_file(tmp_path):
    """Notebook 03 predicts the images given as ``predict_images`` into predictions.csv, and compares
    one model without and with TTA (its verdict), each view against the original."""
    images = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "unlabelled.npy", images)
    [result] = runner.run_notebooks(["03_resnet_budget"], profile="smoke", output=tmp_path / "out", pdf=False,
                                     params={"predict_images": str(tmp_path / "unlabelled.npy")},
                                     timeout=900, notebooks_dir=NOTEBOOKS[0].parent)
    assert result.ok, f"{result.status}: {result.error}"
    lines = (Path(result.folder) / "predictions.csv").read_text().splitlines()
    assert lines[0] == "ID,Labels" and [line.split(",")[0] for line in lines[1:]] == [str(i) for i in range(7)]
    metrics = json.loads((Path(result.folder) / "metrics.json").read_text())
    assert metrics["within_budget"] and metrics["parameters_width_1"] == 4_754_218
    assert metrics["pad_crop_is_identity"] is True
    assert metrics["verdict"]["names"] == ["single view", "5-view TTA"] and metrics["verdict"]["seeds"] == [42]
    single = metrics["headline"][0]
    assert single["report"] == 94.65 and single["value"] == round(100 * metrics["test_acc"]["single view"][0], 2)
    assert metrics["verdict"]["per_seed"]["b"] == [100 * metrics["test_acc"]["5-view TTA"][0]]
    views = metrics["views_vs_original"]
    assert set(views) == {"hflip", "vflip", "pad_crop", "blur_hwc"}  # the code's views (its blur mixes the colours)
    assert views["pad_crop"]["only_a"] == views["pad_crop"]["only_b"] == 0  # the same pixels, the same answers


@pytest.mark.slow
def test_notebook_04_reversed_result_gets_the_reversed_verdict(tmp_path):
    """Report 003 has experiment 1 ahead; a run where experiment 2 is clearly ahead must get the
    reversed verdict. Four solid-colour classes that a tiny network learns in two epochs; experiment 1
    at an absurd learning rate (its weights become NaN: it answers one class, 25%), experiment 2 at
    a sane one with small batches (so two smoke epochs are 40 steps)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "white": (235, 235, 235)}
    for split, n in (("train", 80), ("test", 25)):
        for name, colour in colours.items():
            folder = tmp_path / "colours" / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                image = np.clip(np.array(colour) + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{i}.png")
    [result] = runner.run_notebooks(["04_worksheet_analysis"], profile="smoke", dataset=f"folder:{tmp_path / 'colours'}",
                                     params={"lr": 1e4, "lr_2": 0.05, "batch_size_2": 16}, output=tmp_path / "out",
                                     pdf=False, timeout=900, notebooks_dir=NOTEBOOKS[0].parent)
    assert result.ok, f"{result.status}: {result.error}"
    verdict = json.loads((Path(result.folder) / "metrics.json").read_text())["verdict"]
    assert verdict["reported"] < 0 < verdict["measured"] and verdict["ci"][0] > 0 and verdict["p_value"] < 0.05
    assert verdict["verdict"] == "opposite direction, significant"
