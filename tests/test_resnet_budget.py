"""helpers.studies.resnet_budget: notebook 03's tables, checked against hand-worked numbers."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers.studies import resnet_budget as B
from helpers.evaluate import Predictions
from helpers.evidence import accuracy_interval
from helpers.models import build_model, summary
from helpers.profiles import settings


def preds(pred, labels):
    """Predictions with one-hot probabilities: only ``pred`` and ``labels`` matter here."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    probs = np.eye(max(pred.max(), labels.max()) + 1, dtype=np.float32)[pred]
    return Predictions(probs=probs, pred=pred, conf=probs.max(axis=1), labels=labels)


def test_schedule_readings_puts_the_log_on_the_codes_second_phase():
    text, code = (settings("resnet_budget", "full", reading=r).config for r in ("text", "code"))
    table = B.schedule_readings(text, code)
    t, c = table["text: cosine from 0.1"], table["code: cosine from 0.01"]
    # by hand: after epoch 1 of 100, a cosine from 0.1 holds 0.1 * (1 + cos(pi / 100)) / 2
    assert t[1] == round(0.05 * (1 + math.cos(math.pi / 100)), 6) == 0.099975
    assert t[100] == 0.0 and c[100] == 0.0
    assert c[80] == 0.000955 and t[80] == 0.009549
    # the code's logged LRs (authors-code/002_phase2_epochs.csv) are its second phase's cosine from 0.01
    assert (table["report 002's log"] == c).all()
    assert not (table["report 002's log"] == t).loc[lambda s: s.index < 100].any()


def test_schedule_readings_refuses_another_schedule():
    text, code = (settings("resnet_budget", "full", reading=r).config for r in ("text", "code"))
    with pytest.raises(ValueError, match="cosine over 100 epochs"):
        B.schedule_readings(text.replace(epochs=8), code)
    with pytest.raises(ValueError, match="cosine over 100 epochs"):
        B.schedule_readings(text, code.replace(schedule="step", step_size=10, gamma=0.1))


def test_the_code_reading_trains_two_phases_without_cutmix():
    [config] = settings("resnet_budget", "full").runs()["budget"]
    first, second = config.phases
    assert (first.lr, first.schedule, first.milestones, first.epochs) == (0.1, "multistep", (50, 75), 100)
    assert (second.lr, second.schedule, second.epochs) == (0.01, "cosine", 100) and second.mix is None
    assert first.mix is None and first.augment == {"crop_padding": 4, "flip_h": 0.5}
    assert second.augment["erase_p"] == 0.5 and second.augment["erase_scale"] == (0.02, 0.2)
    assert second.normalize != second.test_normalize == first.normalize == "cifar10"
    [seed_43] = settings("resnet_budget", "full", seed=43).runs()["budget"]
    assert [p.seed for p in seed_43.phases] == [43, 43]  # every phase of another seed changes
    [text] = settings("resnet_budget", "full", reading="text").runs()["budget"]
    assert text.start_from is None and text.mix["kind"] == "cutmix" and text.lr == 0.1


def history(n):
    return pd.DataFrame({"epoch": range(1, n + 1), "lr": np.linspace(0.1, 0.01, n), "lr_end": np.linspace(0.09, 0.0, n),
                         "train_loss": np.linspace(2.0, 0.5, n), "test_acc": np.linspace(0.2, 0.9, n),
                         "seconds": np.full(n, 30.0)})


def test_epoch_log_prints_the_lr_after_the_scheduler_step():
    h = history(4)
    log = B.epoch_log(h)
    assert list(log.index) == [1, 2, 3, 4]
    assert log["LR after the epoch"].tolist() == h["lr_end"].round(6).tolist()  # not the LR it started with
    assert log.loc[4, "test accuracy (%)"] == 90.0 and log.loc[1, "train loss"] == 2.0


def test_epoch_log_shows_head_and_tail_of_a_long_run():
    log = B.epoch_log(history(100), head=5, tail=10)
    assert list(log.index) == [1, 2, 3, 4, 5, *range(91, 101)]


def test_epoch_log_names_missing_columns():
    with pytest.raises(ValueError, match="lr_end"):
        B.epoch_log(history(3).drop(columns="lr_end"))


def test_views_against_the_original_by_hand():
    labels = [0, 0, 0, 0, 0]
    view_preds = {"original": preds([0, 0, 1, 1, 0], labels), "vflip": preds([0, 1, 0, 1, 1], labels)}
    table, detail = B.views_against(view_preds)
    row = table.loc["vflip"]
    # original right on 0, 1, 4; vflip on 0, 2: only vflip 1 image (2), only original 2 (1 and 4)
    assert row["view (%)"] == 40.0 and row["original (%)"] == 60.0
    assert row["diff. (points)"] == pytest.approx(-20.0)
    assert row["view only"] == 1 and row["original only"] == 2
    assert detail["vflip"]["p_value"] == pytest.approx(stats.binomtest(1, 3, 0.5).pvalue)  # exact McNemar: 1.0
    assert row["p"] == "p = 1.0"
    assert list(table.index) == ["vflip"]


def test_views_against_names_a_missing_reference():
    with pytest.raises(ValueError, match="original"):
        B.views_against({"vflip": preds([0], [0])})


