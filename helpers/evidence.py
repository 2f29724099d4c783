"""Paired comparisons with their uncertainty, and a computed verdict against a report's headline (01-05).

- :func:`paired_proportions` -- two models' yes/no outcomes on the same test images (correct; wrong
  with confidence >= 0.9): difference, paired bootstrap interval, exact McNemar test
- :func:`paired_values` -- two models' numbers on the same images (a Grad-CAM map's spread) or two
  runs' at the same epochs: mean difference, paired bootstrap interval, Wilcoxon signed-rank test
- :func:`unpaired_means` -- one number per item of two *different* samples (validation against test
  images): difference of the means, bootstrap interval resampling each sample, Welch's t-test
- :func:`over_seeds`, :func:`paired_over_seeds` -- one number per training seed: mean and
  t-interval; per-seed differences and the paired t-test
- :func:`verdict` -- the report's difference against this run's, as one of :data:`VERDICTS`
- :func:`compare_runs` -> :class:`Evidence` -- a study's headline comparison, test picked by the
  number of seeds; :func:`describe` says it in one paragraph (``helpers.plots.seed_figure`` draws it)
- :func:`epoch_variation` -- epoch-to-epoch change of a history column (05's "smoother curves")

Differences are always **B - A**: the second model (or setting) minus the first, as in the reports
("plain -> residual"). Tests come from ``scipy.stats``; intervals are percentile intervals of a
seeded paired bootstrap over images, or t-intervals over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["VERDICTS", "Evidence", "Paired", "PairedProportions", "PairedValues", "SeedComparison", "SeedSummary",
           "accuracy_interval", "compare_runs", "describe", "epoch_variation", "format_count_interval", "format_diff",
           "format_interval", "format_p", "over_seeds", "paired_over_seeds", "paired_proportions", "paired_values",
           "percentile_interval", "scale_text", "unpaired_means", "verdict"]

VERDICTS = ("same direction, significant", "same direction, not significant at this scale",
            "no detectable difference", "opposite direction, significant")
ONE_SEED_NOTE = ("One training seed: the interval and p-value cover the sampling of test images only, "
                 "not the variation from one training seed to another.")
GROUPED_UP_TO = 64  # distinct values up to which the bootstrap draws group counts (see _boot_means)
CHUNK = 4_000_000   # index draws held at once otherwise (32 MB of int64)


def _plain(v):
    """JSON-ready copy: numpy scalars -> Python numbers, tuples/arrays -> lists, NaN -> None."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)
    return v


class _Record:
    def to_dict(self) -> dict:
        """Plain floats/ints/lists/str (NaN -> None), ready for ``metrics.json``."""
        return _plain({f.name: getattr(self, f.name) for f in fields(self)})


# --- paired outcomes on the same test images -------------------------------------------------------

@dataclass(frozen=True)
class Paired(_Record):
    """A paired comparison on the same items: ``diff = mean_b - mean_a`` with its interval and test."""
    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci: tuple[float, float]
    level: float
    p_value: float
    test: str


@dataclass(frozen=True)
class PairedProportions(Paired):
    """:func:`paired_proportions`' result; ``only_a`` / ``only_b``: the discordant images."""
    only_a: int = 0
    only_b: int = 0

    def counts(self) -> dict:
        """The comparison in images, for "wrong with >= 90%: 315 -> 44" (02): ``a``, ``b``, ``diff``
        (= only_b - only_a) and ``ci`` (the interval times n)."""
        return {"a": round(self.mean_a * self.n), "b": round(self.mean_b * self.n),
                "diff": self.only_b - self.only_a, "ci": (self.ci[0] * self.n, self.ci[1] * self.n)}


@dataclass(frozen=True)
class PairedValues(Paired):
    """:func:`paired_values`' result; ``dropped``: pairs left out because either value was NaN."""
    dropped: int = 0


def _check_level(level: float, n_boot: int = 1) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95, got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")


def _pair(x_a, x_b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x_a), np.asarray(x_b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"give two 1-D arrays over the same items, got shapes {a.shape} and {b.shape}")
    return a, b


