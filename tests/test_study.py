"""helpers.study: a study's runs for every seed, their predictions and the headline against the report."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from helpers import studies, study
from helpers.profiles import settings


@pytest.mark.parametrize("name", list(studies.STUDIES))
def test_every_study_has_a_headline_over_its_own_variants(name):
    h = studies.get(name).headline
    assert {h.a, h.b} <= set(settings(name, "smoke").runs()), name
    assert h.report_numbers(), name  # the summary box always has a number of the report's


def test_report_numbers_are_the_reports():
    assert studies.get("stress_test").headline.report_numbers() == {"plain": 92.06, "residual": 93.41}
    assert studies.get("resnet_budget").headline.report_numbers() == {"single view": 94.65}
    assert studies.get("bn_ablation").headline.reported == (78.15, 81.62)


@pytest.fixture(scope="module")
def two_seeds():
    """The bn_ablation smoke study with two seeds and one epoch: 2 variants x 2 seeds of tiny runs."""
    S = settings("bn_ablation", "smoke", seeds=2, epochs=1, device="cpu")
    data = S.load_data()
    runs = study.train(S, data, progress=False)
    return S, data, runs, study.predict(runs, data, S)


def test_train_and_predict_cover_every_variant_and_seed(two_seeds):
    S, data, runs, preds = two_seeds
    assert S.seeds == (42, 43)
    assert {v: [r.config.seed for r in rs] for v, rs in runs.items()} == {"baseline": [42, 43], "batchnorm": [42, 43]}
    assert all(len(p.pred) == len(data.test_labels) for plist in preds.values() for p in plist)


def test_evidence_over_two_seeds_uses_the_seed_level_test(two_seeds):
    S, data, runs, preds = two_seeds
    ev = study.evidence(S, preds, data)
    assert ev.seeds == (42, 43) and ev.test.startswith("paired t-test")
    acc = {v: [100 * p.correct.mean() for p in preds[v]] for v in ("baseline", "batchnorm")}
    assert ev.measured == pytest.approx(np.mean(np.subtract(acc["batchnorm"], acc["baseline"])))
    assert ev.reported == pytest.approx(3.47) and ev.scale["profile"] == "smoke"
    table = study.accuracy_table(S, preds)
    assert list(table.index) == ["baseline", "batchnorm"]
    assert {"seed 42", "seed 43", "mean over seeds", "95% interval over seeds"} <= set(table.columns)
    rows = S.study.headline.rows(study.accuracies(S, preds))
    assert rows[0]["name"] == "test accuracy, baseline (mean of 2 seeds)" and rows[0]["report"] == 78.15


def fake_runs(curves_a, curves_b, lr):
    def run(acc):
        return SimpleNamespace(history=pd.DataFrame({"epoch": range(1, len(acc) + 1), "val_acc": acc, "lr": lr}))
    return {"baseline": [run(a) for a in curves_a], "batchnorm": [run(b) for b in curves_b]}


def test_smoothness_one_seed_epoch_by_epoch():
    S = settings("bn_ablation", "smoke")
    lr = [0.1, 0.1, 0.1, 0.1, 0.01]  # epoch 5 starts after a x0.1 drop: its jump is left out
    runs = fake_runs([[0.1, 0.3, 0.2, 0.4, 0.9]], [[0.1, 0.2, 0.25, 0.3, 0.9]], lr)
    table, m = study.smoothness(S, runs)
    assert m["a"] == pytest.approx(np.mean([20, 10, 20])) and m["b"] == pytest.approx(np.mean([10, 5, 5]))
    assert m["diff"] == pytest.approx(-10.0) and "3 epochs" in m["test"]
    assert table.shape[0] == 1


def test_smoothness_with_no_change_left_says_so():
    S = settings("bn_ablation", "smoke")
    table, m = study.smoothness(S, fake_runs([[0.1, 0.2]], [[0.1, 0.3]], [0.1, 0.01]))
    assert m is None and "not measurable" in table["test"].iloc[0]


def test_lr_drops_are_step_drops_only():
    h = pd.DataFrame({"epoch": [1, 2, 3, 4, 5], "lr": [0.1, 0.09, 0.01, 0.01, 0.001]})
    assert study.lr_drops(h) == [3, 5]  # a cosine-like decrease (0.1 -> 0.09) is not a drop


def test_class_changes_largest_gain_first():
    table = study.class_changes({"a": np.array([0.5, 0.9]), "b": np.array([0.8, 0.7])}, ["cat", "dog"], "a", "b")
    assert list(table.index) == ["cat", "dog"] and table["change (points)"].tolist() == pytest.approx([30, -20])


def test_predict_on_the_validation_split_uses_the_held_out_images(two_seeds):
    from helpers.data import split_indices

    S, data, runs, _ = two_seeds
    val = study.predict(runs, data, S, split="val")
    held = split_indices(len(data.train_labels), S.config.val_fraction, S.config.split_seed)[1]
    assert np.array_equal(val["baseline"][0].labels, data.train_labels[held].numpy())
    h = runs["baseline"][0].history
    assert float(val["baseline"][0].correct.mean()) == pytest.approx(float(h["val_acc"].iloc[-1]), abs=1e-6)
    with pytest.raises(ValueError, match="'test' or 'val'"):
        study.predict(runs, data, S, split="train")


def test_smoothness_keeps_the_end_of_a_one_cycle_schedule():
    """01: One-Cycle's LR more than halves per epoch near its end; those epochs are no step drops."""
    S = settings("stress_test", "smoke")
    lr = [0.004, 0.01, 0.007, 0.003, 0.0008]
    pair = fake_runs([[0.1, 0.3, 0.2, 0.4, 0.5]], [[0.1, 0.2, 0.25, 0.3, 0.32]], lr)
    runs = {"plain": pair["baseline"], "residual": pair["batchnorm"]}
    assert study.lr_drops(runs["plain"][0].history) == [4, 5]
    table, m = study.smoothness(S, runs, from_epoch=3)
    assert m["a"] == pytest.approx(np.mean([10, 20, 10])) and m["b"] == pytest.approx(np.mean([5, 5, 2]))
    assert "3 epochs" in m["test"]