def test_pad_crop_check_is_pixel_identical_and_counts_changed_predictions():
    images = np.random.default_rng(0).integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    view_preds = {"original": preds([0, 1, 2, 0, 1, 2], [0] * 6), "pad_crop": preds([0, 1, 2, 0, 1, 0], [0] * 6)}
    check = B.pad_crop_check(images, view_preds)
    assert check == {"pixels equal to the original": True, "test images": 6, "predictions that differ": 1}


def test_top_confusions_by_hand():
    cm = np.array([[5, 3, 0], [1, 8, 0], [4, 0, 2]])
    table = B.top_confusions(cm, ["a", "b", "c"], k=3)
    assert table[["true class", "predicted as", "images"]].values.tolist() == [["c", "a", 4], ["a", "b", 3],
                                                                              ["b", "a", 1]]
    assert table["% of the true class"].tolist() == pytest.approx([100 * 4 / 6, 100 * 3 / 8, 100 * 1 / 9])


def test_top_confusions_leaves_out_empty_cells():
    assert len(B.top_confusions(np.diag([3, 4]), ["a", "b"])) == 0


def test_layer_table_numbers_the_layers_as_report_002():
    layers, _ = summary(build_model("budget_resnet", 10))
    table = B.layer_table(layers)
    # report 002's table: Conv2d-1 864, BatchNorm2d-2 64, Conv2d-3 9,216, ..., BasicBlock-7 0, Conv2d-8, ..., Linear-85
    assert list(table.index[:8]) == ["Conv2d-1", "BatchNorm2d-2", "Conv2d-3", "BatchNorm2d-4", "Conv2d-5",
                                     "BatchNorm2d-6", "BasicBlock-7", "Conv2d-8"]
    assert table["parameters"].iloc[:3].tolist() == [864, 64, 9216]
    assert table.index[-1] == "Linear-85" and table["parameters"].iloc[-1] == 2570
    assert table["parameters"].sum() == 4_754_218
    assert table.loc["Conv2d-1", "output shape"] == "[-1, 32, 32, 32]"


def test_training_table_one_row_per_seed():
    S = settings("resnet_budget", "smoke", seeds=2)
    h1, h2 = history(4), history(4).assign(test_acc=[0.3, 0.8, 0.6, 0.7])
    runs = [SimpleNamespace(history=h, info={"environment": {"device": "cpu"}}, previous=None) for h in (h1, h2)]
    table = B.training_table(S, runs)
    assert list(table.index) == [f"seed {s}" for s in S.seeds]
    second = table.loc[f"seed {S.seeds[1]}"]
    assert second["last epoch (%)"] == pytest.approx(70.0) and second["highest logged (%)"] == pytest.approx(80.0)
    assert second["at epoch"] == 2 and second["training minutes"] == pytest.approx(2.0)


def test_summary_rows_with_the_exact_interval():
    labels = [0] * 10
    single = [preds([0] * 9 + [1], labels), preds([0] * 8 + [1, 1], labels)]
    tta = [preds([0] * 10, labels), preds([0] * 9 + [1], labels)]
    S = settings("resnet_budget", "smoke", seeds=2)
    rows = B.summary_rows(S, single, tta)
    assert [r["name"] for r in rows][:2] == ["test accuracy, single view (mean of 2 seeds)",
                                             "test accuracy, 5-view TTA (mean of 2 seeds)"]
    assert rows[0]["value"] == 85.0 and rows[0]["report"] == 94.65 and rows[1]["report"] is None
    low, high = stats.binomtest(9, 10).proportion_ci(0.95, method="exact")  # seed 1: 9 of 10
    assert rows[2]["value"] == f"[{100 * low:.2f}, {100 * high:.2f}]"
    assert rows[2]["name"] == f"single view, exact 95% interval (seed {S.seeds[0]})"
    ci = stats.t.interval(0.95, 1, loc=85.0, scale=stats.sem([90.0, 80.0]))
    assert rows[3]["value"] == f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def test_summary_rows_one_seed_has_no_interval_over_seeds():
    S = settings("resnet_budget", "smoke")
    rows = B.summary_rows(S, [preds([0, 1], [0, 0])], [preds([0, 0], [0, 0])])
    assert len(rows) == 3 and rows[0]["name"] == "test accuracy, single view"
    assert rows[2]["value"] == "[{:.2f}, {:.2f}]".format(*accuracy_interval([True, False]))


# --- the prediction file (03's predictions.csv) --------------------------------------------------------------

_PROBS = np.array([[0.05, 0.05, 0.9], [0.8, 0.1, 0.1], [0.15, 0.7, 0.15]], np.float32)
PREDS = Predictions(probs=_PROBS, pred=_PROBS.argmax(1), conf=_PROBS.max(1), labels=np.zeros(3, np.int64))


def test_write_and_check_predictions(tmp_path):
    path = tmp_path / "predictions.csv"
    B.write_predictions(path, ["a", "b", "c"], PREDS)
    assert path.read_text().splitlines() == ["ID,Labels", "a,2", "b,0", "c,1"]  # the code's DL.csv header
    assert B.check_predictions(path, ["a", "b", "c"], 3)["Labels"].tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="3 rows for 2 images"):
        B.check_predictions(path, ["a", "b"], 3)
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 1\]"):
        B.check_predictions(path, ["a", "b", "c"], 2)
    path.write_text("id,label\na,1\n")
    with pytest.raises(ValueError, match="predictions.csv: columns"):
        B.check_predictions(path, ["a"], 3)
    with pytest.raises(ValueError, match="2 IDs for 3 predictions"):
        B.write_predictions(path, ["a", "b"], PREDS)
