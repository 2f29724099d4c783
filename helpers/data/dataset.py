"""The ``Dataset`` every source delivers, its class-stratified subsets and the seeded train/val split.

Images are kept as one ``N x 3 x 32 x 32`` uint8 tensor per split (60k CIFAR images are 184 MB),
because ``helpers.loader.BatchLoader`` augments whole batches of them on the training device; no
per-sample ``Dataset.__getitem__`` is ever called.
"""

from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import Tensor

SIZE = 32  # every source is delivered at 32x32, the CIFAR size all models are built for



@dataclass(eq=False, repr=False)
class Dataset:
    """Both splits of one source as uint8 image tensors and int64 labels, held in memory.

    Studies: all (01-05). ``train_masks``/``test_masks`` exist for the synthetic source only: True on
    the object's pixels, so that 01 can score Grad-CAM heatmaps against where the object really is
    (``helpers.cam.energy_in_mask``).
    """

    name: str  # the source string it came from, e.g. "synthetic", "cifar10", "folder:/x/y"
    classes: list[str]
    train_images: Tensor  # uint8 N,3,32,32
    train_labels: Tensor  # int64 N
    test_images: Tensor
    test_labels: Tensor
    train_masks: Tensor | None = None  # bool N,32,32
    test_masks: Tensor | None = None
    # Computed on first use. The arrays are treated as read-only once a Dataset exists; change them
    # and these go stale (build a new Dataset instead, as subset() does).
    _fingerprint: str | None = field(default=None, init=False)
    _mean_std: tuple | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.classes = list(self.classes)
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            masks = getattr(self, f"{split}_masks")
            if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != (3, SIZE, SIZE):
                raise ValueError(f"{split}_images must be uint8 N x 3 x {SIZE} x {SIZE}, "
                                 f"got {images.dtype} {tuple(images.shape)}")
            if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
                raise ValueError(f"{split}_labels must be int64 of length {images.shape[0]}, "
                                 f"got {labels.dtype} {tuple(labels.shape)}")
            if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < len(self.classes):
                raise ValueError(f"{split}_labels must lie in [0, {len(self.classes)}), "
                                 f"got [{int(labels.min())}, {int(labels.max())}]")
            if masks is not None and (masks.dtype != torch.bool or tuple(masks.shape) != (images.shape[0], SIZE, SIZE)):
                raise ValueError(f"{split}_masks must be bool N x {SIZE} x {SIZE}, "
                                 f"got {masks.dtype} {tuple(masks.shape)}")
            # Contiguity is part of the contract: fingerprint() hashes raw bytes and the loader gathers.
            setattr(self, f"{split}_images", images.contiguous())
            setattr(self, f"{split}_labels", labels.contiguous())
            if masks is not None:
                setattr(self, f"{split}_masks", masks.contiguous())

    def __repr__(self) -> str:
        masks = ", masks" if self.train_masks is not None else ""
        return (f"Dataset({self.name!r}, {self.num_classes} classes, "
                f"train {len(self.train_labels)}, test {len(self.test_labels)}{masks})")

    @property
    def num_classes(self) -> int:
        """Number of classes (the model's output size). Studies: all."""
        return len(self.classes)

    def mean_std(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Per-channel mean and std of the train images in [0, 1], for normalisation.

        Studies: all, through the loader's ``normalize``. Train split only, so no test information
        leaks into the model. Accumulated in float64 over chunks so 50k images need no 600 MB copy.
        """
        if self._mean_std is None:
            total = torch.zeros(3, dtype=torch.float64)
            total_sq = torch.zeros(3, dtype=torch.float64)
            for chunk in self.train_images.split(4096):
                x = chunk.to(torch.float64).div_(255.0)
                total += x.sum(dim=(0, 2, 3))
                total_sq += x.square().sum(dim=(0, 2, 3))
            count = max(self.train_images.shape[0] * SIZE * SIZE, 1)
            mean = total / count
            std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
            self._mean_std = (tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std))
        return self._mean_std

    def class_counts(self, val_fraction: float, split_seed: int) -> pd.DataFrame:
        """Images per class in the training, validation and test splits of ``split_indices`` (05's
        balance check): one row per class, one column per split."""
        counts = {"test": torch.bincount(self.test_labels, minlength=self.num_classes)}
        if val_fraction > 0:
            train_idx, val_idx = split_indices(len(self.train_labels), val_fraction, split_seed)
            counts = {"train": torch.bincount(self.train_labels[train_idx], minlength=self.num_classes),
                      "validation": torch.bincount(self.train_labels[val_idx], minlength=self.num_classes), **counts}
        else:
            counts = {"train": torch.bincount(self.train_labels, minlength=self.num_classes), **counts}
        return pd.DataFrame({k: v.numpy() for k, v in counts.items()}, index=self.classes)

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
        """A class-stratified, seeded subset of either split or both (masks follow; None keeps all).

        Studies: all, for the smoke/quick profiles (e.g. 5k train images on a CPU). Each class gets
        its share of ``n`` in proportion to its frequency (largest remainders, ties to the lower class
        index), picked at random within the class; the chosen images keep their original order.
        """
        parts = [f"n_train={n_train}"] if n_train is not None else []
        parts += [f"n_test={n_test}"] if n_test is not None else []
        parts += [f"seed={seed}"] if seed != 0 and parts else []
        train_idx = _stratified(self.train_labels, n_train, self.num_classes, seed, 0, "n_train")
        test_idx = _stratified(self.test_labels, n_test, self.num_classes, seed, 1, "n_test")

        def take(x: Tensor | None, idx: Tensor | None) -> Tensor | None:
            return x if x is None or idx is None else x[idx]

        return Dataset(
            name=f"{self.name}[{','.join(parts)}]" if parts else self.name,
            classes=list(self.classes),
            train_images=take(self.train_images, train_idx),
            train_labels=take(self.train_labels, train_idx),
            test_images=take(self.test_images, test_idx),
            test_labels=take(self.test_labels, test_idx),
            train_masks=take(self.train_masks, train_idx),
            test_masks=take(self.test_masks, test_idx),
        )

    def fingerprint(self) -> str:
        """sha1 hex of the name, classes and every array's bytes; the training engine's cache key.

        Studies: all, through ``train.fit``'s run cache. Computed once per object (~0.2 s for 60k
        images: sha1 runs over the tensors' memory without copies).
        """
        if self._fingerprint is None:
            h = hashlib.sha1()
            h.update(self.name.encode())
            h.update(repr(self.classes).encode())
            for key in ("train_images", "train_labels", "test_images", "test_labels", "train_masks", "test_masks"):
                x = getattr(self, key)
                # Shapes go in too, so that e.g. no-masks and empty masks cannot collide.
                h.update(f"|{key}:{None if x is None else (str(x.dtype), tuple(x.shape))}|".encode())
                if x is not None and x.numel():
                    h.update(memoryview(x.contiguous().numpy()).cast("B"))
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def _stratified(labels: Tensor, n: int | None, num_classes: int, seed: int, stream: int, what: str) -> Tensor | None:
    """Indices of a class-stratified random subset of size n (sorted), or None for "all"."""
    if n is None:
        return None
    total = labels.shape[0]
    n = as_count(what, n)
    if n > total:
        raise ValueError(f"{what} must be in [0, {total}], got {n}")
    counts = torch.bincount(labels, minlength=num_classes).double()
    share = counts * n / max(total, 1)
    quota = share.floor().long()
    # Largest remainder: the classes whose share lost the most to flooring get the leftovers.
    order = sorted(range(num_classes), key=lambda c: (-(share[c] - quota[c]).item(), c))
    for c in order[: n - int(quota.sum())]:
        quota[c] += 1
    g = torch.Generator().manual_seed(seed * 2 + stream)  # train and test subsets draw independently
    perm = torch.randperm(total, generator=g)
    shuffled = labels[perm]
    picked = [perm[shuffled == c][: int(quota[c])] for c in range(num_classes)]
    return torch.cat(picked).sort().values


def as_count(what: str, n) -> int:
    """n as a plain int (numpy integers welcome), or a ValueError naming the argument."""
    try:
        n = operator.index(n)
    except TypeError:
        raise ValueError(f"{what} must be a non-negative integer, got {n!r}") from None
    if n < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {n}")
    return n


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded split of ``range(n)`` into (train_idx, val_idx), both sorted int64 tensors.

    Studies: 01, 02 and 05 (``val_fraction=0.1`` of the train images, through ``train.fit``; 03 and
    04 follow their reports and evaluate on the test split). A permutation from a generator seeded
    ``seed``: its first ``n - round(n * val_fraction)`` indices train, the rest validate, exactly as
    ``torch.utils.data.random_split(range(n), [n_train, n_val], generator)`` splits (report 004's
    code) and as report 000's code takes its permutation: 50,000 at 0.1 gives 45,000/5,000. Same
    (n, val_fraction, seed), same split, on any machine with this torch.
    """
    n = as_count("n", n)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    n_val = round(n * val_fraction)
    if not 0 < n_val < n:
        raise ValueError(f"val_fraction={val_fraction} of n={n} leaves an empty split "
                         f"({n - n_val} train / {n_val} val)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n - n_val].sort().values, perm[n - n_val :].sort().values
