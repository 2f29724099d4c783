"""Run profiles: the settings of each study under ``smoke``, ``quick`` and ``full``.

``full`` is each reference report's protocol exactly (dataset, epochs, batch size, optimiser,
schedule, augmentation, seed) and wants a GPU. ``quick`` (the default) keeps the protocol's
shape -- same optimiser, schedule type, augmentation -- and scales down the data, the epochs and
the model width so a notebook runs in minutes on a 2-core CPU. ``smoke`` is a few hundred images
for a few seconds: tests and CI only; its numbers mean nothing.

    >>> s = settings("bn_ablation", "quick", epochs=3)   # any single setting can be overridden
    >>> s.train.epochs, s.dataset
    (3, 'synthetic')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only when settings are built, so the runner starts fast
    from .data import Dataset
    from .config import TrainConfig

PROFILES = ("smoke", "quick", "full")
STUDIES = ("stress_test", "cutmix_study", "resnet_budget", "worksheet_analysis", "bn_ablation")

# Augmentation of each report, in helpers.loader.Augment terms.
CROP_FLIP = dict(crop_padding=4, flip_h=0.5)

# The reports' protocols. Where a report leaves a value out, the comment says what we chose.
FULL = {
    # Report 000: FlexibleCNN plain vs residual.
    "stress_test": dict(
        dataset="cifar10",
        train=dict(model="flexible_cnn", epochs=40, batch_size=64, lr=0.01, momentum=0.9, weight_decay=5e-4,
                   schedule="onecycle", step_per="batch",   # OneCycle max lr 0.01, stepped per batch
                   augment=dict(CROP_FLIP, jitter=0.1),     # "mild colour jitter": strength 0.1 (our choice)
                   val_fraction=0.1, split_seed=2026, seed=2026),
    ),
    # Report 001: ResNet-18 on CIFAR-100, baseline vs CutMix (alpha 1, p 0.5) + label smoothing 0.1.
    "cutmix_study": dict(
        dataset="cifar100",
        train=dict(model="resnet18_cifar", epochs=50, batch_size=128,  # batch size not in the report: 128
                   lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="multistep", milestones=(25, 40),
                   gamma=0.1, augment=CROP_FLIP, val_fraction=0.1, split_seed=42, seed=42),
        extra=dict(cutmix_alpha=1.0, cutmix_p=0.5, label_smoothing=0.1),
    ),
    # Report 002: <=5M-parameter ResNet, cosine from 0.1 over 100 epochs, heavy augmentation + CutMix.
    "resnet_budget": dict(
        dataset="cifar10",
        train=dict(model="budget_resnet", epochs=100, batch_size=128,  # batch size not in the report: 128
                   lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                   augment=dict(crop_padding=2, flip_h=0.5, flip_v=0.05, blur_p=0.3, blur_kernel=3,
                                blur_sigma=(0.1, 1.5)),
                   mix=dict(kind="cutmix", alpha=1.0, p=0.5),  # CutMix parameters not in the report: 001's
                   val_fraction=0.0,  # the report logs test accuracy every epoch
                   seed=42),           # "fixed seeds", value not given: 42
    ),
    # Report 003: ResNet-18, batch size / LR study, cosine over 25 epochs.
    "worksheet_analysis": dict(
        dataset="cifar10",
        train=dict(model="resnet18_cifar", epochs=25, batch_size=64, lr=0.15, momentum=0.9, weight_decay=5e-4,
                   schedule="cosine", augment=dict(CROP_FLIP, jitter=0.2), normalize="cifar10",
                   record_every=100,  # gradient / weight-update records every 100 batches
                   val_fraction=0.0,  # the report evaluates on the test split each epoch
                   seed=42),           # seed not given: 42
        extra=dict(batch_size_2=128, lr_2=0.20),  # experiment 2
    ),
    # Report 004: SimpleCNN with and without BatchNorm.
    "bn_ablation": dict(
        dataset="cifar10",
        train=dict(model="simple_cnn", epochs=30, batch_size=128, lr=0.01, momentum=0.9, weight_decay=5e-4,
                   schedule="step", step_size=10, gamma=0.1, augment=CROP_FLIP,
                   val_fraction=0.1, split_seed=42, seed=42),
    ),
}

# What quick and smoke change. n_train / n_test: images kept (None = all); the rest of the
# protocol stays as in FULL.
QUICK = {
    "stress_test": dict(dataset="synthetic", n_train=10_000, n_test=2_000,
                        train=dict(width=0.25, epochs=8, batch_size=64)),
    "cutmix_study": dict(dataset="synthetic", n_train=8_000, n_test=2_000,
                         train=dict(width=0.125, epochs=8, milestones=(4, 6))),
    "resnet_budget": dict(dataset="synthetic", n_train=8_000, n_test=2_000,
                          train=dict(width=0.25, epochs=8)),
    "worksheet_analysis": dict(dataset="synthetic", n_train=6_000, n_test=2_000,
                               train=dict(width=0.125, epochs=6, record_every=20)),
    "bn_ablation": dict(dataset="synthetic", n_train=20_000, n_test=2_000,   # LR drops every 4 of 12 epochs
                        train=dict(width=0.5, epochs=12, step_size=4)),
}
SMOKE_TRAIN = dict(width=0.0625, epochs=2, batch_size=32)
SMOKE_SCHEDULES = {"cutmix_study": dict(milestones=(1,)), "bn_ablation": dict(step_size=1),
                   "worksheet_analysis": dict(record_every=2)}  # what 2 epochs need to still show the mechanism
SMOKE = {study: dict(dataset="synthetic", n_train=320, n_test=100, train=dict(SMOKE_TRAIN, **SMOKE_SCHEDULES.get(study, {})))
         for study in STUDIES}


@dataclass(frozen=True)
class Settings:
    """One study under one profile: where the data comes from and how each model trains."""

    study: str
    profile: str
    dataset: str                 # a helpers.data source ("synthetic", "cifar10", "folder:PATH", ...)
    n_train: int | None          # images kept from the train split (None = all)
    n_test: int | None
    train: TrainConfig
    extra: dict = field(default_factory=dict)   # study-specific settings (e.g. experiment 2's batch size)

    def load_data(self, root: str | Path | None = None) -> Dataset:
        """The study's dataset, cut to the profile's size (synthetic data is generated at that size)."""
        from . import DATA_DIR
        from .data import load_dataset, make_synthetic

        if self.dataset == "synthetic":
            return make_synthetic(n_train=self.n_train or 50_000, n_test=self.n_test or 10_000,
                                  seed=self.train.split_seed)
        data = load_dataset(self.dataset, root=DATA_DIR if root is None else root)
        if self.n_train or self.n_test:
            data = data.subset(self.n_train, self.n_test, seed=self.train.split_seed)
        return data


def settings(study: str, profile: str = "quick", **overrides) -> Settings:
    """The settings of ``study`` under ``profile``, with any single setting overridden.

    Overrides name a TrainConfig field (``epochs=3``), a Settings field (``dataset=...``,
    ``n_train=...``) or a study extra (``lr_2=...``). ``None`` values are ignored, so notebook
    parameters can default to None meaning "the profile's value".
    """
    from .config import TrainConfig, config_fields

    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; valid studies: {', '.join(STUDIES)}")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    full = FULL[study]
    scaled = {"full": {}, "quick": QUICK[study], "smoke": SMOKE[study]}[profile]
    train = dict(full["train"], **scaled.get("train", {}))
    extra = dict(full.get("extra", {}), **scaled.get("extra", {}))
    top = dict(dataset=scaled.get("dataset", full["dataset"]), n_train=scaled.get("n_train"),
               n_test=scaled.get("n_test"))

    valid = sorted(set(config_fields()) | set(top) | set(extra))
    for name, value in overrides.items():
        if name not in valid:
            raise ValueError(f"unknown setting {name!r} for {study}; valid settings: {', '.join(valid)}")
        if value is None:
            continue
        if name in top:
            top[name] = value
        elif name in extra:
            extra[name] = value
        else:
            train[name] = value
    # A dataset given on top of the quick/smoke profile keeps that profile's subset sizes.
    config = TrainConfig(name=study, **train)
    for name in ("n_train", "n_test"):
        if top[name] is not None and (not isinstance(top[name], int) or top[name] < 10):
            raise ValueError(f"{name} must be an integer >= 10 or None (all), not {top[name]!r}")
    return Settings(study=study, profile=profile, train=config, extra=extra, **top)


def describe(s: Settings) -> str:
    """A one-paragraph summary of the settings for a notebook's first output."""
    c = s.train
    size = "all" if s.n_train is None else f"{s.n_train:,} train / {s.n_test:,} test"
    return (f"{s.study} · profile {s.profile} · data {s.dataset} ({size}) · model {c.model} width {c.width} · "
            f"{c.epochs} epochs · batch {c.batch_size} · lr {c.lr} ({c.schedule}) · seed {c.seed}")
