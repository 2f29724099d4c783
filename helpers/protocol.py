"""The protocol card: each report's stated protocol beside this run's, generated from the profiles.

One source of truth: the values come from ``helpers.profiles`` (FULL, QUICK, SMOKE and the
overrides of a ``Settings``); this module only keeps what the reports say (``STATED``, short, as
each report puts it), why we chose a value where a report is silent (``CHOSEN``), and notes on
what cannot be reproduced (``NOTES``). :func:`protocol_card` lays them side by side, one row per
setting, with a mark:

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
from .profiles import FULL, VARIANTS, Settings, settings

NOT_STATED = "not stated"
FP32 = "fp32 (no mixed precision mentioned)"
COMMON = dict(optimiser="SGD", momentum="0.9", **{"weight decay": "5e-4"}, precision=FP32,
              **{"colour jitter": "none", "blur": "none", "mixing": "none"})
ONE_VAL_SPLIT = "45,000 / 5,000 / 10,000"

# What each report states, in short (facts and numbers from the report; NOT_STATED where it is silent).
STATED = {
    "stress_test": dict(  # report 000
        COMMON, dataset="CIFAR-10", images=ONE_VAL_SPLIT + " (90/10 split of the 50,000)",
        split="deterministic 90/10 split, fixed permutation; seed 2026 everywhere", model="FlexibleCNN, plain vs residual",
        epochs="40", **{"batch size": "64", "learning rate": "max 0.01"}, schedule="One-Cycle, max LR 0.01",
        crop="random crop with padding (padding not given)", flips="random horizontal flip (p not given)",
        **{"colour jitter": "mild colour jitter (strength not given)"},
        normalisation="CIFAR-10 channel means and stds (values not given)", determinism="deterministic cuDNN",
        seeds="2026"),
    "cutmix_study": dict(  # report 001
        COMMON, dataset="CIFAR-100", images=ONE_VAL_SPLIT, split="45k / 5k / 10k train / val / test",
        model="ResNet-18, 3x3 stem, no max-pool", epochs="50", **{"learning rate": "0.1"},
        schedule="x0.1 at epochs 25 and 40", loss="cross-entropy; CutMix run: label smoothing 0.1",
        crop="random crop (padding not given)", flips="horizontal flip (p not given)",
        mixing="CutMix run: Beta alpha 1.0, applied with p 0.5 per batch", determinism="deterministic cuDNN",
        seeds="42"),
    "resnet_budget": dict(  # report 002
        COMMON, dataset="CIFAR-10", model="ResNet [4, 4, 4, 3], channels 32-256",
        parameters="4,754,218 (summary table; the text says 4.87M)", epochs="100",
        **{"learning rate": "0.1 (text; the epoch log runs at ~0.01, see the note)"},
        schedule="cosine annealing over 100 epochs (text; see the note)",
        crop="32x32 from 36x36 padded images (padding 2)", flips="horizontal p 0.5, vertical p 0.05",
        blur="Gaussian 3x3, sigma in '[0.1,1,1.5]', p 0.3", mixing="CutMix (alpha and p not given)",
        determinism="deterministic workflows, fixed seeds", seeds="fixed seeds (value not given)"),
    "worksheet_analysis": dict(  # report 003
        COMMON, dataset="CIFAR-10", images="50,000 / none / 10,000", split="none: test set every epoch",
        model="ResNet-18 for 32x32 input", parameters="11,173,962", epochs="25",
        **{"batch size": "64 (exp 2: 128)", "batches per epoch": "781 (exp 2: 390)",
           "learning rate": "0.15 (exp 2: 0.20)", "colour jitter": "brightness, contrast, saturation +-0.2"},
        schedule="cosine annealing to 0 at epoch 25", crop="32x32, padding 4", flips="horizontal p 0.5",
        normalisation=f"mean {CIFAR10_MEAN}, std {CIFAR10_STD}",
        records="gradients and weight updates every 100 batches"),
    "bn_ablation": dict(  # report 004
        COMMON, dataset="CIFAR-10", images=ONE_VAL_SPLIT, split="45,000 / 5,000 with a fixed random seed",
        model="3 conv blocks (32-64-128), FC 256, dropout 0.5; without / with BatchNorm",
        parameters="620,362 / 621,322", epochs="30", **{"batch size": "128", "learning rate": "0.01"},
        schedule="StepLR x0.1 every 10 epochs", crop="random crops with padding (padding not given)",
        flips="random horizontal flips (p not given)", normalisation="normalisation (values not given)",
        seeds="42"),
}

BATCHES = "the last partial batch is kept, as a PyTorch DataLoader does by default"
OWN_STATS = "the training split's own per-channel mean and std"
LOSS = "cross-entropy, the classification loss every report's setup implies"
PADDING, P_FLIP = "padding 4, the usual CIFAR value", "p 0.5, the usual value"
PARAMS = "counted from our implementation of the report's architecture"
# Why we chose a value where the report is silent or gives no number.
CHOSEN = {
    "stress_test": {
        "parameters": PARAMS, "batches per epoch": BATCHES, "loss": LOSS, "crop": PADDING, "flips": P_FLIP,
        "schedule": "torch's One-Cycle shape (30% warm-up from max/25, cosine down), stepped per batch: the "
                    "report gives only the peak",
        "colour jitter": "0.1 for 'mild' (brightness, contrast, saturation)",
        "normalisation": "the common CIFAR-10 constants (report 003 prints them)"},
    "cutmix_study": {
        "parameters": PARAMS, "batches per epoch": BATCHES, "crop": PADDING, "flips": P_FLIP,
        "normalisation": OWN_STATS, "batch size": "128, common for ResNet-18 on CIFAR",
        "split": "split seed 42, the report's seed"},
    "resnet_budget": {
        "images": "no split described; the epoch log reports test accuracy, so all 50,000 train",
        "split": "no validation split: the log evaluates on the test set every epoch",
        "batch size": "128, common for ResNet on CIFAR", "batches per epoch": BATCHES, "loss": LOSS,
        "blur": "sigma read as the range 0.1-1.5 (the text's '[0.1,1,1.5]' is garbled)",
        "mixing": "alpha 1, p 0.5: report 001's CutMix values", "normalisation": OWN_STATS,
        "seeds": "42, a common fixed seed"},
    "worksheet_analysis": {"loss": LOSS, "determinism": "deterministic kernels, for reproducible runs",
                           "seeds": "42, a common fixed seed"},
    "bn_ablation": {
        "batches per epoch": BATCHES, "loss": LOSS, "crop": PADDING, "flips": P_FLIP, "normalisation": OWN_STATS,
        "split": "split seed 42: the report's run seed (the split's own seed is not given)",
        "determinism": "deterministic kernels, for reproducible runs"},
}

# What cannot be reproduced as reported, for the notebooks to show beside the card.
NOTES = {
    "resnet_budget": (
        "Report 002 contradicts itself on its schedule. Its text says cosine annealing from 0.1 over 100 "
        "epochs, and the full profile runs exactly that. Its epoch log, however, starts at LR 0.009998 with "
        "89.47% test accuracy after the first epoch: a freshly initialised network does not reach that in "
        "one epoch, so the logged 100 epochs are a second, warm-started phase at a peak of about 0.01 (it "
        "also mentions a 'hybrid' multi-step schedule). Its final 94.65% therefore comes from a two-phase "
        "run whose first phase the report does not describe; this notebook cannot reproduce it exactly."),
}

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


def protocol_note(study: str) -> str | None:
    """What of the study's report cannot be reproduced as reported (03), or None."""
    return NOTES.get(study)


