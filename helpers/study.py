"""What every study notebook does (01-05): set itself up, train its runs for every seed, predict
the test split, and set the headline against the reference report.

    S, data, head, figs = study.begin("bn_ablation", output_dir, profile=profile, seeds=seeds, ...)
    runs = study.train(S, data)                      # variant -> one Run per seed (the run cache)
    preds = study.predict(runs, data, S)             # variant -> one Predictions per seed
    result = study.test_against_report(S, preds, data, figs)   # table, verdict box, its paragraph
    page.write_metrics(output_dir, study.finish(head, S, preds, result, runs), figs)

Each study's headline (the two variants it compares and the report's numbers) is its
``Study.headline`` (``helpers.studies``). Figures of one model's failures or Grad-CAMs use the
first seed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from . import evaluate, page, plots
from . import evidence as E
from .data import split_indices
from .profiles import Settings, settings
from .train import Run, fit


def begin(study: str, output_dir, **params) -> tuple:
    """A notebook's first cell (01-05): the study's settings under the notebook's parameters
    (``profile``, ``dataset``, ``seeds``, ``seed``, ``device``, ``precision``, ``epochs``, the study's
    own; None means the profile's value), its data, the title block shown with what the settings
    know (title, reference report, profile, data and why, seeds), the figure numbering and the plot
    style. Returns ``(S, data, head, figs)``."""
    profile = params.pop("profile", "quick")
    S = settings(study, profile, **params)
    data = S.load_data()
    choice = S.data_choice
    head = page.Header(S.study.title, reference_report=S.study.report, profile=profile, dataset=choice.source,
                       seeds=list(S.seeds), dataset_note=choice.banner() if choice.fell_back else None)
    head.show()
    figs = page.Figures(output_dir)
    plots.style()
    return S, data, head, figs


def train(S: Settings, data, progress: bool = True) -> dict[str, list[Run]]:
    """Every run of the study, one per variant and seed, trained or loaded from the run cache (01-05)."""
    return {variant: [fit(config, data, progress=progress) for config in configs]
            for variant, configs in S.runs().items()}


def predict(runs: dict[str, list[Run]], data, S: Settings, views=("original",), split: str = "test") -> dict[str, list]:
    """Test-split predictions of every run, with the checkpoint the report tested (01: the best
    validation epoch; the others: the last epoch), normalised as in training (01-05).
    ``split="val"``: the validation images the runs held out of training instead (02)."""
    images, labels = data.test_images, data.test_labels
    if split == "val":
        if not S.config.val_fraction:
            raise ValueError(f"{S.study.name} holds no validation images out (val_fraction 0)")
        held = split_indices(len(data.train_labels), S.config.val_fraction, S.config.split_seed)[1]
        images, labels = data.train_images[held], data.train_labels[held]
    elif split != "test":
        raise ValueError(f"split must be 'test' or 'val', not {split!r}")
    out = {}
    for variant, variant_runs in runs.items():
        out[variant] = []
        for run in variant_runs:
            run.load_weights(S.study.headline.weights)
            out[variant].append(evaluate.predict(run, images, labels, views=views))
    return out


def scale(S: Settings, data=None) -> dict:
    """What this run was, for the verdict's sentence: profile, data, epochs, width, seeds."""
    source = S.data_choice.source
    name = "a folder of images" if source.startswith("folder:") else source
    if data is not None and source.startswith("folder:"):
        name = f"{data.num_classes}-class images from {source.rsplit('/', 1)[-1]}"
    return {"profile": S.profile, "dataset": name, "epochs": S.config.epochs, "width": S.config.width,
            "seeds": len(S.seeds)}


def evidence(S: Settings, preds: dict, data=None, *, a=None, b=None) -> E.Evidence:
    """The study's headline comparison against its report (:func:`helpers.evidence.compare_runs`):
    test accuracy of variant B minus variant A, on the same test images, per seed (01, 02, 04, 05).
    ``a``/``b``: lists of Predictions per seed when the two sides are not two variants (03: one
    model without and with test-time augmentation)."""
    h = S.study.headline
    a = preds[h.a] if a is None else a
    b = preds[h.b] if b is None else b
    return E.compare_runs({s: p.correct for s, p in zip(S.seeds, a)}, {s: p.correct for s, p in zip(S.seeds, b)},
                          reported=h.reported, quantity=f"test accuracy, {h.label_b} - {h.label_a}",
                          names=(h.label_a, h.label_b), scale=scale(S, data))


def accuracies(S: Settings, preds: dict, *, a=None, b=None) -> dict[str, list[float]]:
    """Label -> per-seed test accuracies of the headline's two variants (fractions); ``a``/``b`` as in
    :func:`evidence`."""
    h = S.study.headline
    a = preds[h.a] if a is None else a
    b = preds[h.b] if b is None else b
    return {h.label_a: [float(p.correct.mean()) for p in a], h.label_b: [float(p.correct.mean()) for p in b]}


def accuracy_verdict(S: Settings, preds: dict, data, figs: page.Figures, *, a=None, b=None,
                     caption: str = "Test accuracy (%) of each model and seed.") -> E.Evidence:
    """The notebook's "test accuracy against the report" section (01-05): a table of each model's
    test accuracy per seed with its exact 95% interval, the headline comparison B - A with its
    interval and test in a verdict box and one paragraph, and with several seeds the per-seed figure
    (:func:`helpers.plots.seed_figure`). ``a``/``b`` as in :func:`evidence` (03). Returns the
    :class:`helpers.evidence.Evidence`."""
    h = S.study.headline
    result = evidence(S, preds, data, a=a, b=b)
    shown = preds if a is None else {h.label_a: a, h.label_b: b}
    figs.table(accuracy_table(S, shown), "test_accuracy", caption, digits=2)
    display(page.verdict_box(result.to_dict()))
    display(Markdown(E.describe(result)))
    if len(S.seeds) > 1:
        figs.show(plots.seed_figure(result), "seed_comparison", f"Test accuracy per seed (points), mean and 95% "
                  f"interval; right: {h.label_b} minus {h.label_a} per seed, the report's difference dashed.")
    return result


def finish(head: page.Header, S: Settings, preds: dict, result: E.Evidence, runs: dict, *, a=None, b=None,
           rows: list | None = None) -> dict:
    """The notebook's last cell (01-05): fill in the summary box at the top (the headline rows, by
    default each model's test accuracy beside the report's; the verdict; the run and training time)
    and return the metrics every study writes: the header's fields, ``headline``, ``verdict``,
    ``run_seconds``, ``test_acc`` (label -> per-seed accuracies), ``epochs`` and ``width``; the notebook
    adds its own before ``page.write_metrics``."""
    accs = accuracies(S, preds, a=a, b=b)
    metrics = head.finish(S.study.headline.rows(accs) if rows is None else rows, result.to_dict(), runs)
    return {**metrics, "test_acc": accs, "epochs": S.config.epochs, "width": S.config.width}


def accuracy_table(S: Settings, preds: dict):
    """Test accuracy per variant and seed in %, with each variant's exact 95% interval on the first
    seed's test images and, with several seeds, the mean and t-interval over seeds (01-05)."""
    rows = {}
    for variant, plist in preds.items():
        accs = [100 * float(p.correct.mean()) for p in plist]
        row = {f"seed {s}": acc for s, acc in zip(S.seeds, accs)}
        low, high = E.accuracy_interval(plist[0].correct)
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
    h = S.study.headline
    changes = []
    stepped = S.config.schedule in ("step", "multistep")
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
    largest gain first (03, 05)."""
    table = pd.DataFrame({a: per_class[a], b: per_class[b]}, index=list(classes))
    table["change (points)"] = 100 * (table[b] - table[a])
    return table.sort_values("change (points)", ascending=False)


# --- the authors' logged curves (01, 03, 05 at the full profile) -------------------------------------

CURVES = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def log_gaps(histories: dict[str, list], logs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """How far this run's curves are from the authors' logged ones (01, 03, 05): per run and curve, at
    the epochs the log has, the largest gap (this run minus the log; accuracies in points) with its
    epoch, the gap at the last logged epoch, and the spread between this run's seeds there (the
    largest max - min over seeds at any of those epochs; NaN with one seed). ``histories``: run name
    -> one history per seed."""
    rows = {}
    for name, per_seed in histories.items():
        log = logs.get(name)
        if log is None:
            continue
        for column in CURVES:
            if column not in log or column not in per_seed[0] or log[column].isna().all():
                continue
            scale = 100 if column.endswith("acc") else 1
            ref = log.set_index("epoch")[column].dropna()
            ref = ref[ref.index <= per_seed[0]["epoch"].max()]
            runs = pd.DataFrame({i: h.set_index("epoch")[column] for i, h in enumerate(per_seed)}).loc[ref.index]
            gap = scale * (runs[0] - ref)
            worst = gap.abs().idxmax()
            spread = scale * (runs.max(axis=1) - runs.min(axis=1)).max() if runs.shape[1] > 1 else math.nan
            rows[(name, column)] = {"largest gap": gap[worst], "at epoch": int(worst), "final gap": gap.iloc[-1],
                                    "seed spread": spread, "logged epochs": len(ref)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["run", "curve"])


def against_logs(S: Settings, histories: dict[str, list]) -> tuple[dict | None, pd.DataFrame | None, str]:
    """The authors' logs to draw beside this run's curves, the gaps (:func:`log_gaps`) and one sentence
    for the page (01, 03, 05). At the full profile, for a study whose code logged its epochs: (logs,
    gaps, a line naming the largest gap); at another scale: (None, None, why the logs are not drawn)."""
    if S.study.logs is None:
        return None, None, ""
    if S.profile != "full":
        return None, None, (f"The authors' logged curves are drawn at the full profile only: this run is at the "
                            f"{S.profile} profile's scale ({S.config.epochs} epochs, width {S.config.width:g}), so "
                            f"its curves and theirs are not comparable epoch by epoch.")
    logs = S.study.logs()
    gaps = log_gaps(histories, logs)
    if gaps.empty:
        return logs, gaps, "No curve of this run has an epoch the authors logged."
    (run, curve), row = max(gaps.iterrows(), key=lambda item: abs(item[1]["largest gap"]))
    unit = "points" if curve.endswith("acc") else "in loss"
    spread = ("one seed, so no spread between seeds to set it against" if math.isnan(row["seed spread"])
              else f"the spread between this run's seeds is {row['seed spread']:.2f} {unit} at most")
    return logs, gaps, (f"The largest gap from the authors' log is {run}'s {curve.replace('_', ' ')}: "
                        f"{row['largest gap']:+.2f} {unit} at epoch {row['at epoch']}, {row['final gap']:+.2f} at "
                        f"the last logged epoch; {spread}.")
