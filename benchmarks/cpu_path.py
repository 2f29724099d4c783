"""Section ``cpu_path``: images/s of one SGD step of each study's model at its quick-profile width and
batch size, on CPU, before and after the CPU path of ``helpers.train`` (issue 17: >= 1.5x per model).

Contenders, each in a fresh process (the allocator setting is process-wide and cannot be undone):

- ``NCHW`` : the step as it was, contiguous tensors and glibc's default allocator;
- ``NHWC`` : model and batches in channels_last (``helpers.device.channels_last``);
- ``NHWC + kept memory``: also ``helpers.device.keep_freed_memory`` (what ``fit`` does on CPU);
- at torch's default thread count N > 1 only, ``N runs side by side``: N kept-memory processes of one
  thread each at once, the machine's throughput when ``--workers auto`` trains one run per core
  (N x the slowest process's images/s), against one NCHW run on all N cores.

A round starts one process per contender, in turn, and each times every model (best of 2 blocks of
``STEPS`` steps on one pre-made random batch: the model alone, as ``train_step`` does); 3 rounds, and a
row reports the best round, with the median round beside it. Rows per thread setting
(``harness.cpu_threads``). ``--smoke``: one model, one round, 2 steps, 1 thread.

Roofline, for the issue's "where a model already runs near the matmul peak, say so with the number":
the kept-memory process also times ``train_step``'s peak (its 2048x2048 fp32 matmul) at the same
thread count and profiles one step (``torch.profiler``, self CPU time per op). Its row per model gives
the training FLOP/s (3 x forward FLOPs, ``helpers.models.flops``) against that peak, and the
step's time shares: convolutions (forward and backward), batch norm, ReLU, everything else.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import torch

from .harness import CPU, ROOT, cpu_threads, placement

S = "cpu_path"
CONTENDERS = {"NCHW": "before", "NHWC": "nhwc", "NHWC + kept memory": "nhwc+kept"}
STEPS = 4

# Runs in a fresh interpreter: argv = the path's name, models as JSON, steps, threads (0: default).
CHILD = """
import json, sys, time
import torch, torch.nn.functional as F
from benchmarks.harness import CPU, block_seconds
from benchmarks.train_step import _make_matmuls
from helpers.device import keep_freed_memory
from helpers.models import flops
from helpers.models import build_model
OPS = {"convolution": ("convolution",), "batch norm": ("batch_norm",), "ReLU": ("relu", "threshold", "clamp_min")}
def shares(events):
    self_us = {e.key: e.self_cpu_time_total for e in events if e.key.startswith("aten::")}
    total = sum(self_us.values())
    out = {group: sum(t for k, t in self_us.items() if any(w in k for w in words)) / total
           for group, words in OPS.items()}
    return {**out, "other": 1 - sum(out.values())}
path, models, steps, threads = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if threads:
    torch.set_num_threads(threads)
if path == "nhwc+kept":
    keep_freed_memory()
fmt = torch.contiguous_format if path == "before" else torch.channels_last
out = {}
for m in models:
    torch.manual_seed(0)
    model = build_model(m["model"], num_classes=10, width=m["width"], **m["kwargs"]).to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(m["batch"], 3, 32, 32).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (m["batch"],))
    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step(); step()
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - start) / steps)
    out[m["label"]] = m["batch"] / best
    if path == "nhwc+kept":  # the roofline: FLOPs and where the step's time goes
        out[m["label"] + " flops"] = 3 * flops(model)[1]["flops"]
        with torch.profiler.profile() as prof:
            step()
        out[m["label"] + " shares"] = shares(prof.key_averages())
if path == "nhwc+kept":  # train_step's peak: its largest fp32 matmul, at this process's threads
    peak = list(_make_matmuls(CPU, None, smoke=False).values())[-1]
    block_seconds(peak.run, CPU)
    out["peak"] = max(peak.work / block_seconds(peak.run, CPU) for _ in range(3))
