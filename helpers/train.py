"""The training engine: one ``fit`` for every notebook, with a run cache and resumable checkpoints.

A run is identified by its config (minus where it runs) and the data it sees. ``fit`` trains it
once and stores it under ``data/runs/<name>-<hash>/``; a second call with the same config and
data loads it in a second, so notebooks re-run fast and share models (notebooks 02 and 04 train
the same ResNet-18 baseline only once when their settings agree).

Run folder (the manifest ``run.json`` is written last, so a folder without it is unfinished):

    checkpoint.pt   end-of-epoch state while training (weights, optimiser, scheduler, RNGs)
    final.pt        weights after the last epoch
    best.pt         weights of the epoch with the best validation accuracy
    history.csv     one row per epoch
    run.json        config, environment, timings, and size + sha256 of each file above
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import inspect
import io
import json
import os
import platform
import random
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import DATA_DIR
from .cutmix import cutmix
from .data import CIFAR10_MEAN, CIFAR10_STD, Dataset, split_indices
from .loader import Augment, BatchLoader
from .models import build_model

SCHEDULES = ("constant", "step", "multistep", "cosine", "onecycle")


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
    label_smoothing: float = 0.0
    mix: dict | None = None            # batch mixing, e.g. {"kind": "cutmix", "alpha": 1.0, "p": 0.5}
    augment: dict = field(default_factory=dict)  # fields of helpers.loader.Augment
    normalize: str | tuple = "dataset"  # "dataset" (train-set stats), "cifar10", or (mean, std)
    val_fraction: float = 0.1          # held out of train; 0 = evaluate on the test split
    split_seed: int = 42               # seed of the train/val permutation
    seed: int = 42                     # Python, NumPy and torch seeds, reset before the model is built
    deterministic: bool = True         # deterministic cuDNN kernels, no autotuning (run.json records what was on)
    record_every: int = 0              # per-layer gradient and weight-update records every N steps (04); 0 = off
    # Where and how fast it runs: not part of the run's identity (excluded from the cache key).
    device: str = "auto"               # "auto" (CUDA, then MPS, then CPU), or a torch device
    compile: bool = False              # torch.compile the model (opt-in; GPU)

    RUNTIME_FIELDS = ("device", "compile")
    # Fields added after runs were first cached: left out of the key at their default, so those runs keep their folder.
    LATER_FIELDS = {"record_every": 0}

    def __post_init__(self):
        check_config(self)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (unknown names are an error)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; valid: {config_fields()}")
        return dataclasses.replace(self, **changes)

    def key_dict(self) -> dict:
        """The fields that define the result, JSON-ready."""
        d = dataclasses.asdict(self)
        for name in self.RUNTIME_FIELDS:
            d.pop(name)
        for name, default in self.LATER_FIELDS.items():
            if d[name] == default:
                d.pop(name)
        d["milestones"] = list(d["milestones"])
        return d


def config_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def check_config(c: TrainConfig) -> None:
    """Reject bad settings with a message naming the valid choices, before any work starts."""
    from .models import MODELS

    def bad(msg):
        raise ValueError(f"TrainConfig: {msg}")

    if c.model not in MODELS:
        bad(f"unknown model {c.model!r}; valid models: {', '.join(MODELS)}")
    if c.schedule not in SCHEDULES:
        bad(f"unknown schedule {c.schedule!r}; valid: {', '.join(SCHEDULES)}")
    if c.step_per not in ("epoch", "batch"):
        bad(f"step_per must be 'epoch' or 'batch', not {c.step_per!r}")
    if not isinstance(c.name, str) or not re.fullmatch(r"[\w-][\w.-]*", c.name):
        bad(f"name must be a folder name of letters, digits, '_', '-' and '.', not {c.name!r}")

    def is_int(value):
        return isinstance(value, int) and not isinstance(value, bool)  # bool is an int to Python

    for name in ("epochs", "batch_size", "step_size"):
        if not is_int(getattr(c, name)) or getattr(c, name) < 1:
            bad(f"{name} must be a positive integer, not {getattr(c, name)!r}")
    for name in ("seed", "split_seed"):
        if not is_int(getattr(c, name)):
            bad(f"{name} must be an integer, not {getattr(c, name)!r}")
    if not is_int(c.record_every) or c.record_every < 0:
        bad(f"record_every must be an integer >= 0 (0 = no records), not {c.record_every!r}")
    # (rule, test): the test only runs on real numbers, so "0.1" or None get this message, not a TypeError
    for name, rule, ok in (("lr", "a number > 0", lambda v: v > 0),
                           ("width", "a number > 0", lambda v: v > 0),
                           ("gamma", "a number > 0", lambda v: v > 0),
                           ("momentum", "a number >= 0", lambda v: v >= 0),
                           ("weight_decay", "a number >= 0", lambda v: v >= 0),
                           ("val_fraction", "in [0, 1) (0 = validate on test)", lambda v: 0 <= v < 1),
                           ("label_smoothing", "in [0, 1)", lambda v: 0 <= v < 1)):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            bad(f"{name} must be {rule}, not {value!r}")
    for name in ("nesterov", "deterministic", "compile"):
        if not isinstance(getattr(c, name), bool):
            bad(f"{name} must be True or False, not {getattr(c, name)!r}")
    ms = c.milestones
    if not isinstance(ms, (tuple, list)) or not all(is_int(m) and m > 0 for m in ms) or list(ms) != sorted(set(ms)):
        bad(f"milestones must be increasing positive integers (epochs), not {ms!r}")
    if c.device != "auto":
        try:
            known = isinstance(c.device, str) and torch.device(c.device).type in ("cpu", "cuda", "mps")
        except RuntimeError:  # torch's own message lists a dozen device types this engine does not run on
            known = False
        if not known:
            bad(f"unknown device {c.device!r}; valid: auto, cpu, cuda, cuda:N, mps")
    check_model_kwargs(c, bad)
    if not isinstance(c.augment, dict):
        bad(f"augment must be a dict of helpers.loader.Augment fields, not {c.augment!r}")
    unknown = set(c.augment) - {f.name for f in dataclasses.fields(Augment)}
    if unknown:
        bad(f"unknown augment option(s) {sorted(unknown)}; valid: {[f.name for f in dataclasses.fields(Augment)]}")
    try:
        Augment(**c.augment)  # its own range checks, now rather than when training starts
    except (TypeError, ValueError) as e:
        bad(f"augment: {e}")
    if c.mix is not None:
        if not isinstance(c.mix, dict):
            bad(f"mix must be None or a dict like {{'kind': 'cutmix', 'alpha': 1.0, 'p': 0.5}}, not {c.mix!r}")
        if c.mix.get("kind") not in MIXERS:
            bad(f"unknown mix kind {c.mix.get('kind')!r}; valid: {', '.join(MIXERS)}")
        mixer = MIXERS[c.mix["kind"]]
        valid = [n for n, prm in inspect.signature(mixer).parameters.items() if prm.kind == prm.KEYWORD_ONLY]
        unknown = set(c.mix) - {"kind", *valid}
        if unknown:
            bad(f"unknown {c.mix['kind']} option(s) {sorted(unknown)}; valid: {valid}")
    if isinstance(c.normalize, str) and c.normalize not in ("dataset", "cifar10"):
        bad(f"normalize must be 'dataset', 'cifar10' or (mean, std), not {c.normalize!r}")
    if not isinstance(c.normalize, str):
        try:
            mean, std = c.normalize
            ok = len(mean) == len(std) == 3 and all(isinstance(v, (int, float)) for v in (*mean, *std))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            bad(f"normalize must be 'dataset', 'cifar10' or (mean, std) with 3 numbers each, not {c.normalize!r}")
        if not all(s > 0 for s in std):
            bad(f"normalize std must be > 0 per channel, not {std!r}")


def check_model_kwargs(c: TrainConfig, bad) -> None:
    """model_kwargs must name arguments of the model's constructor (width has its own setting)."""
    from .models import MODELS

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


