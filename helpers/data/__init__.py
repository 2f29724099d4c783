"""Data sources for the studies: one in-memory ``Dataset`` of uint8 tensors, whatever the source.

Every notebook (01-05) starts with ``load_dataset(source)``. Sources (``SOURCES``), one module each:

- ``"synthetic"`` (:mod:`.synthetic`) ten shapes on textured backgrounds, generated from a seed in a
  few seconds, so that everything runs offline. Train backgrounds carry a controllable shortcut.
- ``"cifar10"``, ``"cifar100"`` (:mod:`.cifar`) through ``torchvision.datasets`` (downloads once into ``root``).
- ``"folder:PATH"`` (:mod:`.folder`) an ImageFolder-style tree ``train/<class>/*``, ``test/<class>/*``,
  or a ``.tar``/``.tar.gz`` of one; decoded once, then cached as tensors under ``<root>/cache/``.

Profiles ask for ``"auto"`` (:mod:`.auto`): the report's CIFAR when the data folder holds it or it can be
downloaded, else the synthetic stand-in, as a :class:`DataChoice` that says why.

:mod:`.dataset` holds the ``Dataset`` they all return, its subsets and the train/validation split.
"""

from __future__ import annotations

from pathlib import Path

from .. import DATA_DIR
from .auto import DataChoice, choose_source
from .cifar import load_cifar
from .dataset import SIZE, Dataset, split_indices
from .folder import IMAGE_EXTENSIONS, load_folder
from .unlabelled import load_unlabelled
from .synthetic import SHAPES, SYNTH, TEXTURES, make_synthetic

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DataChoice",
    "IMAGE_EXTENSIONS",
    "SHAPES",
    "SIZE",
    "SOURCES",
    "SYNTH",
    "TEXTURES",
    "Dataset",
    "choose_source",
    "load_dataset",
    "load_unlabelled",
    "make_synthetic",
    "split_indices",
]

# Normalisation constants of report 003 (the values most CIFAR-10 code copies). Dataset.mean_std()
# computes the exact ones for any dataset.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

SOURCES = ("synthetic", "cifar10", "cifar100", "folder:PATH")


def load_dataset(source: str = "synthetic", root: str | Path | None = None, **kwargs) -> Dataset:
    """Load one of ``SOURCES`` as a ``Dataset``; ``root`` holds downloads and ``cache/``.

    ``root`` defaults to the project's ``data/`` folder (``helpers.DATA_DIR``), wherever the
    caller runs (notebooks run inside ``notebooks/``).

    Studies: all (01-05), first cell. Keyword arguments go to the source:
    ``synthetic`` -> ``make_synthetic(n_train, n_test, seed, shortcut)``; ``cifar10``/``cifar100`` ->
    ``download=True`` (set False to never touch the network); ``folder:PATH`` -> ``cache=True``
    (False: decode every time, write nothing).
    """
    if not isinstance(source, str):
        raise ValueError(f"source must be a string, one of {SOURCES}, got {source!r}")
    if source == "synthetic":
        return make_synthetic(**kwargs)
    root = Path(DATA_DIR if root is None else root)
    if source in ("cifar10", "cifar100"):
        return load_cifar(source, root, **kwargs)
    if source.startswith("folder:") and source[len("folder:"):].strip():
        return load_folder(source, root, **kwargs)
    raise ValueError(f"unknown data source {source!r}; valid choices: {', '.join(SOURCES)} "
                     "(PATH: an image-folder tree or a .tar/.tar.gz of one)")
