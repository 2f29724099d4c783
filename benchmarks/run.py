"""Benchmark suite: ``python -m benchmarks.run [--smoke] [--json PATH] [--only SECTION ...] [--quick]``.

Each section is a function ``(smoke: bool) -> list[dict]`` registered in ``SECTIONS``; a row has at
least ``section``, ``name``, ``value`` and ``unit``, and may carry ``ratio`` (against the section's
baseline row), ``target`` (the issue's goal, shown in the table) and any extra fields, which go to
the JSON as they are. A row that could not be measured has ``value`` None and says why in
``skipped`` (e.g. no CUDA, no archive) or ``error`` (the thing measured failed); the table lists the
reasons under it. The run prints one table and writes the rows plus machine info to
``benchmarks/results/latest.json`` (git-ignored).

Machines are often shared and noisy: a section times the things it compares in the same run, on the
same data, alternating, so read the ratios more than the absolute numbers. ``--smoke`` runs every
section tiny (well under a minute in all) and is what ``tests/test_benchmarks.py`` calls so the suite
cannot rot; its numbers mean nothing.

Sections:

- ``loader``: BatchLoader vs the usual torchvision PIL pipeline, images/s.
- ``train_step``: images/s of an SGD step of SimpleCNN and resnet18_cifar, fed by BatchLoader vs
  pre-made tensors; the loader's share of step time; achieved FLOP/s against a measured matmul peak
  (roofline ratio). With CUDA also bf16 + channels_last, ``torch.compile`` and a 50k-image epoch.
- ``gradcam``: CAMs/s of ``helpers.cam.compute_cams``, batched vs one image at a time.
- ``recording``: images/s of ``helpers.train.train_epoch`` without and with notebook 04's per-layer
  gradient and weight-update records (target: records cost <= 10%).
- ``end_to_end``: wall time and peak memory of the notebook runner (``python -m helpers.reports``)
  over every notebook at the smoke profile; with ``--quick`` (minutes: use ``--only end_to_end
  --quick``) also at the quick profile. ``--smoke`` runs one notebook only.
- ``real_data``: notebook 05 at the quick profile on the CIFAR-10 JPEG archive (``CIFAR10_ARCHIVE``,
  default ``../shared/data/cifar10-jpg.tar.gz``): accuracies and time; skipped when absent and in smoke.

To add one, write ``bench_<name>(smoke)`` returning rows and add it to ``SECTIONS``.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from helpers.data import CIFAR10_MEAN, CIFAR10_STD

from .harness import (ROOT, Contender, alternate, cpu_threads, format_table, machine_info, placement,
                      random_cifar, rate_row, rates, skipped_row, write_json)
from .loader import bench_loader

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


# ---------------------------------------------------------------------------------------------------
# Pieces of train_step (the timing harness itself is in benchmarks/harness.py)
# ---------------------------------------------------------------------------------------------------


def _repeat(fn: Callable[[], object], k: int) -> Callable[[], None]:
    def block():
        for _ in range(k):
            fn()

    return block


class _Endless:
    """Batches of a BatchLoader forever: a new epoch (reshuffled, re-augmented) when one ends."""

    def __init__(self, loader):
        self.loader, self.it = loader, iter(loader)

    def __call__(self):
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            return next(self.it)


# ---------------------------------------------------------------------------------------------------
# train_step
# ---------------------------------------------------------------------------------------------------


def _step_fn(model: torch.nn.Module, opt: torch.optim.Optimizer, device: torch.device):
    """One SGD step exactly as ``helpers.train.train_epoch`` takes it (no CutMix, no scheduler):
    channels_last input and bf16 autocast on CUDA, fp32 on the CPU; returns (logits, loss)."""
    import torch.nn.functional as F

    from helpers.train import autocast

    def step(x, y):
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return logits, loss

    return step


def _sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    # The studies' optimiser (helpers.train.make_optimizer with TrainConfig's defaults); momentum and
    # weight decay add per-parameter work to every step, so they are part of what is timed.
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def _train_step_contenders(device: torch.device, threads: int | None, smoke: bool, compile_: bool):
    """Contenders of one device/thread setting, and per model: (forward FLOPs per image, its names)."""
    from helpers.instrument import flops
    from helpers.loader import Augment, BatchLoader
    from helpers.models import build_model

    cuda = device.type == "cuda"
    where = placement(device, threads)
    batch = 16 if smoke else 128
    # Full width (the reports' models) except resnet18_cifar in smoke, where one width-1 step alone
    # takes 5-14 s on the 2-core box.
    widths = {"simple_cnn": 1.0, "resnet18_cifar": 0.125 if smoke else 1.0}
    # Steps per timed block: a block should last ~0.1 s or more, yet resnet18_cifar at width 1 runs
    # ~10-40 img/s on a 2-core CPU (3-13 s a step), so there one step is a block.
    if smoke:
        steps = {"simple_cnn": 1, "resnet18_cifar": 1}
    elif cuda:
        steps = {"simple_cnn": 100, "resnet18_cifar": 40}
    else:
        steps = {"simple_cnn": 4, "resnet18_cifar": 1}

    contenders: dict[str, Contender] = {}
    # Peak: a square fp32 matmul, the op closest to a machine's peak FLOP/s. 2048 on the CPU (~0.1-0.3 s
    # on 2 cores); on a GPU 2048 finishes in well under a millisecond, too short to fill the device,
    # so 8192 there. On CUDA the convs run in bf16 under autocast, so a bf16 matmul is the peak the
    # training rows are compared with (fp32 kept for reference).
    n = (1024 if cuda else 256) if smoke else (8192 if cuda else 2048)
    reps = (5 if smoke else 20) if cuda else 1
    peaks = {}
    for dtype in [torch.float32] + ([torch.bfloat16] if cuda else []):
        g = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(n, n, device=device, generator=g).to(dtype)
        b = torch.randn(n, n, device=device, generator=g).to(dtype)
        key = f"{'bf16' if dtype == torch.bfloat16 else 'fp32'} matmul {n}x{n} ({where})"
        contenders[key] = Contender(_repeat(lambda a=a, b=b: a @ b, reps), device, threads, 2 * n**3 * reps)
        peaks[dtype] = key
    peak_key = peaks.get(torch.bfloat16, peaks[torch.float32])

    models = {}
    aug = Augment(crop_padding=4, flip_h=0.5, jitter=0.2)  # as bench_loader: crop + flip + jitter
    for name, width in widths.items():
        model = build_model(name, width=width).to(device)  # random weights: values do not change the speed
        if cuda:
            model = model.to(memory_format=torch.channels_last)  # as helpers.train.build
        fwd_flops = flops(model)[1]["flops"]  # one image's forward pass, multiply-add = 2 FLOPs
        k = steps[name]
        # Several batches, so the loader's shuffle and gather run as in training; drop_last keeps
        # every timed step at the full batch size.
        images, labels = random_cifar(batch * 4, seed=1)
        loader = BatchLoader(images, labels, batch, mean=CIFAR10_MEAN, std=CIFAR10_STD, augment=aug,
                             device=device, drop_last=True)
        x0, y0 = next(iter(loader))  # a pre-made, already augmented and normalised batch on the device
        step = _step_fn(model, _sgd(model), device)
        feed, feed_alone = _Endless(loader), _Endless(loader)
        names = {
            "alone": f"{name}: model alone, pre-made tensors ({where})",
            "loader": f"{name}: BatchLoader + model ({where})",
            "loader_only": f"{name}: BatchLoader alone ({where})",
        }
        contenders[names["alone"]] = Contender(_repeat(lambda s=step, x=x0, y=y0: s(x, y), k), device, threads,
                                                batch * k)
        contenders[names["loader"]] = Contender(_repeat(lambda s=step, f=feed: s(*f()), k), device, threads,
                                                 batch * k)
        contenders[names["loader_only"]] = Contender(_repeat(feed_alone, k), device, threads, batch * k)
        if compile_:
            # A separate copy with its own optimiser, so eager and compiled steps do not share state.
            twin = copy.deepcopy(model)
            cstep = _step_fn(torch.compile(twin), _sgd(twin), device)
            names["compiled"] = f"{name}: model alone, torch.compile ({where})"
            contenders[names["compiled"]] = Contender(_repeat(lambda s=cstep, x=x0, y=y0: s(x, y), k), device,
                                                       threads, batch * k)
        models[name] = (fwd_flops, names, width)
    return contenders, peak_key, models, batch


def _train_step_rows(device, threads, smoke: bool, compile_: bool) -> list[dict]:
    contenders, peak_key, models, batch = _train_step_contenders(device, threads, smoke, compile_)
    times = alternate(contenders, rounds=1 if smoke else 3)
    S = "train_step"
    rows = [rate_row(S, k, contenders[k], times[k], "GFLOP/s", scale=1e-9)
            for k in contenders if " matmul " in k]
    peak = rates(contenders[peak_key], times[peak_key])[0]
    for name, (fwd_flops, names, width) in models.items():
        alone, loader, only = (contenders[names[k]] for k in ("alone", "loader", "loader_only"))
        base = rates(alone, times[names["alone"]])
        extra = dict(batch_size=batch, width=width)
        rows.append(rate_row(S, names["alone"], alone, times[names["alone"]], "img/s", base=base, **extra))
        rows.append(rate_row(S, names["loader"], loader, times[names["loader"]], "img/s", base=base, **extra))
        if "compiled" in names:
            c = contenders[names["compiled"]]
            rows.append(rate_row(S, names["compiled"], c, times[names["compiled"]], "img/s", base=base, **extra))
        # Loader share of a step: the loader's own seconds per batch (timed alone, same batches, same
        # run) over a full step's seconds with it. Measured directly rather than as the gap between
        # the two step rows, because that gap is the difference of two noisy numbers and on a loaded
        # box can even come out negative; the gap is kept in the JSON as ``share_by_difference``.
        with_loader, only_rate = rates(loader, times[names["loader"]]), rates(only, times[names["loader_only"]])
        rows.append({
            "section": S, "name": f"{name}: loader share of step time ({placement(device, threads)})",
            "value": 100 * with_loader[0] / only_rate[0], "unit": "%", "target": "<= 10%",
            "median": 100 * with_loader[1] / only_rate[1],
            "share_by_difference": 100 * (1 - with_loader[0] / base[0]),
            "loader_img_per_s": only_rate[0], "device": device.type, "threads": threads or torch.get_num_threads(),
        })
        # Roofline: training FLOPs per image ~ 3x the forward's (the backward computes a gradient for
        # the inputs and one for the weights, each about one forward; the first conv needs no input
        # gradient, so 3x slightly overstates), times images/s of the model alone.
        achieved = 3 * fwd_flops * base[0]
        rows.append({
            "section": S, "name": f"{name}: training FLOP/s, ratio to matmul peak ({placement(device, threads)})",
            "value": achieved * 1e-9, "unit": "GFLOP/s", "ratio": achieved / peak,
            "median": 3 * fwd_flops * base[1] * 1e-9, "forward_flops_per_image": fwd_flops,
            "peak": peak_key, "peak_gflops": peak * 1e-9,
            "ratio_with_loader": 3 * fwd_flops * with_loader[0] / peak,
            "device": device.type, "threads": threads or torch.get_num_threads(),
        })
    return rows


def _epoch_rows(device: torch.device, n: int = 50_000, width: float = 1.0) -> list[dict]:
    """resnet18_cifar, one epoch of ``n`` images at batch 128, eager and compiled, on ``device`` (CUDA;
    the parameters let the code be checked on the CPU at toy size): the issue's GPU target (50,000
    images in <= 6 s on an H100-class GPU). Mirrors helpers.train.train_epoch: BatchLoader on the
    device, loss and accuracy summed there and read once at the end of the epoch."""
    from helpers.loader import Augment, BatchLoader
    from helpers.models import build_model

    S, batch, where = "train_step", 128, device.type
    images, labels = random_cifar(n, seed=2)
    loader = BatchLoader(images, labels, batch, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                         augment=Augment(crop_padding=4, flip_h=0.5), device=device)
    model = build_model("resnet18_cifar", width=width).to(device).to(memory_format=torch.channels_last)
    twin = copy.deepcopy(model)

    def epoch(step):
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for x, y in loader:
            logits, loss = step(x, y)
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
        return loss_sum.item(), correct.item()  # the epoch's one host sync

    what = f"resnet18_cifar: one epoch, {n:,} images, batch {batch}"
    contenders = {
        f"{what} ({where})": Contender(lambda s=_step_fn(model, _sgd(model), device): epoch(s), device),
        f"{what}, torch.compile ({where})":
            Contender(lambda s=_step_fn(torch.compile(twin), _sgd(twin), device): epoch(s), device),
    }
    times = alternate(contenders, rounds=2)
    target = {"target": "<= 6 s (H100-class)"} if (n, width) == (50_000, 1.0) else {}  # the case only
    return [{"section": S, "name": k, "value": min(v), "unit": "s", "median": statistics.median(v),
             "epochs": len(v), "device": device.type, "width": width, **target} for k, v in times.items()]


def bench_train_step(smoke: bool = False) -> list[dict]:
    """images/s of a full SGD step (forward, backward, step), batch 128: fed by BatchLoader vs the model
    alone on pre-made tensors; the loader's share of step time; achieved FLOP/s vs a measured peak.

    Models: SimpleCNN (report 004, notebook 05) and resnet18_cifar (reports 000/001/003), both at width
    1 (smoke: batch 16, resnet18_cifar at width 0.125). The loader does crop (pad 4) + flip + colour
    jitter 0.2 + normalise, as in ``bench_loader``. Contenders per model, alternated block by block:
    the step on one pre-made batch (the model alone: the ceiling), the step on the loader's next batch,
    and the loader alone on the same batches. The loader's share of step time is loader-alone seconds
    per batch over loader+model seconds per batch; the issue's target is <= 10%.

    Roofline: a square fp32 matmul's FLOP/s (``torch.matmul``, best block) stands in for the machine's
    peak; achieved training FLOP/s = 3 x forward FLOPs per image (``helpers.instrument.flops``) x
    images/s of the model alone; ``ratio`` is achieved / peak. Convolutions on 32x32 images and small
    channel counts reach a fraction of a big matmul's rate, so a ratio well below 1 is expected.

    CPU rows run with torch's default threads and with 1 thread (see ``_cpu_threads``). With CUDA the
    step is helpers.train's GPU path (BatchLoader on the GPU, bf16 autocast, channels_last, cuDNN
    settings of a default deterministic run), the peak is a bf16 matmul, ``torch.compile`` is timed
    against eager (not in smoke: compiling takes a minute) and a real 50,000-image resnet18_cifar epoch
    is timed against the issue's 6 s target. Without CUDA those rows are skipped with the reason.
    """
    rows: list[dict] = []
    for threads in cpu_threads(smoke):
        rows += _train_step_rows(torch.device("cpu"), threads, smoke, compile_=False)
    if not torch.cuda.is_available():
        rows.append(skipped_row("train_step", "cuda rows (bf16 + channels_last steps, torch.compile, 50k-image epoch)",
                             "img/s", "no CUDA device (torch.cuda.is_available() is False)"))
        return rows
    # helpers.train's default run is deterministic: cuDNN without autotuning. Same here, restored after.
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        rows += _train_step_rows(torch.device("cuda"), None, smoke, compile_=not smoke)
        if smoke:
            rows.append(skipped_row("train_step", "torch.compile and 50k-image epoch (cuda)", "s",
                                 "smoke: compiling takes about a minute"))
        else:
            rows += _epoch_rows(torch.device("cuda"))
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved
    return rows


# ---------------------------------------------------------------------------------------------------
# gradcam
# ---------------------------------------------------------------------------------------------------


def bench_gradcam(smoke: bool = False) -> list[dict]:
    """CAMs/s of ``helpers.cam.compute_cams`` for 512 images (smoke: 16): batched (64) vs one at a time.

    Model: resnet18_cifar at width 0.25 with random weights (the speed does not depend on training),
    on its default target layer (the last block); each image's CAM explains its own label. "One at a
    time" is ``compute_cams(..., batch_size=1)``: one call looping over single images inside one
    GradCAM object, which spares the baseline the per-call setup a user's loop of single-image calls
    would add, so the ratio is if anything conservative. The two alternate pass by pass; CPU rows
    with torch's default threads and with 1 thread (``_cpu_threads``); with CUDA a GPU pair is added.
    """
    from helpers.cam import compute_cams
    from helpers.models import build_model

    n, batch = (16 if smoke else 512), 64
    images, labels = random_cifar(n, seed=3)
    settings = [(torch.device("cpu"), t) for t in cpu_threads(smoke)]
    if torch.cuda.is_available():
        settings.append((torch.device("cuda"), None))
    contenders: dict[str, Contender] = {}
    groups = []
    for device, threads in settings:
        model = build_model("resnet18_cifar", width=0.25).to(device)
        where = placement(device, threads)
        pair = []
        for bs, label in [(1, "one image at a time"), (batch, f"batched ({batch})")]:
            def run(model=model, bs=bs, k=n):
                compute_cams(model, images[:k], mean=CIFAR10_MEAN, std=CIFAR10_STD, targets=labels[:k],
                             batch_size=bs)

            key = f"Grad-CAM {label} ({where})"
            # Warm-up on a few images only: the one-at-a-time pass over 512 takes seconds.
            contenders[key] = Contender(run, device, threads, work=n, warmup=lambda run=run: run(k=min(n, 8)))
            pair.append(key)
        groups.append(pair)
    times = alternate(contenders, rounds=1 if smoke else 3)
    rows = []
    for single, batched in groups:
        base = rates(contenders[single], times[single])
        for k in (single, batched):
            rows.append(rate_row("gradcam", k, contenders[k], times[k], "CAMs/s", base=base, images=n,
                                  model="resnet18_cifar width 0.25"))
    if not torch.cuda.is_available():
        rows.append(skipped_row("gradcam", "Grad-CAM batched vs one at a time (cuda)", "CAMs/s",
                             "no CUDA device (torch.cuda.is_available() is False)"))
    return rows


def bench_recording(smoke: bool = False) -> list[dict]:
    """Cost of notebook 04's gradient and weight-update records: images/s of ``helpers.train.train_epoch``
    without records vs with records every 20 steps (the quick profile) and every 5 (a stress case;
    the full profile's 100 costs less still). Issue 7's target: records slow training by <= 10%.

    resnet18_cifar at width 0.25, batch 128, crop + flip, 40 steps per timed block (smoke: 4 steps,
    recording every 2), on the CPU with 1 thread (the robust setting, see ``_cpu_threads``). Blocks
    continue the step count, so every block records as often as its interval says.
    """
    from helpers.instrument import GradientRecorder, UpdateRecorder
    from helpers.loader import Augment, BatchLoader
    from helpers.models import build_model
    from helpers.train import TrainConfig, make_optimizer, make_scheduler, train_epoch

    steps, batch = (4, 128) if smoke else (40, 128)
    intervals = [2] if smoke else [20, 5]
    images, labels = random_cifar(steps * batch, seed=5)
    cpu = torch.device("cpu")
    contenders: dict[str, Contender] = {}
    for every in [0, *intervals]:
        config = TrainConfig(model="resnet18_cifar", width=0.25, batch_size=batch, lr=0.05, record_every=every)
        model = build_model("resnet18_cifar", width=0.25)
        opt = make_optimizer(model, config)
        loader = BatchLoader(images, labels, batch, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                             augment=Augment(crop_padding=4, flip_h=0.5), device=cpu)
        sched = make_scheduler(opt, config, len(loader))
        recorders = (GradientRecorder(model, every), UpdateRecorder(model, every)) if every else None
        epoch = [0]

        def run(model=model, opt=opt, sched=sched, config=config, loader=loader, recorders=recorders, epoch=epoch):
            train_epoch(model, loader, opt, sched, config, 10, torch.Generator(), recorders, epoch[0])
            epoch[0] += 1

        name = "train_epoch, no records" if not every else f"train_epoch, records every {every} steps"
        contenders[name] = Contender(run, cpu, threads=1, work=steps * batch)
    times = alternate(contenders, rounds=1 if smoke else 3)
    names = list(contenders)
    base = rates(contenders[names[0]], times[names[0]])
    rows = [rate_row("recording", k, contenders[k], times[k], "img/s", base=base, model="resnet18_cifar width 0.25")
            for k in names]
    for row in rows[1:]:
        rows.append({"section": "recording", "name": row["name"].replace("train_epoch, records", "slowdown of records"),
                     # below zero means records "sped up" training: the noise of the measurement
                     "value": 100 * (1 - row["ratio"]), "median": 100 * (1 - row["ratio_median"]),
                     "unit": "%", "target": "<= 10%"})
    return rows


# ---------------------------------------------------------------------------------------------------
# end_to_end and real_data: the notebook runner in a subprocess
# ---------------------------------------------------------------------------------------------------


def _run_measured(args: list[str], data_dir: Path, log: Path, timeout: float) -> dict:
    """Run ``python -m helpers.reports ARGS`` from the project root with ``HELPERS_DATA=data_dir``.

    Returns wall seconds, exit code and peak memory. ``max_rss``: bytes, the largest peak resident
    set of any single process of the run (the runner or a notebook kernel), from ``os.wait4``'s
    rusage of the runner, which the kernel folds in for every descendant that was waited for (the
    runner waits for each kernel it shuts down). It is exact, but per process. ``tree_rss``: the
    largest sum of RSS over the runner and all its descendants at once, sampled every 0.2 s with
    psutil when installed (may miss a spike shorter than that; shared pages count once per process,
    so it errs high). The run gets its own process group so a timeout can end all of it.
    """
    try:
        import psutil
    except ImportError:  # optional: only the whole-tree figure needs it
        psutil = None
    env = dict(os.environ, HELPERS_DATA=str(data_dir))
    with open(log, "w") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "helpers.reports", *args], cwd=ROOT, env=env,
                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        tree_rss, one_rss, status, usage, timed_out = 0, 0, 0, None, False
        proc = psutil.Process(p.pid) if psutil else None
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if proc is not None:
                total = 0
                try:
                    for q in [proc, *proc.children(recursive=True)]:
                        try:
                            rss = q.memory_info().rss
                            total, one_rss = total + rss, max(one_rss, rss)
                        except (psutil.NoSuchProcess, psutil.AccessDenied):
                            pass  # ended between listing and reading
                except psutil.NoSuchProcess:
                    pass
                tree_rss = max(tree_rss, total)
            if time.perf_counter() - t0 > timeout and not timed_out:
                timed_out = True
                os.killpg(p.pid, signal.SIGTERM)  # our own child's process group: the runner and its kernels
            time.sleep(0.2)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4 above; tell Popen
    return {"seconds": wall, "returncode": p.returncode, "timed_out": timed_out,
            "max_rss": usage.ru_maxrss * 1024,  # Linux reports KiB
            "tree_rss": tree_rss if psutil else None,
            "largest_rss_sampled": one_rss if psutil else None}  # cross-check of max_rss


def _notebook_runs(profile_dir: Path) -> dict:
    """Per notebook: status and seconds from the runner's run.json records."""
    runs = {}
    for f in sorted(profile_dir.glob("*/run.json")):
        r = json.loads(f.read_text())
        runs[r["notebook"]] = {"status": r["status"], "seconds": r["seconds"]}
    return runs


def _runner_rows(section: str, label: str, result: dict, log: Path, runs: dict, target_s: str | None,
                 **extra) -> list[dict]:
    """Rows of one runner invocation: wall time, then peak RSS (single process; whole tree)."""
    if result["returncode"] != 0:
        tail = log.read_text()[-1500:]
        why = "timed out" if result["timed_out"] else f"runner exited {result['returncode']}"
        print(f"[{section}] {label}: {why}; last output:\n{tail}", flush=True)
        return [{"section": section, "name": f"{label}: wall time", "value": None, "unit": "s",
                 "error": f"{why} after {result['seconds']:.0f} s (notebooks: {runs})", **extra}]
    rows = [{"section": section, "name": f"{label}: wall time", "value": result["seconds"], "unit": "s",
             **({"target": target_s} if target_s else {}), "notebooks": runs, **extra}]
    rows.append({"section": section, "name": f"{label}: peak RSS, largest process", "unit": "GB",
                 "value": result["max_rss"] / 1e9, "target": "<= 4 GB",
                 "sampled_gb": result["largest_rss_sampled"] and result["largest_rss_sampled"] / 1e9})
    if result["tree_rss"] is None:
        rows.append(skipped_row(section, f"{label}: peak RSS, whole process tree", "GB", "psutil not installed"))
    else:
        rows.append({"section": section, "name": f"{label}: peak RSS, whole process tree (sampled)", "unit": "GB",
                     "value": result["tree_rss"] / 1e9, "target": "<= 4 GB"})
    return rows


def bench_end_to_end(smoke: bool = False, quick: bool = False) -> list[dict]:
    """Wall time and peak memory of the notebook runner: ``python -m helpers.reports --profile P
    --no-pdf --output TMP`` over every notebook, in a subprocess, as a user starts it.

    Full run: all notebooks at the smoke profile (target <= 3 min on a 2-core CPU). ``quick=True``
    (``--only end_to_end --quick``) adds all notebooks at the quick profile (target <= 15 min): it is
    never part of the default run or of ``--smoke``. ``--smoke`` runs notebook 05 alone at the smoke
    profile, to check the measurement works (~25 s); its time has no target.

    Each invocation starts cold: a fresh temporary ``HELPERS_DATA``, so every model trains from
    scratch as on a first run (the synthetic data is generated in seconds). The wall time includes
    Python and kernel start-up and the HTML export; PDF export is off (it times LaTeX, not this code,
    and needs xelatex). Memory: see ``_run_measured`` (largest single process exactly; whole tree
    sampled); the issue's target is <= 4 GB.
    """
    from helpers.reports import list_notebooks

    stems = list_notebooks()
    # (profile, notebooks (none = all), target in seconds or None)
    plans = [("smoke", ["05"], None)] if smoke else [("smoke", [], 180)]
    if quick and not smoke:
        plans.append(("quick", [], 900))
    rows = []
    for profile, notebooks, target in plans:
        what = f"notebook {notebooks[0]}" if notebooks else f"all {len(stems)} notebooks"
        label = f"{profile} profile, {what}"
        with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
            tmp = Path(tmp)
            args = [*notebooks, "--profile", profile, "--no-pdf", "--output", str(tmp / "out")]
            # A generous limit (a stuck kernel should not hang the suite): 3x the target, or 10 min.
            result = _run_measured(args, tmp / "data", tmp / "runner.log", 3 * target if target else 600)
            runs = _notebook_runs(tmp / "out" / profile)
            rows += _runner_rows("end_to_end", label, result, tmp / "runner.log", runs,
                                 f"<= {target} s" if target else None, profile=profile)
    if not quick and not smoke:
        rows.append(skipped_row("end_to_end", "quick profile, all notebooks", "s",
                             "takes 10-15 min: run with --only end_to_end --quick"))
    return rows


def cifar10_archive() -> Path:
    """The CIFAR-10 JPEG archive: ``$CIFAR10_ARCHIVE``, else ``../shared/data/cifar10-jpg.tar.gz``
    next to the project root."""
    return Path(os.environ.get("CIFAR10_ARCHIVE") or ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz")


def bench_real_data(smoke: bool = False) -> list[dict]:
    """Notebook 05 (BatchNorm ablation) at the quick profile on real CIFAR-10: test accuracy of both
    models (``metrics.json``: ``test_acc_baseline``, ``test_acc_batchnorm``), wall time, peak memory.

    Runs ``python -m helpers.reports 05 --profile quick --dataset folder:ARCHIVE --no-pdf`` into a
    temporary folder, with a fresh run cache (the models train from scratch) that shares the
    project's decoded-dataset cache (``data/cache``). The archive's one-time JPEG decode is done and
    timed first, in this process, as its own row, so the runner row times the notebook, not the
    decode. Skipped when the archive is absent, and in ``--smoke`` (a quick-profile training run on
    60,000 real images takes minutes).
    """
    S, archive = "real_data", cifar10_archive()
    name = "notebook 05, quick profile, CIFAR-10"
    if smoke:
        return [skipped_row(S, name, "s", "smoke: training on 60,000 real images takes minutes")]
    if not archive.is_file():
        return [skipped_row(S, name, "s", f"archive not found at {archive} (set CIFAR10_ARCHIVE to its path)")]

    from helpers import DATA_DIR
    from helpers.data import load_dataset

    cache = Path(DATA_DIR) / "cache"
    before = set(cache.glob("*.pt")) if cache.is_dir() else set()
    t0 = time.perf_counter()
    load_dataset(f"folder:{archive}", root=DATA_DIR)
    load_s = time.perf_counter() - t0
    decoded = bool(set(cache.glob("*.pt")) - before)
    rows = [{"section": S, "name": f"load archive ({'decoded and cached' if decoded else 'from data/cache'})",
             "value": load_s, "unit": "s", "archive": str(archive)}]
    with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp:
        tmp = Path(tmp)
        (tmp / "data").mkdir()
        cache.mkdir(parents=True, exist_ok=True)
        (tmp / "data" / "cache").symlink_to(cache.resolve(), target_is_directory=True)
        args = ["05", "--profile", "quick", "--dataset", f"folder:{archive}", "--no-pdf", "--output", str(tmp / "out")]
        result = _run_measured(args, tmp / "data", tmp / "runner.log", timeout=3600)
        runs = _notebook_runs(tmp / "out" / "quick")
        rows += _runner_rows(S, name, result, tmp / "runner.log", runs, None)
        metrics_files = sorted((tmp / "out" / "quick").glob("05*/metrics.json"))
        if result["returncode"] == 0 and metrics_files:
            metrics = json.loads(metrics_files[0].read_text())
            for model in ("baseline", "batchnorm"):
                key, row = f"test_acc_{model}", {"section": S, "name": f"{name}: test_acc_{model}", "unit": "%"}
                if key in metrics:
                    row.update(value=100 * metrics[key], dataset=metrics.get("dataset"),
                               train_seconds=metrics.get(f"train_seconds_{model}"))
                else:
                    row.update(value=None, error=f"{key} missing from {metrics_files[0]}")
                rows.append(row)
    return rows


SECTIONS = {
    "loader": bench_loader,
    "train_step": bench_train_step,
    "gradcam": bench_gradcam,
    "recording": bench_recording,
    "end_to_end": bench_end_to_end,
    "real_data": bench_real_data,
}


def run(smoke: bool = False, only: list[str] | None = None, json_path: str | Path | None = DEFAULT_JSON,
        quick: bool = False) -> dict:
    """Run the sections (all, or ``only``), print the table, write JSON; returns the JSON object.

    ``quick`` goes to the sections that take it (``end_to_end``: adds the quick-profile run)."""
    names = only or list(SECTIONS)
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; known: {list(SECTIONS)}")
    rows: list[dict] = []
    for name in names:
        fn = SECTIONS[name]
        rows += fn(smoke=smoke, **({"quick": quick} if "quick" in inspect.signature(fn).parameters else {}))
    result = {"smoke": smoke, "quick": quick, "machine": machine_info(), "rows": rows}
    print(format_table(rows))
    if json_path is not None:
        print(f"wrote {write_json(result, json_path)}")
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the suite runs, numbers mean nothing")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write rows + machine info")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    p.add_argument("--quick", action="store_true",
                   help="end_to_end: also run every notebook at the quick profile (10-15 min on 2 cores); "
                        "use as --only end_to_end --quick")
    args = p.parse_args(argv)
    if args.quick and args.smoke:
        p.error("--quick times the quick-profile end-to-end run, which --smoke never does; give one of them")
    if args.quick and args.only and "end_to_end" not in args.only:
        p.error("--quick only affects the end_to_end section: use --only end_to_end --quick")
    run(smoke=args.smoke, only=args.only, json_path=args.json, quick=args.quick)


if __name__ == "__main__":
    main()