# --- the authors' logged curves -------------------------------------------------------------------

def test_log_gaps_by_hand():
    log = pd.DataFrame({"epoch": [1, 5], "val_acc": [0.40, 0.70], "train_loss": [2.0, 1.0]})
    seed_a = pd.DataFrame({"epoch": range(1, 6), "val_acc": [0.35, 0.5, 0.6, 0.65, 0.72],
                           "train_loss": [2.1, 1.8, 1.5, 1.2, 0.9]})
    seed_b = seed_a.assign(val_acc=[0.30, 0.5, 0.6, 0.65, 0.69])
    gaps = study.log_gaps({"plain": [seed_a, seed_b]}, {"plain": log})
    row = gaps.loc[("plain", "val_acc")]
    assert row["largest gap"] == pytest.approx(-5.0) and row["at epoch"] == 1 and row["final gap"] == pytest.approx(2.0)
    assert row["seed spread"] == pytest.approx(5.0) and row["logged epochs"] == 2  # max - min over seeds, in points
    assert gaps.loc[("plain", "train_loss"), "final gap"] == pytest.approx(-0.1)
    one = study.log_gaps({"plain": [seed_a]}, {"plain": log})
    assert np.isnan(one.loc[("plain", "val_acc"), "seed spread"])


def test_the_logs_are_drawn_at_the_full_profile_only():
    S = settings("bn_ablation", "smoke")
    assert study.against_logs(S, {})[:2] == (None, None)
    assert "full profile only" in study.against_logs(S, {})[2]
    assert study.against_logs(settings("cutmix_study", "full"), {}) == (None, None, "")  # no public code
    full = settings("bn_ablation", "full")
    logs = full.study.logs()
    assert list(logs["baseline"]["epoch"]) == [1, 5, 10, 15, 20, 25, 30]
    assert logs["batchnorm"]["val_acc"].iloc[-1] == pytest.approx(0.8160)  # the code's log, as a fraction
    fake = {v: [log.assign(val_acc=log["val_acc"] + 0.01)] for v, log in logs.items()}
    drawn, gaps, line = study.against_logs(full, fake)
    assert drawn is not None and gaps.loc[("baseline", "val_acc"), "final gap"] == pytest.approx(1.0)
    assert line.startswith("The largest gap from the authors' log is ") and "one seed" in line
