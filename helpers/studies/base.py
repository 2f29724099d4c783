"""What every study is made of: :class:`Study`, its :class:`Headline`, and the words the protocol
cards share.

A study module (``helpers/studies/<name>.py``) defines one ``STUDY = Study(...)``: which report it
reproduces and on which data, the full / quick / smoke settings, its runs (variants), the
report's headline comparison, what the report states about each setting and why we chose a
value where it is silent. Everything else in the package reads those from the registry
(``helpers.studies``); nothing else lists studies. The module may also hold the functions only its
notebook uses (notebook 03's epoch log lives in ``resnet_budget``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

LOGS = Path(__file__).parent / "logs"  # the authors' logged epochs, with their source (logs/README.md)


def read_log(name: str, percent: tuple = ("train_acc", "val_acc", "test_acc")) -> pd.DataFrame:
    """One of the authors' logs (``logs/<name>``) with its accuracies as fractions, as the engine's
    histories hold them (01, 03 and 05 draw them beside their full-profile curves)."""
    log = pd.read_csv(LOGS / name)
    for column in percent:
        if column in log:
            log[column] = log[column] / 100
    return log


# --- the smoke profile: a few hundred synthetic images for a few seconds, the same for every study --

SMOKE_DATA = dict(dataset="synthetic", n_train=320, n_test=100)
SMOKE_TRAIN = dict(width=0.0625, epochs=2, batch_size=32)

# Augmentation most reports use, in helpers.loader.Augment terms.
CROP_FLIP = dict(crop_padding=4, flip_h=0.5)

# --- protocol-card vocabulary (helpers.protocol lays the rows out) ------------------------------------

NOT_STATED = "not stated"
FP32 = "fp32 (no mixed precision mentioned)"
# What every report states alike (SGD with momentum 0.9 and weight decay 5e-4, no mixed precision).
COMMON_STATED = {"optimiser": "SGD", "momentum": "0.9", "weight decay": "5e-4", "precision": FP32,
                 "colour jitter": "none", "blur": "none", "mixing": "none"}
ONE_VAL_SPLIT = "45,000 / 5,000 / 10,000"

# Reasons for choices where a report is silent, shared by several studies.
BATCHES = "the last partial batch is kept, as a PyTorch DataLoader does by default"
OWN_STATS = "the training split's own per-channel mean and std"
LOSS = "cross-entropy, the classification loss every report's setup implies"
PADDING, P_FLIP = "padding 4, the usual CIFAR value", "p 0.5, the usual value"
PARAMS = "counted from our implementation of the report's architecture"
COMMON_SEED = "42, a common fixed seed"
LAST_EPOCH = "the last epoch's weights: the report tests its trained model and names no checkpoint"


@dataclass(frozen=True)
class Headline:
    """A report's headline comparison: variant ``b`` against variant ``a`` on the test split (01-05)."""

    a: str                       # variant names, as the study's ``variants`` name its runs
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

    def rows(self, accuracies: dict[str, list]) -> list[dict]:
        """The summary box's rows (01-05): each model's test accuracy in % (the mean over seeds)
        beside the report's. ``accuracies``: label -> per-seed accuracies, as fractions."""
        numbers = self.report_numbers()
        rows = []
        for label, values in accuracies.items():
            name = f"test accuracy, {label}" + (f" (mean of {len(values)} seeds)" if len(values) > 1 else "")
            mean = sum(values) / len(values)
            rows.append({"name": name, "value": round(100 * float(mean), 2), "report": numbers.get(label),
                         "unit": "%"})
        return rows


@dataclass(frozen=True)
class Study:
    """One study: everything about it that is not its notebook's story (see the module docstring).

    ``full`` is the report's protocol: ``train`` (``helpers.config.TrainConfig`` fields) and ``extra``
    (the study's own settings, e.g. experiment 2's batch size). ``quick`` scales it for a 2-core CPU:
    ``n_train`` / ``n_test`` images and ``train`` changes. ``smoke`` adds to :data:`SMOKE_TRAIN` what
    two epochs need to still show the mechanism (a step inside them). ``variants(extra)`` gives each
    run's TrainConfig changes, the run name first. ``stated`` holds what the report says per
    protocol-card row (short, as the report puts it), ``chosen`` why we chose a value where it is
    silent, ``note`` what cannot be reproduced as reported, ``reported`` the report's own numbers
    that its notebook sets beside this run's.

    Where the authors' code is public (``../shared/reference-reports/authors-code``), ``code`` holds
    what it did per card row and ``text_differs`` the rows where the report's text says otherwise;
    ``full`` then follows the code, which produced the report's numbers. ``readings`` offers other
    readings of the protocol (name -> ``train`` / ``extra`` / ``chosen`` changes to ``full``;
    ``extra["reading"]`` picks one). ``rows(S)`` adds study-specific card rows (this run's value
    per row name); ``logs()`` gives the authors' logged curves, variant -> history in the engine's
    columns and units, drawn beside the full profile's runs.
    """

    name: str                    # "bn_ablation": what settings(), the runner and -p know it by
    notebook: str                # "05_bn_ablation": the notebook (notebooks/<notebook>.ipynb) that runs it
    title: str                   # the report's title block
    report: str                  # the reference report it reproduces, "004"
    dataset: str                 # the report's data: "cifar10" or "cifar100"
    full: dict
    quick: dict
    variants: Callable[[dict], dict]
    headline: Headline
    stated: dict
    chosen: dict = field(default_factory=dict)
    smoke: dict = field(default_factory=dict)
    smoke_extra: dict = field(default_factory=dict)
    note: str | None = None
    reported: dict = field(default_factory=dict)
    code: dict = field(default_factory=dict)
    text_differs: tuple = ()
    readings: dict = field(default_factory=dict)
    rows: Callable | None = None
    logs: Callable | None = None

    def reading(self, name: str | None = None) -> str | None:
        """The protocol reading ``name`` (checked), or the study's default; None without readings."""
        if not self.readings:
            return None
        name = self.full.get("extra", {}).get("reading") if name is None else name
        if name not in self.readings:
            raise ValueError(f"unknown reading {name!r} for {self.name}; valid: {', '.join(self.readings)}")
        return name

    def profile(self, profile: str, reading: str | None = None) -> dict:
        """The profile's settings: ``dataset``, ``n_train``, ``n_test``, ``train`` and ``extra``, under
        the protocol ``reading`` where the study has several."""
        scaled = {"full": {}, "quick": self.quick,
                  "smoke": {**SMOKE_DATA, "train": {**SMOKE_TRAIN, **self.smoke}, "extra": self.smoke_extra}}[profile]
        read = self.readings.get(self.reading(reading), {}) if self.readings else {}
        train = {**self.full["train"], **read.get("train", {}), **scaled.get("train", {})}
        extra = {**self.full.get("extra", {}), **read.get("extra", {}), **scaled.get("extra", {})}
        if self.readings:
            extra["reading"] = self.reading(reading)
        return {"dataset": scaled.get("dataset", "auto"), "n_train": scaled.get("n_train"),
                "n_test": scaled.get("n_test"), "train": train, "extra": extra}

    def chosen_for(self, reading: str | None) -> dict:
        """``chosen``, with the reading's own reasons where it has some."""
        return {**self.chosen, **self.readings.get(reading, {}).get("chosen", {})} if reading else self.chosen
