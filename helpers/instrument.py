"""Looking inside training (notebook 04): FLOPs, gradient flow, weight updates, experiment logs.

- :func:`flops` -- per-layer compute of one forward pass, counted by ``torch.utils.flop_counter``
  (no hand formulas). Convention: the counter reports FLOPs with one multiply-add = 2 FLOPs;
  tables show both FLOPs and MACs (multiply-accumulates = FLOPs / 2), labelled. Report 003's
  "0.5567 GFLOPs" for ResNet-18 is in MACs. Only convolutions and matrix products are counted;
  BatchNorm, ReLU, pooling and the residual additions are memory-bound and add well under 1%.
- :class:`GradientRecorder`, :class:`UpdateRecorder` -- every ``every`` optimiser steps, per
  layer: gradient statistics (after ``backward``), the weight change since the previous record
  and the largest |weight| (after the optimiser step). ``helpers.train.fit`` runs them when a
  config has ``record_every > 0`` and stores their tables with the run, so plots re-draw without
  retraining. :func:`weight_check` reads report 003's "all values < 1.0" off them.
- :data:`REPORTED` and the tables next to it (:func:`architecture`, :func:`experiment_summary`,
  :func:`gradient_health`, :func:`stage_gradients`, :func:`stage_updates`, :func:`lr_readings`) --
  this run's numbers laid out as report 003 gives them, beside the report's.
- :func:`log_run` -- copy a finished run's history and records to TensorBoard or Weights &
  Biases (offline), when installed. The run folder's CSV/JSON files are always written anyway.

A "layer" here is a module with a weight of 2 or more dimensions: convolutions and linear layers
(BatchNorm scales are left out: they are vectors and read differently).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# Gradient flags (04): a layer's mean |gradient| below VANISH or its gradient norm above EXPLODE.
# Report 003: "No vanishing gradients (all layers maintain > 10^-6)", "max gradients < 10^1".
VANISH = 1e-6
EXPLODE = 10.0
# Report 003: "no weight explosion (all values < 1.0)": the largest |weight| of every layer stays below.
WEIGHT_LIMIT = 1.0


def flops(model: nn.Module, input_size=(3, 32, 32)) -> tuple[pd.DataFrame, dict]:
    """FLOPs of one image's forward pass, per layer and in total (04).

    Returns ``(table, totals)``. ``table``: one row per layer that does compute, in forward
    order, with ``layer`` (module name), ``type``, ``flops``, ``macs`` (= flops / 2), ``share``
    (fraction of the total) and ``params``. ``totals``: ``flops``, ``macs``, ``params`` and
    ``flops_per_param``. The model runs once in eval mode on a zero image (on its device).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_size, device=device))
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    prefix = type(model).__name__ + "."
    modules = dict(model.named_modules())
    rows = []
    for name, module in modules.items():  # named_modules is definition order = forward order here
        if not name or any(True for _ in module.children()):
            continue
        n = sum(counts.get(prefix + name, {}).values())
        if n:
            rows.append(dict(layer=name, type=type(module).__name__, flops=int(n), macs=int(n) // 2,
                             params=sum(p.numel() for p in module.parameters())))
    table = pd.DataFrame(rows)
    total = int(counter.get_total_flops())
    table["share"] = table["flops"] / total
    params = sum(p.numel() for p in model.parameters())
    return table, dict(flops=total, macs=total // 2, params=params, flops_per_param=total / params)


def layers(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(module name, weight) of every conv / linear layer, in definition order (04)."""
    return [(name, m.weight) for name, m in model.named_modules()
            if getattr(m, "weight", None) is not None and m.weight.dim() >= 2]


def _interval(every) -> int:
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, not {every!r}")
    return every


class GradientRecorder:
    """Per-layer gradient statistics every ``every`` steps (04).

    Call :meth:`after_backward` after each ``loss.backward()``; at steps ``every, 2*every, ...`` it
    records per layer the mean and max absolute gradient and the gradient's L2 norm. The numbers
    are stacked on the device and copied once per record, so training is not synchronised per
    layer. :meth:`frame` returns the records with ``vanishing`` / ``exploding`` flags.
    """

    columns = ("mean_abs", "max_abs", "norm")

    def __init__(self, model: nn.Module, every: int = 100):
        self.every, self.layers, self.rows = _interval(every), layers(model), []

    def after_backward(self, step: int, epoch: int) -> None:
        if step % self.every:
            return
        stats = torch.stack([torch.stack([g.abs().mean(), g.abs().max(), g.norm()])
                             for g in (p.grad.detach() for _, p in self.layers)]).tolist()
        self.rows += [dict(step=step, epoch=epoch, layer=name, **dict(zip(self.columns, s)))
                      for (name, _), s in zip(self.layers, stats)]

    def frame(self) -> pd.DataFrame:
        return flag(pd.DataFrame(self.rows, columns=["step", "epoch", "layer", *self.columns]))


def flag(gradients: pd.DataFrame, vanish: float = VANISH, explode: float = EXPLODE) -> pd.DataFrame:
    """Gradient records with ``vanishing`` (mean |grad| < ``vanish``) and ``exploding`` (norm >
    ``explode``) flags, by default today's thresholds (04)."""
    return gradients.assign(vanishing=gradients["mean_abs"] < vanish, exploding=gradients["norm"] > explode)


class UpdateRecorder:
    """Per-layer weight updates and weight statistics every ``every`` steps (04).

    Call :meth:`after_step` after each ``optimizer.step()``; at steps ``every, 2*every, ...`` it
    records per layer the L2 norm of the weight change since the previous record (the first
    record: since the recorder was made, i.e. since initialisation), that norm relative to the
    weight's norm, the weight's mean and standard deviation, and its largest absolute value
    (``weight_max_abs``, for report 003's "all values < 1.0"; see :func:`weight_check`).
    """

    columns = ("update_norm", "relative_update", "weight_norm", "weight_mean", "weight_std", "weight_max_abs")

    def __init__(self, model: nn.Module, every: int = 100):
        self.every, self.layers, self.rows = _interval(every), layers(model), []
        self.previous = [p.detach().clone() for _, p in self.layers]

    def after_step(self, step: int, epoch: int) -> None:
        if step % self.every:
            return
        stats = []
        for i, (_, p) in enumerate(self.layers):
            w = p.detach()
            update, norm = (w - self.previous[i]).norm(), w.norm()
            stats.append(torch.stack([update, update / norm, norm, w.mean(), w.std(), w.abs().max()]))
            self.previous[i].copy_(w)
        values = torch.stack(stats).tolist()
        self.rows += [dict(step=step, epoch=epoch, layer=name, **dict(zip(self.columns, v)))
                      for (name, _), v in zip(self.layers, values)]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["step", "epoch", "layer", *self.columns])

    # the weights of the last record are part of the state a resumed run needs
    def state(self) -> dict:
        return dict(rows=self.rows, previous=self.previous)

    def load_state(self, state: dict) -> None:
        self.rows = state["rows"]
        for mine, saved in zip(self.previous, state["previous"]):
            mine.copy_(saved)


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
    :func:`flops`) and its share of them."""
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
    from .evaluate import epochs_to_reach
    from .train import batches_per_epoch

    reported = REPORTED if reported is None else reported
    rows = {}
    for variant, run in runs.items():
        h, last = run.history, run.history.iloc[-1]
        rows[f"{variant}, this run"] = {
            "test acc (%)": 100 * last["test_acc"], "train acc (%)": 100 * last["train_acc"],
            "gap (points)": 100 * (last["train_acc"] - last["test_acc"]), "test loss": last["test_loss"],
            "train loss": last["train_loss"], "epoch-1 test acc (%)": 100 * h["test_acc"].iloc[0],
            "batches / epoch": batches_per_epoch(run.config, data),
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
    from .train import lr_trace

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
            from torch.utils.tensorboard import SummaryWriter
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
        import wandb
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