print(json.dumps(out))
"""


def quick_models() -> list[dict]:
    """Each distinct (model, width, batch, options) the studies train at the quick profile."""
    from helpers import studies
    from helpers.profiles import settings

    seen = {}
    for study in studies.STUDIES:
        for name, (config, *_) in settings(study, "quick", dataset="synthetic").runs().items():
            label = f"{config.model} w{config.width:g} b{config.batch_size}" + \
                    "".join(f" {k}={v}" for k, v in sorted(config.model_kwargs.items()))
            seen.setdefault(label, {"label": label, "model": config.model, "width": config.width,
                                    "batch": config.batch_size, "kwargs": config.model_kwargs,
                                    "studies": []})["studies"].append(f"{study}/{name}")
    return list(seen.values())


def _start(path: str, models: list[dict], steps: int, threads: int | None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, path, json.dumps(models), str(steps), str(threads or 0)],
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _result(child: subprocess.Popen) -> dict:
    out, err = child.communicate()
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, child.args, out, err)
    return json.loads(out.strip().splitlines()[-1])


def _child(path: str, models: list[dict], steps: int, threads: int | None) -> dict:
    return _result(_start(path, models, steps, threads))


def side_by_side(models: list[dict], steps: int, n: int) -> dict:
    """``n`` kept-memory processes of 1 thread each, started together (what ``--workers auto`` does on a
    CPU): per model, n x the slowest process's images/s, a lower bound on the machine's throughput."""
    children = [_start("nhwc+kept", models, steps, 1) for _ in range(n)]
    results = [_result(c) for c in children]
    return {m["label"]: n * min(r[m["label"]] for r in results) for m in models}


def bench_cpu_path(smoke: bool = False) -> list[dict]:
    """Images/s per quick-profile model and CPU path, alternated in fresh processes (module docstring)."""
    models = quick_models()[:1] if smoke else quick_models()
    rounds, steps = (1, 2) if smoke else (3, STEPS)
    rows = []
    for threads in cpu_threads(smoke):
        seen = {name: [] for name in CONTENDERS}
        cores = torch.get_num_threads() if threads is None else 1
        side = f"{cores} runs side by side, 1 thread each, NHWC + kept memory"
        for _ in range(rounds):
            for name, path in CONTENDERS.items():
                seen[name].append(_child(path, models, steps, threads))
            if cores > 1:  # the machine's throughput when runs share it, against one run on all cores
                seen.setdefault(side, []).append(side_by_side(models, steps, cores))
        where = placement(CPU, threads)
        for m in models:
            per = {name: [r[m["label"]] for r in results] for name, results in seen.items()}
            base = max(per["NCHW"])
            for name, values in per.items():
                row = {"section": S, "name": f"{m['label']}: {name} ({where})", "value": max(values),
                       "median": statistics.median(values), "unit": "img/s", "ratio": max(values) / base,
                       "ratio_median": statistics.median(values) / statistics.median(per["NCHW"]),
                       "studies": m["studies"], "threads": threads}
                if name in ("NHWC + kept memory", side):
                    row["target"] = ">= 1.5x"
                rows.append(row)
            rows.append(_roofline_row(m, seen["NHWC + kept memory"], where, threads))
    return rows


def _roofline_row(m: dict, results: list[dict], where: str, threads: int | None) -> dict:
    """The kept-memory path's best round against the best matmul peak of its processes."""
    best = max(results, key=lambda r: r[m["label"]])
    peak = max(r["peak"] for r in results)
    achieved = best[m["label"] + " flops"] * best[m["label"]]
    return {"section": S, "name": f"{m['label']}: training FLOP/s, ratio to matmul peak ({where})",
            "value": achieved * 1e-9, "unit": "GFLOP/s", "ratio": achieved / peak, "peak_gflops": peak * 1e-9,
            "time_shares": best[m["label"] + " shares"], "studies": m["studies"], "threads": threads}
