"""What every study notebook does with its runs (01-05): train them for every seed, predict the test
split, and set the headline against the reference report.

    S = settings("bn_ablation", profile, seeds=seeds)
    data = S.load_data()
    runs = study.train(S, data)                      # variant -> one Run per seed (the run cache)
    preds = study.predict(runs, data, S)             # variant -> one Predictions per seed
    ev = study.evidence(S, preds)                    # the headline comparison (helpers.evidence)
    head.finish(study.headline(S, study.accuracies(S, preds)), ev.to_dict())

``HEADLINES`` holds each report's headline comparison: the two variants it compares and the
numbers it gives. The figures that show one model's failures or Grad-CAMs use the first seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from . import evaluate
from . import evidence as E
from .data import split_indices
from .profiles import Settings
from .train import Run, fit, norm_stats


@dataclass(frozen=True)
class Headline:
    """A report's headline comparison: variant ``b`` against variant ``a`` on the test split."""

    report: str                  # the reference report, e.g. "000"
    a: str                       # variant names as in helpers.profiles.VARIANTS
    b: str
    label_a: str                 # how the notebook names them
    label_b: str
    reported: tuple | str        # the report's (A, B) test accuracies in %, or "+" (B ahead, no numbers)
    weights: str = "final"       # which checkpoint the report tested: "final" or "best" (best validation)
    numbers: tuple = ()          # (label, the report's test accuracy in %) when ``reported`` has none

    def report_numbers(self) -> dict:
        """label -> the report's test accuracy (%), for the summary box."""
        if isinstance(self.reported, tuple):
            return {self.label_a: self.reported[0], self.label_b: self.reported[1]}
        return dict(self.numbers)


HEADLINES = {
    "stress_test": Headline("000", "plain", "residual", "plain", "residual", (92.06, 93.41), weights="best"),
    "cutmix_study": Headline("001", "baseline", "cutmix", "baseline", "CutMix + label smoothing", (60.69, 75.70)),
    # 002 gives one test accuracy (94.65%, its last logged epoch) and says TTA helps, without a number
    "resnet_budget": Headline("002", "budget", "budget", "single view", "5-view TTA", "+",
                              numbers=(("single view", 94.65),)),
    "worksheet_analysis": Headline("003", "exp1", "exp2", "exp 1 (batch 64, lr 0.15)", "exp 2 (batch 128, lr 0.20)",
                                   (93.10, 92.39)),
    "bn_ablation": Headline("004", "baseline", "batchnorm", "baseline", "BatchNorm", (78.15, 81.62)),
}


def train(S: Settings, data, progress: bool = True) -> dict[str, list[Run]]:
    """Every run of the study, one per variant and seed, trained or loaded from the run cache (01-05)."""
    return {variant: [fit(config, data, progress=progress) for config in configs]
            for variant, configs in S.runs().items()}


def predict(runs: dict[str, list[Run]], data, S: Settings, views=("original",), split: str = "test") -> dict[str, list]:
    """Test-split predictions of every run, with the checkpoint the report tested (01: the best
    validation epoch; the others: the last epoch), normalised as in training (01-05).
    ``split="val"``: the validation images the runs held out of training instead (02)."""
    weights = HEADLINES[S.study].weights
    mean, std = norm_stats(S.train, data)
    images, labels = data.test_images, data.test_labels
    if split == "val":
        if not S.train.val_fraction:
            raise ValueError(f"{S.study} holds no validation images out (val_fraction 0)")
        held = split_indices(len(data.train_labels), S.train.val_fraction, S.train.split_seed)[1]
        images, labels = data.train_images[held], data.train_labels[held]
    elif split != "test":
        raise ValueError(f"split must be 'test' or 'val', not {split!r}")
    out = {}
    for variant, variant_runs in runs.items():
        out[variant] = []
        for run in variant_runs:
            run.load_weights(weights)
            out[variant].append(evaluate.predict(run.model, images, labels, mean=mean, std=std, views=views))
    return out


def scale(S: Settings, data=None) -> dict:
    """What this run was, for the verdict's sentence: profile, data, epochs, width, seeds."""
    source = S.data_choice.source
    name = "a folder of images" if source.startswith("folder:") else source
    if data is not None and source.startswith("folder:"):
        name = f"{data.num_classes}-class images from {source.rsplit('/', 1)[-1]}"
    return {"profile": S.profile, "dataset": name, "epochs": S.train.epochs, "width": S.train.width,
            "seeds": len(S.seeds)}


def evidence(S: Settings, preds: dict, data=None, *, a=None, b=None) -> E.Evidence:
    """The study's headline comparison against its report (:func:`helpers.evidence.compare_runs`):
    test accuracy of variant B minus variant A, on the same test images, per seed (01, 02, 04, 05).
    ``a``/``b``: lists of Predictions per seed when the two sides are not two variants (03: one
    model without and with test-time augmentation)."""
    h = HEADLINES[S.study]
    a = preds[h.a] if a is None else a
    b = preds[h.b] if b is None else b
    return E.compare_runs({s: p.correct for s, p in zip(S.seeds, a)}, {s: p.correct for s, p in zip(S.seeds, b)},
                          reported=h.reported, quantity=f"test accuracy, {h.label_b} - {h.label_a}",
                          names=(h.label_a, h.label_b), scale=scale(S, data))


