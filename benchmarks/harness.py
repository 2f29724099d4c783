"""The harness every section shares: alternated timing, rows, skips, the table and machine info.

Machines are often shared and noisy, so a section never times one thing after another: it hands its
contenders to ``alternate``, which runs one block of each in turn, round after round, and a burst of
background load hits all of them alike. A rate row reports the best block (least disturbed by other
processes, as ``timeit`` advises) as ``value`` and the median block as ``median``; ``ratio`` compares
best with best against the section's baseline, ``ratio_median`` median with median.

A row has at least ``section``, ``name``, ``value`` and ``unit``, and may carry ``ratio``, ``target``
(the issue's goal, shown in the table) and any extra fields, which go to the JSON as they are. A row
that could not be measured has ``value`` None and says why in ``skipped`` or ``error``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

# The studies' normalisation (one definition for the project; the values do not change any speed).
from helpers.data import CIFAR10_MEAN, CIFAR10_STD
from helpers.loader import Augment, BatchLoader

ROOT = Path(__file__).resolve().parent.parent  # the project root
CPU = torch.device("cpu")
NO_CUDA = "no CUDA device (torch.cuda.is_available() is False)"


# ---------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------


@dataclass
class Contender:
    """One thing timed: ``run()`` is one timed block doing ``work`` units (images, FLOPs ...)."""

    run: Callable[[], object]
    device: torch.device
    threads: int | None = None  # intra-op threads while it runs; None = torch's default
    work: float = 1.0
    warmup: Callable[[], object] | None = None  # untimed first call (default: ``run``)
    blocks: int = 1  # timed blocks per round: a much faster contender can afford more samples


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def block_seconds(fn: Callable[[], object], device: torch.device, threads: int | None = None) -> float:
    """Wall seconds of one ``fn()``, device work included (synchronised before and after)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)


def alternate(contenders: dict[str, Contender], rounds: int) -> dict[str, list[float]]:
    """Seconds per block of each contender: one untimed warm-up each (allocator, thread pools, cuDNN,
    DataLoader workers' imports and torch.compile), then ``rounds`` rounds in which every contender
    runs its blocks in turn, so a burst of background load hits all of them alike rather than one."""
    for c in contenders.values():
        block_seconds(c.warmup or c.run, c.device, c.threads)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for k, c in contenders.items():
            times[k] += [block_seconds(c.run, c.device, c.threads) for _ in range(c.blocks)]
    return times


def cpu_threads(smoke: bool = False) -> list[int | None]:
    """CPU thread settings to time: torch's default, plus 1 thread when the default is more; in smoke
    1 thread only (smoke checks that the code runs, and 1 thread is the setting that stays fast on a
    loaded box: there 2-thread smoke steps took 10-20x longer).

    On a machine whose cores other processes also use, multi-threaded ops stall whenever one of their
    threads is descheduled (measured on the shared 2-core box: a resnet18_cifar step at batch 128
    took 11-14 s with 2 threads and 6-7 s with 1; 2-thread loader epochs dropped to 0.6-8k img/s now
    and then while 1-thread epochs held 37-100k), so the 1-thread rows are the robust numbers there
    and the default-thread rows what a quiet machine gives.
    """
    if smoke:
        return [1]
    return [None, 1] if torch.get_num_threads() > 1 else [None]


def placement(device: torch.device, threads: int | None) -> str:
    """How a row names its setting: ``cuda``, or ``cpu, N thread(s)``."""
    if device.type != "cpu":
        return device.type
    t = threads or torch.get_num_threads()
    return f"cpu, {t} thread{'s' if t > 1 else ''}"


# ---------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------


def random_cifar(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-shaped data: uint8 N,3,32,32 and int64 labels in [0, 10).

    Random pixels cost the pipelines exactly what real CIFAR pixels cost (no op here is data-dependent
    in speed), so the benchmark needs no download.
    """
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return images, labels


def cifar_loader(images: torch.Tensor, labels: torch.Tensor, batch: int, device: torch.device,
                 jitter: float = 0.0, drop_last: bool = False) -> BatchLoader:
    """BatchLoader as the studies build it: normalised, random crop (pad 4) + flip, colour jitter if given."""
    augment = Augment(crop_padding=4, flip_h=0.5, jitter=jitter)
    return BatchLoader(images, labels, batch, mean=CIFAR10_MEAN, std=CIFAR10_STD, augment=augment,
                       device=device, drop_last=drop_last)


def random_model(name: str, width: float, device: torch.device = CPU) -> torch.nn.Module:
    """One of the studies' models with random weights: the values do not change the speed."""
    from helpers.models import build_model  # imported when needed: it takes seconds

    return build_model(name, width=width).to(device)


# ---------------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------------


def rates(c: Contender, secs: list[float]) -> tuple[float, float]:
    """Work per second of the best block and of the median block."""
    return c.work / min(secs), c.work / statistics.median(secs)


def rate_row(section: str, name: str, c: Contender, secs: list[float], unit: str, scale: float = 1.0,
             base: tuple[float, float] | None = None, **extra) -> dict:
    """A row of ``work / seconds``: value from the best block, ``median`` from the median block;
    ``ratio`` against ``base`` = (best, median)."""
    best, median = rates(c, secs)
    row = {"section": section, "name": name, "value": best * scale, "unit": unit, "median": median * scale}
    if base is not None:
        row["ratio"], row["ratio_median"] = best / base[0], median / base[1]
    row.update(blocks=len(secs), device=c.device.type, threads=c.threads or torch.get_num_threads(), **extra)
    return row


def compared_rows(section: str, contenders: dict[str, Contender], times: dict[str, list[float]],
                  names: list[str], unit: str, **extra) -> list[dict]:
    """Rate rows of ``names``, each with its ratio to the first (the baseline, ratio 1)."""
    base = rates(contenders[names[0]], times[names[0]])
    return [rate_row(section, k, contenders[k], times[k], unit, base=base, **extra) for k in names]


def skipped_row(section: str, name: str, unit: str, why: str) -> dict:
    """A row that was not measured, with the reason (printed now and under the table)."""
    print(f"[{section}] skipped {name}: {why}", flush=True)
    return {"section": section, "name": name, "value": None, "unit": unit, "skipped": why}


# ---------------------------------------------------------------------------------------------------
# Output: the table, machine info, the JSON
# ---------------------------------------------------------------------------------------------------


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _ratio(r: float) -> str:
    return f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"  # two decimals where they matter (0.05x, 1.08x)


def _cells(r: dict) -> tuple:
    value = _num(r["value"]) if r["value"] is not None else ("skipped" if "skipped" in r else "FAILED")
    return (r["section"], r["name"], value, _num(r["median"]) if "median" in r else "", r["unit"],
            _ratio(r["ratio"]) if "ratio" in r else "", r.get("target", ""))


def format_table(rows: list[dict]) -> str:
    """Plain-text table: section, name, value (best), median (if given), unit, ratio to baseline,
    target; then the reason of every row that was skipped or failed."""
    head = ("section", "name", "value", "median", "unit", "vs baseline", "target")
    body = [_cells(r) for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]

    def line(cells):  # names left-aligned, numbers right-aligned
        return "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    notes = [f"{r['section']} / {r['name']}: {'skipped: ' + r['skipped'] if 'skipped' in r else r.get('error')}"
             for r in rows if r["value"] is None]
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body), *notes])


def machine_info() -> dict:
    import torchvision

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torchvision": torchvision.__version__,
    }


def write_json(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
