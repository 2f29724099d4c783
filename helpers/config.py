"""A training run's settings: ``TrainConfig`` and the checks that reject bad values before any work.

Profiles (``helpers.profiles``) fill a ``TrainConfig`` for each study; ``helpers.train.fit`` trains
it. Every field but ``device`` and ``compile`` is part of the run's identity (its cache key).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Callable

import torch

from .cutmix import cutmix
from .device import PRECISIONS, check_precision
from .loader import Augment
from .models import MODELS

SCHEDULES = ("constant", "step", "multistep", "cosine", "onecycle")

# Batch-mixing hook: kind -> function(x, y, num_classes, generator, **params) -> (x, targets), where
# generator is a CPU torch.Generator seeded per (seed, epoch) and targets are labels or soft labels.
MIXERS: dict[str, Callable] = {"cutmix": cutmix}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result. Profiles (helpers.profiles) fill it."""

    name: str = "run"                  # run-folder prefix, for people reading data/runs/
    model: str = "simple_cnn"          # a name in helpers.models.MODELS
    model_kwargs: dict = field(default_factory=dict)  # e.g. {"batch_norm": True}
    width: float = 1.0                 # channel multiplier (1 = the report's model)
    epochs: int = 10
    batch_size: int = 128              # images per SGD step
    lr: float = 0.01                   # peak learning rate (OneCycle: max_lr)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "constant"         # one of SCHEDULES
    step_size: int = 10                # epochs between decays (schedule "step")
    milestones: tuple = ()             # epochs at which to decay (schedule "multistep")
    gamma: float = 0.1                 # decay factor (step, multistep)
    step_per: str = "epoch"            # "epoch" or "batch": when the scheduler steps
    cycle_momentum: bool = False       # OneCycle also cycles momentum 0.95 -> 0.85 -> 0.95 (torch's default; 000's code)
    label_smoothing: float = 0.0
    mix: dict | None = None            # batch mixing, e.g. {"kind": "cutmix", "alpha": 1.0, "p": 0.5}
    augment: dict = field(default_factory=dict)  # fields of helpers.loader.Augment
    normalize: str | tuple = "dataset"  # "dataset" (train-set stats), "cifar10", or (mean, std)
    test_normalize: str | tuple | None = None  # the evaluation's, where it differs (002's code); None: normalize's
    val_fraction: float = 0.1          # held out of train; 0 = evaluate on the test split
    split_seed: int = 42               # seed of the train/val permutation
    seed: int = 42                     # Python, NumPy and torch seeds, reset before the model is built
    deterministic: bool = True         # deterministic cuDNN kernels, no autotuning (run.json records what was on)
    record_every: int = 0              # per-layer gradient and weight-update records every N steps (04); 0 = off
    drop_last: bool = False            # drop each epoch's last partial batch (report 003 counts 781 batches of 64)
    precision: str = "fp32"            # "fp32", or "bf16": bf16 autocast + channels_last, a CUDA-only speed option
    start_from: TrainConfig | None = None  # a run whose final weights this one starts from, fresh optimiser (002's phase 2)
    # Where and how fast it runs: not part of the run's identity (excluded from the cache key).
    device: str = "auto"               # "auto" (CUDA, then MPS, then CPU), or a torch device
    compile: bool = False              # torch.compile the model (opt-in; GPU)

    RUNTIME_FIELDS = ("device", "compile")

    def __post_init__(self):
        check_config(self)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (unknown names are an error)."""
        unknown = set(changes) - set(config_fields())
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; valid: {config_fields()}")
        return dataclasses.replace(self, **changes)

    def key_dict(self) -> dict:
        """The fields that define the result, JSON-ready (a ``start_from`` run's too)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self.RUNTIME_FIELDS}
        d = json.loads(json.dumps({**d, "start_from": None}, default=list))  # tuples -> lists, a deep copy
        d["start_from"] = self.start_from.key_dict() if self.start_from is not None else None
        return d

    @property
    def phases(self) -> list["TrainConfig"]:
        """This run and the runs it starts from, first phase first (03: two phases)."""
        return ([] if self.start_from is None else self.start_from.phases) + [self]

    @property
    def eval_split(self) -> str:
        """Which split the per-epoch evaluation uses: "val", or "test" when ``val_fraction`` is 0.
        The run's history names its columns after it (``val_acc`` or ``test_acc``)."""
        return "val" if self.val_fraction > 0 else "test"


def config_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


# --- checks: each raises ValueError("TrainConfig: ...") naming the valid choices -------------------

def bad(msg: str):
    raise ValueError(f"TrainConfig: {msg}")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # bool is an int to Python


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


INTEGERS = {"epochs": 1, "batch_size": 1, "step_size": 1, "seed": None, "split_seed": None, "record_every": 0}
NUMBERS = {  # name: (rule, test); the test only sees real numbers, so "0.1" or None get the rule, not a TypeError
    "lr": ("a number > 0", lambda v: v > 0),
    "width": ("a number > 0", lambda v: v > 0),
    "gamma": ("a number > 0", lambda v: v > 0),
    "momentum": ("a number >= 0", lambda v: v >= 0),
    "weight_decay": ("a number >= 0", lambda v: v >= 0),
    "val_fraction": ("in [0, 1) (0 = validate on test)", lambda v: 0 <= v < 1),
    "label_smoothing": ("in [0, 1)", lambda v: 0 <= v < 1),
}
FLAGS = ("nesterov", "deterministic", "compile", "drop_last", "cycle_momentum")


def check_config(c: TrainConfig) -> None:
    """Reject bad settings with a message naming the valid choices, before any work starts."""
    for check in (check_names, check_numbers, check_milestones, check_device, check_model_kwargs,
                  check_augment, check_mix, check_normalize, check_start):
        check(c)


def check_names(c: TrainConfig) -> None:
    if c.model not in MODELS:
        bad(f"unknown model {c.model!r}; valid models: {', '.join(MODELS)}")
    if c.schedule not in SCHEDULES:
        bad(f"unknown schedule {c.schedule!r}; valid: {', '.join(SCHEDULES)}")
    if c.precision not in PRECISIONS:
        bad(f"unknown precision {c.precision!r}; valid: {', '.join(PRECISIONS)}")
    if c.step_per not in ("epoch", "batch"):
        bad(f"step_per must be 'epoch' or 'batch', not {c.step_per!r}")
    if not isinstance(c.name, str) or not re.fullmatch(r"[\w-][\w.-]*", c.name):
        bad(f"name must be a folder name of letters, digits, '_', '-' and '.', not {c.name!r}")


def check_numbers(c: TrainConfig) -> None:
    for name, least in INTEGERS.items():
        value = getattr(c, name)
        if not is_int(value) or (least is not None and value < least):
            rule = "an integer" if least is None else "a positive integer" if least == 1 else f"an integer >= {least}"
            bad(f"{name} must be {rule}{' (0 = no records)' if name == 'record_every' else ''}, not {value!r}")
    for name, (rule, ok) in NUMBERS.items():
        value = getattr(c, name)
        if not is_number(value) or not ok(value):
            bad(f"{name} must be {rule}, not {value!r}")
    for name in FLAGS:
        if not isinstance(getattr(c, name), bool):
            bad(f"{name} must be True or False, not {getattr(c, name)!r}")


def check_milestones(c: TrainConfig) -> None:
    ms = c.milestones
    if not isinstance(ms, (tuple, list)) or not all(is_int(m) and m > 0 for m in ms) or list(ms) != sorted(set(ms)):
        bad(f"milestones must be increasing positive integers (epochs), not {ms!r}")


def check_device(c: TrainConfig) -> None:
    if c.device == "auto":
        return
    try:
        known = isinstance(c.device, str) and torch.device(c.device).type in ("cpu", "cuda", "mps")
    except RuntimeError:  # torch's own message lists a dozen device types this engine does not run on
        known = False
    if not known:
        bad(f"unknown device {c.device!r}; valid: auto, cpu, cuda, cuda:N, mps")
    try:  # bf16 on an explicit CPU / MPS device: now, not when training starts ("auto": see fit)
        check_precision(c.precision, torch.device(c.device))
    except ValueError as e:
        bad(str(e))


def keyword_names(fn: Callable) -> list[str]:
    return [n for n, p in inspect.signature(fn).parameters.items() if p.kind == p.KEYWORD_ONLY]


def check_model_kwargs(c: TrainConfig) -> None:
    """model_kwargs must name arguments of the model's constructor (width has its own setting)."""
    if not isinstance(c.model_kwargs, dict):
        bad(f"model_kwargs must be a dict, not {c.model_kwargs!r}")
    params = inspect.signature(MODELS[c.model]).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return  # takes anything: the model checks for itself
    if "width" in c.model_kwargs or "num_classes" in c.model_kwargs:
        bad("model_kwargs: set width with the width setting; num_classes comes from the data")
    valid = [n for n in params if n not in ("num_classes", "width")]
    unknown = set(c.model_kwargs) - set(valid)
    if unknown:
        bad(f"unknown {c.model} option(s) {sorted(unknown)}; valid: {valid}")


def check_augment(c: TrainConfig) -> None:
    if not isinstance(c.augment, dict):
        bad(f"augment must be a dict of helpers.loader.Augment fields, not {c.augment!r}")
    valid = [f.name for f in dataclasses.fields(Augment)]
    unknown = set(c.augment) - set(valid)
    if unknown:
        bad(f"unknown augment option(s) {sorted(unknown)}; valid: {valid}")
    try:
        Augment(**c.augment)  # its own range checks, now rather than when training starts
    except (TypeError, ValueError) as e:
        bad(f"augment: {e}")


def check_mix(c: TrainConfig) -> None:
    if c.mix is None:
        return
    if not isinstance(c.mix, dict):
        bad(f"mix must be None or a dict like {{'kind': 'cutmix', 'alpha': 1.0, 'p': 0.5}}, not {c.mix!r}")
    if c.mix.get("kind") not in MIXERS:
        bad(f"unknown mix kind {c.mix.get('kind')!r}; valid: {', '.join(MIXERS)}")
    valid = keyword_names(MIXERS[c.mix["kind"]])
    unknown = set(c.mix) - {"kind", *valid}
    if unknown:
        bad(f"unknown {c.mix['kind']} option(s) {sorted(unknown)}; valid: {valid}")


def check_normalize(c: TrainConfig) -> None:
    for name in ("normalize", "test_normalize"):
        value = getattr(c, name)
        if value is not None or name == "normalize":
            check_stats(name, value)


def check_stats(name: str, value) -> None:
    choices = "'dataset', 'cifar10' or (mean, std)"
    if isinstance(value, str):
        if value not in ("dataset", "cifar10"):
            bad(f"{name} must be {choices}, not {value!r}")
        return
    try:
        mean, std = value
        ok = len(mean) == len(std) == 3 and all(is_number(v) for v in (*mean, *std))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        bad(f"{name} must be {choices} with 3 numbers each, not {value!r}")
    if not all(s > 0 for s in std):
        bad(f"{name} std must be > 0 per channel, not {std!r}")


def check_start(c: TrainConfig) -> None:
    """A run started from another's weights must build the same model from them."""
    first = c.start_from
    if first is None:
        return
    if not isinstance(first, TrainConfig):
        bad(f"start_from must be a TrainConfig or None, not {type(first).__name__}")
    same = ("model", "model_kwargs", "width")
    if any(getattr(first, k) != getattr(c, k) for k in same):
        bad(f"start_from must train the same model ({', '.join(same)}): "
            f"{[getattr(first, k) for k in same]} against {[getattr(c, k) for k in same]}")
