"""How confident a model is when it is right and when it is wrong (notebook 02's CutMix study).

- :func:`wrong_by_confidence`, :func:`confidence_summary` -- wrong answers above confidence thresholds
- :func:`calibration` -- reliability table and expected calibration error (ECE)
- :func:`risk_coverage`, :func:`accuracy_at_threshold` -- selective prediction: answer only when sure
- :func:`confident_errors`, :func:`ece_difference`, :func:`less_confident` -- the same comparisons
  between two models on the same test images, each with its interval and test (helpers.evidence)

Inputs are :class:`helpers.evaluate.Predictions` (with labels).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from scipy import stats

from . import evidence as E
from .evaluate import Predictions

__all__ = ["THRESHOLDS", "accuracy_at_threshold", "calibration", "confidence_summary",
           "confident_errors", "ece_difference", "less_confident", "risk_coverage", "wrong_by_confidence"]

THRESHOLDS = (0.5, 0.7, 0.9, 0.99)  # report 001's confidence levels for "confidently wrong"


def wrong_by_confidence(preds: Predictions, thresholds: Sequence[float] = THRESHOLDS) -> pd.Series:
    """How many predictions are wrong with confidence >= each threshold (02)."""
    wrong = ~preds.correct
    return pd.Series({float(t): int((wrong & (preds.conf >= t)).sum()) for t in thresholds},
                     name="wrong predictions").rename_axis("confidence >=")


def confidence_summary(preds: Predictions, thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """Accuracy, number wrong, mean confidence of wrong and of right predictions, and the
    counts of :func:`wrong_by_confidence` under keys ``wrong >= t`` (02's metrics table)."""
    right = preds.correct
    mean = lambda mask: float(preds.conf[mask].mean()) if mask.any() else float("nan")  # noqa: E731
    out = dict(accuracy=float(right.mean()), wrong=int((~right).sum()),
               mean_conf_wrong=mean(~right), mean_conf_right=mean(right))
    out.update({f"wrong >= {t:g}": n for t, n in wrong_by_confidence(preds, thresholds).items()})
    return out


def _bin_of(conf: np.ndarray, bins: int) -> np.ndarray:
    """Each confidence's bin among ``bins`` equal-width bins over (0, 1] (a bin includes its upper edge)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)


def calibration(preds: Predictions, bins: int = 15) -> tuple[pd.DataFrame, float]:
    """Reliability table and expected calibration error (02).

    Confidences are cut into ``bins`` equal-width bins over (0, 1]; each row gives the bin's
    ``lower``/``upper`` edge, ``count``, mean ``confidence`` and ``accuracy``. ECE is the
    count-weighted mean of |accuracy - confidence| over the bins (Guo et al., 2017), in [0, 1].
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = _bin_of(preds.conf, bins)
    right = preds.correct.astype(float)
    rows = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        rows.append(dict(lower=edges[b], upper=edges[b + 1], count=n,
                         confidence=float(preds.conf[mask].mean()) if n else float("nan"),
                         accuracy=float(right[mask].mean()) if n else float("nan")))
    table = pd.DataFrame(rows)
    used = table[table["count"] > 0]
    ece = float((used["count"] * (used["accuracy"] - used["confidence"]).abs()).sum() / len(preds))
    return table, ece


def risk_coverage(preds: Predictions) -> pd.DataFrame:
    """Accuracy on the predictions kept when rejecting those below a confidence threshold (02).

    One row per distinct confidence, highest first: ``threshold`` (keep conf >= it),
    ``coverage`` (fraction kept), ``accuracy`` (on the kept ones) and ``risk`` (1 - accuracy).
    """
    order = np.argsort(-preds.conf, kind="stable")
    conf, right = preds.conf[order], preds.correct[order]
    kept = np.arange(1, len(conf) + 1)
    acc = np.cumsum(right) / kept
    last = np.r_[conf[1:] != conf[:-1], True]  # keep every sample of a tied confidence together
    return pd.DataFrame({"threshold": conf[last], "coverage": kept[last] / len(conf),
                         "accuracy": acc[last], "risk": 1 - acc[last]})


def accuracy_at_threshold(preds: Predictions, threshold: float) -> tuple[float, float]:
    """(coverage, accuracy) when only predictions with confidence >= ``threshold`` are kept (02)."""
    keep = preds.conf >= threshold
    return float(keep.mean()), float(preds.correct[keep].mean()) if keep.any() else float("nan")


# --- two models on the same test images, with uncertainty (02) ------------------------------------

def _label(t: float) -> str:
    return "all wrong answers" if t == 0 else f"wrong, conf. >= {t:g}"


def confident_errors(preds_a: list, preds_b: list, names: tuple[str, str] = ("A", "B"),
                     thresholds=(0.0, *THRESHOLDS), reported: dict | None = None,
                     seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Report 001's confident-error counts (315 -> 44 wrong with >= 90% confidence), each with its
    uncertainty (02). ``preds_a`` / ``preds_b``: one :class:`Predictions` per training seed, on the same
    test images. Per threshold t (0: every wrong answer), the test images a model gets wrong with
    confidence >= t. One seed: B - A in images with a paired bootstrap interval and the exact McNemar
    p (:func:`helpers.evidence.paired_proportions`); several: the per-seed counts, their mean
    difference, t-interval and paired t-test (:func:`helpers.evidence.paired_over_seeds`).

    ``reported``: threshold -> the report's (A, B) counts of 10,000 test images, shown in a last
    column where given (02: report 001's Table 2, ``cutmix_study.STUDY.reported``).
    Returns (a table with one row per threshold, a JSON-ready dict: threshold -> the comparison's
    ``to_dict()``)."""
    if len(preds_a) != len(preds_b) or not preds_a:
        raise ValueError(f"give one Predictions per seed on both sides, got {len(preds_a)} and {len(preds_b)}")
    rows, out = {}, {}
    for t in thresholds:
        wa, wb = ([~p.correct & (p.conf >= t) for p in side] for side in (preds_a, preds_b))
        if len(wa) == 1:
            r = E.paired_proportions(wa[0], wb[0], seed=seed)
            c = r.counts()
            a, b, diff, ci = c["a"], c["b"], c["diff"], E.format_count_interval(c["ci"])
            test = "exact McNemar"
        else:
            r = E.paired_over_seeds([int(w.sum()) for w in wa], [int(w.sum()) for w in wb])
            a, b, diff, ci = np.mean(r.values_a), np.mean(r.values_b), r.mean, E.format_interval(r.ci)
            test = r.test
        rows[_label(t)] = {names[0]: a, names[1]: b, "difference (images)": diff, "95% interval": ci,
                           "p": E.format_p(r.p_value), "test": test}
        if reported is not None:
            report = reported.get(float(t))
            rows[_label(t)]["report (of 10,000)"] = f"{report[0]:,} -> {report[1]:,}" if report else "—"
        out[f"{t:g}"] = r.to_dict()
    return pd.DataFrame(rows).T, out


def ece_difference(a: Predictions, b: Predictions, bins: int = 15, *, level: float = 0.95, n_boot: int = 2_000,
                   seed: int = 0) -> E.Paired:
    """B's expected calibration error minus A's on the same test images, in [−1, 1] (02).

    ``mean_a`` / ``mean_b``: each model's ECE as :func:`calibration` computes it; ``ci``: percentile
    interval of a seeded paired bootstrap (the same resampled images for both models, the ECE
    recomputed on each resample); ``p_value``: twice the smaller share of resampled differences on
    either side of 0 (at least 1 / n_boot). ECE is biased upwards on small samples, for both models."""
    E._check_level(level, n_boot)
    if not np.array_equal(a._labels(), b._labels()):
        raise ValueError("A and B must be predictions on the same labelled images")
    n = len(a)
    gap = {}
    for name, p in (("a", a), ("b", b)):  # per image: its bin's column holds accuracy - confidence
        m = np.zeros((n, bins))
        m[np.arange(n), _bin_of(p.conf, bins)] = p.correct - p.conf.astype(np.float64)
        gap[name] = m
    rng, diffs = np.random.default_rng(seed), []
    for start in range(0, n_boot, 200):
        w = rng.multinomial(n, np.full(n, 1 / n), size=min(200, n_boot - start)).astype(np.float64)
        diffs.append((np.abs(w @ gap["b"]).sum(1) - np.abs(w @ gap["a"]).sum(1)) / n)
    d = np.concatenate(diffs)
    ece_a, ece_b = (float(np.abs(gap[k].sum(0)).sum() / n) for k in ("a", "b"))
    p = min(1.0, max(2 * min((d <= 0).mean(), (d >= 0).mean()), 1 / n_boot))
    return E.Paired(n=n, mean_a=ece_a, mean_b=ece_b, diff=ece_b - ece_a, ci=E.percentile_interval(d, level),
                    level=level, p_value=float(p), test=f"paired bootstrap over {n:,} test images ({n_boot:,} resamples)")


def less_confident(a: Predictions, b: Predictions, level: float = 0.95) -> dict:
    """Of the test images both models get wrong, how many B answers with less confidence than A (its
    own predicted class's probability), the share with its exact (Clopper-Pearson) interval, and the
    two-sided binomial test of "as often less as more confident" (share 1/2) (02: report 001's 57.5%
    of 1,993). Exact ties count as "not less"."""
    both = ~a.correct & ~b.correct
    n, k = int(both.sum()), int((both & (b.conf < a.conf)).sum())
    if n == 0:
        return {"both wrong": 0, "B less confident": 0, "share": float("nan"), "ci": (float("nan"),) * 2,
                "p_value": float("nan")}
    test = stats.binomtest(k, n, 0.5)
    ci = test.proportion_ci(level, method="exact")
    return {"both wrong": n, "B less confident": k, "share": k / n, "ci": (float(ci.low), float(ci.high)),
            "p_value": float(test.pvalue)}
