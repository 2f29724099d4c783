"""Run profiles: a study's settings under ``smoke``, ``quick`` or ``full``, with any setting overridden.

``full`` is each reference report's protocol, ``quick`` (the default) keeps its shape on subsets,
narrower models and fewer epochs so a notebook runs in minutes on a 2-core CPU, ``smoke`` is a few
hundred synthetic images for a few seconds (tests and CI; its numbers mean nothing). The values
live in each study's module (``helpers.studies``); this module turns them into :class:`Settings`.
Quick and full run on ``"auto"`` data: the report's CIFAR when the data folder has it or it can be
downloaded, else the synthetic stand-in (``Settings.data_choice`` says which and why).

    >>> s = settings("bn_ablation", "quick", epochs=3)   # any single setting can be overridden
    >>> s.config.epochs, s.dataset
    (3, 'auto')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import DATA_DIR
from . import studies
from .config import TrainConfig, config_fields, is_int
from .data import DataChoice, Dataset, auto, load_dataset, make_synthetic
from .device import check_precision, pick_device
from .studies import Study

PROFILES = ("smoke", "quick", "full")
DATASETS = ("auto", "synthetic", "cifar10", "cifar100", "folder:PATH")
MAX_SEEDS = 20  # each seed trains every run of a study again: more is a typo, not a plan
SEEDS_FORMS = (f"an integer k from 1 to {MAX_SEEDS} (k seeds: the profile's seed, then +1, +2, ...), a list or "
               f"tuple of at most {MAX_SEEDS} distinct integers, or a string '1,2,3' / '[1, 2, 3]'")


@dataclass(frozen=True)
class Settings:
    """One study under one profile: where the data comes from, how each model trains, which seeds."""

    study: Study
    profile: str
    dataset: str                 # "auto" (the report's data, else the synthetic stand-in) or a helpers.data source
    n_train: int | None          # images kept from the train split (None = all)
    n_test: int | None
    config: TrainConfig          # the runs' shared training settings; each variant changes a few (runs())
    extra: dict = field(default_factory=dict)   # study-specific settings (e.g. experiment 2's batch size)
    seeds: tuple = ()            # the seeds every run is trained with; the first is config.seed
    overrides: dict = field(default_factory=dict)  # the settings given on top of the profile (None dropped)
    choices: dict = field(default_factory=dict, compare=False, repr=False)  # data choice per root, made once

    @property
    def data_choice(self) -> DataChoice:
        """Which data this study runs on and why (its ``banner()`` is a notebook's first line): the
        choice of the last ``load_data``, else made now for the project's data folder, once."""
        return self.choices.get("last") or self.choose_data(DATA_DIR)

    def choose_data(self, root: str | Path) -> DataChoice:
        key = str(root)
        if key not in self.choices:
            if self.dataset == "auto":
                choice = auto.choose_source(self.study.dataset, root)
            elif "dataset" in self.overrides:
                choice = auto.given(self.dataset, self.study.dataset)
            else:  # smoke
                choice = DataChoice(self.dataset, f"the {self.profile} profile always runs on it", False,
                                    self.study.dataset)
            self.choices["last"] = self.choices[key] = choice
        return self.choices[key]

    def load_data(self, root: str | Path | None = None) -> Dataset:
        """The study's dataset, cut to the profile's size (synthetic data is generated at that size).

        With "auto", a download that the reachability check promised but that fails falls back to
        the synthetic stand-in too, and ``data_choice`` says so.
        """
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
                                  seed=self.config.split_seed)
        self.check_sizes(data)
        if self.n_train or self.n_test:
            data = data.subset(self.n_train, self.n_test, seed=self.config.split_seed)
        return data

    def check_sizes(self, data: Dataset) -> None:
        """A ValueError naming the fix when ``data`` has fewer images than the profile keeps, or too few
        to split off validation images (a small ``folder:`` dataset), before anything trains."""
        have = {"n_train": len(data.train_labels), "n_test": len(data.test_labels)}
        for name, want in (("n_train", self.n_train), ("n_test", self.n_test)):
            if want is not None and want > have[name]:
                fix = (f"set -p {name} {have[name]} (or fewer)" if have[name] >= 10 else
                       "use a dataset with at least 10 images a split, or the full profile (all images)")
                raise ValueError(f"the {self.profile} profile keeps {name}={want:,} images, but {data.name} has "
                                 f"{have[name]:,}: {fix}")
        n = min(self.n_train or have["n_train"], have["n_train"])
        if self.config.val_fraction and not 0 < round(n * self.config.val_fraction) < n:
            raise ValueError(f"{data.name}: {n} training images cannot be split {1 - self.config.val_fraction:.0%} "
                             f"/ {self.config.val_fraction:.0%} into training and validation images: it needs more")

    def variants(self, seed: int | None = None) -> dict[str, TrainConfig]:
        """Variant -> its TrainConfig for ``seed`` (default: the first seed's, the protocol card's
        columns). A change given as a function of the shared config is called with it (03's second
        phase starts from a first-phase config made from it)."""
        base = self.config if seed is None else self.config.replace(seed=seed)
        return {variant: base.replace(**{k: v(base) if callable(v) else v for k, v in changes.items()})
                for variant, changes in self.study.variants(self.extra).items()}

    def runs(self) -> dict[str, list[TrainConfig]]:
        """The study's runs, as its notebook trains them: variant -> one TrainConfig per seed. The
        first seed's configs are the notebook's own; other seeds change only ``seed``, in every phase
        (the train/val split stays ``split_seed``'s)."""
        per_seed = [self.variants(seed) for seed in self.seeds]
        return {variant: [configs[variant] for configs in per_seed] for variant in per_seed[0]}


