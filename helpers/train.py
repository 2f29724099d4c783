"""The training engine: one ``fit`` for every notebook, with a run cache and resumable checkpoints.

A run is identified by its config (minus where it runs) and the data it sees. ``fit`` trains it
once and stores it under ``data/runs/<name>-<hash>/`` (``helpers.store`` says what is in such a
folder and how it is written); a second call with the same config and data loads it in a second, so
notebooks re-run fast and share models (notebooks 02 and 04 train the same ResNet-18 baseline only
once when their settings agree).

Read top to bottom: the pieces of a run (loaders, optimiser, schedule, model), one epoch, then
``fit`` and the three stages of a training run (start or resume, the epochs, the finished folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import DATA_DIR
from . import store
from .config import MIXERS, TrainConfig
from .data import CIFAR10_MEAN, CIFAR10_STD, Dataset, split_indices
from .device import (autocast, channels_last, check_precision, environment, keep_freed_memory, pick_device, rng_state,
                     seed_everything, set_rng_state)
from .loader import Augment, BatchLoader
from .models import Net, build_model
from .records import GradientRecorder, UpdateRecorder, flag

# Part of every run's cache key: bumped when the engine starts training a config differently or a run
# folder's files change, so runs of an older engine simply stop matching (they are retrained; delete
# their folders with make clean-runs). 3: the normalisation in the manifest, every config field in the key.
# 4: the split trains on the permutation's first part (as random_split); start_from, test_normalize.
CACHE_VERSION = 4


@dataclass(eq=False)
class Run(Net):
    """A trained (or loaded) run: the model with the normalisation it was trained with (``mean``,
    ``std``: what ``helpers.evaluate.predict(run, images)`` needs), its per-epoch history, and where
    it is stored."""

    config: TrainConfig
    history: pd.DataFrame      # epoch, train_loss, train_acc, <split>_loss, <split>_acc, lr, lr_end, seconds
    path: Path
    device: torch.device
    cached: bool               # True when loaded from the run cache without training
    info: dict                 # environment, timings, best epoch (the manifest's contents)
    weights: str = "final"     # model is eval mode, on `device`, with these weights
    previous: "Run | None" = None  # the run this one started from (config.start_from), with its history

    def load_weights(self, which: str = "final") -> nn.Module:
        """Swap the model's weights for the run's ``final`` or ``best`` (best-validation) ones."""
        if which not in ("final", "best"):
            raise ValueError(f"which must be 'final' or 'best', not {which!r}")
        self.model.load_state_dict(store.load_tensors(self.path / f"{which}.pt", self.path / f"{which}.pt",
                                                      map_location=self.device))
        self.weights = which
        return self.model

    @property
    def gradients(self) -> pd.DataFrame | None:
        """Per-layer gradient records (``config.record_every > 0``; see helpers.records), else None."""
        return self._records("gradients")

    @property
    def updates(self) -> pd.DataFrame | None:
        """Per-layer weight-update records (``config.record_every > 0``), else None."""
        return self._records("updates")

    def _records(self, kind: str) -> pd.DataFrame | None:
        f = self.path / f"{kind}.csv"
        if not f.exists():
            return None
        df = pd.read_csv(f)
        return flag(df) if kind == "gradients" else df  # flags from today's thresholds


def run_path(config: TrainConfig, data: Dataset, root: str | Path = DATA_DIR) -> Path:
    """Where a run is cached: ``<root>/runs/<name>-<12 hex of sha256(version, config, data fingerprint)>``."""
    key = json.dumps({"version": CACHE_VERSION, "config": config.key_dict(), "data": data.fingerprint()},
                     sort_keys=True)
    return Path(root) / "runs" / f"{config.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


# --- pieces of a training run ---------------------------------------------------------------

def norm_stats(config: TrainConfig, data: Dataset, split: str = "train"):
    """The (mean, std) a config normalises with: the train split's own, CIFAR-10's, or given.
    ``split="test"``: the evaluation's, ``test_normalize`` where a config sets one (report 002's
    code tested with other statistics than it trained with), else the same."""
    which = config.test_normalize if split == "test" and config.test_normalize is not None else config.normalize
    if which == "dataset":
        return data.mean_std()
    if which == "cifar10":
        return CIFAR10_MEAN, CIFAR10_STD
    return tuple(which[0]), tuple(which[1])


def make_loaders(config: TrainConfig, data: Dataset, device: torch.device):
    """Train and evaluation loaders for a config (evaluation = test split when val_fraction=0)."""
    mean, std = norm_stats(config, data)
    test_mean, test_std = norm_stats(config, data, "test")
    if config.val_fraction > 0:
        train_idx, val_idx = split_indices(len(data.train_labels), config.val_fraction, config.split_seed)
        val_images, val_labels = data.train_images, data.train_labels
    else:
        train_idx, val_idx = None, None
        val_images, val_labels = data.test_images, data.test_labels
    train = BatchLoader(data.train_images, data.train_labels, config.batch_size, mean=mean, std=std,
                        augment=Augment(**config.augment), shuffle=True, drop_last=config.drop_last,
                        device=device, seed=config.seed, indices=train_idx)
    val = BatchLoader(val_images, val_labels, 500, mean=test_mean, std=test_std, shuffle=False,
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
    # OneCycle is defined over the whole run in batches (torch's defaults: 30% warm-up from max/25, cosine
    # down to max/25e4). cycle_momentum: torch's default, momentum 0.95 -> 0.85 -> 0.95 against the LR, as
    # report 000's code ran it; off, momentum stays at config.momentum (the 0.9 its text states).
    return S.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch,
                        cycle_momentum=config.cycle_momentum)


def lr_trace(config: TrainConfig, steps_per_epoch: int) -> list[tuple[float, float]]:
    """(LR an epoch starts with, LR in force after its scheduler steps) for every epoch, from the
    schedule alone (no training): what a run of ``config`` would log (03's and 04's schedule tables)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr, momentum=config.momentum)
    sched = make_scheduler(opt, config, steps_per_epoch)
    out = []
    for _ in range(config.epochs):
        start = opt.param_groups[0]["lr"]
        for _ in range(steps_per_epoch if config.step_per == "batch" else 1):
            opt.step()
            sched.step()
        out.append((start, opt.param_groups[0]["lr"]))
    return out


