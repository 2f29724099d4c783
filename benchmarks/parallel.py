"""Section ``parallel``: the same runs trained one after another, in local worker processes, and as
Ray tasks (issue 17: "the suite reports the Ray overhead against local workers").

The runs: the smoke runs of two studies (bn_ablation, stress_test) with 2 seeds each, 8 runs
(``--smoke``: bn_ablation, 1 seed, 1 epoch, 2 runs, and no Ray). Each contender is one command in a
fresh process with a fresh run store (``HELPERS_DATA``), so all of them start cold and pay their own
start-up: ``helpers.parallel.train_studies`` with ``workers=1`` (this process, torch's default
threads), ``workers=2`` (2 spawned workers, 1 thread each), and ``ray="local"`` (a new local cluster
of this machine's CPUs, 1 CPU per task; the cluster's start-up is counted: it is what a user waits
for). Wall seconds; the ratio is against the sequential run; the last row is Ray's overhead against
local workers in percent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from .harness import ROOT, skipped_row

S = "parallel"
STUDIES, SMOKE_STUDIES = ["bn_ablation", "stress_test"], ["bn_ablation"]


def _train(studies: list[str], params: dict, workers: int, ray: str | None) -> float:
    """Seconds for one cold ``train_studies`` call in a fresh process (a fresh run store)."""
    code = (f"from helpers import parallel; parallel.train_studies({studies!r}, 'smoke', None, {params!r}, "
            f"workers={workers}, ray={ray!r}, echo=lambda *a, **k: None)")
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, HELPERS_DATA=data, PYTHONPATH=str(ROOT))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
        return time.perf_counter() - start


def _has_ray() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def bench_parallel(smoke: bool = False) -> list[dict]:
    """Wall time of the same runs trained sequentially, by 2 local workers and by Ray (module docstring)."""
    studies, params = (SMOKE_STUDIES, {"epochs": 1}) if smoke else (STUDIES, {"seeds": 2})
    what = f"{'1 study' if smoke else '2 studies x 2 seeds'}, smoke runs"
    base = _train(studies, params, 1, None)
    rows = [{"section": S, "name": f"{what}: one after another, 1 process", "value": base, "unit": "s", "ratio": 1.0}]
    local = _train(studies, params, 2, None)
    rows.append({"section": S, "name": f"{what}: 2 local worker processes", "value": local, "unit": "s",
                 "ratio": base / local})
    if smoke or not _has_ray():
        why = "not in --smoke: starting a Ray cluster alone takes 10-30 s" if smoke else "Ray is not installed"
        return rows + [skipped_row(S, f"{what}: Ray tasks, local cluster", "s", why)]
    ray_s = _train(studies, params, 1, "local")
    rows.append({"section": S, "name": f"{what}: Ray tasks, local cluster (start-up included)", "value": ray_s,
                 "unit": "s", "ratio": base / ray_s})
    rows.append({"section": S, "name": "Ray overhead against 2 local workers", "value": 100 * (ray_s / local - 1),
                 "unit": "%"})
    return rows
