"""The notebooks' figures as functions, styled with seaborn and sized to read well in a PDF.

Every function returns its matplotlib Figure and leaves showing it to the notebook
(``helpers.page.Figures`` saves, numbers and captions them). Nothing here picks a matplotlib
backend: a non-inline backend would drop the images from executed notebooks.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import evidence as E

PALETTE = sns.color_palette("colorblind")


def style() -> None:
    """Seaborn's whitegrid theme at a size that stays legible on an A4 page (all notebooks)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE, font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "axes.titleweight": "bold"})


def to_hwc(image) -> np.ndarray:
    """A uint8 CHW tensor/array as an HWC float image in [0, 1] for imshow."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a.transpose(1, 2, 0)
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a


def image_grid(images, titles: list[str], cols: int = 8, size: float = 1.35, suptitle: str | None = None,
               title_colors: list | None = None) -> plt.Figure:
    """Images in a grid, each with a small multi-line title (notebooks 01, 02, 05: samples, failures)."""
    n = len(titles)
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * (size + 0.45)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(to_hwc(images[i]), interpolation="nearest")
            ax.set_title(titles[i], fontsize=7, color=(title_colors[i] if title_colors else "black"))
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def changed_grid(images, indices, labels, preds, classes: list[str], name: str, n: int = 16) -> plt.Figure:
    """The first ``n`` of ``indices`` (test images whose prediction changed between two models),
    titled with the test index, the true class and model ``name``'s answer (05: rescued by BatchNorm)."""
    idx = list(indices[:n])
    titles = [f"#{i}\ntrue {classes[int(labels[i])]}\n{name}: {classes[int(preds.pred[i])]}" for i in idx]
    return image_grid([images[i] for i in idx], titles, cols=8)


def one_per_class(images, labels, classes: list[str]) -> plt.Figure:
    """The first image of each class (notebooks 04, 05: "what the data looks like")."""
    labels = np.asarray(labels)
    idx = [int(np.flatnonzero(labels == k)[0]) for k in range(len(classes)) if (labels == k).any()]
    return image_grid([images[i] for i in idx], [classes[labels[i]] for i in idx], cols=min(10, len(idx)),
                      size=1.2)


def failure_grid(images, failures: pd.DataFrame, n: int = 16, cols: int = 8, suptitle: str | None = None) -> plt.Figure:
    """Misclassified images annotated with test index, true and predicted class and confidence (01, 02, 05).

    ``failures`` has columns index, true_name, pred_name, confidence (helpers.evaluate.failures).
    """
    rows = failures.head(n)
    titles = [f"#{r.index}\ntrue {r.true_name}\npred {r.pred_name} {r.confidence:.0%}" for r in rows.itertuples()]
    return image_grid([images[i] for i in rows["index"]], titles, cols=cols, suptitle=suptitle)


def class_distribution(counts: pd.DataFrame) -> plt.Figure:
    """Images per class in each split; ``counts`` has one column per split, classes as index (05)."""
    long = counts.rename_axis("class").reset_index().melt("class", var_name="split", value_name="images")
    fig, ax = plt.subplots(figsize=(9, 3.2))
    sns.barplot(long, x="class", y="images", hue="split", ax=ax)
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=30)
    ax.set_title("Images per class in each split")
    fig.tight_layout()
    return fig


