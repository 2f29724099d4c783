"""Section ``train_step``: images/s of a full SGD step (forward, backward, step), batch 128, fed by
BatchLoader vs the model alone on pre-made tensors; the loader's share of step time; achieved FLOP/s
against a measured peak.

Models: SimpleCNN (report 004, notebook 05) and resnet18_cifar (reports 000/001/003), both at width
1 (smoke: batch 16, resnet18_cifar at width 0.125). The loader does crop (pad 4) + flip + colour
jitter 0.2 + normalise, as in the ``loader`` section. Contenders per model, alternated block by
block: the step on one pre-made batch (the model alone: the ceiling), the step on the loader's next
batch, and the loader alone on the same batches. The loader's share of step time is loader-alone
seconds per batch over loader+model seconds per batch; the issue's target is <= 10%.

Roofline: a square fp32 matmul's FLOP/s (``torch.matmul``, best block) stands in for the machine's
peak; achieved training FLOP/s = 3 x forward FLOPs per image (``helpers.models.flops``) x
images/s of the model alone; ``ratio`` is achieved / peak. Convolutions on 32x32 images and small
channel counts reach a fraction of a big matmul's rate, so a ratio well below 1 is expected.

CPU rows run with torch's default threads and with 1 thread (see ``harness.cpu_threads``), in
helpers.train's CPU layout (NHWC); glibc's kept-memory setting that ``fit`` adds on CPU is
process-wide, so it is left to the ``cpu_path`` section, which runs each contender in its own process. With CUDA
the step is helpers.train's GPU path (BatchLoader on the GPU, bf16 autocast, channels_last, cuDNN
settings of a default deterministic run), the peak is a bf16 matmul, ``torch.compile`` is timed
against eager (not in smoke: compiling takes a minute) and a real 50,000-image resnet18_cifar epoch
is timed against the issue's 6 s target. Without CUDA those rows are skipped with the reason.
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass
from typing import Callable

import torch

from .harness import (CPU, NO_CUDA, Contender, alternate, cifar_loader, compared_rows, cpu_threads, placement,
                      random_cifar, random_model, rate_row, rates, skipped_row)
from .steps import Endless, deterministic_cudnn, repeat, run_epoch, sgd, step_fn, step_model

S = "train_step"
# Row names of a model's contenders, by role.
ROLES = {
    "alone": "{model}: model alone, pre-made tensors ({where})",
    "loader": "{model}: BatchLoader + model ({where})",
    "loader_only": "{model}: BatchLoader alone ({where})",
    "compiled": "{model}: model alone, torch.compile ({where})",
}


# ---------------------------------------------------------------------------------------------------
# Contenders of one device/thread setting: the matmul peak, then each model's
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Bench:
    """One model's part of a setting: its contenders' names by role, and what its rows need."""

    model: str
    width: float
    forward_flops: float  # one image's forward pass, multiply-add = 2 FLOPs
    names: dict[str, str]


def _make_matmuls(device: torch.device, threads: int | None, smoke: bool) -> dict[str, Contender]:
    """Square matmuls, the op closest to a machine's peak FLOP/s; the last is the peak the training
    rows are compared with: fp32 on the CPU, bf16 on CUDA (where the convs run in bf16 under
    autocast; fp32 kept for reference)."""
    cuda = device.type == "cuda"
    # 2048 on the CPU (~0.1-0.3 s on 2 cores); on a GPU 2048 finishes in well under a millisecond,
    # too short to fill the device, so 8192 there, repeated.
    n = (1024 if cuda else 256) if smoke else (8192 if cuda else 2048)
    reps = (5 if smoke else 20) if cuda else 1
    contenders = {}
    for dtype in [torch.float32] + ([torch.bfloat16] if cuda else []):
        g = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(n, n, device=device, generator=g).to(dtype)
        b = torch.randn(n, n, device=device, generator=g).to(dtype)
        key = f"{'bf16' if dtype == torch.bfloat16 else 'fp32'} matmul {n}x{n} ({placement(device, threads)})"
        contenders[key] = Contender(repeat(lambda a=a, b=b: a @ b, reps), device, threads, 2 * n**3 * reps)
    return contenders


def _make_step_blocks(model: torch.nn.Module, steps: int, batch: int, device: torch.device,
                      compile_: bool) -> dict[str, Callable[[], None]]:
    """Blocks of ``steps`` steps by role: on one pre-made batch, on the loader's next batch, the
    loader alone, and (``compile_``) a compiled copy on the pre-made batch."""
    # Several batches, so the loader's shuffle and gather run as in training; drop_last keeps every
    # timed step at the full batch size.
    images, labels = random_cifar(batch * 4, seed=1)
    loader = cifar_loader(images, labels, batch, device, jitter=0.2, drop_last=True)
    x, y = next(iter(loader))  # a pre-made, already augmented and normalised batch on the device
    step = step_fn(model, sgd(model), device)
    feed, feed_alone = Endless(loader), Endless(loader)
    blocks = {
        "alone": repeat(lambda: step(x, y), steps),
        "loader": repeat(lambda: step(*feed()), steps),
        "loader_only": repeat(feed_alone, steps),
    }
    if compile_:
        # A separate copy with its own optimiser, so eager and compiled steps do not share state.
        twin = copy.deepcopy(model)
        compiled = step_fn(torch.compile(twin), sgd(twin), device)
        blocks["compiled"] = repeat(lambda: compiled(x, y), steps)
    return blocks


def _make_setting(device: torch.device, threads: int | None, smoke: bool, compile_: bool):
    """All contenders of one setting, the name of the peak matmul, the models' parts, the batch size."""
    from helpers.models import flops

    batch = 16 if smoke else 128
    # Full width (the reports' models) except resnet18_cifar in smoke, where one width-1 step alone
    # takes 5-14 s on the 2-core box.
    widths = {"simple_cnn": 1.0, "resnet18_cifar": 0.125 if smoke else 1.0}
    # Steps per timed block: resnet18_cifar at width 1 runs ~10-40 img/s on a 2-core CPU (3-13 s a
    # step), so there one step is a block.
    steps = ({"simple_cnn": 1, "resnet18_cifar": 1} if smoke else
             {"simple_cnn": 100, "resnet18_cifar": 40} if device.type == "cuda" else
             {"simple_cnn": 4, "resnet18_cifar": 1})
    contenders = _make_matmuls(device, threads, smoke)
    peak_key = list(contenders)[-1]
    benches = []
    for name, width in widths.items():
        model = step_model(name, width, device)
        bench = _Bench(name, width, flops(model)[1]["flops"], names={})
        for role, block in _make_step_blocks(model, steps[name], batch, device, compile_).items():
            bench.names[role] = ROLES[role].format(model=name, where=placement(device, threads))
            contenders[bench.names[role]] = Contender(block, device, threads, batch * steps[name])
        benches.append(bench)
    return contenders, peak_key, benches, batch


