"""Study 03 (report 002): a ResNet under five million parameters, its training and test-time
augmentation, and a Kaggle-style prediction file.

``STUDY`` is the study's definition (``helpers.studies.base``). The rest is notebook 03's own: report
002's two readings of its schedule, its epoch log, each test-time view against the original, the
largest confusions, the summary rows with an exact interval, the prediction file, and two figures::

    table = resnet_budget.schedule_readings(settings("resnet_budget", "full").config)  # log vs text
    resnet_budget.epoch_log(run.history)               # the LR after the scheduler step, as 002 logs it
    views, stats = resnet_budget.views_against(view_preds)   # each view minus the original, paired
    rows = resnet_budget.summary_rows(S, single, tta)  # the headline's rows + the exact interval
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .. import evidence as E
from ..config import TrainConfig
from ..evaluate import TTA_VIEWS, Predictions
from ..loader import normalize
from ..models import Net
from ..plots import PALETTE
from ..store import save_text
from ..train import lr_trace
from .base import BATCHES, COMMON_STATED, LOSS, OWN_STATS, Headline, Study

STUDY = Study(
    name="resnet_budget",
    notebook="03_resnet_budget",
    title="A ResNet under five million parameters: budget, training and test-time augmentation",
    report="002",
    dataset="cifar10",
    # Report 002's schedule contradicts itself: the text says cosine from 0.1 over 100 epochs (what full
    # runs), but its epoch log starts at LR 0.009998 with 89.47% test accuracy after one epoch, i.e. a
    # second, warm-started phase at a peak of about 0.01, and it mentions a "hybrid" multi-step schedule
    # besides; STUDY.note says so for the notebook. Batch size not in the report: 128; blur "sigma belongs
    # to [0.1,1,1.5]": read as 0.1-1.5; CutMix parameters not in the report: 001's; "fixed seeds", value
    # not given: 42; normalisation not given: the training split's own statistics.
    full=dict(train=dict(model="budget_resnet", epochs=100, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4,
                         schedule="cosine", augment=dict(crop_padding=2, flip_h=0.5, flip_v=0.05, blur_p=0.3,
                                                         blur_kernel=3, blur_sigma=(0.1, 1.5)),
                         mix=dict(kind="cutmix", alpha=1.0, p=0.5),
                         val_fraction=0.0,  # the report logs test accuracy every epoch
                         seed=42)),
    quick=dict(n_train=8_000, n_test=2_000, train=dict(width=0.25, epochs=8)),
    variants=lambda extra: {"budget": dict(name="resnet_budget")},
    # 002 gives one test accuracy (94.65%, its last logged epoch) and says TTA helps, without a number
    headline=Headline("budget", "budget", "single view", "5-view TTA", "+", numbers=(("single view", 94.65),)),
    stated={
        **COMMON_STATED, "dataset": "CIFAR-10", "model": "ResNet [4, 4, 4, 3], channels 32-256",
        "parameters": "4,754,218 (summary table; the text says 4.87M)", "epochs": "100",
        "learning rate": "0.1 (text; the epoch log runs at ~0.01, see the note)",
        "schedule": "cosine annealing over 100 epochs (text; see the note)",
        "crop": "32x32 from 36x36 padded images (padding 2)", "flips": "horizontal p 0.5, vertical p 0.05",
        "blur": "Gaussian 3x3, sigma in '[0.1,1,1.5]', p 0.3", "mixing": "CutMix (alpha and p not given)",
        "determinism": "deterministic workflows, fixed seeds", "seeds": "fixed seeds (value not given)"},
    chosen={
        "images": "no split described; the epoch log reports test accuracy, so all 50,000 train",
        "split": "no validation split: the log evaluates on the test set every epoch",
        "batch size": "128, common for ResNet on CIFAR", "batches per epoch": BATCHES, "loss": LOSS,
        "blur": "sigma read as the range 0.1-1.5 (the text's '[0.1,1,1.5]' is garbled)",
        "mixing": "alpha 1, p 0.5: report 001's CutMix values", "normalisation": OWN_STATS,
        "seeds": "42, a common fixed seed"},
    note=("Report 002 contradicts itself on its schedule. Its text says cosine annealing from 0.1 over 100 "
          "epochs, and the full profile runs exactly that. Its epoch log, however, starts at LR 0.009998 with "
          "89.47% test accuracy after the first epoch: a freshly initialised network does not reach that in "
          "one epoch, so the logged 100 epochs are a second, warm-started phase at a peak of about 0.01 (it "
          "also mentions a 'hybrid' multi-step schedule). Its final 94.65% therefore comes from a two-phase "
          "run whose first phase the report does not describe; this notebook cannot reproduce it exactly."),
    reported={"parameters": 4_754_218, "memory_mb": {"input": 0.01, "forward_backward": 10.16, "params": 18.14,
                                                     "total": 28.31}},
)

# Report 002's epoch log at a few epochs: (LR printed after the epoch, train loss, test accuracy %).
# Epochs 48-54 are missing from the report; epoch 2's LR repeats epoch 1's as printed there.
REPORTED_LOG = {
    1: (0.009998, 0.4110, 89.47), 2: (0.009998, 0.3192, 91.05), 3: (0.009978, 0.3043, 90.43),
    10: (0.009755, 0.2534, 91.11), 25: (0.008536, 0.2104, 91.98), 47: (0.005471, 0.1514, 92.67),
    55: (0.004218, 0.1287, 93.34), 80: (0.000955, 0.0673, 94.61), 100: (0.000000, 0.0571, 94.65),
}
LOG_EPOCHS = 100  # "Epoch [k/100]"
LOG_PEAK = 0.01   # the peak the log's LRs imply (0.009998 after one of 100 cosine epochs)


def schedule_readings(config: TrainConfig, peak: float = LOG_PEAK) -> pd.DataFrame:
    """Report 002's logged LR beside the LR after the same epoch under its text's schedule (``config``:
    the full profile's cosine from 0.1) and under a cosine from ``peak`` (03's protocol note).

    The schedules come from :func:`helpers.train.lr_trace` (torch's own scheduler, stepped alone), so
    they are what training under either reading would log after each epoch. Rounded to 6 decimals,
    as the report prints them."""
    if config.schedule != "cosine" or config.epochs != LOG_EPOCHS:
        raise ValueError(f"give the report's schedule (cosine over {LOG_EPOCHS} epochs, the full profile's), "
                         f"not {config.schedule!r} over {config.epochs} epochs")
    epochs = list(REPORTED_LOG)
    text = [end for _, end in lr_trace(config, 1)]
    log = [end for _, end in lr_trace(config.replace(lr=peak), 1)]
    return pd.DataFrame({"report 002's log": [REPORTED_LOG[e][0] for e in epochs],
                         f"text: cosine from {config.lr:g}": [round(text[e - 1], 6) for e in epochs],
                         f"log: cosine from {peak:g}": [round(log[e - 1], 6) for e in epochs]},
                        index=pd.Index(epochs, name="after epoch"))


def epoch_log(history: pd.DataFrame, head: int = 5, tail: int = 10) -> pd.DataFrame:
    """A run's epoch log as report 002 prints it (03): the LR in force after the epoch's scheduler
    step (``lr_end``), the training loss and the test accuracy in %; the first ``head`` and last
    ``tail`` epochs when there are more than ``head + tail``."""
    missing = {"epoch", "lr_end", "train_loss", "test_acc"} - set(history.columns)
    if missing:
        raise ValueError(f"history lacks {sorted(missing)}; it has {list(history.columns)}")
    log = pd.DataFrame({"LR after the epoch": history["lr_end"].round(6).to_numpy(),
                        "train loss": history["train_loss"].round(4).to_numpy(),
                        "test accuracy (%)": (100 * history["test_acc"]).round(2).to_numpy()},
                       index=pd.Index(history["epoch"].astype(int).to_numpy(), name="epoch"))
    return log if len(log) <= head + tail else pd.concat([log.head(head), log.tail(tail)])


def views_against(view_preds: dict, reference: str = "original") -> tuple[pd.DataFrame, dict]:
    """Each test-time view alone against ``reference`` on the same test images (03): accuracies,
    difference (view minus reference) in points with its paired bootstrap interval and exact McNemar
    p, and the images only the view ("view only") or only the reference gets right
    (:func:`helpers.evidence.paired_proportions`). Returns the table and
    view -> ``PairedProportions.to_dict()`` for metrics.json."""
    if reference not in view_preds:
        raise ValueError(f"reference view {reference!r} not among {list(view_preds)}")
    rows, stats = {}, {}
    base = view_preds[reference].correct
    for view, p in view_preds.items():
        if view == reference:
            continue
        r = E.paired_proportions(base, p.correct)
        rows[view] = {"view (%)": 100 * r.mean_b, f"{reference} (%)": 100 * r.mean_a,
                      "diff. (points)": 100 * r.diff, "95% interval": E.format_interval([100 * c for c in r.ci]),
                      "p": E.format_p(r.p_value), "view only": r.only_b, f"{reference} only": r.only_a}
        stats[view] = r.to_dict()
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("view"), stats


def pad_crop_check(net: Net, images, view_preds: dict) -> dict:
    """Whether report 002's fourth view (pad by 4, centre crop) returns the images, normalised as the
    net's inputs are, pixel for pixel, and on how many test images its prediction differs from the
    original view's (03)."""
    x = normalize(torch.as_tensor(images), net.mean, net.std)
    same = bool(torch.equal(TTA_VIEWS["pad_crop"](x), x))
    differ = int((view_preds["pad_crop"].pred != view_preds["original"].pred).sum())
    return {"pixels equal to the original": same, "test images": len(x), "predictions that differ": differ}


def top_confusions(cm, classes, k: int = 5) -> pd.DataFrame:
    """The ``k`` largest off-diagonal cells of a confusion matrix (rows true, columns predicted):
    images and their share of the true class in % (03)."""
    cm = np.asarray(cm)
    off = cm.astype(float).copy()
    np.fill_diagonal(off, -1)
    order = np.argsort(off, axis=None, kind="stable")[::-1][:k]
    rows = [(classes[t], classes[p], int(cm[t, p]), 100 * cm[t, p] / max(cm[t].sum(), 1))
            for t, p in zip(*np.unravel_index(order, cm.shape)) if t != p and cm[t, p] > 0]
    return pd.DataFrame(rows, columns=["true class", "predicted as", "images", "% of the true class"])


def training_table(S, runs: list) -> pd.DataFrame:
    """One row per seed (03): epochs, the last epoch's test accuracy (the model tested), the highest
    logged one and its epoch, and training minutes (as recorded when the run was trained)."""
    rows = {}
    for seed, run in zip(S.seeds, runs):
        h = run.history
        best = h["test_acc"].idxmax()
        rows[f"seed {seed}"] = {"epochs": len(h), "last epoch (%)": 100 * h["test_acc"].iloc[-1],
                                "highest logged (%)": 100 * h.loc[best, "test_acc"],
                                "at epoch": int(h.loc[best, "epoch"]), "training minutes": h["seconds"].sum() / 60,
                                "device": run.info.get("environment", {}).get("device", "—")}
    return pd.DataFrame.from_dict(rows, orient="index")


def summary_rows(S, single: list, tta: list) -> list[dict]:
    """The summary box's rows (03): the headline's rows for the single view and 5-view TTA (mean over
    seeds, beside report 002's 94.65%), then the single view's exact 95% interval on the first seed's
    test images and, with several seeds, the t-interval over seeds."""
    h = STUDY.headline
    accs = {h.label_a: [float(p.correct.mean()) for p in single], h.label_b: [float(p.correct.mean()) for p in tta]}
    rows = h.rows(accs)
    low, high = E.accuracy_interval(single[0].correct)
    rows.append({"name": f"{h.label_a}, exact 95% interval (seed {S.seeds[0]})", "value": f"[{low:.2f}, {high:.2f}]",
                 "report": None, "unit": "%"})
    if len(single) > 1:
        s = E.over_seeds([100 * a for a in accs[h.label_a]])
        rows.append({"name": f"{h.label_a}, 95% interval over {s.n} seeds", "value": f"[{s.ci[0]:.2f}, {s.ci[1]:.2f}]",
                     "report": None, "unit": "%"})
    return rows


def layer_table(layers: pd.DataFrame) -> pd.DataFrame:
    """:func:`helpers.models.summary`'s table without the in-place ReLUs, numbered again from 1 (03).
    Report 002's torchsummary table comes from a model that calls ReLU as a function, so its layers
    are numbered without them (85 rows, ending "Linear-85"); this numbering matches it."""
    kept = layers[~layers["in_place"]].reset_index(drop=True)
    names = [f"{name.rsplit('-', 1)[0]}-{i}" for i, name in enumerate(kept["layer"], start=1)]
    return pd.DataFrame({"output shape": kept["output_shape"].map(str).to_numpy(),
                         "parameters": kept["params"].to_numpy()},
                        index=pd.Index(names, name="layer"))


# --- the prediction file ------------------------------------------------------------------------

def write_predictions(path, ids: Sequence, preds: Predictions) -> pd.DataFrame:
    """Write a Kaggle-style submission ``ID,Label`` (03): one row per image, the label as class index.

    Written with the package's atomic writer (``store.save_text``: a temporary file, then a
    rename), so an existing file is never left half-written. Returns the table written.
    """
    ids = list(ids)
    if len(ids) != len(preds):
        raise ValueError(f"{len(ids)} IDs for {len(preds)} predictions")
    table = pd.DataFrame({"ID": ids, "Label": preds.pred.astype(np.int64)})
    save_text(table.to_csv(index=False), Path(path))
    return table


def check_predictions(path, ids: Sequence, num_classes: int) -> pd.DataFrame:
    """Read a prediction file back and check its format (03): columns exactly ``ID,Label``, one
    row per expected ID in order, no duplicates, integer labels in [0, num_classes). Raises
    ValueError naming the file and the first problem; returns the table."""
    table = pd.read_csv(path, dtype={"ID": str})
    problems = []
    if list(table.columns) != ["ID", "Label"]:
        problems.append(f"columns are {list(table.columns)}, expected ['ID', 'Label']")
    elif len(table) != len(ids):
        problems.append(f"{len(table)} rows for {len(ids)} images")
    elif table["ID"].tolist() != [str(i) for i in ids]:
        problems.append("IDs are not the expected ones in order")
    elif table["ID"].duplicated().any():
        problems.append("duplicate IDs")
    elif not pd.api.types.is_integer_dtype(table["Label"]) or not table["Label"].between(0, num_classes - 1).all():
        problems.append(f"labels must be integers in [0, {num_classes - 1}]")
    if problems:
        raise ValueError(f"{path}: {problems[0]}")
    return table


# --- figures ---------------------------------------------------------------------------------------

def tta_bars(accs: pd.Series, title: str = "Test accuracy per test-time view") -> plt.Figure:
    """Accuracy with each test-time view alone and averaged (03); ``accs``: view -> accuracy."""
    fig, ax = plt.subplots(figsize=(6.5, 3.0))
    bars = ax.bar(accs.index, 100 * accs.to_numpy(), color=[PALETTE[i % len(PALETTE)] for i in range(len(accs))])
    ax.bar_label(bars, labels=[f"{100 * a:.2f}%" for a in accs], fontsize=8)
    low = 100 * accs.min()
    ax.set_ylim(max(0, low - 10), min(100, 100 * accs.max() + 3))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=15)
    fig.tight_layout()
    return fig


def parameter_breakdown(params: pd.Series, budget: int | None = None) -> plt.Figure:
    """Parameters per part of a model as horizontal bars, with the budget if given (03)."""
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(params) + 1.2))
    bars = ax.barh(params.index, params.to_numpy(), color=PALETTE[0])
    ax.bar_label(bars, labels=[f"{v:,}" for v in params], fontsize=8, padding=3)
    ax.invert_yaxis()
    ax.set_xlabel("parameters")
    total = int(params.sum())
    ax.set_title(f"Parameters per stage: {total:,} in all"
                 + (f" ({100 * total / budget:.1f}% of the {budget:,} budget)" if budget else ""))
    ax.set_xlim(0, params.max() * 1.25)
    fig.tight_layout()
    return fig