# Batch-mixing hook: kind -> function(x, y, num_classes, generator, **params) -> (x, targets), where
# generator is a CPU torch.Generator seeded per (seed, epoch) and targets are labels or soft labels.
MIXERS: dict[str, Callable] = {"cutmix": cutmix}


@dataclass
class Run:
    """A trained (or loaded) run: the model, its per-epoch history, and where it is stored."""

    config: TrainConfig
    model: nn.Module           # eval mode, on `device`; weights per `weights`
    history: pd.DataFrame
    path: Path
    device: torch.device
    cached: bool               # True when loaded from the run cache without training
    info: dict                 # environment, timings, best epoch (the manifest's contents)
    weights: str = "final"

    def load_weights(self, which: str = "final") -> nn.Module:
        """Swap the model's weights for the run's ``final`` or ``best`` (best-validation) ones."""
        if which not in ("final", "best"):
            raise ValueError(f"which must be 'final' or 'best', not {which!r}")
        self.model.load_state_dict(torch.load(self.path / f"{which}.pt", map_location=self.device))
        self.weights = which
        return self.model

    @property
    def train_seconds(self) -> float:
        return float(self.history["seconds"].sum())

    @property
    def gradients(self) -> pd.DataFrame | None:
        """Per-layer gradient records (``config.record_every > 0``; see helpers.instrument), else None."""
        return self._records("gradients")

    @property
    def updates(self) -> pd.DataFrame | None:
        """Per-layer weight-update records (``config.record_every > 0``), else None."""
        return self._records("updates")

    def _records(self, kind: str) -> pd.DataFrame | None:
        from .instrument import flag

        f = self.path / f"{kind}.csv"
        if not f.exists():
            return None
        df = pd.read_csv(f)
        return flag(df) if kind == "gradients" else df  # flags from today's thresholds


