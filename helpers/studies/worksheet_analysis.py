"""Study 04 (report 003): what a ResNet-18 run does inside -- compute, gradient flow, weight updates --
and two batch size / learning-rate settings.

``STUDY`` is the study's definition (``helpers.studies.base``). The rest is notebook 04's own: report
003's numbers (:data:`REPORTED` and the tables beside it: :func:`architecture`,
:func:`experiment_summary`, :func:`gradient_health`, :func:`stage_gradients`, :func:`stage_updates`,
:func:`lr_readings`, :func:`weight_check`), :func:`log_run` (a run's records to TensorBoard or
Weights & Biases, offline, when installed), and the figures of the records. The records
themselves come from ``helpers.records`` (the engine keeps them with each run) and the FLOPs from
``helpers.models.flops``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from torch import nn

from ..evaluate import epochs_to_reach
from ..models import flops
from ..plots import PALETTE
from ..records import EXPLODE, VANISH, flag, layers
from ..train import batches_per_epoch, lr_trace
from .base import COMMON_SEED, COMMON_STATED, CROP_FLIP, LAST_EPOCH, LOSS, Headline, Study

STUDY = Study(
    name="worksheet_analysis",
    notebook="04_worksheet_analysis",
    title="Inside a ResNet-18 run: compute, gradient flow, weight updates and the batch size",
    report="003",
    dataset="cifar10",
    full=dict(train=dict(model="resnet18_cifar", epochs=25, batch_size=64, lr=0.15, momentum=0.9, weight_decay=5e-4,
                         schedule="cosine", augment=dict(CROP_FLIP, jitter=0.2), normalize="cifar10",
                         drop_last=True,    # 781 and 390 batches per epoch for batch 64 and 128 on 50,000 images
                         record_every=100,  # gradient / weight-update records every 100 batches
                         val_fraction=0.0,  # the report evaluates on the test split each epoch
                         seed=42),          # seed not given: 42
              extra=dict(batch_size_2=128, lr_2=0.20)),  # experiment 2
    quick=dict(n_train=6_000, n_test=2_000, train=dict(width=0.125, epochs=6, record_every=20)),
    smoke=dict(record_every=2),
    variants=lambda extra: {"exp1": dict(name="worksheet-exp1"),
                            "exp2": dict(name="worksheet-exp2", batch_size=extra["batch_size_2"], lr=extra["lr_2"])},
    headline=Headline("exp1", "exp2", "exp 1 (batch 64, lr 0.15)", "exp 2 (batch 128, lr 0.20)", (93.10, 92.39)),
    stated={
        **COMMON_STATED, "dataset": "CIFAR-10", "images": "50,000 / none / 10,000",
        "split": "none: test set every epoch", "model": "ResNet-18 for 32x32 input", "parameters": "11,173,962",
        "epochs": "25", "batch size": "64 (exp 2: 128)", "batches per epoch": "781 (exp 2: 390)",
        "learning rate": "0.15 (exp 2: 0.20)", "colour jitter": "brightness, contrast, saturation +-0.2",
        "schedule": "cosine annealing to 0 at epoch 25", "crop": "32x32, padding 4", "flips": "horizontal p 0.5",
        "normalisation": "mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010)",
        "records": "gradients and weight updates every 100 batches"},
    chosen={"loss": LOSS, "determinism": "deterministic kernels, for reproducible runs", "seeds": COMMON_SEED,
            "checkpoint tested": LAST_EPOCH},
)

# Report 003: "no weight explosion (all values < 1.0)": the largest |weight| of every layer stays below.
WEIGHT_LIMIT = 1.0


def weight_check(runs: dict, limit: float = WEIGHT_LIMIT) -> pd.DataFrame:
    """Report 003's "no weight explosion (all values < 1.0)", one row per run (04).

    ``runs``: name -> ``helpers.train.Run``. The largest |weight| of any conv / linear layer over
    the run's update records (``weight_max_abs``) and its current weights, where it was, and
    whether it stays below ``limit``. Runs without records (or recorded before the column
    existed) are checked on their current weights only, and say so.
    """
    rows = {}
    for name, run in runs.items():
        found = [(p.detach().abs().max().item(), layer, f"{run.weights} weights") for layer, p in layers(run.model)]
        updates = run.updates
        recorded = updates is not None and "weight_max_abs" in updates
        if recorded:
            r = updates.loc[updates["weight_max_abs"].idxmax()]
            found.append((float(r["weight_max_abs"]), r["layer"], f"step {int(r['step'])} (epoch {int(r['epoch'])})"))
        largest, layer, when = max(found, key=lambda f: f[0])
        rows[name] = {"largest |weight|": largest, "layer": layer, "when": when,
                      "checked": "records and weights" if recorded else "weights only (no records)",
                      f"all < {limit:g}": largest < limit}
    return pd.DataFrame.from_dict(rows, orient="index")


# --- report 003's tables ----------------------------------------------------------------------------

# What report 003 states per experiment (exp 1: batch 64, lr 0.15; exp 2: batch 128, lr 0.20). Test and
# train accuracy, gap and first-epoch accuracy in %; the train loss is given for experiment 1 only.
REPORTED = {
    "exp1": {"test acc (%)": 93.10, "train acc (%)": 97.25, "gap (points)": 4.15, "test loss": 0.2153,
             "train loss": 0.0864, "epoch-1 test acc (%)": 28.59, "batches / epoch": 781},
    "exp2": {"test acc (%)": 92.39, "train acc (%)": 97.77, "gap (points)": 5.38, "test loss": 0.2375,
             "epoch-1 test acc (%)": 35.43, "batches / epoch": 390},
}
# The LR each experiment logged after the epoch's scheduler step, at the epochs the report prints.
REPORTED_LR = {"exp1": {1: 0.1494, 5: 0.1357, 10: 0.0982, 15: 0.0518, 20: 0.0143, 25: 0.0},
               "exp2": {1: 0.1992, 5: 0.1809, 10: 0.1309, 15: 0.0691, 20: 0.0191, 25: 0.0}}
# Its gradient range per stage (the statistic is not named) and its ranking of the total weight change.
REPORTED_GRADIENTS = {"fc": "1e-1 to 1e0", "layer4": "1e-2 to 1e-1", "layer3": "1e-3 to 1e-2",
                      "layer2": "1e-4 to 1e-3", "layer1": "1e-5 to 1e-4"}
REPORTED_UPDATE_RANK = {"fc": 1, "layer4": 2, "layer3": 3, "layer2": 4, "layer1": 5}


def stage(layer: str) -> str:
    """The part of a ResNet a layer belongs to: "layer3.1.conv2" -> "layer3", "conv1" -> "stem",
    "fc" -> "fc" (04's per-stage tables)."""
    head = layer.split(".")[0]
    return "stem" if head in ("conv1", "bn1") else head


def architecture(model: nn.Module, input_size=(3, 32, 32)) -> pd.DataFrame:
    """The model part by part, as report 003's architecture figure draws it (04): one row per top-level
    module, with the blocks of each stage (an ``nn.Sequential``) on their own rows; its type, the
    output shape of one image (channels x height x width), its parameters and multiply-adds (from
    :func:`helpers.models.flops`) and its share of them."""
    parts = []
    for name, child in model.named_children():
        parts += ([(f"{name}.{n}", c) for n, c in child.named_children()] if isinstance(child, nn.Sequential)
                  else [(name, child)])
    shapes, hooks = {}, []

    def keep(name):  # a hook that returns something would replace the module's output
        def hook(module, inputs, output):
            shapes.setdefault(name, " x ".join(map(str, output.shape[1:])))
        return hook

    for name, module in parts:
        hooks.append(module.register_forward_hook(keep(name)))
    try:
        table, totals = flops(model, input_size)
    finally:
        for h in hooks:
            h.remove()
    rows = []
    for name, module in parts:
        macs = int(table.loc[(table["layer"] == name) | table["layer"].str.startswith(name + "."), "macs"].sum())
        rows.append({"part": name, "type": type(module).__name__, "output": shapes.get(name, "—"),
                     "parameters": sum(p.numel() for p in module.parameters()), "MACs": macs,
                     "share (%)": 100 * macs / totals["macs"]})
    return pd.DataFrame(rows).set_index("part")


def experiment_summary(runs: dict, data, reported: dict | None = None) -> pd.DataFrame:
    """Report 003's comparison table for this run (04): per experiment, this run's numbers and, on
    the row below, the report's ("—" where it gives none).

    ``runs``: variant ("exp1", "exp2") -> ``helpers.train.Run`` (the first seed); ``data``: the
    dataset trained on (for the batches per epoch, drop_last as configured). The convergence epoch
    is the first whose test accuracy reaches 95% of the final one; the time is this machine's."""
    reported = REPORTED if reported is None else reported
    rows = {}
    for variant, run in runs.items():
        h, last = run.history, run.history.iloc[-1]
        rows[f"{variant}, this run"] = {
            "test acc (%)": 100 * last["test_acc"], "train acc (%)": 100 * last["train_acc"],
            "gap (points)": 100 * (last["train_acc"] - last["test_acc"]), "test loss": last["test_loss"],
            "train loss": last["train_loss"], "epoch-1 test acc (%)": 100 * h["test_acc"].iloc[0],
            "batches / epoch": batches_per_epoch(run.config, len(data.train_labels)),
            "convergence epoch": epochs_to_reach(h, 0.95 * last["test_acc"], column="test_acc"),
            "time (s)": float(h["seconds"].sum())}
        rows[f"{variant}, report 003"] = reported.get(variant, {})
    return pd.DataFrame.from_dict(rows, orient="index")


def gradient_health(gradients: dict, vanish: float = VANISH, explode: float = EXPLODE) -> pd.DataFrame:
    """Report 003's gradient health check, one column per experiment (04): how many (layer, record)
    pairs had a mean |gradient| below ``vanish`` or a gradient norm above ``explode``, the smallest
    and largest of each, and the mean gradient norm over the layers at the last record (the report:
    0.00342 "at convergence")."""
    rows = {}
    for name, g in gradients.items():
        last, flagged = g[g["step"] == g["step"].max()], flag(g, vanish, explode)
        rows[name] = {"records": int(g["step"].nunique()), "layer records": len(g),
                      f"vanishing (mean |grad| < {vanish:g})": int(flagged["vanishing"].sum()),
                      f"exploding (norm > {explode:g})": int(flagged["exploding"].sum()),
                      "smallest mean |grad|": float(g["mean_abs"].min()), "largest norm": float(g["norm"].max()),
                      "mean norm, last record": float(last["norm"].mean())}
    return pd.DataFrame({name: pd.Series(row, dtype=object) for name, row in rows.items()})  # counts stay ints


def stage_gradients(gradients: pd.DataFrame, reported: dict | None = None) -> pd.DataFrame:
    """One experiment's gradients per stage (04): the range and median over all records and layers
    of the stage, of the mean |gradient| and the gradient norm, beside the report's range."""
    reported = REPORTED_GRADIENTS if reported is None else reported
    g = gradients.assign(stage=gradients["layer"].map(stage)).groupby("stage", sort=False)
    table = pd.DataFrame({"mean |grad| min": g["mean_abs"].min(), "mean |grad| median": g["mean_abs"].median(),
                          "mean |grad| max": g["mean_abs"].max(), "norm median": g["norm"].median()})
    table["report 003"] = [reported.get(s, "—") for s in table.index]
    return table


def stage_updates(updates: pd.DataFrame, reported: dict | None = None) -> pd.DataFrame:
    """One experiment's weight change per stage, ranked as report 003 ranks its layers (04): the
    mean relative update and the total weight change (sum of the per-record update norms, mean
    over the stage's layers), ranked by the total, beside the report's rank."""
    reported = REPORTED_UPDATE_RANK if reported is None else reported
    u = updates.assign(stage=updates["layer"].map(stage))
    total = u.groupby(["stage", "layer"], sort=False)["update_norm"].sum().groupby(level=0, sort=False).mean()
    table = pd.DataFrame({"total change": total,
                          "mean relative update": u.groupby("stage", sort=False)["relative_update"].mean()})
    table = table.sort_values("total change", ascending=False)
    table.insert(0, "rank", range(1, len(table) + 1))
    table["report 003's rank"] = [reported.get(s) for s in table.index]
    return table


def lr_readings(configs: dict, reported: dict | None = None) -> pd.DataFrame:
    """Report 003's logged LR beside the cosine schedule's (04), at the epochs the report prints:
    the LR an epoch starts with and the one in force after its scheduler step (what the report
    logs), per experiment. ``configs``: variant -> the full profile's TrainConfig; the schedule comes
    from :func:`helpers.train.lr_trace` (torch's scheduler stepped alone, no training)."""
    reported = REPORTED_LR if reported is None else reported
    columns = {}
    for variant, config in configs.items():
        epochs = list(reported[variant])
        if config.schedule != "cosine" or config.epochs != epochs[-1]:
            raise ValueError(f"give the report's schedule (cosine over {epochs[-1]} epochs, the full profile's), "
                             f"not {config.schedule!r} over {config.epochs} epochs")
        trace = lr_trace(config, 1)
        columns[f"{variant} report"] = [reported[variant][e] for e in epochs]
        columns[f"{variant} after step"] = [round(trace[e - 1][1], 4) for e in epochs]
        columns[f"{variant} at start"] = [round(trace[e - 1][0], 4) for e in epochs]
    return pd.DataFrame(columns, index=pd.Index(epochs, name="epoch"))


# --- experiment logging ----------------------------------------------------------------------------

LOGGERS = ("none", "tensorboard", "wandb")
RECORD_VALUE = {"gradients": "norm", "updates": "relative_update"}  # the number logged per layer and record


def log_run(run, to: str = "none", log_dir: str | Path | None = None, name: str | None = None) -> Path | None:
    """Copy a run's per-epoch history (and its gradient / update records, if any) to TensorBoard
    or Weights & Biases in offline mode (04). ``to="none"`` does nothing: the run folder's
    ``history.csv`` and ``run.json`` are the record either way.

    Logs go to ``log_dir`` (default: ``<run folder>/<to>/``). A missing package is an error that
    says how to install it. Returns the log folder (None for "none").
    """
    if to not in LOGGERS:
        raise ValueError(f"unknown logger {to!r}; valid: {', '.join(LOGGERS)}")
    if to == "none":
        return None
    folder = Path(log_dir) if log_dir is not None else Path(run.path) / to
    name = name or Path(run.path).name
    history = run.history
    records = {kind: df for kind, df in (("gradients", run.gradients), ("updates", run.updates)) if df is not None}
    if to == "tensorboard":
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package
        except ImportError as err:
            raise ImportError("logging to TensorBoard needs the tensorboard package: pip install tensorboard") from err
        with SummaryWriter(log_dir=str(folder / name)) as writer:
            for row in history.itertuples(index=False):
                for column in history.columns.drop("epoch"):  # train_*, val_* or test_*, lr, seconds
                    writer.add_scalar(f"epoch/{column}", getattr(row, column), int(row.epoch))
            for kind, df in records.items():
                for row in df.itertuples(index=False):
                    writer.add_scalar(f"{kind}/{row.layer}", getattr(row, RECORD_VALUE[kind]), int(row.step))
        return folder
    try:
        import wandb  # an optional extra, imported only when asked for
    except ImportError as err:
        raise ImportError("logging to Weights & Biases needs the wandb package: pip install wandb") from err
    folder.mkdir(parents=True, exist_ok=True)
    with wandb.init(project="cnn-cifar-course", name=name, dir=str(folder), mode="offline",
                    config=run.info.get("config", {})) as wb:
        # per-epoch rows and per-step records each on their own x axis, as in the TensorBoard branch
        wb.define_metric("epoch/*", step_metric="epoch")
        for row in history.to_dict("records"):
            wb.log({"epoch": int(row["epoch"]), **{f"epoch/{k}": v for k, v in row.items() if k != "epoch"}})
        for kind, df in records.items():
            wb.define_metric(f"{kind}/*", step_metric=f"{kind}_step")
            for step, group in df.groupby("step", sort=True):
                wb.log({f"{kind}_step": int(step),
                        **{f"{kind}/{layer}": v for layer, v in zip(group["layer"], group[RECORD_VALUE[kind]])}})
    return folder


# --- figures of the records -------------------------------------------------------------------


def flops_per_layer(table: pd.DataFrame, title: str = "Compute per layer (one 32x32 image)") -> plt.Figure:
    """Each layer's share of the forward pass's FLOPs, as horizontal bars in forward order (04).

    ``table`` comes from ``helpers.models.flops``; the labels give MACs (multiply-accumulates).
    """
    fig, ax = plt.subplots(figsize=(7.5, 0.24 * len(table) + 1.2))
    bars = ax.barh(table["layer"], 100 * table["share"], color=PALETTE[0])
    ax.bar_label(bars, labels=[f"{m / 1e6:.1f} M MACs" for m in table["macs"]], fontsize=6, padding=2)
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("share of the forward pass (%)")
    ax.set_xlim(0, 100 * table["share"].max() * 1.35)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _phase_steps(steps: np.ndarray) -> dict[str, int]:
    """The first, middle and last recorded step: 'early', 'middle', 'late' training."""
    steps = np.unique(steps)
    return {"early": int(steps[0]), "middle": int(steps[len(steps) // 2]), "late": int(steps[-1])}


def gradient_flow(gradients: dict[str, pd.DataFrame], value: str = "mean_abs") -> plt.Figure:
    """Per-layer gradient magnitude (log scale) early, midway and late in training, one panel per
    experiment (04). Layers run from the input (left) to the classifier (right)."""
    n = len(gradients)
    fig, axes = plt.subplots(1, n, figsize=(6.2 * n, 3.6), squeeze=False, sharey=True)
    for ax, (name, g) in zip(axes[0], gradients.items()):
        order = list(dict.fromkeys(g["layer"]))
        for i, (phase, step) in enumerate(_phase_steps(g["step"].to_numpy()).items()):
            at = g[g["step"] == step].set_index("layer").loc[order, value]
            ax.plot(range(len(order)), at.to_numpy(), marker="o", markersize=3, color=PALETTE[i],
                    label=f"{phase} (step {step})")
        ax.set_yscale("log")
        ax.set_xticks(range(len(order)), order, rotation=90, fontsize=6)
        ax.set_title(name)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel({"mean_abs": "mean |gradient|", "norm": "gradient norm", "max_abs": "max |gradient|"}[value])
    fig.suptitle("Gradient flow by layer", fontweight="bold")
    fig.tight_layout()
    return fig


def layer_heatmaps(records: dict[str, pd.DataFrame], value: str, label: str, title: str) -> plt.Figure:
    """log10 of a per-layer record (rows: layers from input to output; columns: recorded steps),
    one panel per experiment (04: gradient norms and relative weight updates over training)."""
    n = len(records)
    fig, axes = plt.subplots(1, n, figsize=(6.2 * n, 4.6), squeeze=False)
    for ax, (name, df) in zip(axes[0], records.items()):
        order = list(dict.fromkeys(df["layer"]))
        grid = df.pivot(index="layer", columns="step", values=value).loc[order]
        shown = np.log10(grid.clip(lower=1e-12))
        sns.heatmap(shown, ax=ax, cmap="viridis", cbar_kws={"label": f"log10 {label}"},
                    xticklabels=max(1, grid.shape[1] // 8), yticklabels=True)
        ax.tick_params(axis="y", labelsize=6)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("")
        ax.set_title(name)
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig


def update_lines(updates: dict[str, pd.DataFrame], layers: list[str]) -> plt.Figure:
    """Relative weight update over training for a few named layers (log scale), per experiment (04)."""
    n = len(updates)
    fig, axes = plt.subplots(1, n, figsize=(6.2 * n, 3.4), squeeze=False, sharey=True)
    for ax, (name, u) in zip(axes[0], updates.items()):
        for i, layer in enumerate(layers):
            rows = u[u["layer"] == layer]
            ax.plot(rows["step"], rows["relative_update"], color=PALETTE[i % len(PALETTE)], label=layer)
        ax.set_yscale("log")
        ax.set_xlabel("optimiser step")
        ax.set_title(name)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("|change| / |weight| per interval")
    fig.suptitle("Weight updates over training", fontweight="bold")
    fig.tight_layout()
    return fig


def weight_stats(updates: dict[str, pd.DataFrame], layers: list[str], limit: float | None = None) -> plt.Figure:
    """Weight spread (standard deviation, top) and magnitude (largest |weight|, bottom) of a few named
    layers over training, one column per experiment (04); ``limit``: report 003's bound on |weight|,
    drawn dashed."""
    n = len(updates)
    fig, axes = plt.subplots(2, n, figsize=(6.2 * n, 5.6), squeeze=False, sharex="col", sharey="row")
    for col, (name, u) in enumerate(updates.items()):
        for i, layer in enumerate(layers):
            rows = u[u["layer"] == layer]
            for row, value in enumerate(("weight_std", "weight_max_abs")):
                axes[row, col].plot(rows["step"], rows[value], color=PALETTE[i % len(PALETTE)], label=layer)
        if limit is not None:
            axes[1, col].axhline(limit, color="grey", linestyle="--", linewidth=1, label=f"|weight| = {limit:g}")
        axes[0, col].set_title(name)
        axes[1, col].set_xlabel("optimiser step")
    axes[0, 0].set_ylabel("weight std")
    axes[1, 0].set_ylabel("largest |weight|")
    axes[1, -1].legend(fontsize=7)
    fig.suptitle("Weight spread and magnitude over training", fontweight="bold")
    fig.tight_layout()
    return fig
