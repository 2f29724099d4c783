"""Train the runs of several studies before their notebooks execute: in this process, side by side in
worker processes, or as tasks on a Ray cluster. The notebooks then load every run from the run cache.

    python -m helpers.runner                               # --workers auto: one worker per core without a GPU
    python -m helpers.runner --train-first --workers 1     # one after another, in this process
    python -m helpers.runner --workers 2                   # 2 worker processes, each with its share of the cores
    python -m helpers.runner --ray auto                    # each run a Ray task (pip install -e .[cluster])

A :class:`Job` names one run by what any process needs to rebuild it: the study's settings (study,
profile, dataset, the ``-p`` overrides ``settings`` accepts) and the config; ``plan`` lists exactly the
runs the notebooks train (``Settings.runs()``). Scheduling, retries and placement are the process pool's
and Ray's: this module only says what to run and where its files go.

Where the files go with Ray: a task trains into its node's run store. When ``HELPERS_DATA`` is set on
the driver it is passed to every task, so on a cluster whose nodes share that folder (NFS, a shared
disk) the runs land there directly, and a task whose worker dies is retried by Ray and resumes from the
run's last checkpoint. Without it, each task returns its finished run folder and the driver writes it
into the local run cache (checked against its manifest).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch

from . import DATA_DIR, store, train
from .config import TrainConfig
from .kernel import ROOT
from .models import build_model, flops
from .profiles import setting_names, settings
from .progress import TrainingProgress

RAY_EXCLUDES = ["data/", "reports/", ".venv/", ".git/", "benchmarks/results/", "docs/", "*.ipynb"]


@dataclass(frozen=True)
class Job:
    """One training run and the study settings its data comes from."""

    study: str
    profile: str
    dataset: str | None
    overrides: tuple  # sorted (name, value) pairs given to ``settings``
    config: TrainConfig

    @property
    def label(self) -> str:
        return f"{self.config.name} seed {self.config.seed}"

    def settings(self):
        return settings(self.study, self.profile, dataset=self.dataset, **dict(self.overrides))


def plan(studies: list[str], profile: str, dataset: str | None, params: dict) -> list[Job]:
    """Every run the given studies' notebooks train, once each, in notebook order (runner --train-first)."""
    jobs, seen = [], set()
    for study in studies:
        overrides = tuple(sorted((k, v) for k, v in params.items() if k in setting_names(study)))
        s = settings(study, profile, dataset=dataset, **dict(overrides))
        for configs in s.runs().values():
            for config in configs:
                key = json.dumps(config.key_dict(), sort_keys=True, default=str)  # configs hold dicts: unhashable
                if key not in seen:
                    seen.add(key)
                    jobs.append(Job(study, profile, dataset, overrides, config))
    return jobs


_DATA: dict = {}  # per process: a study's dataset, loaded once for all its runs


def _data(job: Job):
    key = (job.study, job.profile, job.dataset, job.overrides)
    if key not in _DATA:
        _DATA[key] = job.settings().load_data()
    return _DATA[key]


def run_job(job: Job, threads: int | None = None, device: str | None = None, on_epoch=None) -> dict:
    """Train (or load) one run in this process; ``threads``: torch intra-op threads for it;
    ``device``: where to train (e.g. "cuda:1"; not part of the run's identity); ``on_epoch(label,
    phase name, epoch, epochs, seconds)`` after each trained epoch."""
    config = job.config if device is None else job.config.replace(device=device)
    report_epoch = None if on_epoch is None else (
        lambda c, epoch, seconds: on_epoch(job.label, c.name, epoch, c.epochs, seconds))
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    start = time.perf_counter()
    try:
        run = train.fit(config, _data(job), progress=False, on_epoch=report_epoch)
    finally:
        torch.set_num_threads(before)  # the caller's own thread count back (--train-first runs here)
    return {"label": job.label, "study": job.study, "path": str(run.path), "cached": run.cached,
            "seconds": round(time.perf_counter() - start, 1)}


def report(done: int, total: int, result: dict, echo=print) -> None:
    what = "loaded from the run cache" if result["cached"] else f"trained in {result['seconds']:.1f} s"
    echo(f"[train {done}/{total}] {result['label']}: {what}", flush=True)


def auto_workers(profile: str, params: dict) -> int:
    """How many runs the runner trains side by side by default (``--workers auto``).

    Without an accelerator, one per core: the quick models are narrow, and on the 2-core machine two
    1-thread runs side by side trained the 9 quick runs in 430 s where one 2-thread run at a time took
    503 s (README, "Running on more machines"). With CUDA, one per GPU (one GPU: in the notebook, as
    before); on MPS, one. At the smoke profile, one: its runs take a second, less than a worker's start
    (``parallel`` benchmark: 8 smoke runs 6.2 s in one process, 8.6 s in 2 workers).
    """
    if profile == "smoke":
        return 1
    if params.get("device", "auto") != "cpu":
        if torch.cuda.is_available():
            return max(1, torch.cuda.device_count())
        if torch.backends.mps.is_available():
            return 1
    return os.cpu_count() or 1


