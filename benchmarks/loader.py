"""Section ``loader``: images/s of an augmented epoch, BatchLoader vs the torchvision PIL + DataLoader pipeline.

Both: random crop (pad 4), horizontal flip (p 0.5), colour jitter 0.2 (brightness, contrast,
saturation), normalise, batch 128, shuffled, same images. Baseline: DataLoader with 2 workers
(started per epoch, as without ``persistent_workers``). A timed block is one epoch; the contenders
alternate epoch by epoch (``harness.alternate``), and BatchLoader, more than 10x faster, gets two
epochs per round where the baseline gets one, since more samples cost it little. ``value`` is the
best epoch, ``median`` the median epoch, ``ratio`` best over best.

BatchLoader on CPU is timed with torch's default intra-op threads and with 1 thread, in smoke too
(see ``harness.cpu_threads``: on a shared box the 1-thread row is the robust number). The
baseline's batches stay on the CPU; with CUDA a ``BatchLoader (cuda)`` row is added.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from PIL import Image

from helpers.data import CIFAR10_MEAN, CIFAR10_STD

from .harness import CPU, Contender, alternate, cifar_loader, compared_rows, cpu_threads, placement, random_cifar

BATCH, WORKERS, JITTER = 128, 2, 0.2


class _PILDataset(torch.utils.data.Dataset):
    """What ``torchvision.datasets.CIFAR10`` does per item: HWC uint8 array -> PIL image -> transform."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform):
        self.data, self.targets, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.data[i])), int(self.targets[i])


def _make_torchvision_loader(images: torch.Tensor, labels: torch.Tensor) -> torch.utils.data.DataLoader:
    """The usual pipeline: PIL transforms per image, batched by DataLoader worker processes."""
    from torchvision import transforms

    tf = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(JITTER, JITTER, JITTER),
        transforms.ToTensor(),
        transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
    ])
    ds = _PILDataset(images.permute(0, 2, 3, 1).numpy(), labels.numpy(), tf)
    return torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=WORKERS, shuffle=True)


def _drain(batches) -> None:
    """One epoch: every batch made, none used."""
    for _ in batches:
        pass


def _make_batchloader_contenders(images, labels, epochs_per_round: int) -> dict[str, Contender]:
    """BatchLoader per device (CPU; CUDA when there is one), per CPU thread setting."""
    devices = [CPU] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    contenders = {}
    for device in devices:
        loader = cifar_loader(images, labels, BATCH, device, jitter=JITTER)
        # Both thread settings in smoke too, as this section always timed them (cpu_threads(smoke=True)
        # would keep 1 thread only).
        for threads in cpu_threads() if device.type == "cpu" else [None]:
            contenders[f"BatchLoader ({placement(device, threads)})"] = Contender(
                partial(_drain, loader), device, threads, work=len(images), blocks=epochs_per_round)
    return contenders


def bench_loader(smoke: bool = False) -> list[dict]:
    """images/s of an augmented epoch: BatchLoader vs the torchvision PIL + DataLoader pipeline."""
    n = 512 if smoke else 20_000  # images per epoch
    images, labels = random_cifar(n)
    baseline = f"torchvision PIL + DataLoader({WORKERS} workers)"
    contenders = {baseline: Contender(partial(_drain, _make_torchvision_loader(images, labels)), CPU, work=n)}
    contenders.update(_make_batchloader_contenders(images, labels, epochs_per_round=1 if smoke else 2))
    times = alternate(contenders, rounds=1 if smoke else 3)
    rows = compared_rows("loader", contenders, times, list(contenders), "img/s", batch_size=BATCH, images=n)
    for row in rows:
        row["epochs"] = row.pop("blocks")  # a block is an epoch here, and the JSON has always said so
    return rows
