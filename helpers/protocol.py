"""The protocol card: each report's stated protocol, its code where public, and this run's, side by side.

One source of truth: this run's values come from its ``Settings`` (the study's module, the profile
and the overrides); what the report says, what its authors' code did and why we chose a value where
both are silent come from the study's ``stated``, ``code`` and ``chosen`` (``helpers.studies``).
:func:`protocol_card` lays them side by side, one row per setting, with a mark:

- ``same``: the report states it (and its code, where public, agrees) and this run uses it;
- ``code``: the report's text says otherwise or gives no value, and this run follows what the
  report's code did, since the code produced the report's numbers; ``why`` says which;
- ``text``: text and code disagree and this run follows the text (a ``reading`` the study offers:
  notebook 03's ``-p reading text``);
- ``chosen``: text and code are silent (or there is no code), so the value is ours; ``why`` says why;
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
    "phases": ("reading",), "erasing": ("augment",),
}
CLASSES = {"cifar10": 10, "cifar100": 100}


def protocol_card(s: Settings, data=None) -> pd.DataFrame:
    """The report's protocol beside this run's, one row per setting (all notebooks).

    Columns: ``report`` (what the report's text states), ``code`` (what its authors' code did, for
    the studies whose code is public), ``this run``, ``mark`` (see the module doc) and ``why``;
    indexed by setting. ``data``: the loaded Dataset, for its real sizes and class count (else the
    profile's sizes and the report's classes). The data row uses ``s.data_choice``, so call it after
    ``s.load_data()`` to show the choice that was made.
    """
    choice = s.data_choice
    classes = (data.num_classes if data is not None else 10 if choice.source == "synthetic"
               else CLASSES.get(choice.source, CLASSES[s.study.dataset]))
    sizes = (len(data.train_labels), len(data.test_labels)) if data is not None else None
    reading = s.extra.get("reading")
    same_reading = {"reading": reading} if reading else {}
    profile_default, full = (settings(s.study.name, p, **same_reading) for p in (s.profile, "full"))
    this, base, report = (values(x, classes, sz) for x, sz in ((s, sizes), (profile_default, None), (full, None)))
    rows = {"dataset": data_row(s, profile_default)}
    for name, value in this.items():
        mark, why = row_mark(s, name, value, base[name], report[name], reading)
        rows[name] = dict(report=s.study.stated.get(name, NOT_STATED), code=s.study.code.get(name, "—"),
                          **{"this run": value}, mark=mark, why=why)
    rows["dataset"]["code"] = s.study.code.get("dataset", "—")
    card = pd.DataFrame.from_dict(rows, orient="index").rename_axis("setting")
    card = card[["report", "code", "this run", "mark", "why"]]
    return card if s.study.code else card.drop(columns="code")


def row_mark(s: Settings, name: str, value: str, base: str, full: str, reading: str | None) -> tuple[str, str]:
    """(mark, why) of one card row: against the profile's value, the full profile's, the report's
    text and code (see the module doc)."""
    stated = s.study.stated.get(name, NOT_STATED)
    silent = stated.startswith(NOT_STATED) or "not given" in stated
    chosen = s.study.chosen_for(reading)
    if value != base:
        given = [f"{k}={s.overrides[k]!r}" for k in ROW_FIELDS.get(name, ()) if k in s.overrides]
        return "changed", "you set " + ", ".join(given or [f"{k}={v!r}" for k, v in s.overrides.items()])
    if value != full:
        return "scaled", f"{s.profile} profile; full: {full}"
    if reading == "text" and name in chosen and (silent or name in s.study.text_differs):
        return "chosen", chosen[name]
    if name in s.study.text_differs:
        if reading == "text":
            return "text", "the text's, which the code contradicts (reading: text)"
        return "code", "the text differs; the code's, which produced the numbers"
    if name in s.study.code and silent:
        return "code", "the text gives none; the code's"
    if name in chosen:
        return "chosen", chosen[name]
    return "same", ""


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
    """Each card row's value for settings ``s``: the first seed's configs of every variant, each phase
    of a run that has several (``config.start_from``), and the study's own rows."""
    c, configs = s.config, s.variants()
    n_all, n_test = sizes or (s.n_train or 50_000, s.n_test or 10_000)
    n_val = round(n_all * c.val_fraction)
    rows = {"images": f"{n_all - n_val:,} / {f'{n_val:,}' if n_val else 'none'} / {n_test:,}",
            "split": (f"a seeded permutation (seed {c.split_seed}): its first {1 - c.val_fraction:.0%} train, "
                      f"the rest validate" if c.val_fraction else "none: the test split is evaluated every epoch")}
    phases = {variant: config.phases for variant, config in configs.items()}
    if any(len(p) > 1 for p in phases.values()):
        rows["phases"] = per_variant(phases, lambda p: f"{len(p)}: each from the last weights of the one before, "
                                                       "with a new optimiser" if len(p) > 1 else "1")
    shown = {name: per_variant(phases, lambda p, show=show: phased(p, show, n_all, classes))
             for name, show in ROWS.items()}
    shown["batches per epoch"] += " (last partial batch dropped)" if c.drop_last else " (last partial batch kept)"
    rows.update(shown)
    rows["precision"] = "bf16 autocast + channels_last" if c.precision == "bf16" else "fp32"
    rows["determinism"] = "deterministic cuDNN, no autotuning" if c.deterministic else "cuDNN autotuning"
    rows["seeds"] = ", ".join(map(str, s.seeds))
    rows["checkpoint tested"] = {"best": "the epoch with the best validation accuracy",
                                 "final": "the last epoch's weights"}[s.study.headline.weights]
    if c.record_every or s.study.full["train"].get("record_every"):
        rows["records"] = f"gradients and weight updates every {c.record_every} batches" if c.record_every else "none"
    if not any(Augment(**x.augment).erase_p for p in phases.values() for x in p):
        rows.pop("erasing")
    return {**rows, **(s.study.rows(s) if s.study.rows else {})}


