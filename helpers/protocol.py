"""The protocol card: each report's stated protocol beside this run's, generated from the settings.

One source of truth: this run's values come from its ``Settings`` (the study's module, the profile
and the overrides); what the report says and why we chose a value where it is silent come from the
study's ``stated`` and ``chosen`` (``helpers.studies``). :func:`protocol_card` lays them side by
side, one row per setting, with a mark:

- ``same``: the report states it and this run uses it;
- ``chosen``: the report is silent (or gives no value), so the value is ours; ``why`` says why;
- ``scaled``: the quick or smoke profile made it smaller or shorter;
- ``changed``: differs from the profile because of a setting you gave (or, for the data, because
  the report's dataset was not available and the synthetic stand-in runs instead).

The full profile's card has no ``changed`` row unless you override something or the data falls back.
"""

from __future__ import annotations

import re

import pandas as pd
import torch

from .data import CIFAR10_MEAN, CIFAR10_STD
from .data.auto import LABELS
from .loader import Augment
from .models import build_model, count_parameters
from .profiles import Settings, settings
from .studies.base import NOT_STATED
from .train import batches_per_epoch

# The settings each row shows, to name the override that changed it.
ROW_FIELDS = {
    "images": ("n_train", "n_test", "val_fraction"), "split": ("val_fraction", "split_seed"),
    "model": ("model", "width", "model_kwargs"), "parameters": ("model", "width", "model_kwargs"),
    "epochs": ("epochs",), "batch size": ("batch_size", "batch_size_2"),
    "batches per epoch": ("batch_size", "batch_size_2", "drop_last", "n_train", "val_fraction"),
    "optimiser": ("nesterov",), "learning rate": ("lr", "lr_2"),
    "schedule": ("schedule", "step_size", "milestones", "gamma", "step_per", "epochs"),
    "momentum": ("momentum",), "weight decay": ("weight_decay",), "loss": ("label_smoothing",),
    "crop": ("augment",), "flips": ("augment",), "colour jitter": ("augment",), "blur": ("augment",),
    "mixing": ("mix", "cutmix_alpha", "cutmix_p"), "normalisation": ("normalize",), "precision": ("precision",),
    "determinism": ("deterministic",), "seeds": ("seed", "seeds"), "records": ("record_every",),
}
CLASSES = {"cifar10": 10, "cifar100": 100}


def protocol_card(s: Settings, data=None) -> pd.DataFrame:
    """The report's protocol beside this run's, one row per setting (all notebooks).

    Columns: ``report`` (what the report states), ``this run``, ``mark`` (same / chosen / scaled /
    changed, see the module doc) and ``why``; indexed by setting. ``data``: the loaded Dataset, for
    its real sizes and class count (else the profile's sizes and the report's classes). The data row
    uses ``s.data_choice``, so call it after ``s.load_data()`` to show the choice that was made.
    """
    choice = s.data_choice
    classes = (data.num_classes if data is not None else 10 if choice.source == "synthetic"
               else CLASSES.get(choice.source, CLASSES[s.study.dataset]))
    sizes = (len(data.train_labels), len(data.test_labels)) if data is not None else None
    profile_default, full = settings(s.study.name, s.profile), settings(s.study.name, "full")
    this, base, report = (values(x, classes, sz) for x, sz in ((s, sizes), (profile_default, None), (full, None)))
    rows = {"dataset": data_row(s, profile_default)}
    for name, value in this.items():
        stated = s.study.stated.get(name, NOT_STATED)
        if value != base[name]:
            given = [f"{k}={s.overrides[k]!r}" for k in ROW_FIELDS[name] if k in s.overrides]
            mark, why = "changed", "you set " + ", ".join(given or [f"{k}={v!r}" for k, v in s.overrides.items()])
        elif value != report[name]:
            mark, why = "scaled", f"smaller in the {s.profile} profile; full profile: {report[name]}"
        elif name in s.study.chosen:
            mark, why = "chosen", s.study.chosen[name]
        else:
            mark, why = "same", ""
        rows[name] = dict(report=stated, **{"this run": value}, mark=mark, why=why)
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("setting")


def data_row(s: Settings, profile_default: Settings) -> dict:
    choice, label = s.data_choice, LABELS[s.study.dataset]
    if s.dataset != profile_default.dataset:
        mark = "same" if choice.source == s.study.dataset else "changed"
        value, why = choice.source, f"you set dataset={s.dataset!r}"
    elif choice.fell_back:
        value, mark, why = "the synthetic stand-in", "changed", choice.reason
    elif choice.source == "synthetic":
        value, mark, why = "the synthetic stand-in", "scaled", f"the {s.profile} profile always runs on it"
    else:
        value = label if choice.source == s.study.dataset else f"{label} ({choice.source})"
        mark, why = "same", choice.reason
    return dict(report=s.study.stated["dataset"], **{"this run": brief(value)}, mark=mark, why=brief(why))


