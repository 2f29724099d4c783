"""helpers.studies.stress_test: notebook 01's Grad-CAM-energy-on-the-object measurement and its tables."""

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.cam import compute_cams, energy_in_mask, spread
from helpers.data import make_synthetic
from helpers.evaluate import Predictions, case_table, compare_cases, predict
from helpers.evidence import paired_values
from helpers.models import FlexibleCNN, Net
from helpers.studies.stress_test import (GROUPS, attention_on_object, cam_notes, case_columns, change_counts,
                                         error_counts, paired_rows, sample_groups, score_maps, summarize_attention)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_train=0, n_test=24, seed=5)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return Net(FlexibleCNN(num_classes=10, residual=False, width=0.125).eval(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def preds(net, data):
    return predict(net, data.test_images, data.test_labels)


# --- sample_groups ---------------------------------------------------------------------------------


def test_sample_groups_splits_by_correctness():
    correct = np.array([True, False, False, True, False])
    g = sample_groups(correct, max_per_group=None)
    assert list(g) == list(GROUPS)
    assert g["failure"].tolist() == [1, 2, 4]
    assert g["correct"].tolist() == [0, 3]
    assert g["failure"].dtype == np.int64


def test_sample_groups_caps_each_group_reproducibly():
    correct = np.arange(100) % 3 == 0  # 34 correct, 66 failures
    a = sample_groups(correct, max_per_group=10, seed=1)
    b = sample_groups(correct, max_per_group=10, seed=1)
    assert len(a["failure"]) == len(a["correct"]) == 10
    assert all(np.array_equal(a[k], b[k]) for k in GROUPS)
    assert np.all(np.diff(a["failure"]) > 0), "sorted, no repeats"
    assert not correct[a["failure"]].any() and correct[a["correct"]].all()
    c = sample_groups(correct, max_per_group=10, seed=2)
    assert not np.array_equal(a["failure"], c["failure"])


def test_sample_groups_small_and_empty_groups():
    g = sample_groups(np.ones(4, bool), max_per_group=500)
    assert len(g["failure"]) == 0 and g["correct"].tolist() == [0, 1, 2, 3]
    assert all(len(v) == 0 for v in sample_groups(np.zeros(0, bool)).values())
    with pytest.raises(ValueError):
        sample_groups(np.ones(3, bool), max_per_group=-1)


# --- attention_on_object ---------------------------------------------------------------------------


def test_attention_matches_cam_energy_of_the_predicted_class(net, data, preds):
    df = attention_on_object(net, data.test_images, data.test_masks, preds, max_per_group=None)
    assert list(df.columns) == ["index", "group", "energy", "object_area"]
    assert len(df) == len(preds)
    assert df["group"].tolist() == sorted(df["group"], key=GROUPS.index), "failures first"
    for _, row in df.iterrows():
        assert (row["group"] == "correct") == bool(preds.correct[row["index"]])
    idx = df["index"].to_numpy().copy()
    expected = energy_in_mask(compute_cams(net, data.test_images[idx], targets=preds.pred[idx]),
                              data.test_masks[idx])
    np.testing.assert_allclose(df["energy"], expected, atol=1e-6)
    area = data.test_masks[idx].float().mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(df["object_area"], area, atol=1e-6)
    scored = df["energy"].dropna()
    assert ((scored >= 0) & (scored <= 1)).all()


def test_attention_respects_the_cap(net, data, preds):
    df = attention_on_object(net, data.test_images, data.test_masks, preds, max_per_group=3, seed=0)
    counts = df["group"].value_counts()
    for g in GROUPS:
        assert counts.get(g, 0) == min(3, int((preds.correct == (g == "correct")).sum()))


def test_attention_rejects_mismatched_masks(net, data, preds):
    with pytest.raises(ValueError):
        attention_on_object(net, data.test_images, data.test_masks[:5], preds)


# --- summarize_attention ---------------------------------------------------------------------------


def test_summarize_attention_statistics_and_nans():
    df = pd.DataFrame({
        "model": ["a"] * 4 + ["b"] * 2,
        "group": ["failure", "failure", "correct", "correct", "failure", "correct"],
        "energy": [0.2, 0.4, 0.9, np.nan, 0.5, 0.7],
        "object_area": [0.1, 0.3, 0.2, 0.2, 0.4, 0.4],
    })
    s = summarize_attention(df, by=("model", "group"))
    assert list(s.index) == [("a", "failure"), ("a", "correct"), ("b", "failure"), ("b", "correct")]
    row = s.loc[("a", "failure")]
    assert row["images"] == 2 and row["scored"] == 2
    assert row["mean"] == pytest.approx(0.3)
    assert row["sem"] == pytest.approx(np.std([0.2, 0.4], ddof=1) / np.sqrt(2))
    assert row["object_area"] == pytest.approx(0.2)
    assert row["vs_area"] == pytest.approx(0.3 / 0.2)
    ac = s.loc[("a", "correct")]
    assert ac["images"] == 2 and ac["scored"] == 1 and ac["mean"] == pytest.approx(0.9)
    assert np.isnan(ac["sem"]), "one scored image has no standard error"
    one = summarize_attention(df[df["model"] == "a"])
    assert list(one.index) == ["failure", "correct"] and one.index.name == "group"


def test_summarize_attention_of_nothing():
    empty = pd.DataFrame({"group": [], "energy": [], "object_area": []})
    s = summarize_attention(empty)
    assert len(s) == 0 and "mean" in s.columns


def test_attention_figure_draws_with_and_without_data():
    import matplotlib.pyplot as plt

    from helpers.studies.stress_test import attention_figure

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"model": np.repeat(["plain", "residual"], 20), "group": np.tile(["failure", "correct"], 20),
                       "energy": rng.uniform(size=40), "object_area": 0.25})
    df.loc[3, "energy"] = np.nan
    fig = attention_figure(df)
    assert len(fig.axes) == 2
    plt.close(fig)
    plt.close(attention_figure(df.assign(energy=np.nan)))