# ---------------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------------


def _share_row(b: _Bench, base, with_loader, loader_alone, c: Contender) -> dict:
    """Loader share of a step: the loader's own seconds per batch (timed alone, same batches, same
    run) over a full step's seconds with it. Measured directly rather than as the gap between the
    two step rows, because that gap is the difference of two noisy numbers and on a loaded box can
    even come out negative; the gap is kept in the JSON as ``share_by_difference``."""
    return {
        "section": S, "name": f"{b.model}: loader share of step time ({placement(c.device, c.threads)})",
        "value": 100 * with_loader[0] / loader_alone[0], "unit": "%", "target": "<= 10%",
        "median": 100 * with_loader[1] / loader_alone[1],
        "share_by_difference": 100 * (1 - with_loader[0] / base[0]),
        "loader_img_per_s": loader_alone[0], "device": c.device.type, "threads": c.threads or torch.get_num_threads(),
    }


def _roofline_row(b: _Bench, base, with_loader, peak: float, peak_key: str, c: Contender) -> dict:
    """Training FLOPs per image ~ 3x the forward's (the backward computes a gradient for the inputs
    and one for the weights, each about one forward; the first conv needs no input gradient, so 3x
    slightly overstates), times images/s of the model alone, against the matmul peak."""
    achieved = 3 * b.forward_flops * base[0]
    return {
        "section": S, "name": f"{b.model}: training FLOP/s, ratio to matmul peak ({placement(c.device, c.threads)})",
        "value": achieved * 1e-9, "unit": "GFLOP/s", "ratio": achieved / peak,
        "median": 3 * b.forward_flops * base[1] * 1e-9, "forward_flops_per_image": b.forward_flops,
        "peak": peak_key, "peak_gflops": peak * 1e-9,
        "ratio_with_loader": 3 * b.forward_flops * with_loader[0] / peak,
        "device": c.device.type, "threads": c.threads or torch.get_num_threads(),
    }