def batches_per_epoch(config: TrainConfig, n_images: int) -> int:
    """Optimiser steps in one epoch of ``n_images`` training images: the train part of the split
    (``split_indices`` holds ``round(n * val_fraction)`` out) in batches; with ``drop_last`` full ones
    only (04's 781 batches of 64; the protocol cards)."""
    n = n_images - round(n_images * config.val_fraction)
    return n // config.batch_size if config.drop_last else -(-n // config.batch_size)


def build(config: TrainConfig, num_classes: int, device: torch.device) -> nn.Module:
    """The config's model, freshly initialised from its seed, on the device."""
    seed_everything(config.seed, config.deterministic)
    model = build_model(config.model, num_classes=num_classes, width=config.width, **config.model_kwargs)
    model = model.to(device)
    if channels_last(device, config.precision):  # CUDA's bf16 option, and every CPU run (measured faster)
        model = model.to(memory_format=torch.channels_last)
    return model


# --- one epoch ------------------------------------------------------------------------------

@torch.no_grad()
def loss_and_accuracy(model: nn.Module, loader: BatchLoader, precision: str = "fp32") -> tuple[float, float]:
    """Mean cross-entropy and accuracy of a model over a loader (every epoch of every run), in the
    run's precision."""
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for x, y in loader:
        with autocast(device, precision):
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
    nhwc = channels_last(device, config.precision)
    for i, (x, y) in enumerate(loader):
        if nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        target = y
        if mixer is not None:
            x, target = mixer(x, y, num_classes, mix_generator, **mix_params)
        with autocast(device, config.precision):
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


# --- fit ------------------------------------------------------------------------------------

def fit(config: TrainConfig, data: Dataset, *, root: str | Path | None = None, force: bool = False,
        progress: bool = True, on_epoch=None) -> Run:
    """Train ``config`` on ``data`` or load the identical run from the cache (all notebooks).

    The model is named by the config (``config.model``) rather than passed in, so that its
    initialisation follows ``config.seed`` and the cache key covers it. ``force=True`` retrains.
    An interrupted run resumes from its last complete epoch and ends as an uninterrupted one would.
    A stored file that holds anything but tensors and numbers is refused (``store.UnsafeFile``).
    ``on_epoch(config, epoch, seconds)`` is called after each trained epoch (the runner's workers
    report their progress with it).
    """
    device = pick_device(config.device)
    check_precision(config.precision, device)  # bf16 with device "auto" on a machine without CUDA
    if device.type == "cpu":
        keep_freed_memory()
    check_data(config, data)
    # a later phase starts from the earlier one's final weights: that run first (cached like any other)
    previous = None if config.start_from is None else fit(config.start_from, data, root=root, progress=progress,
                                                          on_epoch=on_epoch)
    path = run_path(config, data, DATA_DIR if root is None else root)
    try:
        with store.locked(path):
            if force and path.exists():
                shutil.rmtree(path)
            if not force:
                try:
                    info = store.verify_run(path)
                    if info is not None:
                        return load_run(config, data, path, info, device, previous)
                except store.DamagedRun as e:
                    store.move_aside(path, str(e), "training again")
            return train_run(config, data, path, device, progress, previous, on_epoch)
    except OSError as e:
        if e.errno not in store.STORAGE_ERRORS:
            raise
        raise store.storage_error(e, path) from e


