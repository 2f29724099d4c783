"""Run profiles: the settings of each study under ``smoke``, ``quick`` and ``full``.

``full`` is each reference report's protocol: every value a report states, and a marked choice
where it is silent (``helpers.protocol`` keeps the report's words and our reasons, and
``protocol_card`` shows them side by side); it wants a GPU. ``quick`` (the default) keeps the
protocol's shape -- same optimiser, schedule type, augmentation -- and scales down the data, the
epochs and the model width so a notebook runs in minutes on a 2-core CPU. Both run on ``"auto"``
data: the report's CIFAR when the data folder has it or it can be downloaded, else the synthetic
stand-in (``Settings.data_choice`` says which and why). ``smoke`` is a few hundred synthetic
images for a few seconds: tests and CI only; its numbers mean nothing.

    >>> s = settings("bn_ablation", "quick", epochs=3)   # any single setting can be overridden
    >>> s.train.epochs, s.dataset
    (3, 'auto')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only when settings are built, so the runner starts fast
    from .config import TrainConfig
    from .data import DataChoice, Dataset

PROFILES = ("smoke", "quick", "full")
STUDIES = ("stress_test", "cutmix_study", "resnet_budget", "worksheet_analysis", "bn_ablation")

# Augmentation of each report, in helpers.loader.Augment terms.
CROP_FLIP = dict(crop_padding=4, flip_h=0.5)

# The reports' protocols: where a report states a value, FULL uses it; where it is silent, the
# comment says what we chose, and helpers.protocol keeps the report's words and the reason for each
# choice (the protocol card marks them "chosen"). "dataset" is the report's data; the quick and full
# profiles ask for it through "auto" (the synthetic stand-in when this machine cannot have it).
FULL = {
    # Report 000: FlexibleCNN plain vs residual.
    "stress_test": dict(
        dataset="cifar10",
        train=dict(model="flexible_cnn", epochs=40, batch_size=64, lr=0.01, momentum=0.9, weight_decay=5e-4,
                   schedule="onecycle", step_per="batch",   # OneCycle max lr 0.01; per batch (our choice)
                   augment=dict(CROP_FLIP, jitter=0.1),     # padding 4, flip p 0.5, "mild" jitter 0.1: our choices
                   normalize="cifar10",  # "CIFAR-10 channel means and standard deviations": values ours (003's)
                   val_fraction=0.1, split_seed=2026, seed=2026),
    ),
    # Report 001: ResNet-18 on CIFAR-100, baseline vs CutMix (alpha 1, p 0.5) + label smoothing 0.1.
    "cutmix_study": dict(
        dataset="cifar100",
        train=dict(model="resnet18_cifar", epochs=50, batch_size=128,  # batch size not in the report: 128
                   lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="multistep", milestones=(25, 40),
                   gamma=0.1, augment=CROP_FLIP,  # "random crop + horizontal flip": padding 4, p 0.5 ours
                   val_fraction=0.1, split_seed=42, seed=42),  # normalisation not in the report: train stats
        extra=dict(cutmix_alpha=1.0, cutmix_p=0.5, label_smoothing=0.1),
    ),
    # Report 002: <=5M-parameter ResNet, heavy augmentation + CutMix. Its schedule contradicts
    # itself: the text says cosine from 0.1 over 100 epochs (what FULL runs), but its epoch log
    # starts at LR 0.009998 with 89.47% test accuracy after one epoch, i.e. a second, warm-started
    # phase at a peak of about 0.01, and it mentions a "hybrid" multi-step schedule besides. Its
    # final 94.65% therefore comes from a two-phase run whose first phase it does not describe;
    # helpers.protocol.NOTES["resnet_budget"] says so for the notebook.
    "resnet_budget": dict(
        dataset="cifar10",
        train=dict(model="budget_resnet", epochs=100, batch_size=128,  # batch size not in the report: 128
                   lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                   augment=dict(crop_padding=2, flip_h=0.5, flip_v=0.05, blur_p=0.3, blur_kernel=3,
                                blur_sigma=(0.1, 1.5)),  # "sigma belongs to [0.1,1,1.5]": read as 0.1-1.5
                   mix=dict(kind="cutmix", alpha=1.0, p=0.5),  # CutMix parameters not in the report: 001's
                   val_fraction=0.0,  # the report logs test accuracy every epoch
                   seed=42),           # "fixed seeds", value not given: 42; normalisation not given: train stats
    ),
    # Report 003: ResNet-18, batch size / LR study, cosine over 25 epochs.
    "worksheet_analysis": dict(
        dataset="cifar10",
        train=dict(model="resnet18_cifar", epochs=25, batch_size=64, lr=0.15, momentum=0.9, weight_decay=5e-4,
                   schedule="cosine", augment=dict(CROP_FLIP, jitter=0.2), normalize="cifar10",
                   drop_last=True,    # 781 and 390 batches per epoch for batch 64 and 128 on 50,000 images
                   record_every=100,  # gradient / weight-update records every 100 batches
                   val_fraction=0.0,  # the report evaluates on the test split each epoch
                   seed=42),           # seed not given: 42
        extra=dict(batch_size_2=128, lr_2=0.20),  # experiment 2
    ),
    # Report 004: SimpleCNN with and without BatchNorm.
    "bn_ablation": dict(
        dataset="cifar10",
        train=dict(model="simple_cnn", epochs=30, batch_size=128, lr=0.01, momentum=0.9, weight_decay=5e-4,
                   schedule="step", step_size=10, gamma=0.1, augment=CROP_FLIP,  # padding 4, p 0.5: ours
                   val_fraction=0.1, split_seed=42, seed=42),  # normalisation values not given: train stats
    ),
}

# What quick and smoke change. n_train / n_test: images kept (None = all); the rest of the
# protocol stays as in FULL. Quick runs on "auto" data, smoke always on the synthetic shapes.
QUICK = {
    "stress_test": dict(n_train=10_000, n_test=2_000, train=dict(width=0.25, epochs=8, batch_size=64)),
    "cutmix_study": dict(n_train=8_000, n_test=2_000, train=dict(width=0.125, epochs=8, milestones=(4, 6))),
    "resnet_budget": dict(n_train=8_000, n_test=2_000, train=dict(width=0.25, epochs=8)),
    "worksheet_analysis": dict(n_train=6_000, n_test=2_000, train=dict(width=0.125, epochs=6, record_every=20)),
    "bn_ablation": dict(n_train=20_000, n_test=2_000,   # LR drops every 4 of 12 epochs
                        train=dict(width=0.5, epochs=12, step_size=4)),
}
SMOKE_TRAIN = dict(width=0.0625, epochs=2, batch_size=32)
SMOKE_SCHEDULES = {"cutmix_study": dict(milestones=(1,)), "bn_ablation": dict(step_size=1),
                   "worksheet_analysis": dict(record_every=2)}  # what 2 epochs need to still show the mechanism
SMOKE = {study: dict(dataset="synthetic", n_train=320, n_test=100, train=dict(SMOKE_TRAIN, **SMOKE_SCHEDULES.get(study, {})))
         for study in STUDIES}
DATASETS = ("auto", "synthetic", "cifar10", "cifar100", "folder:PATH")

# Each study's runs as its notebook trains them: variant -> TrainConfig changes (run name first), given
# the study's extra settings. The first seed's configs are exactly the notebooks' (same cache keys).
VARIANTS = {
    "stress_test": lambda e: {"plain": dict(name="stress_test-plain", model_kwargs={"residual": False}),
                              "residual": dict(name="stress_test-residual", model_kwargs={"residual": True})},
    "cutmix_study": lambda e: {"baseline": dict(name="cutmix_study-baseline"),
                               "cutmix": dict(name="cutmix_study-cutmix", label_smoothing=e["label_smoothing"],
                                              mix=dict(kind="cutmix", alpha=e["cutmix_alpha"], p=e["cutmix_p"]))},
    "resnet_budget": lambda e: {"budget": dict(name="resnet_budget")},
    "worksheet_analysis": lambda e: {"exp1": dict(name="worksheet-exp1"),
                                     "exp2": dict(name="worksheet-exp2", batch_size=e["batch_size_2"], lr=e["lr_2"])},
    "bn_ablation": lambda e: {"baseline": dict(name="bn_ablation-baseline", model_kwargs={"batch_norm": False}),
                              "batchnorm": dict(name="bn_ablation-batchnorm", model_kwargs={"batch_norm": True})},
}
SEEDS_FORMS = ("an integer k >= 1 (k seeds: the profile's seed, then +1, +2, ...), a list or tuple of distinct "
               "integers, or a string '1,2,3' / '[1, 2, 3]'")


@dataclass(frozen=True)
class Settings:
    """One study under one profile: where the data comes from, how each model trains, which seeds."""

    study: str
    profile: str
    dataset: str                 # "auto" (the report's data, else the synthetic stand-in) or a helpers.data source
    n_train: int | None          # images kept from the train split (None = all)
    n_test: int | None
    train: TrainConfig
    extra: dict = field(default_factory=dict)   # study-specific settings (e.g. experiment 2's batch size)
    seeds: tuple = ()            # the seeds every run is trained with; the first is train.seed
    overrides: dict = field(default_factory=dict)  # the settings given on top of the profile (None dropped)
    choices: dict = field(default_factory=dict, compare=False, repr=False)  # data choice per root, made once

    @property
    def report_dataset(self) -> str:
        """The dataset the study's report used: "cifar10" or "cifar100"."""
        return FULL[self.study]["dataset"]

    @property
    def data_choice(self) -> DataChoice:
        """Which data this study runs on and why (its ``banner()`` is a notebook's first line): the
        choice of the last ``load_data``, else made now for the project's data folder, once."""
        from . import DATA_DIR

        return self.choices.get("last") or self.choose_data(DATA_DIR)

    def choose_data(self, root: str | Path) -> DataChoice:
        from .data import auto

        key = str(root)
        if key not in self.choices:
            if self.dataset == "auto":
                choice = auto.choose_source(self.report_dataset, root)
            elif "dataset" in self.overrides:
                choice = auto.given(self.dataset, self.report_dataset)
            else:  # smoke
                choice = auto.DataChoice(self.dataset, f"the {self.profile} profile always runs on it", False,
                                         self.report_dataset)
            self.choices["last"] = self.choices[key] = choice
        return self.choices[key]

    def load_data(self, root: str | Path | None = None) -> Dataset:
        """The study's dataset, cut to the profile's size (synthetic data is generated at that size).

        With "auto", a download that the reachability check promised but that fails falls back to
        the synthetic stand-in too, and ``data_choice`` says so.
        """
        from . import DATA_DIR
        from .data import auto, load_dataset, make_synthetic

        root = DATA_DIR if root is None else root
        choice = self.choose_data(root)
        if choice.source != "synthetic":
            try:
                data = load_dataset(choice.source, root=root)
            except FileNotFoundError as err:
                if self.dataset != "auto" or not choice.download:
                    raise
                choice = self.choices["last"] = self.choices[str(root)] = auto.after_failed_download(choice, err)
        if choice.source == "synthetic":
            return make_synthetic(n_train=self.n_train or 50_000, n_test=self.n_test or 10_000,
                                  seed=self.train.split_seed)
        if self.n_train or self.n_test:
            data = data.subset(self.n_train, self.n_test, seed=self.train.split_seed)
        return data

    def runs(self) -> dict[str, list[TrainConfig]]:
        """The study's runs: variant -> one TrainConfig per seed (see :func:`study_runs`)."""
        return {variant: [self.train.replace(seed=seed, **changes) for seed in self.seeds]
                for variant, changes in VARIANTS[self.study](self.extra).items()}