def settings(study: str, profile: str = "quick", **overrides) -> Settings:
    """The settings of ``study`` under ``profile``, with any single setting overridden (all notebooks).

    Overrides name a TrainConfig field (``epochs=3``, ``precision="bf16"``), a Settings field
    (``dataset=...``, ``n_train=...``), a study extra (``lr_2=...``) or ``seeds`` (an int k, a list,
    or "1,2,3"; see :func:`parse_seeds`). ``None`` values are ignored, so notebook parameters can
    default to None meaning "the profile's value". Bad values raise ValueError naming the choices.
    """
    spec = studies.get(study)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    values = spec.profile(profile, overrides.get("reading"))
    train, extra = values.pop("train"), values.pop("extra")
    top = {k: values[k] for k in ("dataset", "n_train", "n_test")}
    valid = sorted(setting_names(study))
    for name in overrides:
        if name not in valid:
            raise ValueError(f"unknown setting {name!r} for {study}; valid settings: {', '.join(valid)}")
    given = {name: value for name, value in overrides.items() if value is not None}
    for name, value in given.items():
        target = top if name in top else extra if name in extra else None if name == "seeds" else train
        if target is not None:
            target[name] = value
    top["dataset"] = check_dataset(top["dataset"])
    for name in ("n_train", "n_test"):
        if top[name] is not None and (not is_int(top[name]) or top[name] < 10):
            raise ValueError(f"{name} must be an integer >= 10 or None (all), not {top[name]!r}")
    seeds = parse_seeds(given.get("seeds", 1), train["seed"])
    if "seed" in given and "seeds" in given and seeds[0] != given["seed"]:
        raise ValueError(f"seed={given['seed']!r} and seeds={given['seeds']!r} disagree: the first seed is the run's seed")
    train["seed"] = seeds[0]
    config = TrainConfig(name=study, **train)
    if config.device != "auto" or config.precision != "fp32":  # cuda:99, or bf16 without CUDA: say so now
        check_precision(config.precision, pick_device(config.device))
    return Settings(study=spec, profile=profile, config=config, extra=extra, seeds=seeds, overrides=given, **top)


def setting_names(study: str) -> set[str]:
    """Every name ``settings(study, ...)`` accepts as an override (the runner passes the ``-p`` values
    among these to it before any kernel starts)."""
    return set(config_fields()) | {"dataset", "n_train", "n_test", "seeds"} | set(studies.get(study).full.get("extra", {}))


def check_dataset(dataset) -> str:
    """``dataset`` ready to use, or a ValueError naming the valid choices (settings, the runner's
    ``--dataset``). A ``folder:PATH`` must exist; its path is made absolute, since each notebook runs
    in a folder of its own."""
    if isinstance(dataset, str) and dataset.startswith("folder:") and dataset[7:].strip():
        path = Path(dataset[7:]).expanduser()
        if not path.exists():
            raise ValueError(f"dataset {dataset}: no such file or folder")
        return f"folder:{path.resolve()}"
    if not isinstance(dataset, str) or dataset not in DATASETS[:-1]:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    return dataset


def parse_seeds(seeds, first: int) -> tuple[int, ...]:
    """The seeds a study trains with (all notebooks' ``seeds`` parameter).

    An int k: k seeds from ``first`` (the profile's seed): first, first+1, ...; 1 = the report's
    seed only. A list or tuple of distinct ints: those. A string "1,2,3" or "[1, 2, 3]" (papermill
    passes ``-p seeds 1,2,3`` as a string): the list it spells. Anything else: a ValueError.
    """
    value = seeds
    if isinstance(value, str):
        text = value.strip()
        text = text[1:-1] if text[:1] + text[-1:] in ("[]", "()") else text
        try:
            value = [int(part) for part in text.split(",")]
        except ValueError:
            value = None
    if is_int(value) and 1 <= value <= MAX_SEEDS:
        return tuple(range(first, first + value))
    if (isinstance(value, (list, tuple)) and 0 < len(value) <= MAX_SEEDS and all(is_int(v) for v in value)
            and len(set(value)) == len(value)):
        return tuple(value)
    raise ValueError(f"seeds must be {SEEDS_FORMS}; got {seeds!r}")
