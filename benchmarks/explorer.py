"""Section ``explorer``: how long ``helpers.explorer`` takes to answer for one test image (issue 24's
target: within a second per image on the 2-core CPU).

A *first view* is what the widget waits for when a student picks an image: both models' Grad-CAM for
their answers and for the true class, each map's ROAD score and a random map's (at
``helpers.explorer.PERCENTILES``), and the panel drawn to PNG. A *revisit* of the same image comes
from the explorer's cache. Each of notebooks 01, 02 and 05's pairs of models at its quick width, with
random weights (the cost does not depend on training), on random images (smoke: 05's pair, 2 images).

The explorer runs a view on one torch thread (``Explorer(threads=1)``, its default); outside smoke a
second explorer over the same models uses torch's default thread count, the two visiting the images
in turn, image by image, so a burst of background load hits both. A row gives the median over the
images; the JSON adds the worst image and the median split into computing and drawing.
"""

from __future__ import annotations

import statistics
import time

import torch

from helpers.data import CIFAR10_MEAN, CIFAR10_STD
from helpers.evaluate import predict
from helpers.explorer import Explorer, default_lists
from helpers.models import Net, build_model

from .harness import random_cifar

S = "explorer"
TARGET = "<= 1 s per image"
# (notebook, model, quick width, variant A's and B's model arguments)
PAIRS = [("01", "flexible_cnn", 0.25, {"residual": False}, {"residual": True}),
         ("02", "resnet18_cifar", 0.125, {}, {}),
         ("05", "simple_cnn", 0.5, {"batch_norm": False}, {"batch_norm": True})]
CLASSES = [f"class {i}" for i in range(10)]


def _nets(model: str, width: float, kw_a: dict, kw_b: dict) -> dict[str, Net]:
    """The pair with random weights, seeded (B differs from A in its variant or, for 02, its seed)."""
    nets = {}
    for seed, (name, kw) in enumerate([("A", kw_a), ("B", kw_b)]):
        torch.manual_seed(seed)
        nets[name] = Net(build_model(model, 10, width=width, **kw).eval(), CIFAR10_MEAN, CIFAR10_STD)
    return nets


def _explorer(nets: dict, images, labels, threads: int) -> Explorer:
    preds = {name: predict(net, images, labels) for name, net in nets.items()}
    lists, reasons = default_lists(preds, CLASSES)
    return Explorer(nets, preds, images, CLASSES, lists, reasons, threads=threads)


def _visit(explorers: dict[str, Explorer], n: int) -> dict[str, dict[str, list[float]]]:
    """Seconds of each explorer's first view and revisit of images 0..n-1, explorers in turn per image."""
    out = {k: {"first": [], "compute": [], "revisit": []} for k in explorers}
    for i in range(n):
        for k, ex in explorers.items():
            t0 = time.perf_counter()
            ex.png(i)
            out[k]["first"].append(time.perf_counter() - t0)
            out[k]["compute"].append(ex.view(i).seconds)
            t0 = time.perf_counter()
            ex.png(i)
            out[k]["revisit"].append(time.perf_counter() - t0)
    return out


def _rows(label: str, threads: int, t: dict[str, list[float]]) -> list[dict]:
    median = statistics.median
    where = f"cpu, {threads} thread{'s' if threads > 1 else ''}"
    first = {"section": S, "name": f"{label}: first view of an image ({where})", "value": median(t["first"]),
             "unit": "s/image", "target": TARGET, "worst": max(t["first"]), "images": len(t["first"]),
             "compute_s": median(t["compute"]),
             "draw_s": median([f - c for f, c in zip(t["first"], t["compute"])]), "threads": threads}
    again = {"section": S, "name": f"{label}: revisit, from the cache ({where})", "value": median(t["revisit"]),
             "unit": "s/image", "target": TARGET, "worst": max(t["revisit"]), "images": len(t["revisit"]),
             "threads": threads}
    return [first, again]


def bench_explorer(smoke: bool = False) -> list[dict]:
    """Seconds per image of the explorer's first view and of a revisit, per study pair (module docstring)."""
    n = 2 if smoke else 12
    images, labels = random_cifar(64, seed=11)
    threads = [1] if smoke or torch.get_num_threads() == 1 else [1, torch.get_num_threads()]
    rows = []
    for notebook, model, width, kw_a, kw_b in PAIRS[-1:] if smoke else PAIRS:
        nets = _nets(model, width, kw_a, kw_b)
        explorers = {t: _explorer(nets, images, labels, t) for t in threads}
        times = _visit(explorers, n)
        label = f"{notebook} {model} width {width:g}"
        for t in threads:
            rows += _rows(label, t, times[t])
    return rows
