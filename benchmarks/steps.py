"""A training step and epoch as ``helpers.train`` takes them, in pieces the ``train_step`` section
times: the step itself, the studies' optimiser, blocks of steps, a loader that never runs dry, and
the deterministic cuDNN settings of a default run.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F

from .harness import random_model


def precision(device: torch.device) -> str:
    """The precision a step is timed in: CUDA's speed option ``bf16``, the reports' fp32 elsewhere."""
    return "bf16" if device.type == "cuda" else "fp32"


def step_fn(model: torch.nn.Module, opt: torch.optim.Optimizer, device: torch.device):
    """One SGD step exactly as ``helpers.train.train_epoch`` takes it (no CutMix, no scheduler), in
    :func:`precision` and the memory layout ``helpers.device.channels_last`` picks for it (NHWC on
    CUDA with bf16 and on the CPU); returns (logits, loss)."""
    from helpers.device import autocast, channels_last

    nhwc = channels_last(device, precision(device))

    def step(x, y):
        if nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision(device)):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return logits, loss

    return step


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    # The studies' optimiser (helpers.train.make_optimizer with TrainConfig's defaults); momentum and
    # weight decay add per-parameter work to every step, so they are part of what is timed.
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def step_model(name: str, width: float, device: torch.device) -> torch.nn.Module:
    """A study model with random weights, in the memory layout helpers.train gives it."""
    from helpers.device import channels_last

    model = random_model(name, width, device)
    if channels_last(device, precision(device)):
        model = model.to(memory_format=torch.channels_last)  # as helpers.train.build
    return model


def repeat(fn: Callable[[], object], k: int) -> Callable[[], None]:
    """One timed block of ``k`` calls: a block should last ~0.1 s or more to be timed well."""

    def block():
        for _ in range(k):
            fn()

    return block


class Endless:
    """Batches of a BatchLoader forever: a new epoch (reshuffled, re-augmented) when one ends."""

    def __init__(self, loader):
        self.loader, self.it = loader, iter(loader)

    def __call__(self):
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            return next(self.it)


def run_epoch(loader, step, device: torch.device) -> tuple[float, int]:
    """One epoch as helpers.train.train_epoch runs it: loss and accuracy summed on the device and
    read once at the end (the epoch's one host sync)."""
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for x, y in loader:
        logits, loss = step(x, y)
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
    return loss_sum.item(), correct.item()


@contextlib.contextmanager
def deterministic_cudnn():
    """helpers.train's default run is deterministic: cuDNN without autotuning. Same here, restored after."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved
