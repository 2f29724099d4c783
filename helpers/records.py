"""Per-layer records of a training run (notebook 04): gradient statistics and weight updates.

``helpers.train.fit`` runs both recorders when a config has ``record_every > 0`` and stores their
tables with the run (``gradients.csv``, ``updates.csv``), so the figures re-draw without
retraining. A "layer" is a module with a weight of 2 or more dimensions: convolutions and linear
layers (BatchNorm scales are left out: they are vectors and read differently).

- :class:`GradientRecorder` -- every ``every`` optimiser steps, per layer: mean and max |gradient|
  and the gradient norm, after ``backward``.
- :class:`UpdateRecorder` -- every ``every`` steps, per layer: the weight change since the previous
  record and the weight's statistics, after the optimiser step.
- :func:`flag` -- which gradient records count as vanishing or exploding.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

# Gradient flags (04): a layer's mean |gradient| below VANISH or its gradient norm above EXPLODE, the
# thresholds of report 003's health check ("all layers maintain > 10^-6", "max gradients < 10^1").
VANISH = 1e-6
EXPLODE = 10.0


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