def pending(jobs: list[Job]) -> list[Job]:
    """The jobs whose run is not in the run cache yet, longest first.

    Cached is what ``fit`` would load (``train.cached``: complete, intact, not outdated). Longest first (images per epoch x epochs x
    forward FLOPs per image) so that no worker is left with one long run at the end: on the 9 quick
    runs, notebook order ended with one worker idle while the other trained.
    """
    todo = [job for job in jobs if not train.cached(job.config, _data(job))]
    return sorted(todo, key=lambda job: -(lambda w, epochs: w * epochs)(*work(job)))


def work(job: Job) -> tuple[float, int]:
    """(an epoch's work: training images x forward FLOPs per image, the run's epochs over all its
    phases): what orders the jobs longest first and tells the time left."""
    data, c = _data(job), job.config
    with torch.random.fork_rng():  # building a model draws from the global generator
        model = build_model(c.model, num_classes=data.num_classes, width=c.width, **c.model_kwargs)
    return len(data.train_labels) * flops(model)[1]["flops"], sum(p.epochs for p in c.phases)


def train_studies(studies: list[str], profile: str, dataset: str | None, params: dict, workers: int = 1,
                  ray: str | None = None, echo=print) -> list[dict]:
    """Train every run of ``studies`` (the runner's --train-first / --workers / --ray): locally, or on
    Ray when ``ray`` names a cluster ("auto", an address, or "local" for a new one on this machine).
    With local workers, runs already in the run cache are left to the notebooks, and no more workers
    start than there are runs to train."""
    jobs = plan(studies, profile, dataset, params)
    if ray is None and workers > 1:
        todo = pending(jobs)
        if len(todo) < len(jobs):
            echo(f"{len(jobs) - len(todo)} of {len(jobs)} runs are in the run cache already", flush=True)
        jobs, workers = todo, min(workers, len(todo))
    estimates = {job.label: work(job) for job in jobs} if ray is None else {}
    if ray is None and workers > 1:
        _DATA.clear()  # the workers load their own copies; the notebooks run in kernels of their own
    if not jobs:
        return []
    where = (f"on the Ray cluster at {ray}" if ray not in (None, "local") else "on a local Ray cluster" if ray
             else f"in {workers} worker processes of {share(workers)} thread(s) each" if workers > 1
             else "in this process")
    echo(f"Training {len(jobs)} runs first, {where}", flush=True)
    start = time.perf_counter()
    if ray is not None:
        results = train_ray(jobs, None if ray == "local" else ray, echo=echo)
    else:
        progress = TrainingProgress(estimates, workers)
        try:
            results = train_local(jobs, workers, echo=echo, on_epoch=progress.epoch)
        finally:
            progress.close()
    echo(f"Trained in {time.perf_counter() - start:.0f} s; the notebooks load the runs from the cache", flush=True)
    return results


# --- local worker processes -----------------------------------------------------------------------

_WORKER: dict = {}


def _start_worker(slots, threads: int, gpus: int, epochs=None) -> None:
    """Worker initialiser: its share of the cores, with several GPUs one GPU of its own, and the queue
    its runs' epochs go to (``epochs``; the driver prints them)."""
    slot = slots.get()
    _WORKER.update(threads=threads, device=f"cuda:{slot % gpus}" if gpus > 1 else None, epochs=epochs)


def _work(job: Job) -> dict:
    queue = _WORKER["epochs"]
    return run_job(job, _WORKER["threads"], _WORKER["device"], None if queue is None else lambda *e: queue.put(e))


def _relay(queue, on_epoch) -> None:
    """The driver's side of the epoch queue: each worker epoch to ``on_epoch`` until a None."""
    for message in iter(queue.get, None):
        on_epoch(*message)


