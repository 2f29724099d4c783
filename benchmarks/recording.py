"""Section ``recording``: cost of notebook 04's gradient and weight-update records.

images/s of ``helpers.train.train_epoch`` without records vs with records every 20 steps (the quick
profile) and every 5 (a stress case; the full profile's 100 costs less still). Issue 7's target:
records slow training by <= 10%.

resnet18_cifar at width 0.25, batch 128, crop + flip, 40 steps per timed block (smoke: 4 steps,
recording every 2), on the CPU with 1 thread (the robust setting, see ``harness.cpu_threads``).
Blocks continue the step count, so every block records as often as its interval says.
"""

from __future__ import annotations

import torch

from .harness import CPU, Contender, alternate, cifar_loader, compared_rows, random_cifar, random_model

S, MODEL, WIDTH, BATCH = "recording", "resnet18_cifar", 0.25, 128


def _make_training(images, labels, every: int):
    """One block: ``train_epoch`` over the images, recording every ``every`` steps (0: never)."""
    from helpers.records import GradientRecorder, UpdateRecorder
    from helpers.config import TrainConfig
    from helpers.train import make_optimizer, make_scheduler, train_epoch

    config = TrainConfig(model=MODEL, width=WIDTH, batch_size=BATCH, lr=0.05, record_every=every)
    model = random_model(MODEL, WIDTH)
    opt = make_optimizer(model, config)
    loader = cifar_loader(images, labels, BATCH, CPU)  # crop + flip, no jitter
    sched = make_scheduler(opt, config, len(loader))
    recorders = (GradientRecorder(model, every), UpdateRecorder(model, every)) if every else None
    epoch = 0

    def run():
        nonlocal epoch  # the step count goes on from block to block
        train_epoch(model, loader, opt, sched, config, 10, torch.Generator(), recorders, epoch)
        epoch += 1

    return run


def bench_recording(smoke: bool = False) -> list[dict]:
    """images/s of train_epoch without and with records, and the slowdown (module docstring)."""
    steps = 4 if smoke else 40
    images, labels = random_cifar(steps * BATCH, seed=5)
    contenders = {}
    for every in [0, *([2] if smoke else [20, 5])]:
        name = f"train_epoch, records every {every} steps" if every else "train_epoch, no records"
        contenders[name] = Contender(_make_training(images, labels, every), CPU, threads=1, work=steps * BATCH)
    times = alternate(contenders, rounds=1 if smoke else 3)
    rows = compared_rows(S, contenders, times, list(contenders), "img/s", model=f"{MODEL} width {WIDTH:g}")
    for row in rows[1:]:
        rows.append({"section": S, "name": row["name"].replace("train_epoch, records", "slowdown of records"),
                     # below zero means records "sped up" training: the noise of the measurement
                     "value": 100 * (1 - row["ratio"]), "median": 100 * (1 - row["ratio_median"]),
                     "unit": "%", "target": "<= 10%"})
    return rows
