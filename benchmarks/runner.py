"""The notebook runner (``python -m helpers.runner``) in a subprocess, measured: what the
``end_to_end`` and ``real_data`` sections share.

``time_runner`` runs it from the project root with a given ``HELPERS_DATA`` and output folder, and
returns its result and rows: wall time, then peak memory. ``max_rss``: bytes, the largest peak
resident set of any single process of the run (the runner or a notebook kernel), from ``os.wait4``'s
rusage of the runner, which the kernel folds in for every descendant that was waited for (the runner
waits for each kernel it shuts down). It is exact, but per process. ``tree_rss``: the largest sum of
RSS over the runner and all its descendants at once, sampled every 0.2 s with psutil
(may miss a spike shorter than that; shared pages count once per process, so it errs high). The run
gets its own process group so a timeout can end all of it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .harness import ROOT

import psutil

RUNNER = [sys.executable, "-m", "helpers.runner"]


class _TreeRSS:
    """Largest summed RSS of a process and its descendants, and largest single RSS, over samples."""

    def __init__(self, pid: int):
        self.proc, self.tree, self.largest = psutil.Process(pid), 0, 0

    def sample(self) -> None:
        total = 0
        try:
            for q in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    rss = q.memory_info().rss
                    total, self.largest = total + rss, max(self.largest, rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass  # ended between listing and reading
        except psutil.NoSuchProcess:
            pass
        self.tree = max(self.tree, total)


def _run_measured(args: list[str], data_dir: Path, log: Path, timeout: float) -> dict:
    """Run the runner with ARGS and ``HELPERS_DATA=data_dir``: wall seconds, exit code, peak memory."""
    env = dict(os.environ, HELPERS_DATA=str(data_dir))
    with open(log, "w") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen([*RUNNER, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        rss = _TreeRSS(p.pid)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            rss.sample()
            if time.perf_counter() - t0 > timeout and not timed_out:
                timed_out = True
                os.killpg(p.pid, signal.SIGTERM)  # our own child's process group: the runner and its kernels
            time.sleep(0.2)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4 above; tell Popen
    return {"seconds": wall, "returncode": p.returncode, "timed_out": timed_out,
            "max_rss": usage.ru_maxrss * 1024,  # Linux reports KiB
            "tree_rss": rss.tree,
            "largest_rss_sampled": rss.largest}  # cross-check of max_rss


def _read_notebook_runs(profile_dir: Path) -> dict:
    """Per notebook: status and seconds from the runner's result.json records."""
    runs = {}
    for f in sorted(profile_dir.glob("*/result.json")):
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
                 "sampled_gb": result["largest_rss_sampled"] / 1e9})
    rows.append({"section": section, "name": f"{label}: peak RSS, whole process tree (sampled)", "unit": "GB",
                 "value": result["tree_rss"] / 1e9, "target": "<= 4 GB"})
    return rows


def time_runner(section: str, label: str, tmp: Path, notebooks: list[str], profile: str, timeout: float,
                target_s: str | None = None, options: tuple[str, ...] = (), extra: dict | None = None
                ) -> tuple[dict, list[dict]]:
    """Run ``python -m helpers.runner NOTEBOOKS --profile PROFILE OPTIONS --no-pdf --output TMP/out``
    with ``HELPERS_DATA=TMP/data``; its result and rows (``extra``: fields added to the rows). PDF
    export is off: it times LaTeX, not this code, and needs xelatex."""
    args = [*notebooks, "--profile", profile, *options, "--no-pdf", "--output", str(tmp / "out")]
    result = _run_measured(args, tmp / "data", tmp / "runner.log", timeout)
    runs = _read_notebook_runs(tmp / "out" / profile)
    return result, _runner_rows(section, label, result, tmp / "runner.log", runs, target_s, **(extra or {}))