def brief(text: str) -> str:
    """Paths shortened to their last part: a table cell cannot wrap inside one long path (the title
    block above the card names the full source)."""
    return re.sub(r"(?:folder:)?/\S*/([^/\s,;()]+)", r"\1", str(text))


def values(s: Settings, classes: int, sizes: tuple[int, int] | None) -> dict[str, str]:
    """Each card row's value for settings ``s`` (the first seed's configs of every variant)."""
    c = s.config
    configs = s.variants()
    n_all, n_test = sizes or (s.n_train or 50_000, s.n_test or 10_000)
    n_val = round(n_all * c.val_fraction)
    n_train = n_all - n_val
    aug = Augment(**c.augment)
    row = {
        "images": f"{n_train:,} / {f'{n_val:,}' if n_val else 'none'} / {n_test:,}",
        "split": (f"{1 - c.val_fraction:.0%} / {c.val_fraction:.0%} of train, seed {c.split_seed}" if c.val_fraction
                  else "none: the test split is evaluated every epoch"),
        "model": f"{c.model}, width {c.width:g}" + ("" if len({str(x.model_kwargs) for x in configs.values()}) == 1 else
                                                    " (" + per_variant(configs, lambda x: kwargs(x.model_kwargs)) + ")"),
        "parameters": per_variant(configs, lambda x: f"{parameters(x, classes):,}"),
        "epochs": per_variant(configs, lambda x: str(x.epochs)),
        "batch size": per_variant(configs, lambda x: str(x.batch_size)),
        "batches per epoch": per_variant(configs, lambda x: f"{batches_per_epoch(x, n_all)}")
        + (" (last partial batch dropped)" if c.drop_last else " (last partial batch kept)"),
        "optimiser": "SGD" + (" (Nesterov)" if c.nesterov else ""),
        "learning rate": per_variant(configs, lambda x: f"{x.lr:g}"),
        "schedule": schedule(c),
        "momentum": f"{c.momentum:g}" + (" (constant: One-Cycle does not cycle it)" if c.schedule == "onecycle" else ""),
        "weight decay": per_variant(configs, lambda x: f"{x.weight_decay:g}"),
        "loss": per_variant(configs, lambda x: "cross-entropy" + (f", label smoothing {x.label_smoothing:g}"
                                                                   if x.label_smoothing else "")),
        "crop": f"random 32x32 crop, zero padding {aug.crop_padding}" if aug.crop_padding else "none",
        "flips": ", ".join([f"horizontal p {aug.flip_h:g}"] * bool(aug.flip_h) + [f"vertical p {aug.flip_v:g}"]
                           * bool(aug.flip_v)) or "none",
        "colour jitter": f"brightness, contrast, saturation +-{aug.jitter:g}" if aug.jitter else "none",
        "blur": (f"Gaussian {aug.blur_kernel}x{aug.blur_kernel}, sigma {aug.blur_sigma[0]:g}-{aug.blur_sigma[1]:g}, "
                 f"p {aug.blur_p:g}" if aug.blur_p else "none"),
        "mixing": per_variant(configs, lambda x: f"CutMix alpha {x.mix['alpha']:g}, p {x.mix['p']:g}" if x.mix else "none"),
        "normalisation": normalisation(c.normalize),
        "precision": "bf16 autocast + channels_last" if c.precision == "bf16" else "fp32",
        "determinism": "deterministic cuDNN, no autotuning" if c.deterministic else "cuDNN autotuning",
        "seeds": ", ".join(map(str, s.seeds)),
    }
    if c.record_every or s.study.full["train"].get("record_every"):
        row["records"] = f"gradients and weight updates every {c.record_every} batches" if c.record_every else "none"
    return row


def per_variant(configs: dict, show) -> str:
    """One value when every variant agrees, else ``variant: value`` for each."""
    shown = {variant: show(config) for variant, config in configs.items()}
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return "; ".join(f"{variant}: {value}" for variant, value in shown.items())


def kwargs(model_kwargs: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in model_kwargs.items()) or "defaults"


def parameters(config, classes: int) -> int:
    with torch.device("meta"):  # counts without allocating: a ResNet-18 is built in milliseconds
        return count_parameters(build_model(config.model, num_classes=classes, width=config.width,
                                            **config.model_kwargs))


def schedule(c) -> str:
    rule = {"constant": "constant",
            "step": f"x{c.gamma:g} every {c.step_size} epochs",
            "multistep": f"x{c.gamma:g} at epochs {', '.join(map(str, c.milestones))}",
            "cosine": f"cosine annealing to 0 over {c.epochs} epochs",
            "onecycle": f"One-Cycle over {c.epochs} epochs, max {c.lr:g} (30% warm-up from max/25, cosine down)",
            }[c.schedule]
    return f"{rule}, stepped per {c.step_per}"


def normalisation(normalize) -> str:
    if normalize == "dataset":
        return "the training split's own mean and std"
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if normalize == "cifar10" else normalize
    return f"mean {tuple(mean)}, std {tuple(std)}" + (" (CIFAR-10 constants)" if normalize == "cifar10" else "")
