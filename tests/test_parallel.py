"""helpers.parallel: the runs of several studies trained before their notebooks, in this process, in
worker processes or as Ray tasks, end as the same files as runs trained one after another."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import parallel, store

STUDIES = ["bn_ablation", "stress_test"]
PARAMS = {"seeds": 2, "n_cases": 5}  # n_cases is a notebook parameter, not a setting: plan() leaves it out


def fingerprint(folder: Path) -> dict:
    """What must be identical between two trainings of a run: weights, and the history without wall times."""
    out = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in ("final.pt", "best.pt")}
    out["history"] = pd.read_csv(folder / "history.csv").drop(columns="seconds").to_csv(index=False)
    return out


SEQUENTIAL = """
import json, sys
from helpers import parallel
studies, params, names = json.loads(sys.argv[1])
for job in parallel.plan(studies, "smoke", None, params):
    if not names or job.config.name in names:
        parallel.run_job(job, threads=1)
"""


def sequential(studies: list[str], params: dict, root: Path, names=()) -> dict:
    """The runs of ``plan(studies, "smoke", None, params)`` (those named ``names``, or all) trained
    one after another in a fresh process started as a Ray worker or a spawned worker is, with one
    OpenMP thread: name -> fingerprint. A fresh process, not this one: earlier tests leave oneDNN
    and OpenMP state behind (thread pools, cached primitives) that we do not want in the reference."""
    env = {**os.environ, "HELPERS_DATA": str(root), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", SEQUENTIAL, json.dumps([studies, params, list(names)])],
                   env=env, check=True, cwd=Path(__file__).parents[1])
    return folders(root)


def folders(root: Path) -> dict:
    return {p.name: fingerprint(p) for p in sorted((root / "runs").iterdir()) if p.is_dir()}


def test_plan_lists_every_run_of_every_seed_once():
    jobs = parallel.plan(STUDIES, "smoke", None, PARAMS)
    assert [j.label for j in jobs] == [
        "bn_ablation-baseline seed 42", "bn_ablation-baseline seed 43",
        "bn_ablation-batchnorm seed 42", "bn_ablation-batchnorm seed 43",
        "stress_test-plain seed 2026", "stress_test-plain seed 2027",
        "stress_test-residual seed 2026", "stress_test-residual seed 2027"]
    assert all(dict(j.overrides) == {"seeds": 2} for j in jobs)
    assert len(parallel.plan(STUDIES + STUDIES, "smoke", None, PARAMS)) == len(jobs)  # no run twice


@pytest.mark.slow
def test_worker_processes_end_with_the_files_of_sequential_training(tmp_path, monkeypatch):
    jobs = parallel.plan(["bn_ablation"], "smoke", None, {"seeds": 2})
    expected = sequential(["bn_ablation"], {"seeds": 2}, tmp_path / "sequential")
    monkeypatch.setenv("HELPERS_DATA", str(tmp_path / "workers"))  # read by each freshly spawned worker
    lines = []
    results = parallel.train_local(jobs, workers=2, threads=1, echo=lambda *a, **k: lines.append(a[0]))
    assert sorted(r["label"] for r in results) == sorted(j.label for j in jobs)
    assert folders(tmp_path / "workers") == expected
    assert len(lines) == len(jobs) and all(line.startswith("[train ") for line in lines)


def empty_store(monkeypatch, folder: Path) -> Path:
    """A run store of its own for this process (``train.DATA_DIR``), its workers and its kernels."""
    from helpers import train

    monkeypatch.setattr(train, "DATA_DIR", folder)
    monkeypatch.setenv("HELPERS_DATA", str(folder))
    return folder


@pytest.mark.slow
def test_runner_trains_first_in_workers_then_runs_the_notebook(tmp_path, capsys, monkeypatch):
    from helpers import runner

    empty_store(monkeypatch, tmp_path / "store")
    [result] = runner.run_notebooks(["05"], profile="smoke", output=tmp_path, pdf=False, workers=2)
    out = capsys.readouterr().out
    assert result.ok, result.error
    assert "Training 2 runs first, in 2 worker processes" in out and "[train 2/2]" in out
    assert out.index("[train 2/2]") < out.index("05_bn_ablation: running")
    assert result.train_seconds > 0 and f"+ {result.time_text().split(' + ')[1]}" in out  # the summary table
    index = (tmp_path / "smoke" / "index.html").read_text()
    assert result.time_text() in index  # the card counts the training done before the notebook
    assert parallel.pending(parallel.plan(["bn_ablation"], "smoke", None, {})) == []  # a re-run starts no worker


def test_the_longest_runs_start_first_and_cached_runs_are_left_out(tmp_path, monkeypatch):
    """Measured on the 2-core machine at quick: each stress_test run trained for 161-175 s in a worker,
    each worksheet run for 39-43 s; a worker that picks a stress_test run last idles the other."""
    empty_store(monkeypatch, tmp_path / "store")
    jobs = parallel.plan(["worksheet_analysis", "stress_test"], "quick", "synthetic", {})
    order = [j.config.name for j in parallel.pending(jobs)]
    assert order[:2] == ["stress_test-residual", "stress_test-plain"] or \
        order[:2] == ["stress_test-plain", "stress_test-residual"]
    assert sorted(order) == sorted(j.config.name for j in jobs)
    smoke = parallel.plan(["bn_ablation"], "smoke", None, {})
    parallel.run_job(smoke[0], threads=1)
    assert parallel.pending(smoke) == smoke[1:]


@pytest.mark.parametrize("profile, device, cuda, cores, expected", [
    ("quick", "auto", 0, 2, 2),   # no GPU: one worker per core
    ("full", "auto", 0, 16, 16),
    ("smoke", "auto", 0, 16, 1),  # smoke runs are shorter than a worker's start
    ("full", "auto", 1, 16, 1),   # one GPU: train in the notebook, as before
    ("full", "auto", 4, 16, 4),   # one per GPU
    ("quick", "cpu", 4, 8, 8),    # told to use the CPU
])
def test_auto_workers(monkeypatch, profile, device, cuda, cores, expected):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert parallel.auto_workers(profile, {"device": device}) == expected


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs (Ray is the optional 'cluster' extra, which make installs)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: it is the optional 'cluster' extra "
                                            "(pip install -e '.[cluster]'; make test installs it)")
    parallel.connect(None, num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_tasks_end_with_the_files_of_sequential_training(tmp_path, cluster, monkeypatch):
    jobs = parallel.plan(STUDIES, "smoke", None, {"seeds": 2})
    expected = sequential(STUDIES, {"seeds": 2}, tmp_path / "sequential")
    # Tasks train into their own store and ship each finished run back into this process's store: an
    # empty one here (the session's store already holds these runs, trained by the notebook tests with
    # another thread count, and a run already in the cache is kept, not replaced).
    monkeypatch.setattr(parallel, "DATA_DIR", tmp_path / "driver")
    shipped = parallel.train_ray(jobs, threads=1, worker_data=str(tmp_path / "nodes"), echo=lambda *a, **k: None)
    assert all(not r["cached"] for r in shipped)
    assert folders(tmp_path / "nodes") == expected
    assert folders(tmp_path / "driver") == expected


def ray_task_processes():
    import psutil

    return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and
            p.info["cmdline"][0].startswith("ray::_ray_task")]


@pytest.mark.slow
def test_a_killed_ray_worker_is_retried_and_resumes_to_the_same_files(tmp_path, cluster):
    """One longer run, its worker killed with SIGKILL after its first epoch: Ray retries the task,
    the retry resumes from the checkpoint in the shared store, and the run ends as if never killed."""
    longer = {"epochs": 6, "n_train": 4000}
    [job] = [j for j in parallel.plan(["bn_ablation"], "smoke", None, longer) if j.config.name.endswith("batchnorm")]
    expected = sequential(["bn_ablation"], longer, tmp_path / "sequential", names=[job.config.name])
    shared = tmp_path / "shared"
    done = {}
    thread = threading.Thread(target=lambda: done.update(r=parallel.train_ray(
        [job], threads=1, worker_data=str(shared), echo=lambda *a, **k: None)))
    thread.start()
    deadline = time.monotonic() + 240
    while not list(shared.glob("runs/*/checkpoint.pt")):
        assert time.monotonic() < deadline and thread.is_alive(), "the task never reached its first checkpoint"
        time.sleep(0.05)
    [victim] = ray_task_processes()
    os.kill(victim.pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive() and done["r"][0]["label"] == job.label
    assert not done["r"][0]["cached"]  # the retry trained (resumed); it did not find a finished run
    [folder] = [p for p in (shared / "runs").iterdir() if p.is_dir()]
    assert store.verify_run(folder) is not None
    assert {folder.name: fingerprint(folder)} == expected


def test_training_progress_says_each_epoch_and_the_time_left():
    """Silent minutes no more: a line per trained epoch, with the time left from the seconds per unit
    of work measured so far, shared by the workers."""
    import io

    from helpers.progress import TrainingProgress

    out = io.StringIO()
    progress = TrainingProgress({"a seed 1": (2.0, 4), "b seed 1": (1.0, 2)}, workers=2, stream=out, tty=False)
    assert progress.left() is None
    progress.epoch("a seed 1", "a", 1, 4, 10.0)  # 10 s for 2 units: 5 s a unit; 8 units left over 2 workers
    assert progress.left() == pytest.approx(20.0)
    progress.epoch("a seed 1", "a-phase1", 1, 2, 10.0)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[train] a seed 1: epoch 1/4 in 10.0 s; about 20.0 s left in all"
    assert lines[1].startswith("[train] a seed 1: a-phase1 epoch 1/2 in 10.0 s")


@pytest.mark.slow
def test_workers_report_their_epochs_to_the_driver(tmp_path, monkeypatch):
    jobs = parallel.plan(["bn_ablation"], "smoke", None, {})
    monkeypatch.setenv("HELPERS_DATA", str(tmp_path / "workers"))
    heard = []
    parallel.train_local(jobs, workers=2, threads=1, echo=lambda *a, **k: None,
                         on_epoch=lambda *message: heard.append(message))
    assert sorted((label, epoch) for label, _, epoch, _, _ in heard) == sorted(
        (j.label, e) for j in jobs for e in (1, 2))
    assert all(seconds > 0 for *_, seconds in heard)