def training_curves(histories: dict[str, pd.DataFrame], metric: str = "loss",
                    lr_steps: list[int] | None = None, reference: dict | None = None) -> plt.Figure:
    """Train (solid) and validation (dotted) curves of several runs, one panel per run (01-05).

    ``metric`` is "loss" or "acc"; ``lr_steps`` draws dashed lines at the epochs where the
    learning rate drops (report 004's figure 3). A history evaluated on the test split each epoch
    (``test_*`` columns, 03 and 04) is drawn and labelled as "test". ``reference``: run name ->
    the authors' logged history (``Study.logs``), drawn in black in that run's panel, dashed for
    training and dash-dotted for evaluation, with markers where the log has only some epochs.
    """
    if metric not in ("loss", "acc"):
        raise ValueError(f"metric must be 'loss' or 'acc', not {metric!r}")
    n = len(histories)
    fig, axes = plt.subplots(1, n + 1, figsize=(4.2 * (n + 1), 3.3), sharey=True, squeeze=False)
    axes = axes[0]
    for i, (name, h) in enumerate(histories.items()):
        color = PALETTE[i]
        for ax in (axes[i], axes[-1]):
            ax.plot(h["epoch"], h[f"train_{metric}"], color=color, label=f"{name} train")
            split = "val" if f"val_{metric}" in h else "test"
            ax.plot(h["epoch"], h[f"{split}_{metric}"], color=color, linestyle=":", linewidth=2, label=f"{name} {split}")
        axes[i].set_title(name)
        log = (reference or {}).get(name)
        if log is not None:
            draw_log(axes[i], log, metric)
    axes[-1].set_title("together")
    label = {"loss": "cross-entropy loss", "acc": "accuracy"}[metric]
    for ax in axes:
        ax.set_xlabel("epoch")
        for step in lr_steps or []:
            ax.axvline(step + 0.5, color="grey", linestyle="--", linewidth=1)
    axes[0].set_ylabel(label)
    axes[-1].legend(fontsize=7)
    if reference:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def draw_log(ax, log: pd.DataFrame, metric: str) -> None:
    """The authors' logged curve of one run in black (01, 03, 05 at the full profile)."""
    sparse = len(log) < log["epoch"].max() / 2  # 004's log prints every fifth epoch
    for split, style in (("train", "--"), ("val", "-."), ("test", "-.")):
        column = f"{split}_{metric}"
        if column in log and log[column].notna().any():
            ax.plot(log["epoch"], log[column], color="black", linestyle=style, linewidth=1,
                    marker="o" if sparse else None, markersize=3, label=f"authors' log, {split}")


def confusion_matrices(cms: dict[str, np.ndarray], classes: list[str], normalize: bool = True) -> plt.Figure:
    """Confusion matrices side by side, rows = true class, in % of the row when ``normalize`` (01, 03, 05)."""
    n = len(cms)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.6), squeeze=False)
    for ax, (name, cm) in zip(axes[0], cms.items()):
        shown = 100 * cm / cm.sum(1, keepdims=True).clip(min=1) if normalize else cm
        sns.heatmap(shown, annot=len(classes) <= 12, fmt=".0f", cmap="Blues", cbar=False, ax=ax,
                    xticklabels=classes, yticklabels=classes, annot_kws={"fontsize": 7}, vmin=0,
                    vmax=100 if normalize else None)
        ax.set_title(name)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.tight_layout()
    return fig


def confusion_difference(diff: np.ndarray, classes: list[str], title: str) -> plt.Figure:
    """Difference of two confusion matrices (B - A, counts) on a diverging scale (05).

    Blue on the diagonal: B gets more of that class right; red off the diagonal: B makes that
    particular confusion more often.
    """
    fig, ax = plt.subplots(figsize=(5.8, 4.8))
    shown = diff.astype(float).copy()
    off = ~np.eye(len(classes), dtype=bool)
    shown[off] = -shown[off]  # more confusions is bad: colour it like fewer correct answers
    lim = max(1, np.abs(shown).max())
    sns.heatmap(shown, annot=diff, fmt="d", cmap="RdBu", vmin=-lim, vmax=lim, center=0, ax=ax,
                xticklabels=classes, yticklabels=classes, annot_kws={"fontsize": 7},
                cbar_kws={"label": "red: worse   blue: better"})
    ax.set_title(title)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return fig


def per_class_bars(accs: dict[str, np.ndarray], classes: list[str]) -> plt.Figure:
    """Per-class accuracy of several models as grouped bars (01, 05)."""
    long = pd.DataFrame({name: acc for name, acc in accs.items()}, index=classes)
    long = long.rename_axis("class").reset_index().melt("class", var_name="model", value_name="accuracy")
    fig, ax = plt.subplots(figsize=(9, 3.3))
    sns.barplot(long, x="class", y="accuracy", hue="model", ax=ax)
    ax.set_ylim(0, 1)
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=30)
    ax.set_title("Per-class test accuracy")
    fig.tight_layout()
    return fig