def check_data(config: TrainConfig, data: Dataset) -> None:
    """Empty splits fail here, not as a division by zero after the first epoch."""
    if len(data.train_labels) == 0:
        raise ValueError(f"{data!r} has no training images; nothing to train on")
    if config.val_fraction == 0 and len(data.test_labels) == 0:
        raise ValueError(f"{data!r} has no test images to validate on (val_fraction=0 validates on the test split)")


def cached(config: TrainConfig, data: Dataset, root: str | Path | None = None) -> bool:
    """Whether :func:`fit` would load this run rather than train it: complete and intact (read only: a
    damaged run counts as not cached, and ``fit`` moves it aside). The runner's workers train only
    the runs that are not (``parallel.pending``)."""
    path = run_path(config, data, DATA_DIR if root is None else root)
    try:
        return store.verify_run(path) is not None
    except store.DamagedRun:
        return False


def load_run(config, data, path, info, device, previous: Run | None = None) -> Run:
    model = build(config, data.num_classes, device)
    weights = store.load_tensors(path / "final.pt", path / "final.pt", map_location=device)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:  # whole file, wrong model: helpers.models changed since the run was saved
        raise store.DamagedRun(f"{path / 'final.pt'} does not fit the {config.model} model of today's code "
                               f"({store.one_line(e, 160)})") from None
    model.eval()
    mean, std = norm_stats(config, data, "test")
    return Run(model, mean, std, config, pd.read_csv(path / "history.csv"), path, device, cached=True, info=info,
               previous=previous)


@dataclass
class RunState:
    """What a run has done so far: the state a checkpoint carries between epochs."""

    rows: list
    epoch: int = 0
    best_acc: float = -1.0
    best_state: dict | None = None
    records: dict | None = None


class Trainee:
    """The model, optimiser, scheduler and (for 04) recorders of one run, built from its config."""

    def __init__(self, config: TrainConfig, num_classes: int, device: torch.device, steps_per_epoch: int,
                 start: Run | None = None):
        self.model = build(config, num_classes, device)
        if start is not None:  # the previous phase's final weights; the optimiser and schedule start afresh
            self.model.load_state_dict(start.model.state_dict())
        self.opt = make_optimizer(self.model, config)
        self.sched = make_scheduler(self.opt, config, steps_per_epoch)
        self.step_model = torch.compile(self.model) if config.compile else self.model
        self.recorders = None
        if config.record_every:
            self.recorders = (GradientRecorder(self.model, config.record_every),
                              UpdateRecorder(self.model, config.record_every))

    def state(self, done: RunState) -> dict:
        records = self.recorders and dict(gradients=self.recorders[0].rows, updates=self.recorders[1].state())
        return dict(model=self.model.state_dict(), optimizer=self.opt.state_dict(), scheduler=self.sched.state_dict(),
                    rows=done.rows, epoch=done.epoch, best_acc=done.best_acc, best_state=done.best_state,
                    rng=rng_state(), records=records)

    def load_state(self, ckpt: dict) -> RunState:
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        if self.recorders and ckpt.get("records") is not None:
            self.recorders[0].rows = ckpt["records"]["gradients"]
            self.recorders[1].load_state(ckpt["records"]["updates"])
        set_rng_state(ckpt["rng"])
        return RunState(ckpt["rows"], ckpt["epoch"], ckpt["best_acc"], ckpt["best_state"])