def _time_setting(device: torch.device, threads: int | None, smoke: bool, compile_: bool) -> list[dict]:
    """Time one setting's contenders together; then the matmul rows and each model's rows."""
    contenders, peak_key, benches, batch = _make_setting(device, threads, smoke, compile_)
    times = alternate(contenders, rounds=1 if smoke else 3)
    peaks = [k for k in contenders if " matmul " in k]
    rows = [rate_row(S, k, contenders[k], times[k], "GFLOP/s", scale=1e-9) for k in peaks]
    peak = rates(contenders[peak_key], times[peak_key])[0]
    for b in benches:
        rate = {role: rates(contenders[k], times[k]) for role, k in b.names.items()}
        stepping = [b.names[r] for r in ("alone", "loader", "compiled") if r in b.names]
        rows += compared_rows(S, contenders, times, stepping, "img/s", batch_size=batch, width=b.width)
        alone = contenders[b.names["alone"]]
        rows.append(_share_row(b, rate["alone"], rate["loader"], rate["loader_only"], alone))
        rows.append(_roofline_row(b, rate["alone"], rate["loader"], peak, peak_key, alone))
    return rows


# ---------------------------------------------------------------------------------------------------
# A whole epoch on CUDA, and the section
# ---------------------------------------------------------------------------------------------------


def _time_epochs(device: torch.device, n: int = 50_000, width: float = 1.0) -> list[dict]:
    """resnet18_cifar, one epoch of ``n`` images at batch 128, eager and compiled, on ``device`` (CUDA;
    the parameters let the code be checked on the CPU at toy size): the issue's GPU target (50,000
    images in <= 6 s on an H100-class GPU)."""
    batch, where = 128, device.type
    images, labels = random_cifar(n, seed=2)
    loader = cifar_loader(images, labels, batch, device)  # crop + flip, no jitter
    model = random_model("resnet18_cifar", width, device).to(memory_format=torch.channels_last)
    twin = copy.deepcopy(model)
    eager, compiled = step_fn(model, sgd(model), device), step_fn(torch.compile(twin), sgd(twin), device)
    what = f"resnet18_cifar: one epoch, {n:,} images, batch {batch}"
    contenders = {
        f"{what} ({where})": Contender(lambda: run_epoch(loader, eager, device), device),
        f"{what}, torch.compile ({where})": Contender(lambda: run_epoch(loader, compiled, device), device),
    }
    times = alternate(contenders, rounds=2)
    target = {"target": "<= 6 s (H100-class)"} if (n, width) == (50_000, 1.0) else {}  # the case only
    return [{"section": S, "name": k, "value": min(v), "unit": "s", "median": statistics.median(v),
             "epochs": len(v), "device": device.type, "width": width, **target} for k, v in times.items()]


def bench_train_step(smoke: bool = False) -> list[dict]:
    """images/s of a full SGD step, loader share of step time, roofline ratio (module docstring)."""
    rows: list[dict] = []
    for threads in cpu_threads(smoke):
        rows += _time_setting(CPU, threads, smoke, compile_=False)
    if not torch.cuda.is_available():
        rows.append(skipped_row(S, "cuda rows (bf16 + channels_last steps, torch.compile, 50k-image epoch)",
                                "img/s", NO_CUDA))
        return rows
    cuda = torch.device("cuda")
    with deterministic_cudnn():
        rows += _time_setting(cuda, None, smoke, compile_=not smoke)
        if smoke:
            rows.append(skipped_row(S, "torch.compile and 50k-image epoch (cuda)", "s",
                                    "smoke: compiling takes about a minute"))
        else:
            rows += _time_epochs(cuda)
    return rows
