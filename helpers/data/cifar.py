"""CIFAR-10 and CIFAR-100 through ``torchvision.datasets``: downloaded once into ``root``.

Offline, without the archive, the error says where to put it by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from .dataset import Dataset


def load_cifar(source: str, root: Path, download: bool = True) -> Dataset:
    """CIFAR-10 or CIFAR-100 (``source``) from ``root``, downloaded there first if missing and
    ``download`` (all notebooks on CIFAR, through ``load_dataset``)."""
    cls = datasets.CIFAR10 if source == "cifar10" else datasets.CIFAR100
    root = root.expanduser()

    def read(train: bool):
        # First without download: no network traffic and no "Files already downloaded" chatter.
        try:
            return cls(str(root), train=train, download=False)
        except RuntimeError:
            if not download:
                raise FileNotFoundError(cifar_help(cls, root, "download=False was given")) from None
        try:
            root.mkdir(parents=True, exist_ok=True)
            return cls(str(root), train=train, download=True)
        except Exception as err:  # offline: URLError, socket errors; bad archive: RuntimeError
            raise FileNotFoundError(cifar_help(cls, root, f"download failed: {type(err).__name__}: {err}")) from err

    train, test = read(True), read(False)
    return Dataset(
        name=source,
        classes=list(train.classes),
        train_images=torch.from_numpy(np.ascontiguousarray(train.data)).permute(0, 3, 1, 2).contiguous(),
        train_labels=torch.as_tensor(train.targets, dtype=torch.int64),
        test_images=torch.from_numpy(np.ascontiguousarray(test.data)).permute(0, 3, 1, 2).contiguous(),
        test_labels=torch.as_tensor(test.targets, dtype=torch.int64),
    )


def cifar_help(cls, root: Path, reason: str) -> str:
    return (f"{cls.__name__} not found (or corrupted) under {root}/{cls.base_folder}/ and {reason}. "
            f"Either run once on a machine with network access (load_dataset downloads it into "
            f"root={str(root)!r}), or fetch {cls.url} by hand and put {cls.filename} (or its extracted "
            f"{cls.base_folder}/ folder) into {root}/.")
