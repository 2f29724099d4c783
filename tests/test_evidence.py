"""helpers.evidence: paired tests against hand-worked cases, interval coverage by simulation, verdicts, sentences."""

import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import evidence as E
from helpers.evidence import (VERDICTS, accuracy_interval, compare_runs, describe, epoch_variation, format_p,
                              over_seeds, paired_over_seeds, paired_proportions, paired_values, scale_text,
                              verdict)
from helpers.plots import seed_figure

QUICK = dict(profile="quick", dataset="synthetic", epochs=8, width=0.25)


def table(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Paired outcomes with the given 2x2 counts (a, b per image)."""
    a = np.repeat([1, 1, 0, 0], [both, only_a, only_b, neither]).astype(bool)
    b = np.repeat([1, 0, 1, 0], [both, only_a, only_b, neither]).astype(bool)
    return a, b


# --- paired_proportions ----------------------------------------------------------------------------

def test_mcnemar_on_a_hand_computed_table():
    # 12 discordant images, 10 of them favour B: under H0 each is a fair coin, so the two-sided exact
    # p is 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (C(12,0) + C(12,1) + C(12,2)) / 2^12
    a, b = table(both=80, only_a=2, only_b=10, neither=8)
    r = paired_proportions(a, b)
    assert (r.only_a, r.only_b, r.n) == (2, 10, 100)
    assert r.p_value == pytest.approx(2 * (1 + 12 + 66) / 4096, rel=1e-12)  # 0.0385742...
    assert (r.mean_a, r.mean_b, r.diff) == (0.82, 0.90, pytest.approx(0.08))
    assert "McNemar" in r.test
    # 6 discordant, all for B: 2 * (1/2)^6
    assert paired_proportions(*table(10, 0, 6, 4)).p_value == pytest.approx(2 / 64)
    # swapping the models mirrors everything
    s = paired_proportions(b, a)
    assert (s.only_a, s.only_b, s.p_value, s.diff) == (10, 2, r.p_value, pytest.approx(-0.08))


def test_mcnemar_symmetric_and_no_discordant_pairs():
    r = paired_proportions(*table(40, 5, 5, 10))
    assert r.p_value == 1.0 and r.diff == 0.0
    same = paired_proportions(*table(40, 0, 0, 10))
    assert same.p_value == 1.0 and same.ci == (0.0, 0.0)  # every resample has the same difference


def test_counts_for_confident_errors():
    # "wrong with >= 90% confidence: 315 -> 44" on 10,000 images, 30 of them wrong-and-confident for both
    a, b = table(both=30, only_a=285, only_b=14, neither=10_000 - 329)
    r = paired_proportions(a, b)
    c = r.counts()
    assert (c["a"], c["b"], c["diff"]) == (315, 44, -271)
    assert c["ci"][0] < -271 < c["ci"][1] and r.p_value < 0.001


def test_accuracy_interval_is_the_exact_binomial_one():
    correct = np.array([True] * 70 + [False] * 30)
    expected = stats.binomtest(70, 100).proportion_ci(0.95, method="exact")
    assert accuracy_interval(correct) == pytest.approx((100 * expected.low, 100 * expected.high))


def test_bootstrap_is_seeded():
    a, b = table(700, 60, 90, 150)
    r = paired_proportions(a, b, seed=3)
    assert paired_proportions(a, b, seed=3) == r
    assert paired_proportions(a, b, seed=4).ci != r.ci


def test_grouped_bootstrap_equals_resampling_indices(monkeypatch):
    """The multinomial shortcut for few distinct values and the chunked index resampling draw from
    the same distribution: their intervals agree to within Monte Carlo error (one 1/n step here)."""
    a, b = table(700, 60, 90, 150)
    fast = paired_proportions(a, b, n_boot=20_000)
    monkeypatch.setattr(E, "GROUPED_UP_TO", 0)
    slow = paired_proportions(a, b, n_boot=20_000)
    np.testing.assert_allclose(slow.ci, fast.ci, atol=2 / 1000)
    monkeypatch.setattr(E, "CHUNK", 3_001)  # 3 resamples per chunk: the same draws, in pieces
    assert paired_proportions(a, b, n_boot=20_000).ci == slow.ci


def test_bootstrap_interval_covers_the_true_difference_about_95_percent():
    """400 simulated test sets of 1,000 images, outcomes correlated within an image (both right 80%,
    only A 5%, only B 8%, both wrong 7%: true difference +0.03). 400 trials give coverage a binomial
    standard error of sqrt(0.95 * 0.05 / 400) = 0.011, so +-0.033 is 3 standard errors. Checked when
    written: resampling A and B independently (ignoring the pairing) covers 0.99 of these trials and
    a 90% interval 0.885, both outside the band."""
    rng = np.random.default_rng(2024)
    probs, true = [0.80, 0.05, 0.08, 0.07], 0.03
    hits = 0
    for trial in range(400):
        counts = rng.multinomial(1000, probs)
        r = paired_proportions(*table(*counts), n_boot=2000, seed=trial)
        hits += r.ci[0] <= true <= r.ci[1]
    assert abs(hits / 400 - 0.95) <= 0.033, hits / 400


def test_paired_values_interval_coverage():
    """Continuous pairs (correlated normals, true mean difference 0.3): 300 trials, binomial standard
    error sqrt(0.95 * 0.05 / 300) = 0.0126, so +-0.038 is 3 standard errors. These have distinct
    values, so this exercises the chunked index-resampling path."""
    rng = np.random.default_rng(7)
    hits = 0
    for trial in range(300):
        shared = rng.normal(size=200)
        a, b = shared + rng.normal(0, 0.5, 200), shared + 0.3 + rng.normal(0, 0.5, 200)
        r = paired_values(a, b, n_boot=1000, seed=trial)
        hits += r.ci[0] <= 0.3 <= r.ci[1]
    assert abs(hits / 300 - 0.95) <= 0.038, hits / 300


def test_bad_outcomes():
    with pytest.raises(ValueError, match="boolean"):
        paired_proportions([0, 1, 2], [0, 1, 1])
    with pytest.raises(ValueError, match="1-D"):
        paired_proportions([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="level"):
        paired_proportions([0, 1], [0, 1], level=95)


# --- paired_values ---------------------------------------------------------------------------------

def test_paired_values_known_case():
    a = np.array([0.9, 0.8, np.nan, 0.7, 0.95, 0.6, 0.85])
    b = np.array([0.7, 0.75, 0.5, 0.4, 0.9, np.nan, 0.6])
    r = paired_values(a, b)
    kept = ~(np.isnan(a) | np.isnan(b))
    assert (r.n, r.dropped) == (5, 2)
    assert r.diff == pytest.approx(np.mean(b[kept] - a[kept]))
    assert r.p_value == pytest.approx(stats.wilcoxon(b[kept] - a[kept]).pvalue)
    assert r.ci[0] <= r.diff <= r.ci[1] < 0  # every kept difference is negative
    assert paired_values([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]).p_value == 1.0  # all differences 0
    with pytest.raises(ValueError):
        paired_values([np.nan], [1.0])


# --- over seeds ------------------------------------------------------------------------------------

def test_over_seeds_t_interval_by_hand():
    # mean 2.5, sd sqrt(5/3) = 1.29099, sem 0.645497, t(0.975, 3 df) = 3.182446 (a t-table)
    s = over_seeds([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert s.n == 4 and s.mean == 2.5
    np.testing.assert_allclose(s.ci, (2.5 - half, 2.5 + half), rtol=1e-9)
    assert s.ci[0] == pytest.approx(0.4457, abs=1e-4)
    assert over_seeds([3.0, 3.0, 3.0]).ci == (3.0, 3.0)


def test_one_seed_has_no_interval():
    s = over_seeds([92.5])
    assert s.n == 1 and s.mean == 92.5 and all(math.isnan(c) for c in s.ci) and "1 seed" in s.note
    c = paired_over_seeds([92.5], [93.0])
    assert c.diffs == (0.5,) and math.isnan(c.p_value) and all(math.isnan(x) for x in c.ci)
    assert json.dumps(c.to_dict(), allow_nan=False)  # NaN -> null


def test_paired_over_seeds_matches_scipy():
    a = [91.2, 92.0, 91.5, 90.9, 91.8]
    b = [92.1, 92.4, 92.6, 91.0, 92.5]
    c = paired_over_seeds(a, b)
    d = np.subtract(b, a)
    assert c.diffs == pytest.approx(tuple(d)) and c.mean == pytest.approx(d.mean())
    assert c.p_value == pytest.approx(stats.ttest_rel(b, a).pvalue)
    assert c.p_value == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    np.testing.assert_allclose(c.ci, stats.t.interval(0.95, 4, loc=d.mean(), scale=stats.sem(d)))
    # the interval excludes 0 exactly when p < 0.05 (the same t distribution)
    assert (c.ci[0] > 0) == (c.p_value < 0.05)
    assert paired_over_seeds(a, a).p_value == 1.0


# --- verdict ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("reported, measured, p, expected", [
    (1.35, 0.8, 0.01, VERDICTS[0]),
    (1.35, 0.8, 0.30, VERDICTS[1]),
    (1.35, -0.8, 0.30, VERDICTS[2]),
    (1.35, -0.8, 0.01, VERDICTS[3]),
    (-2.7, -1.0, 0.001, VERDICTS[0]),  # a decrease reported, a decrease found
    (-2.7, 1.0, 0.001, VERDICTS[3]),
    (1.35, 0.0, 0.30, VERDICTS[2]),    # zero is never "same direction"
    (1.35, 0.0, 0.01, VERDICTS[2]),
    (1.35, 0.8, 0.05, VERDICTS[1]),    # p exactly at alpha is not significant
    (1.35, 0.8, math.nan, VERDICTS[1]),
])
def test_verdict_branches(reported, measured, p, expected):
    assert verdict(reported, measured, p) == expected


def test_verdict_needs_a_reported_direction():
    with pytest.raises(ValueError):
        verdict(0.0, 1.0, 0.01)
    assert verdict(1.0, 0.5, 0.04, alpha=0.01) == VERDICTS[1]


# --- compare_runs, describe, figure ----------------------------------------------------------------

def test_compare_runs_one_seed():
    a, b = table(850, 20, 40, 90)  # 87.0% -> 89.0%, McNemar on 20 vs 40
    ev = compare_runs({0: a}, {0: b}, reported=(92.06, 93.41), quantity="test accuracy, residual - plain",
                      names=("plain", "residual"), scale=QUICK)
    r = paired_proportions(a, b)
    assert ev.reported == 1.35 and ev.measured == pytest.approx(2.0)
    assert ev.ci == pytest.approx((100 * r.ci[0], 100 * r.ci[1])) and ev.p_value == r.p_value
    assert "McNemar over 1,000 test images, 1 seed" in ev.test and "test images only" in ev.note
    assert ev.per_seed["a"] == [pytest.approx(87.0)] and ev.scale["seeds"] == 1
    assert ev.verdict == verdict(1.35, 2.0, r.p_value)
    d = json.loads(json.dumps(ev.to_dict(), allow_nan=False))
    assert {"quantity", "unit", "reported", "measured", "ci", "p_value", "test", "seeds", "per_seed",
            "verdict", "scale"} <= set(d)
    assert d["mcnemar"][0]["only_b"] == 40


def test_compare_runs_several_seeds_uses_a_t_test():
    rng = np.random.default_rng(0)
    a = {s: rng.random(500) < 0.80 for s in (0, 1, 2)}
    b = {s: rng.random(500) < 0.84 for s in (0, 1, 2)}
    ev = compare_runs(a, b, reported=1.0, quantity="q")
    acc_a = [100 * a[s].mean() for s in a]
    acc_b = [100 * b[s].mean() for s in b]
    assert ev.test == "paired t-test over 3 seeds" and ev.seeds == (0, 1, 2) and ev.note == ""
    assert ev.measured == pytest.approx(np.mean(np.subtract(acc_b, acc_a)))
    assert ev.p_value == pytest.approx(stats.ttest_rel(acc_b, acc_a).pvalue)
    assert len(ev.mcnemar) == 3
    with pytest.raises(ValueError, match="same seeds"):
        compare_runs(a, {0: b[0]}, reported=1.0, quantity="q")
    with pytest.raises(ValueError, match="seed"):
        compare_runs(a[0], b[0], reported=1.0, quantity="q")


def test_format_p_and_scale():
    assert format_p(0.0385742) == "p = 0.039" and format_p(0.5) == "p = 0.50" and format_p(1.0) == "p = 1.0"
    assert format_p(0.0004) == "p < 0.001" and format_p(math.nan) == "p n/a"
    assert scale_text({**QUICK, "seeds": 1}) == "the quick profile on synthetic data, 8 epochs, width 0.25, 1 seed"
    assert scale_text({"dataset": "cifar10", "seeds": [0, 1, 2]}) == "on CIFAR-10, 3 seeds"


def test_describe_not_significant_states_the_scale():
    a, b = table(850, 30, 33, 87)
    ev = compare_runs({0: a}, {0: b}, reported=1.35, quantity="test accuracy, residual - plain", scale=QUICK)
    assert ev.verdict == VERDICTS[1]
    text = describe(ev)
    assert "+1.35" in text and "+0.30" in text  # the report's and this run's difference
    assert f"interval [{ev.ci[0]:+.2f}, {ev.ci[1]:+.2f}]" in text and f"p = {ev.p_value:#.2g}" in text
    assert "the quick profile on synthetic data, 8 epochs, width 0.25, 1 seed" in text
    assert "test images only" in text


def test_describe_reversed_and_agreeing():
    a, b = table(850, 60, 10, 80)
    rev = describe(compare_runs({0: a}, {0: b}, reported=1.35, quantity="q", scale=QUICK))
    assert "opposite direction, significant" in rev and "reversed" in rev and "-5.00" in rev
    assert "p < 0.001" in rev and "8 epochs" in rev
    ok = describe(compare_runs({0: b}, {0: a}, reported=1.35, quantity="q", scale=QUICK))
    assert "same direction, significant" in ok and "8 epochs" not in ok  # scale only when not confirmed


def test_seed_figure():
    rng = np.random.default_rng(1)
    a = {s: rng.random(300) < 0.7 for s in range(4)}
    b = {s: rng.random(300) < 0.75 for s in range(4)}
    for outcomes_a, outcomes_b, k in ((a, b, 4), ({0: a[0]}, {0: b[0]}, 1)):
        fig = seed_figure(compare_runs(outcomes_a, outcomes_b, reported=2.0, quantity="q", names=("x", "y")))
        left, right = fig.axes[:2]
        points = [c.get_offsets() for c in left.collections if len(c.get_offsets()) == k]
        assert len(points) >= 2  # each model's seeds drawn as points
        diffs = [c.get_offsets()[:, 1] for c in right.collections if len(c.get_offsets()) == k]
        ev = compare_runs(outcomes_a, outcomes_b, reported=2.0, quantity="q")
        assert any(np.allclose(d, ev.per_seed["diff"]) for d in diffs)
        matplotlib.pyplot.close(fig)


# --- epoch_variation -------------------------------------------------------------------------------

def test_epoch_variation():
    h = pd.DataFrame({"epoch": [1, 2, 3, 4, 5], "val_acc": [0.50, 0.60, 0.55, 0.70, 0.72]})
    v = epoch_variation(h)
    assert list(v.index) == [2, 3, 4, 5]
    np.testing.assert_allclose(v.to_numpy(), [10, 5, 15, 2])
    np.testing.assert_allclose(epoch_variation(h, skip=[4]).to_numpy(), [10, 5, 2])  # e.g. after an LR drop
    with pytest.raises(ValueError, match="valid"):
        epoch_variation(h, skip=[1])  # epoch 1 has no previous epoch
    with pytest.raises(ValueError, match="val_acc"):
        epoch_variation(h.drop(columns="val_acc"))
    smoother = pd.DataFrame({"epoch": [1, 2, 3, 4, 5], "val_acc": [0.50, 0.55, 0.58, 0.62, 0.66]})
    r = paired_values(epoch_variation(h), epoch_variation(smoother))
    assert r.diff == pytest.approx(np.mean([5 - 10, 3 - 5, 4 - 15, 4 - 2]))


def test_a_direction_without_a_number():
    """Report 002 claims test-time augmentation helps without giving a single-view number."""
    rng = np.random.default_rng(0)
    a = rng.random(2000) < 0.6
    b = a | (rng.random(2000) < 0.1)  # B is right wherever A is, and on some more images
    ev = E.compare_runs({42: a}, {42: b}, reported="+", quantity="test accuracy, TTA - single view",
                        names=("single view", "TTA"))
    assert math.isnan(ev.reported) and ev.direction == 1 and ev.verdict == "same direction, significant"
    assert ev.to_dict()["reported"] is None
    assert "the report: TTA ahead, without a number" in E.describe(ev)
    worse = E.compare_runs({42: b}, {42: a}, reported="+", quantity="q", names=("single view", "TTA"))
    assert worse.verdict == "opposite direction, significant"
    with pytest.raises(ValueError, match="'\\+' / '-'"):
        E.compare_runs({42: a}, {42: b}, reported="up", quantity="q")


def test_unpaired_means_known_case_and_welch():
    a = np.array([0, 0, 1, 1, 1, 0, 1, 0], float)
    b = np.array([1, 1, 1, 0, 1, 1], float)
    r = E.unpaired_means(a, b, n_boot=2000)
    assert r.diff == pytest.approx(b.mean() - a.mean()) and r.n == 14
    assert r.p_value == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue)
    assert r.ci[0] < r.diff < r.ci[1]
    assert E.unpaired_means(np.ones(5), np.ones(7)).p_value == 1.0
    with pytest.raises(ValueError, match="at least 2 finite"):
        E.unpaired_means([1.0], [1.0, 2.0])


def test_unpaired_means_interval_covers_the_true_difference():
    rng = np.random.default_rng(1)
    hits = 0
    for trial in range(200):
        a, b = rng.random(300) < 0.6, rng.random(200) < 0.7
        low, high = E.unpaired_means(a, b, n_boot=1000, seed=trial).ci
        hits += low <= 0.1 <= high
    assert 0.90 <= hits / 200 <= 0.99