def _boot_means(d: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples of ``d`` (n of n, with replacement), without a loop over resamples."""
    n = len(d)
    values, counts = np.unique(d, return_counts=True)
    if len(values) <= GROUPED_UP_TO:
        # Counting how many of the n resampled images fall on each distinct value is
        # Multinomial(n, counts / n): drawing those counts is the same bootstrap at O(n_boot * values)
        # instead of O(n_boot * n) (measured: 1.4 ms vs 1.2 s for 10,000 resamples of 10,000 images).
        return rng.multinomial(n, counts / n, size=n_boot) @ values / n
    # distinct values (paired_values): 0.2 s for 1,000 pairs, 2.1-2.7 s for 10,000 (loaded 2-core box)
    rows = max(1, CHUNK // n)
    return np.concatenate([d[rng.integers(0, n, size=(min(rows, n_boot - s), n))].mean(axis=1)
                           for s in range(0, n_boot, rows)])


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` share of bootstrap ``samples``: the percentile interval (every bootstrap
    here, and 02's ECE difference)."""
    low, high = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def _boot_ci(d: np.ndarray, level: float, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean of ``d`` from a seeded bootstrap."""
    return percentile_interval(_boot_means(d, n_boot, np.random.default_rng(seed)), level)


def paired_proportions(x_a, x_b, *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> PairedProportions:
    """Two models' yes/no outcomes on the same test images (01-05): accuracy (``correct_a``,
    ``correct_b``) or a confident error (``wrong & (conf >= 0.9)``, 02).

    ``diff = mean_b - mean_a`` (a share, not percent); ``ci``: percentile interval of a seeded
    bootstrap that resamples images, keeping each image's pair of outcomes together. ``p_value``:
    exact two-sided McNemar test, i.e. ``scipy.stats.binomtest(only_b, only_a + only_b, 0.5)`` on the
    discordant images (1.0 when there are none). :meth:`PairedProportions.counts` gives it in images.
    """
    _check_level(level, n_boot)
    a, b = _pair(x_a, x_b)
    if len(a) == 0 or not (np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all()):
        raise ValueError("outcomes must be non-empty and boolean (or 0/1), one per test image")
    a, b = a.astype(bool), b.astype(bool)
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    p = stats.binomtest(only_b, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    d = b.astype(np.int8) - a.astype(np.int8)
    return PairedProportions(n=len(a), mean_a=float(a.mean()), mean_b=float(b.mean()), diff=float(d.mean()),
                             ci=_boot_ci(d, level, n_boot, seed), level=level, p_value=float(p),
                             test=f"paired bootstrap + exact McNemar over {len(a):,} test images",
                             only_a=only_a, only_b=only_b)


def paired_values(v_a, v_b, *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> PairedValues:
    """Two models' numbers on the same items (01, 02: a Grad-CAM map's spread on the same images;
    05: :func:`epoch_variation` of two runs at the same epochs).

    ``diff``: mean of ``v_b - v_a``; ``ci``: seeded paired bootstrap (percentile); ``p_value``:
    Wilcoxon signed-rank test (``scipy.stats.wilcoxon``; 1.0 when every difference is 0). A pair
    with a NaN on either side is dropped and counted in ``dropped``.
    """
    _check_level(level, n_boot)
    a, b = _pair(v_a, v_b)
    a, b = a.astype(np.float64), b.astype(np.float64)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if not len(a) or not np.isfinite(a).all() or not np.isfinite(b).all():
        raise ValueError(f"need at least one pair without NaN and no infinite values ({len(a)} pairs kept)")
    d = b - a
    p = 1.0 if not d.any() else stats.wilcoxon(d).pvalue
    return PairedValues(n=len(d), mean_a=float(a.mean()), mean_b=float(b.mean()), diff=float(d.mean()),
                        ci=_boot_ci(d, level, n_boot, seed), level=level, p_value=float(p),
                        test=f"paired bootstrap + Wilcoxon signed-rank over {len(d):,} pairs",
                        dropped=int((~keep).sum()))


def unpaired_means(x_a, x_b, *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> Paired:
    """Two independent samples of numbers, e.g. one model's right/wrong outcomes on the test images
    (A) and on the validation images (B), or per-image paired differences on each split (02: how much
    more one model loses from validation to test than another).

    ``diff = mean(x_b) - mean(x_a)``; ``ci``: percentile interval of a seeded bootstrap that resamples
    each sample on its own (the samples share no items); ``p_value``: Welch's t-test
    (``scipy.stats.ttest_ind(equal_var=False)``; for two constant samples 1.0 if equal, else 0.0).
    ``n`` is ``len(x_a) + len(x_b)``."""
    _check_level(level, n_boot)
    a, b = (np.asarray(x, dtype=np.float64).ravel() for x in (x_a, x_b))
    if len(a) < 2 or len(b) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"need two samples of at least 2 finite values, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    boots = _boot_means(b, n_boot, rng) - _boot_means(a, n_boot, rng)
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # two constants: no spread to test against (scipy: 0 / 0)
        p = 1.0 if a[0] == b[0] else 0.0
    else:
        p = float(stats.ttest_ind(b, a, equal_var=False).pvalue)
    return Paired(n=len(a) + len(b), mean_a=float(a.mean()), mean_b=float(b.mean()), diff=float(b.mean() - a.mean()),
                  ci=percentile_interval(boots, level), level=level, p_value=p,
                  test=f"bootstrap of each sample + Welch's t-test, {len(b):,} and {len(a):,} items")


def accuracy_interval(correct, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of one test accuracy, in % (``scipy.stats.binomtest``) (01-05)."""
    correct = np.asarray(correct, dtype=bool)
    ci = stats.binomtest(int(correct.sum()), len(correct)).proportion_ci(level, method="exact")
    return 100 * ci.low, 100 * ci.high