# --- device and reproducibility -------------------------------------------------------------

def pick_device(name: str = "auto") -> torch.device:
    """CUDA, then Apple's MPS, then CPU (all notebooks, through ``fit``)."""
    if name != "auto":
        device = torch.device(name)
        # say so now, in one line, rather than with a driver error once the model is built
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"TrainConfig: device {name!r} is not available here (no CUDA GPU found); use 'auto' or 'cpu'")
        if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"TrainConfig: device {name!r} is not available here (no Apple GPU found); use 'auto' or 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; make cuDNN deterministic (report 000's protocol)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def environment(device: torch.device, deterministic: bool) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "deterministic": deterministic,  # what the config asked for; below, what was in force
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        # cuBLAS is only run-to-run reproducible with a fixed workspace (":4096:8" or ":16:8")
        env["cublas_workspace_config"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    return env


# --- files: atomic writes and the manifest --------------------------------------------------

def write_atomic(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def torch_bytes(obj) -> memoryview:
    # Serialised in memory first: torch.save straight into a file turns the OS's "No space left on
    # device" into RuntimeError("[enforce fail at inline_container.cc] unexpected pos ...").
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getbuffer()


def save_torch(obj, path: Path) -> None:
    body = torch_bytes(obj)
    write_atomic(path, lambda f: f.write(body))


def save_text(text: str, path: Path) -> None:
    write_atomic(path, lambda f: f.write(text.encode()))


# torch.load reads a file with flipped bytes in its tensor data without complaint, so a checkpoint
# (which no manifest covers: it changes every epoch) carries its own sha256 in a first line.
CHECKSUM_LINE = b"helpers checkpoint sha256 "


def save_checked(obj, path: Path) -> None:
    body = torch_bytes(obj)

    def write(f):
        f.write(CHECKSUM_LINE + hashlib.sha256(body).hexdigest().encode() + b"\n")
        f.write(body)

    write_atomic(path, write)


def load_checked(path: Path, device: torch.device):
    raw = memoryview(path.read_bytes())
    end = bytes(raw[:200]).find(b"\n")
    if end < 0 or bytes(raw[:end]) != CHECKSUM_LINE + hashlib.sha256(raw[end + 1:]).hexdigest().encode():
        raise ValueError("checksum mismatch: truncated or changed since it was written")
    return torch.load(io.BytesIO(raw[end + 1:]), map_location=device, weights_only=False)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


RUN_FILES = ("final.pt", "best.pt", "history.csv")


class DamagedRun(ValueError):
    """A run folder's file is truncated, changed, or no longer loads: move it aside and retrain."""


def verify_run(path: Path) -> dict | None:
    """The manifest of a complete, intact run folder; None if unfinished; DamagedRun if damaged."""
    manifest = path / "run.json"
    if not manifest.exists():
        return None
    try:
        info = json.loads(manifest.read_text())
        # every run file must be listed with both numbers, or a damaged file could go unchecked
        expected = {name: (info["files"][name]["size"], info["files"][name]["sha256"]) for name in RUN_FILES}
    except (ValueError, KeyError, TypeError) as e:  # not JSON, not a dict, an entry missing
        raise DamagedRun(f"{manifest}: damaged manifest ({type(e).__name__}: {e})") from None
    try:  # optional files (the gradient / update records) are checked when the manifest lists them
        expected |= {name: (e["size"], e["sha256"]) for name, e in info["files"].items() if name not in expected}
    except (KeyError, TypeError, AttributeError) as e:
        raise DamagedRun(f"{manifest}: damaged manifest ({type(e).__name__}: {e})") from None
    for name, (size, digest) in expected.items():
        f = path / name
        if not f.exists() or f.stat().st_size != size or sha256(f) != digest:
            raise DamagedRun(f"{f}: missing, truncated or changed since the run was saved")
    return info


def move_aside(path: Path, why: str) -> None:
    """Keep a damaged run folder (or checkpoint file) for inspection under a new name; the caller retrains."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest, n = path.with_name(f"{path.name}.broken-{stamp}"), 1
    while dest.exists():  # damaged twice within a second
        n += 1
        dest = path.with_name(f"{path.name}.broken-{stamp}-{n}")
    path.rename(dest)
    warnings.warn(f"{why}; moved to {dest.name} and training again", stacklevel=3)


def one_line(e: BaseException, limit: int = 200) -> str:
    """An exception as one short line (load_state_dict's messages run to pages)."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:limit]


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive lock on a run folder: a second process training the same run waits."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        f = open(path.parent / f".{path.name}.lock", "w")
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES) or not (path / "run.json").exists():
            raise
        f = None
    if f is None:  # a finished run in a folder we cannot write (a shared, read-only cache) still loads
        yield
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Another process is training {path.name}; waiting for it to finish...", flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_path(config: TrainConfig, data: Dataset, root: str | Path = DATA_DIR) -> Path:
    """Where a run is cached: ``<root>/runs/<name>-<12 hex of sha256(config, data fingerprint)>``."""
    key = json.dumps({"config": config.key_dict(), "data": data.fingerprint()}, sort_keys=True)
    return Path(root) / "runs" / f"{config.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


# --- pieces of a training run ---------------------------------------------------------------

def norm_stats(config: TrainConfig, data: Dataset):
    if config.normalize == "dataset":
        return data.mean_std()
    if config.normalize == "cifar10":
        return CIFAR10_MEAN, CIFAR10_STD
    return tuple(config.normalize[0]), tuple(config.normalize[1])


def make_loaders(config: TrainConfig, data: Dataset, device: torch.device):
    """Train and validation loaders for a config (validation = test split when val_fraction=0)."""
    mean, std = norm_stats(config, data)
    if config.val_fraction > 0:
        train_idx, val_idx = split_indices(len(data.train_labels), config.val_fraction, config.split_seed)
        val_images, val_labels = data.train_images, data.train_labels
    else:
        train_idx, val_idx = None, None
        val_images, val_labels = data.test_images, data.test_labels
    train = BatchLoader(data.train_images, data.train_labels, config.batch_size, mean=mean, std=std,
                        augment=Augment(**config.augment), shuffle=True, device=device,
                        seed=config.seed, indices=train_idx)
    val = BatchLoader(val_images, val_labels, 500, mean=mean, std=std, shuffle=False,
                      device=device, indices=val_idx)
    return train, val


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, nesterov=config.nesterov)


def make_scheduler(opt, config: TrainConfig, steps_per_epoch: int):
    """The report's LR rule. ``step_per='batch'`` counts in batches, else in epochs."""
    per_batch = config.step_per == "batch"
    unit = steps_per_epoch if per_batch else 1  # scheduler steps per epoch
    S = torch.optim.lr_scheduler
    if config.schedule == "constant":
        return S.LambdaLR(opt, lambda _: 1.0)
    if config.schedule == "step":
        return S.StepLR(opt, step_size=config.step_size * unit, gamma=config.gamma)
    if config.schedule == "multistep":
        return S.MultiStepLR(opt, milestones=[m * unit for m in config.milestones], gamma=config.gamma)
    if config.schedule == "cosine":
        return S.CosineAnnealingLR(opt, T_max=config.epochs * unit)
    # OneCycle is defined over the whole run in batches (torch's defaults: 30% warm-up, cosine)
    return S.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)


