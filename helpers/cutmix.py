"""CutMix for a training batch (studies 02 and 03), plugged into the engine's mixing hook.

A rectangle cut from one image of the batch is pasted onto another, and the labels are mixed in
proportion to the area each image keeps (Yun et al., 2019). The training engine applies it when a
TrainConfig has ``mix={"kind": "cutmix", "alpha": 1.0, "p": 0.5}``; label smoothing is the
config's ``label_smoothing``, which ``F.cross_entropy`` applies on top of the mixed targets.

The box and lambda come from ``torchvision.transforms.v2.CutMix``: the area is drawn from
Beta(alpha, alpha), the box centre uniformly over the image, and lambda is recomputed from the box
after clipping at the border, as report 001 describes. Two things it does not do, added here:

* a probability per batch (the reports apply CutMix to half of the batches);
* a seedable random stream: torchvision draws from torch's global RNG, so each call here runs it
  inside ``torch.random.fork_rng`` seeded from the engine's per-epoch generator. A resumed epoch
  therefore mixes exactly as the uninterrupted one did, and the global RNG is left untouched.

The mixed loss is cross-entropy against the mixed targets,
``CE(logits, lam * onehot(y_a) + (1 - lam) * onehot(y_b))``, which equals
``lam * CE(logits, y_a) + (1 - lam) * CE(logits, y_b)`` (tests check it, label smoothing included).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor
from torchvision.transforms import v2


@lru_cache(maxsize=8)
def _cutmix(alpha: float, num_classes: int) -> v2.CutMix:
    return v2.CutMix(alpha=alpha, num_classes=num_classes)


def cutmix(x: Tensor, y: Tensor, num_classes: int, generator: torch.Generator, *, alpha: float = 1.0,
           p: float = 0.5) -> tuple[Tensor, Tensor]:
    """CutMix one batch with probability ``p`` (02 CutMix study, 03 ResNet budget).

    ``x``: N,C,H,W float images; ``y``: N int64 labels; ``generator``: a CPU generator that decides
    whether this batch is mixed and seeds the box. Each image i receives a box from image i-1 of
    the batch (the loader has shuffled it, so neighbours are a random pairing).

    Returns ``(images, targets)``: for a mixed batch the targets are N x num_classes soft labels,
    ``lam`` on y[i] and ``1 - lam`` on y[i-1], with ``lam`` = the area of image i that is left;
    for an unmixed batch, ``x`` and ``y`` unchanged (cross-entropy takes either form).
    """
    if not 0 <= p <= 1:
        raise ValueError(f"cutmix p must be in [0, 1], not {p!r}")
    if not alpha > 0:
        raise ValueError(f"cutmix alpha must be > 0, not {alpha!r}")
    if len(y) < 2 or torch.rand((), generator=generator).item() >= p:
        return x, y
    seed = int(torch.randint(2**62, (), generator=generator))
    with torch.random.fork_rng(devices=[]):  # box and lambda are drawn on the CPU
        torch.manual_seed(seed)
        return _cutmix(float(alpha), int(num_classes))(x, y)