# --- over training seeds ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SeedSummary(_Record):
    """:func:`over_seeds`' result: ``ci`` is (NaN, NaN) with one seed, and ``note`` says so."""
    n: int
    mean: float
    ci: tuple[float, float]
    level: float
    values: tuple[float, ...]
    note: str = ""


def over_seeds(values, level: float = 0.95) -> SeedSummary:
    """Mean over training seeds with its t-interval (``scipy.stats.t``, n - 1 degrees of freedom) (01-05)."""
    _check_level(level)
    v = np.asarray(values, dtype=np.float64).ravel()
    if not len(v) or not np.isfinite(v).all():
        raise ValueError(f"need one finite value per seed, got {v.tolist()}")
    mean = float(v.mean())
    if len(v) == 1:
        return SeedSummary(1, mean, (math.nan, math.nan), level, (mean,), "1 seed: no interval over seeds")
    sem = float(stats.sem(v))
    # scipy wants scale > 0; identical values across seeds have a zero-width interval
    ci = stats.t.interval(level, len(v) - 1, loc=mean, scale=sem) if sem > 0 else (mean, mean)
    return SeedSummary(len(v), mean, (float(ci[0]), float(ci[1])), level, tuple(map(float, v)))


@dataclass(frozen=True)
class SeedComparison(_Record):
    """:func:`paired_over_seeds`' result: ``diffs = values_b - values_a`` per seed."""
    n: int
    values_a: tuple[float, ...]
    values_b: tuple[float, ...]
    diffs: tuple[float, ...]
    mean: float
    ci: tuple[float, float]
    level: float
    p_value: float
    test: str
    note: str = ""


def paired_over_seeds(values_a, values_b, level: float = 0.95) -> SeedComparison:
    """Per-seed differences B - A, their mean and t-interval, and the paired t-test
    (``scipy.stats.ttest_rel``; NaN with fewer than 2 seeds, 1.0 when every difference is 0) (01-05).
    The interval excludes 0 exactly when p < 1 - level: both come from the same t distribution."""
    a, b = _pair(np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64))
    s = over_seeds(b - a, level)
    if s.n < 2:
        p = math.nan
    elif not np.any(b - a):
        p = 1.0  # scipy gives NaN (0 / 0) for identical runs
    else:
        p = float(stats.ttest_rel(b, a).pvalue)
    return SeedComparison(s.n, tuple(map(float, a)), tuple(map(float, b)), s.values, s.mean, s.ci, level, p,
                          f"paired t-test over {s.n} seeds", s.note)


# --- verdict and the headline comparison -----------------------------------------------------------

def verdict(reported: float, measured: float, p_value: float, alpha: float = 0.05) -> str:
    """One of :data:`VERDICTS` for this run's difference against the report's (01-05).

    Significant: ``p_value < alpha`` (a NaN p is not). Same direction: ``measured`` has the sign of
    ``reported``; a measured difference of exactly 0 is never "same direction" and always "no
    detectable difference".
    """
    if not reported or math.isnan(reported) or math.isnan(measured):
        raise ValueError(f"need a non-zero reported difference and a measured one, got {reported}, {measured}")
    same = measured != 0 and math.copysign(1, measured) == math.copysign(1, reported)
    significant = p_value < alpha  # False for NaN
    if same:
        return VERDICTS[0] if significant else VERDICTS[1]
    return VERDICTS[3] if significant and measured != 0 else VERDICTS[2]


@dataclass(frozen=True)
class Evidence(_Record):
    """A study's headline comparison (:func:`compare_runs`); ``to_dict()`` goes into ``metrics.json``."""
    quantity: str
    unit: str
    names: tuple[str, str]
    reported: float
    reported_values: tuple[float, float] | None
    measured: float
    ci: tuple[float, float]
    level: float
    p_value: float
    test: str
    seeds: tuple
    per_seed: dict  # "a", "b": each model's value per seed; "diff": b - a per seed
    mcnemar: tuple  # per seed: PairedProportions.to_dict() on the test images
    verdict: str
    alpha: float
    scale: dict
    note: str = ""
    direction: int = 1  # the sign of the report's claim: +1 = B ahead of A (the only thing "+"/"-" give)