def autocast(device: torch.device):
    # bf16 autocast on CUDA: tensor-core speed without fp16's loss scaling; CPU stays fp32
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, loader: BatchLoader) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of a model over a loader (all notebooks)."""
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for x, y in loader:
        with autocast(device):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    n = loader.num_samples
    return loss_sum.item() / n, correct.item() / n  # one host sync per evaluation


def train_epoch(model, loader, opt, sched, config, num_classes, mix_generator, recorders=None,
                epoch: int = 0) -> tuple[float, float]:
    """One pass over the training loader; metrics stay on the device until the epoch ends.

    ``recorders``: (GradientRecorder, UpdateRecorder) or None; they see every optimiser step,
    numbered from 1 over the whole run, and record on their own interval (04).
    """
    model.train()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    mixer = MIXERS[config.mix["kind"]] if config.mix else None
    mix_params = {k: v for k, v in config.mix.items() if k != "kind"} if config.mix else {}
    first_step = epoch * len(loader)
    for i, (x, y) in enumerate(loader):
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        target = y
        if mixer is not None:
            x, target = mixer(x, y, num_classes, mix_generator, **mix_params)
        with autocast(device):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), target, label_smoothing=config.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recorders:
            recorders[0].after_backward(first_step + i + 1, epoch + 1)
        opt.step()
        if recorders:
            recorders[1].after_step(first_step + i + 1, epoch + 1)
        if config.step_per == "batch":
            sched.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
    if config.step_per == "epoch":
        sched.step()
    n = loader.num_samples
    return loss_sum.item() / n, correct.item() / n


def build(config: TrainConfig, num_classes: int, device: torch.device) -> nn.Module:
    """The config's model, freshly initialised from its seed, on the device."""
    seed_everything(config.seed, config.deterministic)
    model = build_model(config.model, num_classes=num_classes, width=config.width, **config.model_kwargs)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # NHWC convs are faster on tensor cores
    return model