def settings(study: str, profile: str = "quick", **overrides) -> Settings:
    """The settings of ``study`` under ``profile``, with any single setting overridden (all notebooks).

    Overrides name a TrainConfig field (``epochs=3``, ``precision="bf16"``), a Settings field
    (``dataset=...``, ``n_train=...``), a study extra (``lr_2=...``) or ``seeds`` (an int k, a list,
    or "1,2,3"; see :func:`parse_seeds`). ``None`` values are ignored, so notebook parameters can
    default to None meaning "the profile's value". Bad values raise ValueError naming the choices.
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
    top = dict(dataset=scaled.get("dataset", "auto"), n_train=scaled.get("n_train"), n_test=scaled.get("n_test"))

    valid = sorted(set(config_fields()) | set(top) | set(extra) | {"seeds"})
    given = {name: value for name, value in overrides.items() if value is not None}
    for name in overrides:
        if name not in valid:
            raise ValueError(f"unknown setting {name!r} for {study}; valid settings: {', '.join(valid)}")
    for name, value in given.items():
        target = top if name in top else extra if name in extra else None if name == "seeds" else train
        if target is not None:
            target[name] = value
    check_dataset(top["dataset"])
    for name in ("n_train", "n_test"):
        if top[name] is not None and (not isinstance(top[name], int) or top[name] < 10):
            raise ValueError(f"{name} must be an integer >= 10 or None (all), not {top[name]!r}")
    seeds = parse_seeds(given.get("seeds", 1), train["seed"])
    if "seed" in given and "seeds" in given and seeds[0] != given["seed"]:
        raise ValueError(f"seed={given['seed']!r} and seeds={given['seeds']!r} disagree: the first seed is the run's seed")
    train["seed"] = seeds[0]
    config = TrainConfig(name=study, **train)
    if config.precision != "fp32":  # bf16 with device "auto" on a machine without CUDA: say so now
        from .device import check_precision, pick_device
        check_precision(config.precision, pick_device(config.device))
    return Settings(study=study, profile=profile, train=config, extra=extra, seeds=seeds, overrides=given, **top)


def setting_names(study: str) -> set[str]:
    """Every name ``settings(study, ...)`` accepts as an override (the runner passes the ``-p`` values
    among these to it before any kernel starts)."""
    from .config import config_fields

    return set(config_fields()) | {"dataset", "n_train", "n_test", "seeds"} | set(FULL[study].get("extra", {}))


def check_dataset(dataset) -> None:
    if not isinstance(dataset, str) or not (dataset in DATASETS or (dataset.startswith("folder:") and dataset[7:].strip())):
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")


def parse_seeds(seeds, first: int) -> tuple[int, ...]:
    """The seeds a study trains with (all notebooks' ``seeds`` parameter).

    An int k: k seeds from ``first`` (the profile's seed): first, first+1, ...; 1 = the report's
    seed only. A list or tuple of distinct ints: those. A string "1,2,3" or "[1, 2, 3]" (papermill
    passes ``-p seeds 1,2,3`` as a string): the list it spells. Anything else: a ValueError.
    """
    from .config import is_int  # bool is an int to Python, not a seed

    value = seeds
    if isinstance(value, str):
        text = value.strip()
        text = text[1:-1] if text[:1] + text[-1:] in ("[]", "()") else text
        try:
            value = [int(part) for part in text.split(",")]
        except ValueError:
            value = None
    if is_int(value) and value >= 1:
        return tuple(range(first, first + value))
    if isinstance(value, (list, tuple)) and value and all(is_int(v) for v in value) and len(set(value)) == len(value):
        return tuple(value)
    raise ValueError(f"seeds must be {SEEDS_FORMS}; got {seeds!r}")


def study_runs(study: str, profile: str = "quick", seeds=1, **overrides) -> dict[str, list[TrainConfig]]:
    """Every run of ``study``: variant -> one TrainConfig per seed, as the notebooks train them (all).

    Variants: stress_test plain / residual (model_kwargs residual False / True); cutmix_study
    baseline / cutmix (the cutmix run adds the study's label smoothing and CutMix); resnet_budget
    budget; worksheet_analysis exp1 / exp2 (batch_size_2, lr_2); bn_ablation baseline / batchnorm.
    The first seed's configs are the ones the notebooks have always trained, so cached runs keep
    their folders; other seeds change only ``seed`` (the train/val split stays ``split_seed``'s).
    """
    return settings(study, profile, seeds=seeds, **overrides).runs()


def describe(s: Settings) -> str:
    """A one-paragraph summary of the settings for a notebook's first output (all notebooks)."""
    c = s.train
    size = "all" if s.n_train is None else f"{s.n_train:,} train / {s.n_test:,} test"
    seeds = ", ".join(map(str, s.seeds))
    return (f"{s.study} · profile {s.profile} · data {s.data_choice.source} ({size}) · model {c.model} width "
            f"{c.width} · {c.epochs} epochs · batch {c.batch_size} · lr {c.lr} ({c.schedule}) · {c.precision} · "
            f"seed{'s' if len(s.seeds) > 1 else ''} {seeds}")