# --- score_maps, cam_notes ---------------------------------------------------------------------------


def test_score_maps_without_faithfulness_is_spread_and_mask_share(net, data, preds):
    images, masks, targets = data.test_images[:6], data.test_masks[:6], preds.pred[:6]
    cams, table = score_maps(net, images, targets, masks=masks, faithful=False)
    np.testing.assert_allclose(cams, compute_cams(net, images, targets=targets))
    assert list(table.columns) == ["target", "in_mask", "entropy", "above_half"]
    assert table["target"].tolist() == targets.tolist()
    np.testing.assert_allclose(table["in_mask"], energy_in_mask(cams, masks))
    pd.testing.assert_frame_equal(table[["entropy", "above_half"]], spread(cams))


def test_score_maps_with_faithfulness_and_its_notes(net, data, preds):
    images, masks, targets = data.test_images[:2], data.test_masks[:2], preds.pred[:2]
    cams, table = score_maps(net, images, targets, masks=masks)
    assert {"confidence", "road", "road_random", "keep", "beats_random", "in_mask", "entropy"} <= set(table.columns)
    np.testing.assert_allclose(table["confidence"], preds.conf[:2], atol=1e-5)
    notes = cam_notes(table, data.classes)
    assert len(notes) == 2 and notes[0].startswith(f"pred {data.classes[targets[0]]} ")
    assert "ROAD" in notes[0] and "random" in notes[0] and "on object" in notes[0]


def test_cam_notes_hand_example():
    table = pd.DataFrame({"target": [1, 0], "confidence": [0.987, 0.5], "road": [0.123, -0.01],
                          "road_random": [0.01, 0.02], "in_mask": [0.456, np.nan]})
    assert cam_notes(table, ["cat", "dog"]) == ["pred dog 99%\nROAD +12.3 (random +1.0)\non object 46%",
                                                 "pred cat 50%\nROAD -1.0 (random +2.0)"]
    assert cam_notes(table.drop(columns="in_mask"), ["cat", "dog"])[0] == "pred dog 99%\nROAD +12.3 (random +1.0)"


# --- paired_rows, error_counts, change_counts ----------------------------------------------------------


def test_paired_rows_is_paired_values_per_label():
    a, b = np.array([0.9, 0.8, 0.7, np.nan, 0.6]), np.array([0.8, 0.6, 0.7, 0.5, 0.3])
    table = paired_rows({"entropy": (a, b), "nothing": ([np.nan], [1.0])}, ("plain", "residual"))
    r = paired_values(a, b)
    row = table.loc["entropy"]
    assert row["plain"] == pytest.approx(0.75) and row["residual"] == pytest.approx(0.6)
    assert row["difference"] == pytest.approx(-0.15) and row["pairs"] == 4 == r.n
    assert row["95% interval"] == f"[{r.ci[0]:+.2f}, {r.ci[1]:+.2f}]" and row["p"] == f"p = {r.p_value:#.2g}"
    empty = table.loc["nothing"]
    assert empty["pairs"] == 0 and empty["95% interval"] == "—" and np.isnan(empty["difference"])
    scaled = paired_rows({("entropy", "all"): (a, b)}, ("plain", "residual"), scale=100)
    assert scaled.loc[("entropy", "all"), "difference"] == pytest.approx(-15.0)
    assert scaled.index.nlevels == 2