# --- fit ------------------------------------------------------------------------------------

def fit(config: TrainConfig, data: Dataset, *, root: str | Path | None = None, force: bool = False,
        progress: bool = True) -> Run:
    """Train ``config`` on ``data`` or load the identical run from the cache (all notebooks).

    The model is named by the config (``config.model``) rather than passed in, so that its
    initialisation follows ``config.seed`` and the cache key covers it. ``force=True`` retrains.
    An interrupted run resumes from its last complete epoch and ends as an uninterrupted one would.
    """
    device = pick_device(config.device)
    check_data(config, data)
    path = run_path(config, data, DATA_DIR if root is None else root)
    try:
        with locked(path):
            if force and path.exists():
                shutil.rmtree(path)
            if not force:
                try:
                    info = verify_run(path)
                    if info is not None:
                        return load_run(config, data, path, info, device)
                except DamagedRun as e:
                    move_aside(path, str(e))
            return train_run(config, data, path, device, progress)
    except OSError as e:
        if e.errno not in STORAGE_ERRORS:
            raise
        # One line that says where and what to do. Only this run's folder was being written, each file
        # through a temporary name and a rename, so finished runs and the last checkpoint are intact.
        raise OSError(e.errno, f"cannot write to {path}: {e.strerror}. Free some space, or set HELPERS_DATA "
                               "to a writable folder; runs already in the cache are not affected") from e


STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def check_data(config: TrainConfig, data: Dataset) -> None:
    """Empty splits fail here, not as a division by zero after the first epoch."""
    if len(data.train_labels) == 0:
        raise ValueError(f"{data!r} has no training images; nothing to train on")
    if config.val_fraction == 0 and len(data.test_labels) == 0:
        raise ValueError(f"{data!r} has no test images to validate on (val_fraction=0 validates on the test split)")


def load_run(config, data, path, info, device) -> Run:
    model = build(config, data.num_classes, device)
    try:
        model.load_state_dict(torch.load(path / "final.pt", map_location=device))
    except RuntimeError as e:  # whole file, wrong model: helpers.models changed since the run was saved
        raise DamagedRun(f"{path / 'final.pt'} does not fit the {config.model} model of today's code "
                         f"({one_line(e, 160)})") from None
    model.eval()
    history = pd.read_csv(path / "history.csv")
    return Run(config, model, history, path, device, cached=True, info=info)