def _per_epoch(histories: dict[str, pd.DataFrame], column: str, ylabel: str, title: str, height: float,
               legend_size=None) -> plt.Figure:
    """One history column of several runs against the epoch, on one axis."""
    fig, ax = plt.subplots(figsize=(5.5, height))
    for i, (name, h) in enumerate(histories.items()):
        ax.plot(h["epoch"], h[column], marker="o", markersize=3, color=PALETTE[i], label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    return fig


def epoch_times(histories: dict[str, pd.DataFrame]) -> plt.Figure:
    """Seconds per epoch and cumulative training time of several runs (05)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.3))
    for i, (name, h) in enumerate(histories.items()):
        a.plot(h["epoch"], h["seconds"], marker="o", markersize=3, color=PALETTE[i], label=name)
        b.plot(h["epoch"], h["seconds"].cumsum(), color=PALETTE[i], label=name)
    a.set_title("Seconds per epoch")
    b.set_title("Cumulative training time")
    for ax in (a, b):
        ax.set_xlabel("epoch")
        ax.set_ylabel("seconds")
        ax.legend()
    fig.tight_layout()
    return fig


def cam_rows(images, cams: dict[str, np.ndarray], overlays: dict[str, np.ndarray],
             row_titles: list[str], col_notes: dict[str, list[str]] | None = None) -> plt.Figure:
    """Grad-CAM comparison: one row per image; per model an (image, heatmap, overlay) triplet (01, 02).

    ``cams`` and ``overlays`` map a model name to arrays of N heatmaps (HxW) and overlays (HxWx3);
    ``col_notes`` adds a line per model and row (e.g. that model's prediction).
    """
    names = list(cams)
    n = len(images)
    fig, axes = plt.subplots(n, 3 * len(names), figsize=(1.75 * 3 * len(names), 1.95 * n), squeeze=False)
    for r in range(n):
        for m, name in enumerate(names):
            note = f"\n{col_notes[name][r]}" if col_notes else ""
            panels = [(to_hwc(images[r]), None, f"{name}: image"),
                      (cams[name][r], "jet", f"{name}: Grad-CAM{note}"),
                      (overlays[name][r], None, f"{name}: overlay")]
            for c, (img, cmap, title) in enumerate(panels):
                ax = axes[r, 3 * m + c]
                ax.imshow(img, cmap=cmap, vmin=0 if cmap else None, vmax=1 if cmap else None,
                          interpolation="nearest" if cmap is None else "bilinear")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(title, fontsize=7)
        axes[r, 0].set_ylabel(row_titles[r], fontsize=7)
    fig.tight_layout()
    return fig


# --- confidence and calibration (02) -------------------------------------------------------------


def confidence_histograms(preds: dict, bins: int = 20) -> plt.Figure:
    """Confidence of wrong (left) and right (right) predictions, one outline per model (02).

    ``preds`` maps a model name to its :class:`helpers.evaluate.Predictions`. Each panel counts
    predictions per confidence bin, so the mass near 1.0 on the left is "confidently wrong".
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
    edges = np.linspace(0, 1, bins + 1)
    for ax, (title, want) in zip(axes, (("wrong predictions", False), ("right predictions", True))):
        for i, (name, p) in enumerate(preds.items()):
            conf = p.conf[p.correct == want]
            ax.hist(conf, bins=edges, histtype="step", linewidth=2, color=PALETTE[i], label=f"{name} ({len(conf):,})")
        ax.set_title(f"Confidence of {title}")
        ax.set_xlabel("confidence in the predicted class")
        ax.set_ylabel("predictions")
        ax.legend(fontsize=7, loc="upper center")
    fig.tight_layout()
    return fig


def wrong_by_threshold(counts: pd.DataFrame) -> plt.Figure:
    """Wrong predictions with confidence >= each threshold, grouped by model (02).

    ``counts``: thresholds as index, one column per model (``evaluate.wrong_by_confidence``).
    """
    long = counts.rename_axis("threshold").reset_index().melt("threshold", var_name="model", value_name="wrong")
    long["threshold"] = [f">= {t:g}" for t in long["threshold"]]
    fig, ax = plt.subplots(figsize=(6.5, 3.3))
    sns.barplot(long, x="threshold", y="wrong", hue="model", ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fontsize=7)
    ax.set_xlabel("confidence of the wrong prediction")
    ax.set_ylabel("wrong predictions")
    ax.set_title("Confidently wrong predictions")
    fig.tight_layout()
    return fig


def reliability_diagrams(tables: dict[str, tuple[pd.DataFrame, float]]) -> plt.Figure:
    """Accuracy against confidence per bin, one panel per model, with its ECE (02).

    ``tables`` maps a model name to ``evaluate.calibration``'s (table, ece). Bars below the
    diagonal are overconfident bins; the hatched part reaches up to the bin's mean confidence.
    """
    n = len(tables)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
    for i, (ax, (name, (table, ece))) in enumerate(zip(axes[0], tables.items())):
        width = table["upper"] - table["lower"]
        acc, conf = table["accuracy"].fillna(0), table["confidence"].fillna(0)
        ax.bar(table["lower"], acc, width=width, align="edge", color=PALETTE[i],
               edgecolor="black", linewidth=0.5, label="accuracy in bin")
        # the gap up (or down) to the bin's mean confidence: red hatching = miscalibration
        ax.bar(table["lower"], conf - acc, bottom=acc, width=width, align="edge", fill=False,
               edgecolor=PALETTE[3], hatch="//", linewidth=0.5, label="gap to confidence")
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_title(f"{name}: ECE {100 * ece:.1f}%")
        ax.legend(fontsize=7, loc="upper left")
    axes[0, 0].set_ylabel("accuracy")
    fig.tight_layout()
    return fig


def risk_coverage_curves(curves: dict[str, pd.DataFrame], mark: float | None = None) -> plt.Figure:
    """Accuracy of the kept predictions against the fraction kept, per model (02).

    ``curves`` maps a model name to ``evaluate.risk_coverage``; ``mark`` draws each model's
    point at that confidence threshold (e.g. 0.7: "reject anything below 70%").
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, (name, c) in enumerate(curves.items()):
        ax.plot(c["coverage"], c["accuracy"], color=PALETTE[i], label=name)
        if mark is not None:
            kept = c[c["threshold"] >= mark]
            if len(kept):
                row = kept.iloc[-1]
                ax.plot(row["coverage"], row["accuracy"], "o", color=PALETTE[i])
                ax.annotate(f"conf >= {mark:g}: keep {100 * row['coverage']:.0f}%, acc {100 * row['accuracy']:.0f}%",
                            (row["coverage"], row["accuracy"]), fontsize=7, xytext=(5, -12 - 10 * i),
                            textcoords="offset points")
    ax.set_xlabel("coverage (fraction of predictions kept)")
    ax.set_ylabel("accuracy on kept predictions")
    ax.set_title("Risk-coverage: rejecting low-confidence predictions")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def per_class_change(delta, classes: list[str], title: str = "Per-class accuracy change") -> plt.Figure:
    """Per-class accuracy change (B - A, in points), sorted, green up and red down (02)."""
    delta = 100 * np.asarray(delta, dtype=float)
    order = np.argsort(-delta, kind="stable")
    colors = [PALETTE[2] if d > 0 else PALETTE[3] if d < 0 else "grey" for d in delta[order]]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.11 * len(classes) + 2), 3.4))
    ax.bar(np.arange(len(order)), delta[order], color=colors)
    ax.set_xticks(np.arange(len(order)), [classes[i] for i in order], rotation=90,
                  fontsize=5 if len(classes) > 30 else 8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("accuracy change (points)")
    ax.set_title(title)
    ax.set_xlim(-0.7, len(order) - 0.3)
    fig.tight_layout()
    return fig


def migration_bars(counts: dict[str, int], title: str = "Where the test samples moved") -> plt.Figure:
    """Counts of rescued / broken / still-wrong samples between two models (02)."""
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    names, values = list(counts), list(counts.values())
    bars = ax.barh(names, values, color=[PALETTE[i % len(PALETTE)] for i in range(len(names))])
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], fontsize=8, padding=3)
    ax.invert_yaxis()
    ax.set_xlabel("test samples")
    ax.set_title(title)
    fig.tight_layout()
    return fig


# --- ResNet budget (03) --------------------------------------------------------------------------


def learning_rates(histories: dict[str, pd.DataFrame], column: str = "lr") -> plt.Figure:
    """The learning rate per epoch and run (03, 04): ``column`` "lr", the one each epoch started
    with, or "lr_end", the one in force after its scheduler step (what report 003 logs)."""
    ylabel = {"lr": "learning rate at the epoch's start", "lr_end": "learning rate after the epoch"}[column]
    return _per_epoch(histories, column, ylabel, "Learning-rate schedule", 3.0, legend_size=7)


# --- a headline over seeds (01-05) ----------------------------------------------------------------

def _points_and_mean(ax, x: float, values, mean: float, ci, color, label: str | None = None) -> None:
    """Per-seed values as points left of ``x``, the mean with its interval right of it."""
    values = np.asarray(values, dtype=float)
    ax.scatter(np.full(len(values), x - 0.1), values, s=22, color=color, alpha=0.75, zorder=3)
    if not any(math.isnan(c) for c in ci):  # one seed: the point is all there is
        ax.errorbar([x + 0.1], [mean], yerr=[[mean - ci[0]], [ci[1] - mean]], fmt="D", color=color, capsize=4,
                    ms=6, zorder=4, label=label)


def seed_figure(ev: E.Evidence) -> plt.Figure:
    """Per-seed values of each model as points with their mean and t-interval (left), and the per-seed
    differences B - A with this run's interval and the report's difference (right) (01-05).
    With one seed there is no interval over seeds; the right panel then shows the test-set interval."""
    a, b, d = (np.asarray(ev.per_seed[k], dtype=float) for k in ("a", "b", "diff"))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.5, 3.4), gridspec_kw={"width_ratios": [1.6, 1]})
    for x, vals, color in ((0, a, colors[0]), (1, b, colors[1])):
        s = E.over_seeds(vals, ev.level)
        _points_and_mean(left, x, vals, s.mean, s.ci, color)
    left.plot(np.array([[-0.1] * len(a), [0.9] * len(a)]), np.vstack([a, b]), color="0.6", lw=0.8, zorder=2)
    left.set_xticks([0, 1], list(ev.names))
    left.set_xlim(-0.5, 1.5)
    left.set_ylabel("value per seed (%)")
    k = len(ev.seeds)
    left.set_title(f"{k} seeds: points; mean, {ev.level:.0%} interval" if k > 1 else "1 seed: no interval over seeds")
    label = f"{ev.level:.0%} interval " + ("over seeds" if k > 1 else "over test images (1 seed)")
    _points_and_mean(right, 0, d, ev.measured, ev.ci, colors[2], label)
    right.axhline(0, color="0.4", lw=0.8)
    right.axhline(ev.reported, color="0.2", ls="--", lw=1, label=f"report {E.format_diff(ev.reported)}")
    right.set_xticks([0], [f"{ev.names[1]} - {ev.names[0]}"])
    right.set_xlim(-0.6, 0.6)
    ends = [0.0, ev.reported, *d, *(c for c in ev.ci if not math.isnan(c))]  # axhline does not autoscale
    pad = 0.12 * (max(ends) - min(ends) or 1.0)
    right.set_ylim(min(ends) - pad, max(ends) + 3 * pad)  # headroom for the legend
    right.set_ylabel(f"difference ({ev.unit})")
    right.set_title("difference per seed")
    right.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{ev.quantity}: {ev.verdict}", fontsize=10)
    fig.tight_layout()
    return fig