def _by_seed(outcomes, which: str) -> dict:
    if not isinstance(outcomes, Mapping) or not outcomes:
        raise ValueError(f"{which}: give {{seed: per-image outcomes}} with at least one seed, "
                         f"got {type(outcomes).__name__}")
    return dict(outcomes)


def _reported(reported) -> tuple[float, tuple | None]:
    """The report's difference B - A from a number or a pair (A, B); NaN for a sign alone ("+" / "-":
    the report claims a direction without a number, e.g. 002's test-time augmentation)."""
    if isinstance(reported, str):
        if reported not in ("+", "-"):
            raise ValueError(f"reported must be a number, a pair (A, B), or '+' / '-', not {reported!r}")
        return math.nan, None
    if isinstance(reported, (tuple, list)):
        values = (float(reported[0]), float(reported[1]))
        return round(values[1] - values[0], 10), values  # 1.35, not 1.3499..
    return float(reported), None


def compare_runs(outcomes_a: Mapping, outcomes_b: Mapping, *, reported, quantity: str,
                 names: tuple[str, str] = ("A", "B"), scale: Mapping | None = None,
                 unit: str = "percentage points", level: float = 0.95, alpha: float = 0.05,
                 n_boot: int = 10_000, seed: int = 0) -> Evidence:
    """The headline comparison of a study, called once per study (01-05).

    ``outcomes_a`` / ``outcomes_b``: ``{training seed: per-test-image outcome}`` for models A and B
    (``preds.correct`` for accuracy), the same seeds and test images on both sides. Each model's
    value per seed is 100 x the share of True (percent); the difference is B - A in points.
    ``reported``: the report's difference B - A, or its pair (A, B), e.g. ``(92.06, 93.41)``.
    ``scale``: what the notebook ran (profile, dataset, epochs, width); ``seeds`` is set from the data.

    One seed: the paired difference on the test images, its bootstrap interval and exact McNemar p
    (``note`` says this covers test-set sampling only). Several: the mean of the per-seed
    differences, its t-interval and the paired t-test over seeds; the per-seed McNemar results are
    kept in ``mcnemar`` either way.
    """
    a, b = _by_seed(outcomes_a, "outcomes_a"), _by_seed(outcomes_b, "outcomes_b")
    if list(a) != list(b):
        raise ValueError(f"outcomes_a and outcomes_b must have the same seeds, got {list(a)} and {list(b)}")
    pairs = [paired_proportions(a[s], b[s], level=level, n_boot=n_boot, seed=seed) for s in a]
    direction = reported if isinstance(reported, str) else None
    reported, reported_values = _reported(reported)
    sign = {"+": 1.0, "-": -1.0}[direction] if direction else reported
    k, first = len(pairs), pairs[0]
    if k == 1:
        measured, ci, p = 100 * first.diff, (100 * first.ci[0], 100 * first.ci[1]), first.p_value
        test, note = f"{first.test}, 1 seed", ONE_SEED_NOTE
    else:
        sc = paired_over_seeds([100 * r.mean_a for r in pairs], [100 * r.mean_b for r in pairs], level)
        measured, ci, p, test, note = sc.mean, sc.ci, sc.p_value, sc.test, ""
    return Evidence(
        quantity=quantity, unit=unit, names=tuple(names), reported=float(reported), reported_values=reported_values,
        measured=float(measured), ci=(float(ci[0]), float(ci[1])), level=level, p_value=float(p), test=test,
        seeds=tuple(a), per_seed={"a": [100 * r.mean_a for r in pairs], "b": [100 * r.mean_b for r in pairs],
                                  "diff": [100 * r.diff for r in pairs]},
        mcnemar=tuple(r.to_dict() for r in pairs), verdict=verdict(sign, measured, p, alpha), alpha=alpha,
        scale={**(scale or {}), "seeds": k}, note=note, direction=1 if sign > 0 else -1)


# --- sentences ---------------------------------------------------------------------------------------