def train_run(config: TrainConfig, data: Dataset, path: Path, device: torch.device, progress: bool) -> Run:
    path.mkdir(parents=True, exist_ok=True)
    train_loader, val_loader = make_loaders(config, data, device)
    model = build(config, data.num_classes, device)
    opt = make_optimizer(model, config)
    sched = make_scheduler(opt, config, len(train_loader))
    step_model = torch.compile(model) if config.compile else model

    # We hold the run's lock, so temporary files here belong to a writer that was killed mid-write.
    for tmp in path.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    rows, start, best_acc, best_state, records = [], 0, -1.0, None, None
    ckpt_file = path / "checkpoint.pt"
    if ckpt_file.exists():
        try:
            ckpt = load_checked(ckpt_file, device)
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            rows, start, best_acc, best_state = ckpt["rows"], ckpt["epoch"], ckpt["best_acc"], ckpt["best_state"]
            records = ckpt.get("records")
            set_rng_state(ckpt["rng"])
            print(f"Resuming {path.name} after epoch {start}/{config.epochs}", flush=True)
        except Exception as e:  # a damaged checkpoint only costs the epochs it held
            move_aside(ckpt_file, f"{ckpt_file}: unreadable checkpoint ({one_line(e, 120)})")
            model = build(config, data.num_classes, device)
            opt = make_optimizer(model, config)
            sched = make_scheduler(opt, config, len(train_loader))
            step_model = torch.compile(model) if config.compile else model
            rows, start, best_acc, best_state, records = [], 0, -1.0, None, None

    recorders = None
    if config.record_every:
        from .instrument import GradientRecorder, UpdateRecorder

        recorders = (GradientRecorder(model, config.record_every), UpdateRecorder(model, config.record_every))
        if records is not None:
            recorders[0].rows = records["gradients"]
            recorders[1].load_state(records["updates"])

    # TQDM_DISABLE=1 (set by the report runner) keeps progress bars out of saved reports
    quiet = not progress or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    bar = tqdm(total=config.epochs, initial=start, desc=config.name, unit="epoch", disable=quiet)
    for epoch in range(start, config.epochs):
        train_loader.set_epoch(epoch)
        # mixing draws from its own (seed, epoch) stream, so a resumed epoch mixes the same way
        mix_gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        lr = opt.param_groups[0]["lr"]
        t0 = time.perf_counter()
        train_loss, train_acc = train_epoch(step_model, train_loader, opt, sched, config, data.num_classes, mix_gen,
                                            recorders, epoch)
        seconds = time.perf_counter() - t0
        val_loss, val_acc = evaluate(step_model, val_loader)
        rows.append(dict(epoch=epoch + 1, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss,
                         val_acc=val_acc, lr=lr, seconds=seconds))
        if val_acc > best_acc:
            best_acc = val_acc
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        save_checked(dict(model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                          rows=rows, epoch=epoch + 1, best_acc=best_acc, best_state=best_state, rng=rng_state(),
                          records=recorders and dict(gradients=recorders[0].rows, updates=recorders[1].state())),
                     ckpt_file)
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{train_acc:.3f}", val_acc=f"{val_acc:.3f}")
    bar.close()

    history = pd.DataFrame(rows)
    save_torch(model.state_dict(), path / "final.pt")
    save_torch(best_state, path / "best.pt")
    save_text(history.to_csv(index=False), path / "history.csv")
    files = list(RUN_FILES)
    if recorders:
        save_text(recorders[0].frame().to_csv(index=False), path / "gradients.csv")
        save_text(recorders[1].frame().to_csv(index=False), path / "updates.csv")
        files += ["gradients.csv", "updates.csv"]
    best_epoch = int(history["val_acc"].idxmax()) + 1
    info = dict(
        config=config.key_dict(), data=data.name, data_fingerprint=data.fingerprint(),
        environment=environment(device, config.deterministic), best_epoch=best_epoch,
        best_val_acc=float(history["val_acc"].max()), train_seconds=float(history["seconds"].sum()),
        finished=time.strftime("%Y-%m-%d %H:%M:%S"),
        files={n: {"size": (path / n).stat().st_size, "sha256": sha256(path / n)} for n in files},
    )
    save_text(json.dumps(info, indent=2), path / "run.json")  # last: marks the run complete
    ckpt_file.unlink(missing_ok=True)
    model.eval()
    return Run(config, model, history, path, device, cached=False, info=info)