def protocol_card(s: Settings, data=None) -> pd.DataFrame:
    """The report's protocol beside this run's, one row per setting (all notebooks).

    Columns: ``report`` (what the report states), ``this run``, ``mark`` (same / chosen / scaled /
    changed, see the module doc) and ``why``; indexed by setting. ``data``: the loaded Dataset, for
    its real sizes and class count (else the profile's sizes and the report's classes). The data row
    uses ``s.data_choice``, so call it after ``s.load_data()`` to show the choice that was made.
    """
    choice = s.data_choice
    classes = (data.num_classes if data is not None else 10 if choice.source == "synthetic"
               else CLASSES.get(choice.source, CLASSES[s.report_dataset]))
    sizes = (len(data.train_labels), len(data.test_labels)) if data is not None else None
    profile_default, full = settings(s.study, s.profile), settings(s.study, "full")
    this, base, report = (values(x, classes, sz) for x, sz in ((s, sizes), (profile_default, None), (full, None)))
    rows = {"dataset": data_row(s, profile_default)}
    for name, value in this.items():
        stated = STATED[s.study].get(name, NOT_STATED)
        if value != base[name]:
            given = [f"{k}={s.overrides[k]!r}" for k in ROW_FIELDS[name] if k in s.overrides]
            mark, why = "changed", "you set " + ", ".join(given or [f"{k}={v!r}" for k, v in s.overrides.items()])
        elif value != report[name]:
            mark, why = "scaled", f"smaller in the {s.profile} profile; full profile: {report[name]}"
        elif name in CHOSEN[s.study]:
            mark, why = "chosen", CHOSEN[s.study][name]
        else:
            mark, why = "same", ""
        rows[name] = dict(report=stated, **{"this run": value}, mark=mark, why=why)
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("setting")


