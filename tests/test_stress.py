"""helpers.stress: notebook 01's Grad-CAM-energy-on-the-object measurement."""

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.cam import compute_cams, energy_in_mask
from helpers.data import make_synthetic
from helpers.evaluate import predict
from helpers.models import FlexibleCNN
from helpers.stress import GROUPS, attention_on_object, sample_groups, summarize_attention

NORM = dict(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_train=0, n_test=24, seed=5)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FlexibleCNN(num_classes=10, residual=False, width=0.125).eval()


@pytest.fixture(scope="module")
def preds(model, data):
    return predict(model, data.test_images, data.test_labels, **NORM)


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


def test_attention_matches_cam_energy_of_the_predicted_class(model, data, preds):
    df = attention_on_object(model, data.test_images, data.test_masks, preds, **NORM, max_per_group=None)
    assert list(df.columns) == ["index", "group", "energy", "object_area"]
    assert len(df) == len(preds)
    assert df["group"].tolist() == sorted(df["group"], key=GROUPS.index), "failures first"
    for _, row in df.iterrows():
        assert (row["group"] == "correct") == bool(preds.correct[row["index"]])
    idx = df["index"].to_numpy().copy()
    expected = energy_in_mask(compute_cams(model, data.test_images[idx], **NORM, targets=preds.pred[idx]),
                              data.test_masks[idx])
    np.testing.assert_allclose(df["energy"], expected, atol=1e-6)
    area = data.test_masks[idx].float().mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(df["object_area"], area, atol=1e-6)
    scored = df["energy"].dropna()
    assert ((scored >= 0) & (scored <= 1)).all()


def test_attention_respects_the_cap(model, data, preds):
    df = attention_on_object(model, data.test_images, data.test_masks, preds, **NORM, max_per_group=3, seed=0)
    counts = df["group"].value_counts()
    for g in GROUPS:
        assert counts.get(g, 0) == min(3, int((preds.correct == (g == "correct")).sum()))


def test_attention_rejects_mismatched_masks(model, data, preds):
    with pytest.raises(ValueError):
        attention_on_object(model, data.test_images, data.test_masks[:5], preds, **NORM)


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

    from helpers.stress import attention_figure

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"model": np.repeat(["plain", "residual"], 20), "group": np.tile(["failure", "correct"], 20),
                       "energy": rng.uniform(size=40), "object_area": 0.25})
    df.loc[3, "energy"] = np.nan
    fig = attention_figure(df)
    assert len(fig.axes) == 2
    plt.close(fig)
    plt.close(attention_figure(df.assign(energy=np.nan)))
