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
import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .gradcam import bench_gradcam
from .harness import ROOT, format_table, machine_info, skipped_row, write_json
from .loader import bench_loader
from .recording import bench_recording
from .train_step import bench_train_step

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


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