def share(workers: int) -> int:
    """Torch threads per worker when ``workers`` share this machine's cores (at least 1)."""
    return max(1, (os.cpu_count() or 1) // workers)


def train_local(jobs: list[Job], workers: int = 1, threads: int | None = None, echo=print,
                on_epoch=None) -> list[dict]:
    """Train ``jobs`` one after another (``workers=1``, in this process) or in ``workers`` processes,
    each with ``threads`` torch threads (default: the machine's cores shared out, at least 1) and, on
    a machine with several GPUs, a GPU of its own. ``on_epoch`` (as :func:`run_job`'s) hears of every
    trained epoch, the workers' too (through a queue this process reads)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    threads = threads or share(workers)
    results = []
    if workers == 1:
        for job in jobs:
            results.append(run_job(job, threads, on_epoch=on_epoch))
            report(len(results), len(jobs), results[-1], echo)
        return results
    ctx = get_context("spawn")  # a fresh interpreter per worker: no forked torch thread pools
    slots = ctx.Queue()
    for i in range(workers):
        slots.put(i)
    epochs = ctx.Queue() if on_epoch is not None else None
    relay = threading.Thread(target=_relay, args=(epochs, on_epoch), daemon=True) if epochs is not None else None
    if relay is not None:
        relay.start()
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker,
                                 initargs=(slots, threads, torch.cuda.device_count(), epochs)) as pool:
            for future in as_completed([pool.submit(_work, job) for job in jobs]):
                results.append(future.result())
                report(len(results), len(jobs), results[-1], echo)
    finally:
        if relay is not None:
            epochs.put(None)
            relay.join(timeout=10)
    return results


# --- Ray ------------------------------------------------------------------------------------------

def _ray_task(job: Job, threads: int, ship: bool) -> dict:
    """A Ray task: train one run on the node, and return its files when the store is not shared."""
    result = run_job(job, threads)
    if ship:
        folder = Path(result["path"])
        result["files"] = {f.name: f.read_bytes() for f in folder.iterdir() if f.is_file()}
    return result


def receive(result: dict, root: Path) -> None:
    """Put a run shipped back by a Ray task into the local run cache (unless it is there already):
    files into a temporary folder, checked against the run's manifest, then renamed into place.
    A folder or file name that is not a plain name (``../x``, ``/etc/x``) is refused before anything is written."""
    files, name = result.pop("files"), Path(str(result.get("path", ""))).name
    if not isinstance(files, dict):
        files = {repr(files)[:40]: None}
    bad = [n for n, body in files.items() if not store.plain_name(n) or not isinstance(body, bytes)]
    if bad or not store.plain_name(name):
        what = f"file names {bad[:3]!r}" if bad else f"a run folder named {name!r}"
        raise store.UnsafePath(f"the Ray task of {result.get('label')} returned {what}: refused (only plain file "
                               "names inside the run folder); nothing was written. Train the run on a node you trust")
    folder = root / "runs" / name
    store.check_run_folder(folder)
    if folder.is_dir() and store.verify_run(folder) is not None:
        return
    tmp = folder.with_name(f".{name}.{os.getpid()}.incoming")
    if tmp.is_symlink():
        tmp.unlink()  # never written through
    elif tmp.exists():
        shutil.rmtree(tmp)  # left by a receive of this process id that died
    tmp.mkdir(parents=True)
    for file_name, body in files.items():
        store.write_atomic(tmp / file_name, lambda f, body=body: f.write(body))
    store.verify_run(tmp)  # a damaged transfer raises DamagedRun here, before anything is replaced
    tmp.rename(folder)


def connect(address: str | None = "auto", **init_kwargs) -> None:
    """Join (``address``: "auto" or a cluster address) or start (None) a Ray cluster, with this project
    as the job's working directory, uploaded to every node (data, reports and the venv left out)."""
    try:
        import ray  # an optional extra (pip install -e '.[cluster]')
    except ImportError:
        raise ImportError("--ray needs Ray: pip install -e '.[cluster]'") from None
    ray.init(address=address, runtime_env={"working_dir": str(ROOT), "excludes": RAY_EXCLUDES},
             log_to_driver=False, **init_kwargs)


def train_ray(jobs: list[Job], address: str | None = "auto", threads: int = 1, worker_data: str | None = None,
              echo=print) -> list[dict]:
    """Send each job to a Ray cluster as a task (``address`` as in :func:`connect`, used when Ray is
    not yet initialised). A task asks for a GPU when its profile is ``full`` (the reports' protocols
    want one) and ``threads`` CPUs otherwise; Ray retries a task whose worker dies (at most 3 times).

    ``worker_data``: the run store the tasks use (default: ``HELPERS_DATA`` when set, which a cluster
    with a shared disk sees on every node; else each node's own ``data/`` in Ray's copy of the
    project). Unless it is this process's own store, each task ships its run back (:func:`receive`)."""
    import ray  # an optional extra, installed with the cluster dependencies

    if not ray.is_initialized():
        connect(address)
    worker_data = worker_data or os.environ.get("HELPERS_DATA")
    ship = worker_data is None or Path(worker_data).resolve() != Path(DATA_DIR).resolve()
    env = {"env_vars": {"HELPERS_DATA": str(worker_data)}} if worker_data else {}
    task = ray.remote(max_retries=3)(_ray_task)
    refs = [task.options(num_cpus=threads, num_gpus=1 if job.profile == "full" else 0, runtime_env=env)
            .remote(job, threads, ship) for job in jobs]
    results = []
    while refs:
        ready, refs = ray.wait(refs, num_returns=1)
        result = ray.get(ready[0])
        if "files" in result:
            receive(result, Path(DATA_DIR))
        results.append(result)
        report(len(results), len(jobs), result, echo)
    return results