def data_row(s: Settings, profile_default: Settings) -> dict:
    choice, label = s.data_choice, LABELS[s.report_dataset]
    if s.dataset != profile_default.dataset:
        mark = "same" if choice.source == s.report_dataset else "changed"
        value, why = choice.source, f"you set dataset={s.dataset!r}"
    elif choice.fell_back:
        value, mark, why = "the synthetic stand-in", "changed", choice.reason
    elif choice.source == "synthetic":
        value, mark, why = "the synthetic stand-in", "scaled", f"the {s.profile} profile always runs on it"
    else:
        value = label if choice.source == s.report_dataset else f"{label} ({choice.source})"
        mark, why = "same", choice.reason
    return dict(report=STATED[s.study]["dataset"], **{"this run": brief(value)}, mark=mark, why=brief(why))


def brief(text: str) -> str:
    """Paths shortened to their last part: a table cell cannot wrap inside one long path (the title
    block above the card names the full source)."""
    return re.sub(r"(?:folder:)?/\S*/([^/\s,;()]+)", r"\1", str(text))


def values(s: Settings, classes: int, sizes: tuple[int, int] | None) -> dict[str, str]:
    """Each card row's value for settings ``s`` (the first seed's configs of every variant)."""
    c = s.train
    configs = {variant: c.replace(**changes) for variant, changes in VARIANTS[s.study](s.extra).items()}
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
        "epochs": str(c.epochs),
        "batch size": per_variant(configs, lambda x: str(x.batch_size)),
        "batches per epoch": per_variant(configs, lambda x: f"{batches(n_train, x)}")
        + (" (last partial batch dropped)" if c.drop_last else " (last partial batch kept)"),
        "optimiser": "SGD" + (" (Nesterov)" if c.nesterov else ""),
        "learning rate": per_variant(configs, lambda x: f"{x.lr:g}"),
        "schedule": schedule(c),
        "momentum": f"{c.momentum:g}" + (" (constant: One-Cycle does not cycle it)" if c.schedule == "onecycle" else ""),
        "weight decay": f"{c.weight_decay:g}",
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
    if c.record_every or FULL[s.study]["train"].get("record_every"):
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


def batches(n_train: int, config) -> int:
    return n_train // config.batch_size if config.drop_last else -(-n_train // config.batch_size)


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