def phased(phases: list, show, n_all: int, classes: int) -> str:
    """One row's value for a run in one or more phases: ``phase 1: ...; phase 2: ...`` where they differ."""
    shown = [show(c, n_all, classes) for c in phases]
    if len(set(shown)) == 1:
        return shown[0]
    return "; ".join(f"phase {i}: {v}" for i, v in enumerate(shown, 1))


def model_text(c, n_all, classes) -> str:
    return f"{c.model}, width {c.width:g}" + (f" ({kwargs(c.model_kwargs)})" if c.model_kwargs else "")


def parameters_text(c, n_all, classes) -> str:
    total, used = parameters(c, classes)
    return f"{total:,}" + (f" (its forward pass uses {used:,})" if used != total else "")


def momentum_text(c, n_all, classes) -> str:
    if c.schedule == "onecycle" and c.cycle_momentum:
        return "cycles 0.95 -> 0.85 -> 0.95 against the LR (One-Cycle's default)"
    return f"{c.momentum:g}" + (" (constant: One-Cycle does not cycle it)" if c.schedule == "onecycle" else "")


def flips_text(c, n_all, classes) -> str:
    a = Augment(**c.augment)
    flips = [f"horizontal p {a.flip_h:g}" + (" (before the crop)" if a.flip_first else "")] * bool(a.flip_h)
    return ", ".join(flips + [f"vertical p {a.flip_v:g}"] * bool(a.flip_v)) or "none"


def blur_text(c, n_all, classes) -> str:
    a = Augment(**c.augment)
    if not a.blur_p:
        return "none"
    return f"Gaussian {a.blur_kernel}x{a.blur_kernel}, sigma {a.blur_sigma[0]:g}-{a.blur_sigma[1]:g}, p {a.blur_p:g}"


def erasing_text(c, n_all, classes) -> str:
    a = Augment(**c.augment)
    return (f"random erasing p {a.erase_p:g}, {a.erase_scale[0]:g}-{a.erase_scale[1]:g} of the image, after "
            "normalisation" if a.erase_p else "none")


def normalisation_text(c, n_all, classes) -> str:
    if c.test_normalize is None or c.test_normalize == c.normalize:
        return normalisation(c.normalize)
    return f"training: {normalisation(c.normalize)}; testing: {normalisation(c.test_normalize)}"


# Each row whose value comes from a run's TrainConfig: (config, images, classes) -> text.
ROWS = {
    "model": model_text,
    "parameters": parameters_text,
    "epochs": lambda c, n, k: str(c.epochs),
    "batch size": lambda c, n, k: str(c.batch_size),
    "batches per epoch": lambda c, n, k: f"{batches_per_epoch(c, n)}",
    "optimiser": lambda c, n, k: "SGD" + (" (Nesterov)" if c.nesterov else ""),
    "learning rate": lambda c, n, k: f"{c.lr:g}",
    "schedule": lambda c, n, k: schedule(c),
    "momentum": momentum_text,
    "weight decay": lambda c, n, k: f"{c.weight_decay:g}",
    "loss": lambda c, n, k: "cross-entropy" + (f", label smoothing {c.label_smoothing:g}" if c.label_smoothing else ""),
    "crop": lambda c, n, k: (f"random 32x32 crop, zero padding {c.augment['crop_padding']}"
                             if c.augment.get("crop_padding") else "none"),
    "flips": flips_text,
    "colour jitter": lambda c, n, k: (f"brightness, contrast, saturation +-{c.augment['jitter']:g}"
                                      if c.augment.get("jitter") else "none"),
    "blur": blur_text,
    "erasing": erasing_text,
    "mixing": lambda c, n, k: f"CutMix alpha {c.mix['alpha']:g}, p {c.mix['p']:g}" if c.mix else "none",
    "normalisation": normalisation_text,
}


def per_variant(configs: dict, show) -> str:
    """One value when every variant agrees, else ``variant: value`` for each."""
    shown = {variant: show(config) for variant, config in configs.items()}
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return "; ".join(f"{variant}: {value}" for variant, value in shown.items())


def kwargs(model_kwargs: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in model_kwargs.items()) or "defaults"


def parameters(config, classes: int) -> tuple[int, int]:
    """(all parameters, those the forward pass uses) of a config's model (the code of report 000 builds
    projections its plain model never calls)."""
    with torch.device("meta"):  # counts without allocating: a ResNet-18 is built in milliseconds
        model = build_model(config.model, num_classes=classes, width=config.width, **config.model_kwargs)
    total = count_parameters(model)
    return total, model.used_parameters() if hasattr(model, "used_parameters") else total


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
    four = lambda values: "(" + ", ".join(f"{v:.4f}" for v in values) + ")"  # noqa: E731 (as the reports print them)
    return f"mean {four(mean)}, std {four(std)}" + (" (CIFAR-10 constants)" if normalize == "cifar10" else "")
