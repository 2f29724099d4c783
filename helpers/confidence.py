"""How confident a model is when it is right and when it is wrong (notebook 02's CutMix study).

- :func:`wrong_by_confidence`, :func:`confidence_summary` -- wrong answers above confidence thresholds
- :func:`calibration` -- reliability table and expected calibration error (ECE)
- :func:`risk_coverage`, :func:`accuracy_at_threshold` -- selective prediction: answer only when sure

Inputs are :class:`helpers.evaluate.Predictions` (with labels).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .evaluate import Predictions

__all__ = ["THRESHOLDS", "accuracy_at_threshold", "calibration", "confidence_summary", "risk_coverage",
           "wrong_by_confidence"]

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


def calibration(preds: Predictions, bins: int = 15) -> tuple[pd.DataFrame, float]:
    """Reliability table and expected calibration error (02).

    Confidences are cut into ``bins`` equal-width bins over (0, 1]; each row gives the bin's
    ``lower``/``upper`` edge, ``count``, mean ``confidence`` and ``accuracy``. ECE is the
    count-weighted mean of |accuracy - confidence| over the bins (Guo et al., 2017), in [0, 1].
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, preds.conf, side="left") - 1, 0, bins - 1)
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