def fake_preds(pred, conf, labels):
    return Predictions(probs=np.zeros((len(pred), 3), np.float32), pred=np.array(pred),
                       conf=np.array(conf, np.float32), labels=np.array(labels))


def test_error_counts_hand_example():
    labels = [0, 0, 0, 0, 0, 0]
    a = fake_preds([1, 1, 1, 0, 0, 2], [0.95, 0.5, 0.99, 0.9, 0.9, 0.3], labels)   # wrong: 0, 1, 2, 5
    b = fake_preds([0, 2, 1, 1, 0, 2], [0.9, 0.95, 0.6, 0.97, 0.9, 0.92], labels)  # wrong: 1, 2, 3, 5
    table = error_counts(a, b, ("plain", "residual"))
    wrong = table.loc["wrong"]
    assert (wrong["plain"], wrong["residual"], wrong["difference"]) == (4, 4, 0)
    assert (wrong["only plain"], wrong["only residual"]) == (1, 1) and wrong["p"] == "p = 1.0"
    sure = table.loc["wrong with confidence >= 90%"]  # a: 0, 2; b: 1, 3, 5
    assert (sure["plain"], sure["residual"], sure["difference"]) == (2, 3, 1)
    assert (sure["only plain"], sure["only residual"]) == (2, 3)


def test_change_counts_in_the_order_of_changes():
    table = change_counts(["still wrong, more confident", "rescued", "rescued", "still wrong, now another class"])
    assert list(table.index) == ["rescued", "still wrong, now another class", "still wrong, more confident"]
    assert table["images"].tolist() == [2, 1, 1] and table["share (%)"].tolist() == [50.0, 25.0, 25.0]
    assert len(change_counts([])) == 0


def test_case_columns_one_column_per_case():
    labels = [0, 1]
    a = fake_preds([1, 2], [0.91, 0.8], labels)
    b = fake_preds([0, 0], [0.6, 0.7], labels)
    cases = pd.DataFrame({"index": [0, 1], "true": [0, 1], "pred": [1, 2], "confidence": [0.91, 0.8],
                          "true_name": ["a", "b"], "pred_name": ["b", "c"]})
    table = case_table(cases, np.array([[1, 1, 0], [2, 2, 2]]), ["a", "b", "c"], on_object=[0.25, np.nan])
    out = case_columns(table, compare_cases([0, 1], a, b, ["a", "b", "c"]), "residual")
    assert list(out.columns) == ["#0", "#1"]
    assert out.loc["confidence"].tolist() == ["91%", "80%"] and out.loc["Grad-CAM share on object"].tolist() == ["25%", "—"]
    assert out.loc["residual: prediction"].tolist() == ["a (60%)", "a (70%)"]
    assert out.loc["change"].tolist() == ["rescued", "still wrong, now another class"]
    assert out.loc["neighbours of predicted class (of 3)"].tolist() == [2, 3]


def test_the_canonical_cases_are_studied_on_torchvisions_test_set_only():
    from types import SimpleNamespace

    from helpers.profiles import settings
    from helpers.studies.stress_test import study_cases

    n = 10_000
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    probs = np.full((n, 10), 0.05, np.float32)
    wrong = (labels + 1) % 10
    probs[np.arange(n), wrong] = 0.55
    probs[6070, :] = 0.0
    probs[6070, labels[6070]] = 1.0  # the plain model gets 6070 right in this run
    p = Predictions(probs=probs, pred=probs.argmax(1), conf=probs.max(1), labels=labels)
    S = settings("stress_test", "full")
    data = SimpleNamespace(classes=[f"c{i}" for i in range(10)], test_labels=np.zeros(n))
    S.choices["last"] = SimpleNamespace(source="cifar10")
    cases, note = study_cases(S, data, p)
    assert list(cases["picked"]) == ["this run's ranking"] * 3 + ["report 000's code"] * 3
    assert list(cases["index"][3:]) == [6070, 4528, 9227] and "gets 2 of the three wrong" in note
    S.choices["last"] = SimpleNamespace(source="synthetic")
    cases, note = study_cases(S, data, p)
    assert len(cases) == 3 and "cannot be looked up here" in note