DATASETS = {"synthetic": "synthetic data", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
EXPLAIN = {
    VERDICTS[0]: "the difference has the report's sign and is larger than {chance} explains",
    VERDICTS[1]: "the difference has the report's sign, but {chance} could produce one this large",
    VERDICTS[2]: "{chance} could produce a difference this large{sign}",
    VERDICTS[3]: "the result is reversed: the difference has the opposite sign to the report's and is larger "
                 "than {chance} explains",
}


def format_diff(x: float) -> str:
    """A difference in points, signed, 2 decimals: ``+1.35`` (``n/a`` for NaN)."""
    return "n/a" if math.isnan(x) else f"{x:+.2f}"


def format_interval(ci) -> str:
    """``[-0.12, +1.80]``; ``no interval`` when either end is NaN (one seed)."""
    return "no interval" if any(math.isnan(c) for c in ci) else f"[{format_diff(ci[0])}, {format_diff(ci[1])}]"


def format_count_interval(ci) -> str:
    """An interval of a difference in images: ``[+61, +117]`` (01's and 02's error counts)."""
    return f"[{ci[0]:+,.0f}, {ci[1]:+,.0f}]"


def format_p(p: float) -> str:
    """``p = 0.039`` (2 significant digits), ``p < 0.001``, or ``p n/a`` for NaN."""
    if math.isnan(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:#.2g}"


def scale_text(scale: Mapping) -> str:
    """What a run was, in words: "the quick profile on synthetic data, 8 epochs, width 0.25, 1 seed"."""
    s = dict(scale)
    head = [f"the {s.pop('profile')} profile"] if "profile" in s else []
    if "dataset" in s:
        name = str(s.pop("dataset"))
        head.append(f"on {DATASETS.get(name, name)}")
    parts = [" ".join(head)] if head else []
    for key, noun in (("epochs", "epoch"), ("width", None), ("seeds", "seed")):
        if key in s:
            v = s.pop(key)
            v = len(v) if isinstance(v, (list, tuple)) else v
            parts.append(f"width {v:g}" if noun is None else f"{v} {noun}{'' if v == 1 else 's'}")
    return ", ".join(parts + [f"{k} {v}" for k, v in s.items()]) or "an unstated scale"


def describe(ev: Evidence) -> str:
    """The headline as one Markdown paragraph (01-05): the report's difference, this run's with its
    interval and p-value, the verdict in plain words and, unless it is "same direction,
    significant", the scale of this run."""
    if math.isnan(ev.reported):  # a direction without a number
        report = f"the report: {ev.names[1] if ev.direction > 0 else ev.names[0]} ahead, without a number"
    else:
        report = f"the report: {format_diff(ev.reported)}"
    if ev.reported_values:
        report += f" ({ev.reported_values[0]:.2f} -> {ev.reported_values[1]:.2f})"
    chance = "test-set sampling alone" if len(ev.seeds) == 1 else "seed-to-seed variation"
    sign = ""
    if ev.verdict == VERDICTS[2]:
        sign = " (this run's is exactly 0)" if ev.measured == 0 else (
            "; its sign is opposite to the report's" if (ev.measured > 0) != (ev.direction > 0) else "")
    title = ev.quantity[:1].upper() + ev.quantity[1:]
    text = (f"**{title}** ({ev.unit}), {report}; this run: {format_diff(ev.measured)}, "
            f"{ev.level:.0%} interval {format_interval(ev.ci)}, {format_p(ev.p_value)} ({ev.test}). "
            f"Verdict (significant: p < {ev.alpha:g}): **{ev.verdict}**: "
            f"{EXPLAIN[ev.verdict].format(chance=chance, sign=sign)}.")
    if ev.verdict != VERDICTS[0]:
        text += f" Scale of this run: {scale_text(ev.scale)}."
    return f"{text} {ev.note}".strip()


# --- per-epoch variation -------------------------------------------------------------------

def epoch_variation(history: pd.DataFrame, column: str = "val_acc", skip: Sequence[int] = (),
                    factor: float = 100.0) -> pd.Series:
    """Epoch-to-epoch change |v(e) - v(e - 1)| of a history column, indexed by epoch e >= 2 (05, 04).

    A smoother curve has smaller changes; compare two runs at the same epochs with
    :func:`paired_values`. ``factor`` 100 turns the history's accuracy fractions into percentage
    points (use 1 for a loss). ``skip``: epochs (``history["epoch"]`` numbers) left out because
    they jump by design, e.g. the first epoch after a step learning-rate drop (the first epoch whose
    ``lr`` is lower than the one before): that jump says nothing about how noisy training is.
    """
    if "epoch" not in history or column not in history:
        raise ValueError(f"history needs 'epoch' and {column!r}; it has {list(history.columns)}")
    h = history.sort_values("epoch")
    change = (h[column].diff().abs() * factor).set_axis(h["epoch"].to_numpy()).iloc[1:]
    bad = sorted(set(skip) - set(change.index))
    if bad:
        raise ValueError(f"skip epochs {bad} have no change to skip; valid: {list(change.index)}")
    return change.drop(list(skip)).rename(f"|change| of {column}").rename_axis("epoch")
