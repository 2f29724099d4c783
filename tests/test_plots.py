"""Figures: each plot function draws what it is given (saving them: tests/test_page.py)."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from helpers import plots
from helpers.studies import resnet_budget, worksheet_analysis

CLASSES = ["a", "b", "c"]


def history(n=4, offset=0.0):
    e = np.arange(1, n + 1)
    return pd.DataFrame(dict(epoch=e, train_loss=1 / e + offset, val_loss=1.2 / e, train_acc=1 - 1 / (e + 1),
                             val_acc=0.9 - 1 / (e + 1), lr=0.1, seconds=1.0 + offset))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_training_curves_draw_train_and_val_per_run_plus_overlay():
    fig = plots.training_curves({"a": history(), "b": history(offset=0.5)}, "loss", lr_steps=[2])
    assert len(fig.axes) == 3
    together = fig.axes[-1]
    assert len(together.get_lines()) == 4 + 1  # 2 runs x (train, val) + 1 LR-step marker
    np.testing.assert_allclose(together.get_lines()[2].get_ydata(), history(offset=0.5).train_loss)
    with pytest.raises(ValueError, match="'loss' or 'acc'"):
        plots.training_curves({"a": history()}, "f1")


def test_confusion_plots_and_bars():
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 6]])
    fig = plots.confusion_matrices({"x": cm, "y": cm.T}, CLASSES)
    assert len([a for a in fig.axes if a.get_title()]) == 2
    fig = plots.confusion_difference(cm - cm.T, CLASSES, "diff")
    assert "diff" in fig.axes[0].get_title()
    fig = plots.per_class_bars({"x": np.array([0.5, 0.6, 0.7]), "y": np.array([0.4, 0.9, 1.0])}, CLASSES)
    heights = sorted(round(p.get_height(), 2) for p in fig.axes[0].patches if p.get_height() > 0)
    assert heights == [0.4, 0.5, 0.6, 0.7, 0.9, 1.0]


def test_image_grids_annotate_each_image():
    images = np.random.default_rng(0).integers(0, 255, (5, 3, 32, 32), dtype=np.uint8)
    failures = pd.DataFrame(dict(index=[4, 1], true_name=["a", "b"], pred_name=["b", "c"], confidence=[0.97, 0.6]))
    fig = plots.failure_grid(images, failures, cols=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["#4\ntrue a\npred b 97%", "#1\ntrue b\npred c 60%"]
    fig = plots.one_per_class(images, np.array([2, 0, 2, 1, 0]), CLASSES)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["a", "b", "c"]


def test_cam_rows_layout():
    images = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    cams = {"A": np.zeros((2, 32, 32)), "B": np.ones((2, 32, 32))}
    overlays = {k: np.zeros((2, 32, 32, 3)) for k in cams}
    fig = plots.cam_rows(images, cams, overlays, ["r1", "r2"], {"A": ["p1", "p2"], "B": ["q1", "q2"]})
    assert len(fig.axes) == 2 * 6
    assert "q2" in fig.axes[6 + 4].get_title()


def test_epoch_times_and_distribution():
    fig = plots.epoch_times({"a": history(), "b": history(offset=1)})
    np.testing.assert_allclose(fig.axes[1].get_lines()[1].get_ydata(), [2, 4, 6, 8])
    counts = pd.DataFrame({"train": [3, 3, 3], "test": [1, 1, 1]}, index=CLASSES)
    assert len([p for p in plots.class_distribution(counts).axes[0].patches if p.get_height() > 0]) == 6


def test_confidence_figures_draw_their_inputs():
    from helpers.confidence import calibration, risk_coverage
    from helpers.evaluate import Predictions

    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]], np.float32)
    p = Predictions(probs=probs, pred=probs.argmax(1), conf=probs.max(1), labels=np.array([0, 0, 2, 1]))
    fig = plots.confidence_histograms({"a": p, "b": p})
    assert [ax.get_title() for ax in fig.axes] == ["Confidence of wrong predictions", "Confidence of right predictions"]
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "a (2)"  # two wrong predictions
    counts = pd.DataFrame({"a": [3, 1], "b": [2, 0]}, index=[0.5, 0.9])
    fig = plots.wrong_by_threshold(counts)
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["0", "1", "2", "3"]
    fig = plots.reliability_diagrams({"a": calibration(p, bins=5)})
    assert fig.axes[0].get_title().startswith("a: ECE ")
    fig = plots.risk_coverage_curves({"a": risk_coverage(p)}, mark=0.6)
    assert "conf >= 0.6" in fig.axes[0].texts[0].get_text()


def test_per_class_change_is_sorted_and_coloured_by_sign():
    fig = plots.per_class_change(np.array([0.1, -0.2, 0.0, 0.3]), ["a", "b", "c", "d"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["d", "a", "c", "b"]
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == pytest.approx([30, 10, 0, -20])
    assert ax.patches[0].get_facecolor() != ax.patches[3].get_facecolor()


def test_budget_and_tta_figures():
    fig = resnet_budget.parameter_breakdown(pd.Series({"stem": 100, "stage 1": 300}), budget=1000)
    assert "400 in all (40.0% of the 1,000 budget)" in fig.axes[0].get_title()
    fig = resnet_budget.tta_bars(pd.Series({"original": 0.9, "all five": 0.92}))
    assert [t.get_text() for t in fig.axes[0].texts] == ["90.00%", "92.00%"]
    fig = plots.learning_rates({"m": history()})
    assert len(fig.axes[0].lines) == 1
    fig = plots.migration_bars({"rescued": 5, "broken": 2})
    assert [t.get_text() for t in fig.axes[0].texts] == ["5", "2"]


def test_worksheet_weight_and_lr_figures():
    u = pd.DataFrame(dict(step=[1, 1, 2, 2], layer=["a", "b", "a", "b"], weight_std=[0.1, 0.2, 0.12, 0.21],
                          weight_max_abs=[0.5, 0.7, 0.6, 0.9]))
    fig = worksheet_analysis.weight_stats({"exp 1": u, "exp 2": u}, ["a", "b"], limit=1.0)
    top, bottom = fig.axes[0], fig.axes[2]  # row-major: std of exp 1, std of exp 2, |w| of exp 1, ...
    assert list(top.lines[1].get_ydata()) == [0.2, 0.21] and list(bottom.lines[1].get_ydata()) == [0.7, 0.9]
    assert list(bottom.lines[-1].get_ydata()) == [1.0, 1.0]  # the report's bound
    h = history().assign(lr_end=lambda d: d["lr"] / 2)
    assert list(plots.learning_rates({"m": h}, "lr_end").axes[0].lines[0].get_ydata()) == list(h["lr_end"])