def accuracy_interval(correct, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of one test accuracy, in % (scipy.stats.binomtest)."""
    correct = np.asarray(correct, dtype=bool)
    ci = stats.binomtest(int(correct.sum()), len(correct)).proportion_ci(level, method="exact")
    return 100 * ci.low, 100 * ci.high


def headline(S: Settings, accuracies: dict[str, list]) -> list[dict]:
    """The summary box's rows (01-05): each model's test accuracy in % (the mean over seeds) beside
    the report's. ``accuracies``: label (as in ``HEADLINES``) -> per-seed accuracies, fractions."""
    numbers = HEADLINES[S.study].report_numbers()
    rows = []
    for label, values in accuracies.items():
        name = f"test accuracy, {label}" + (f" (mean of {len(values)} seeds)" if len(values) > 1 else "")
        rows.append({"name": name, "value": round(100 * float(np.mean(values)), 2), "report": numbers.get(label),
                     "unit": "%"})
    return rows


def accuracies(S: Settings, preds: dict) -> dict[str, list[float]]:
    """Label -> per-seed test accuracies of the headline's two variants (fractions)."""
    h = HEADLINES[S.study]
    return {h.label_a: [float(p.correct.mean()) for p in preds[h.a]],
            h.label_b: [float(p.correct.mean()) for p in preds[h.b]]}


def accuracy_table(S: Settings, preds: dict):
    """Test accuracy per variant and seed in %, with each variant's exact 95% interval on the first
    seed's test images and, with several seeds, the mean and t-interval over seeds (01-05)."""
    import pandas as pd

    rows = {}
    for variant, plist in preds.items():
        accs = [100 * float(p.correct.mean()) for p in plist]
        row = {f"seed {s}": acc for s, acc in zip(S.seeds, accs)}
        low, high = accuracy_interval(plist[0].correct)
        row[f"95% interval, seed {S.seeds[0]}"] = f"[{low:.2f}, {high:.2f}]"
        if len(accs) > 1:
            summary = E.over_seeds(accs)
            row["mean over seeds"] = summary.mean
            row["95% interval over seeds"] = f"[{summary.ci[0]:.2f}, {summary.ci[1]:.2f}]"
        rows[variant] = row
    return pd.DataFrame(rows).T


def lr_drops(history) -> list[int]:
    """Epochs that start at most half the previous epoch's learning rate: the first epoch after a
    step drop (05's x0.1 every 10 epochs), whose accuracy jumps by design."""
    lr = history.set_index("epoch")["lr"]
    return [int(e) for e, prev, now in zip(lr.index[1:], lr.values[:-1], lr.values[1:]) if now <= 0.5 * prev]


def smoothness(S: Settings, runs: dict, column: str = "val_acc", from_epoch: int = 2):
    """How much the headline's two models' ``column`` moves from epoch to epoch (05: report 004's
    "smoother, less oscillating" curves; 01: 000's "more stable in later epochs").

    Mean |change| between consecutive epochs in points, from ``from_epoch`` on, leaving out the epochs
    right after a step LR drop (step and multistep schedules only: a One-Cycle or cosine LR also
    halves from one epoch to the next near its end, smoothly, and those epochs count). One seed: the two runs compared epoch by epoch (bootstrap interval,
    Wilcoxon); several: the per-seed means compared over seeds (t-interval, paired t-test).
    Returns (one-row table for the notebook, JSON-ready dict for metrics.json)."""
    import pandas as pd

    h = HEADLINES[S.study]
    changes = []
    stepped = S.train.schedule in ("step", "multistep")
    for ra, rb in zip(runs[h.a], runs[h.b]):
        skip = [e for e in lr_drops(ra.history) if e >= from_epoch] if stepped else []
        pick = lambda run: E.epoch_variation(run.history, column, skip).loc[lambda v: v.index >= from_epoch]  # noqa: E731
        changes.append((pick(ra), pick(rb)))
    if any(len(a) == 0 for a, _ in changes):  # e.g. the smoke profile: 2 epochs, a drop after the first
        row = {f"{h.label_a} (points)": math.nan, f"{h.label_b} (points)": math.nan, "difference": math.nan,
               "95% interval": "no interval", "p": "p n/a", "test": "not measurable: no epoch-to-epoch change left"}
        return pd.DataFrame([row], index=[f"mean change of {column} per epoch"]), None
    if len(changes) == 1:
        r = E.paired_values(changes[0][0].to_numpy(), changes[0][1].to_numpy())
        mean_a, mean_b, diff, ci, p, test = r.mean_a, r.mean_b, r.diff, r.ci, r.p_value, f"{r.test}, {r.n} epochs"
    else:
        r = E.paired_over_seeds([a.mean() for a, _ in changes], [b.mean() for _, b in changes])
        mean_a = float(np.mean([a.mean() for a, _ in changes]))
        mean_b = float(np.mean([b.mean() for _, b in changes]))
        diff, ci, p, test = r.mean, r.ci, r.p_value, r.test
    row = {f"{h.label_a} (points)": mean_a, f"{h.label_b} (points)": mean_b, "difference": diff,
           "95% interval": E.format_interval(ci), "p": E.format_p(p), "test": test}
    table = pd.DataFrame([row], index=[f"mean change of {column} per epoch"])
    return table, {"a": mean_a, "b": mean_b, "diff": diff, "ci": list(ci), "p_value": p, "test": test}


def class_changes(per_class: dict, classes, a: str, b: str):
    """Per-class test accuracy of models ``a`` and ``b`` (fractions) and B's change in points,
    largest gain first (01, 05)."""
    import pandas as pd

    table = pd.DataFrame({a: per_class[a], b: per_class[b]}, index=list(classes))
    table["change (points)"] = 100 * (table[b] - table[a])
    return table.sort_values("change (points)", ascending=False)
