"""Section ``gradcam``: CAMs/s of ``helpers.cam.compute_cams`` for 512 images (smoke: 16), batched
(64) vs one at a time.

Model: resnet18_cifar at width 0.25 with random weights (the speed does not depend on training), on
its default target layer (the last block); each image's CAM explains its own label. "One at a time"
is ``compute_cams(..., batch_size=1)``: one call looping over single images inside one GradCAM
object, which spares the baseline the per-call setup a user's loop of single-image calls would add,
so the ratio is if anything conservative. The two alternate pass by pass; CPU rows with torch's
default threads and with 1 thread (``harness.cpu_threads``); with CUDA a GPU pair is added.
"""

from __future__ import annotations

import torch

from helpers.data import CIFAR10_MEAN, CIFAR10_STD

from .harness import (CPU, NO_CUDA, Contender, alternate, compared_rows, cpu_threads, placement, random_cifar,
                      random_model, skipped_row)

S, BATCH, WIDTH = "gradcam", 64, 0.25


def _make_pair(images, labels, device: torch.device, threads: int | None) -> dict[str, Contender]:
    """One at a time, then batched: CAMs of every image, on one device/thread setting."""
    from helpers.cam import compute_cams  # imported when needed: it takes seconds
    from helpers.models import Net

    model, n = random_model("resnet18_cifar", WIDTH, device), len(images)
    pair = {}
    for bs, label in [(1, "one image at a time"), (BATCH, f"batched ({BATCH})")]:
        def run(bs=bs, k=n):
            compute_cams(Net(model, CIFAR10_MEAN, CIFAR10_STD), images[:k], targets=labels[:k], batch_size=bs)

        # Warm-up on a few images only: the one-at-a-time pass over 512 takes seconds.
        pair[f"Grad-CAM {label} ({placement(device, threads)})"] = Contender(
            run, device, threads, work=n, warmup=lambda run=run: run(k=min(n, 8)))
    return pair


def bench_gradcam(smoke: bool = False) -> list[dict]:
    """CAMs/s, batched vs one at a time, per device/thread setting (module docstring)."""
    n = 16 if smoke else 512
    images, labels = random_cifar(n, seed=3)
    settings = [(CPU, t) for t in cpu_threads(smoke)]
    if torch.cuda.is_available():
        settings.append((torch.device("cuda"), None))
    pairs = [_make_pair(images, labels, device, threads) for device, threads in settings]
    contenders = {k: c for pair in pairs for k, c in pair.items()}
    times = alternate(contenders, rounds=1 if smoke else 3)
    rows = []
    for pair in pairs:
        rows += compared_rows(S, contenders, times, list(pair), "CAMs/s", images=n,
                              model=f"resnet18_cifar width {WIDTH:g}")
    if not torch.cuda.is_available():
        rows.append(skipped_row(S, "Grad-CAM batched vs one at a time (cuda)", "CAMs/s", NO_CUDA))
    return rows
