"""Adding a study is one new module and one notebook (README, "Adding a study"): a sixth study defined
in a module outside the package, registered through HELPERS_STUDIES, shows up in the runner's --list,
gets a protocol card and a run plan, and its notebook runs to a report."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import parallel, runner, studies
from helpers.profiles import settings
from helpers.protocol import protocol_card

MODULE = '''
"""A sixth study: SimpleCNN with and without dropout's partner, weight decay (a test's example)."""
from helpers.studies.base import COMMON_STATED, CROP_FLIP, Headline, Study

STUDY = Study(
    name="sixth_study", notebook="06_sixth_study", title="Does weight decay change a small CNN?",
    report="999", dataset="cifar10",
    full=dict(train=dict(model="simple_cnn", epochs=20, batch_size=128, lr=0.01, schedule="step", step_size=10,
                         augment=CROP_FLIP, val_fraction=0.1, seed=7)),
    quick=dict(n_train=2_000, n_test=500, train=dict(width=0.25, epochs=4, step_size=2)),
    smoke=dict(step_size=1),
    variants=lambda extra: {"plain": dict(name="sixth-plain", weight_decay=0.0),
                            "decay": dict(name="sixth-decay", weight_decay=5e-4)},
    headline=Headline("plain", "decay", "no weight decay", "weight decay 5e-4", (70.0, 71.0)),
    stated={**COMMON_STATED, "dataset": "CIFAR-10", "epochs": "20", "weight decay": "0 / 5e-4"},
)
'''

NOTEBOOK = [
    ("code", "from helpers import page, study\nfrom helpers.protocol import protocol_card", []),
    ("code", 'profile = "quick"\ndataset = None\nseeds = 1\nseed = None\ndevice = "auto"\n'
             'output_dir = "../reports/interactive/06_sixth_study"', ["parameters"]),
    ("code", 'S, data, head, figs = study.begin("sixth_study", output_dir, profile=profile, dataset=dataset,\n'
             '                                  seeds=seeds, seed=seed, device=device)', []),
    ("markdown", "## The protocol", []),
    ("code", 'figs.table(protocol_card(S, data), "protocol", "This run\'s settings against report 999\'s.")', []),
    ("code", "runs = study.train(S, data)\npreds = study.predict(runs, data, S)\n"
             "result = study.accuracy_verdict(S, preds, data, figs)", []),
    ("code", "page.write_metrics(output_dir, study.finish(head, S, preds, result, runs), figs)", ["remove-cell"]),
]


@pytest.fixture
def sixth(tmp_path, monkeypatch):
    """The module on the path and in HELPERS_STUDIES (for child processes), registered here too."""
    (tmp_path / "sixth_study.py").write_text(MODULE)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    for kind, source, tags in NOTEBOOK:
        make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        nb.cells.append(make(source, metadata={"tags": tags}))
    nbformat.write(nb, notebooks / "06_sixth_study.ipynb")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv(studies.ENV, "sixth_study")
    study = studies.register(importlib.import_module("sixth_study").STUDY)
    yield notebooks
    studies.STUDIES.pop(study.name)


def test_a_sixth_study_shows_up_in_the_list_the_card_and_the_plan(sixth):
    proc = subprocess.run([sys.executable, "-m", "helpers.runner", "--list", "--notebooks-dir", str(sixth)],
                          capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("06_sixth_study (study sixth_study, report 999): profile=")
    card = protocol_card(settings("sixth_study", "full"))
    assert card.loc["weight decay", "report"] == "0 / 5e-4" and card.loc["epochs", "mark"] == "same"
    assert card.loc["weight decay", "this run"] == "plain: 0; decay: 0.0005"
    jobs = parallel.plan(["sixth_study"], "smoke", None, {"seeds": 2})
    assert [j.label for j in jobs] == ["sixth-plain seed 7", "sixth-plain seed 8", "sixth-decay seed 7",
                                       "sixth-decay seed 8"]
    assert runner.check_values([sixth / "06_sixth_study.ipynb"], "smoke", None, {"epochs": 1}) == {}


def test_a_study_name_or_notebook_is_taken_once(sixth):
    with pytest.raises(ValueError, match="already belongs to study 'sixth_study'"):
        studies.register(studies.Study(**{**vars(studies.get("sixth_study")), "name": "seventh"}))
    with pytest.raises(ValueError, match="unknown study 'eighth'; valid studies: stress_test, .*sixth_study"):
        studies.get("eighth")


@pytest.mark.slow
def test_the_sixth_studys_notebook_runs_to_a_report(sixth, tmp_path):
    [result] = runner.run_notebooks(["06"], profile="smoke", output=tmp_path / "out", pdf=False,
                                     notebooks_dir=sixth, timeout=600)
    assert result.ok, f"{result.status}: {result.error}"
    metrics = json.loads((Path(result.folder) / "metrics.json").read_text())
    assert metrics["reference_report"] == "999" and metrics["title"] == "Does weight decay change a small CNN?"
    assert metrics["verdict"]["names"] == ["no weight decay", "weight decay 5e-4"]
    assert set(metrics["test_acc"]) == {"no weight decay", "weight decay 5e-4"}