def start_or_resume(config: TrainConfig, data: Dataset, path: Path, device: torch.device,
                    steps_per_epoch: int, previous: Run | None = None) -> tuple[Trainee, RunState]:
    """A fresh run, or the state of the last complete epoch from ``checkpoint.pt``."""
    # We hold the run's lock, so temporary files here belong to a writer that was killed mid-write.
    for tmp in path.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    trainee = Trainee(config, data.num_classes, device, steps_per_epoch, previous)
    ckpt_file = path / "checkpoint.pt"
    if not ckpt_file.exists():
        return trainee, RunState([])
    try:
        done = trainee.load_state(store.load_checked(ckpt_file, device))
    except store.UnsafeFile:
        raise
    except Exception as e:  # a damaged checkpoint only costs the epochs it held
        store.move_aside(ckpt_file, f"{ckpt_file}: cannot resume from it ({store.one_line(e, 120)})",
                         "training from epoch 1")
        return Trainee(config, data.num_classes, device, steps_per_epoch, previous), RunState([])
    print(f"Resuming {path.name} after epoch {done.epoch}/{config.epochs}", flush=True)
    return trainee, done


def train_run(config: TrainConfig, data: Dataset, path: Path, device: torch.device, progress: bool,
              previous: Run | None = None, on_epoch=None) -> Run:
    path.mkdir(parents=True, exist_ok=True)
    train_loader, val_loader = make_loaders(config, data, device)
    t, done = start_or_resume(config, data, path, device, len(train_loader), previous)
    split = config.eval_split
    # TQDM_DISABLE=1 (set by the notebook runner) keeps progress bars out of saved reports
    quiet = not progress or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    bar = tqdm(total=config.epochs, initial=done.epoch, desc=config.name, unit="epoch", disable=quiet)
    for epoch in range(done.epoch, config.epochs):
        train_loader.set_epoch(epoch)
        # mixing draws from its own (seed, epoch) stream, so a resumed epoch mixes the same way
        mix_gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        lr = t.opt.param_groups[0]["lr"]
        t0 = time.perf_counter()
        train_loss, train_acc = train_epoch(t.step_model, train_loader, t.opt, t.sched, config, data.num_classes,
                                            mix_gen, t.recorders, epoch)
        seconds = time.perf_counter() - t0
        eval_loss, eval_acc = loss_and_accuracy(t.step_model, val_loader, config.precision)
        # lr: the LR the epoch started with; lr_end: the one in force after its scheduler step(s), the
        # value report 003 logs per epoch ("Epoch 1: 0.1494" for 0.15 over 25 epochs)
        done.rows.append({"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                          f"{split}_loss": eval_loss, f"{split}_acc": eval_acc, "lr": lr,
                          "lr_end": t.opt.param_groups[0]["lr"], "seconds": seconds})
        if eval_acc > done.best_acc:
            done.best_acc = eval_acc
            done.best_state = {k: v.detach().clone() for k, v in t.model.state_dict().items()}
        done.epoch = epoch + 1
        store.save_checked(t.state(done), path / "checkpoint.pt")
        if on_epoch is not None:
            on_epoch(config, done.epoch, seconds)
        bar.update(1)
        bar.set_postfix({"loss": f"{train_loss:.3f}", "acc": f"{train_acc:.3f}", f"{split}_acc": f"{eval_acc:.3f}"})
    bar.close()
    run = finish_run(config, data, path, device, t, done)
    run.previous = previous
    return run


def finish_run(config: TrainConfig, data: Dataset, path: Path, device: torch.device, t: Trainee,
               done: RunState) -> Run:
    """Write the run's files, then its manifest (last: it marks the run complete)."""
    history = pd.DataFrame(done.rows)
    store.save_torch(t.model.state_dict(), path / "final.pt")
    store.save_torch(done.best_state, path / "best.pt")
    store.save_text(history.to_csv(index=False), path / "history.csv")
    files = list(store.RUN_FILES)
    if t.recorders:
        store.save_text(t.recorders[0].frame().to_csv(index=False), path / "gradients.csv")
        store.save_text(t.recorders[1].frame().to_csv(index=False), path / "updates.csv")
        files += ["gradients.csv", "updates.csv"]
    acc = history[f"{config.eval_split}_acc"]
    mean, std = norm_stats(config, data, "test")
    info = store.write_manifest(path, dict(
        config=config.key_dict(), version=CACHE_VERSION, data=data.name, data_fingerprint=data.fingerprint(),
        normalize={"mean": list(mean), "std": list(std)},
        environment=environment(device, config.deterministic, config.precision), best_epoch=int(acc.idxmax()) + 1,
        best_acc=float(acc.max()), best_split=config.eval_split, train_seconds=float(history["seconds"].sum()),
        finished=time.strftime("%Y-%m-%d %H:%M:%S")), files)
    (path / "checkpoint.pt").unlink(missing_ok=True)
    t.model.eval()
    return Run(t.model, mean, std, config, history, path, device, cached=False, info=info)
