"""Reliability of the run cache and the inputs: kills, damaged files, two processes, bad input,
full or read-only disks, determinism across processes.

Kills and concurrent runs use real subprocesses. Each child imports this file and runs ``child()``,
so parent and child share one config and one dataset; hooks installed in the child stop it at an
exact point (mid-epoch, half-way through writing a file) so that the SIGKILL lands there every time.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import data as D
from helpers import runner
from helpers import store as S
from helpers import train as T
from helpers.data import load_dataset, make_synthetic
from helpers.loader import BatchLoader
from helpers.profiles import settings
from helpers.train import TrainConfig, fit

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# Dropout and BatchNorm, crop and flip, a step schedule: RNG state, buffers and the scheduler all
# have to survive a resume for the result to match. 160 train images = 5 batches an epoch.
CONFIG = TrainConfig(name="rel", model="simple_cnn", model_kwargs={"batch_norm": True}, width=0.125, epochs=3,
                     batch_size=32, lr=0.05, schedule="step", step_size=2, augment=dict(crop_padding=2, flip_h=0.5),
                     val_fraction=0.2, device="cpu")


def make_data():
    return make_synthetic(n_train=200, n_test=100, seed=1)


def predictions(model, data) -> torch.Tensor:
    """The model's outputs on the test split, in order (predictions, bit for bit)."""
    mean, std = T.norm_stats(CONFIG, data)
    loader = BatchLoader(data.test_images, data.test_labels, 50, mean=mean, std=std, shuffle=False)
    with torch.no_grad():
        return torch.cat([model(x) for x, _ in loader])


def same_history(a: pd.DataFrame, b: pd.DataFrame):
    cols = [c for c in a.columns if c != "seconds"]  # wall-clock time is the one column allowed to differ
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)


def same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def run_files(path: Path) -> dict:
    return {name: torch.load(path / name) for name in ("final.pt", "best.pt")}


def assert_same_run(path: Path, whole):
    """The run in ``path`` is complete and equals the uninterrupted run: history, final and best weights."""
    assert S.verify_run(path) is not None
    same_history(whole.history, pd.read_csv(path / "history.csv"))
    for name, weights in run_files(path).items():
        same_weights(run_files(whole.path)[name], weights)
    assert not list(path.glob("*.tmp")), "a temporary file was left behind"  # pathlib globs match dot files
    assert not (path / "checkpoint.pt").exists()


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def whole(tmp_path_factory, data):
    """The uninterrupted reference run, trained once in this process."""
    return fit(CONFIG, data, root=tmp_path_factory.mktemp("whole"), progress=False)


def cached_copy(whole, root: Path) -> Path:
    """A finished run in the cache under ``root``, copied rather than trained again."""
    path = root / "runs" / whole.path.name  # the folder name does not depend on the root
    shutil.copytree(whole.path, path)
    return path


# --- the child process ------------------------------------------------------------------------

def child(arg: str) -> None:
    """Entry point of the subprocesses: fit CONFIG under a root, with optional hooks; write a result."""
    a = json.loads(arg)
    torch.set_num_threads(1)  # as the parent (conftest): thread count may change float sums
    if "stall_epoch" in a:
        stall_in_training_epoch(a["stall_epoch"], Path(a["marker"]))
    if "stall_write" in a:
        stall_in_write(a["stall_write"], a["nth"], Path(a["marker"]))
    if "hold" in a:
        hold_first_epoch(Path(a["marker"]), Path(a["hold"]))
    data = make_data()
    run = fit(CONFIG, data, root=a["root"], progress=False)
    torch.save(predictions(run.model, data), a["out"] + ".logits.pt")
    Path(a["out"]).write_text(json.dumps({"path": str(run.path), "cached": run.cached,
                                          "final_sha256": S.sha256(run.path / "final.pt")}))


def stop_here(marker: Path) -> None:
    """Tell the parent where we are, then wait to be killed."""
    marker.touch()
    time.sleep(600)
    os._exit(3)  # the parent never killed us: fail loudly rather than finish the run


def train_iterations(hook):
    """Call hook(epoch_number, batch_iterator) -> iterator on every training-epoch iteration."""
    real_iter, count = BatchLoader.__iter__, [0]

    def patched(self):
        batches = real_iter(self)
        if not self.shuffle:  # validation
            return batches
        count[0] += 1
        return hook(count[0], batches)

    BatchLoader.__iter__ = patched


def stall_in_training_epoch(epoch: int, marker: Path) -> None:
    """Die after two optimiser steps of training epoch ``epoch`` (1-based)."""
    def hook(n, batches):
        for i, batch in enumerate(batches):
            if n == epoch and i == 2:
                stop_here(marker)
            yield batch
    train_iterations(hook)


def stall_in_write(name: str, nth: int, marker: Path) -> None:
    """Die half-way through the ``nth`` write of file ``name``, after half its bytes reached the disk."""
    real, count = S.write_atomic, [0]

    def patched(path, write):
        if Path(path).name != name:
            return real(path, write)
        count[0] += 1
        if count[0] < nth:
            return real(path, write)

        def half(f):
            import io
            buf = io.BytesIO()
            write(buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            os.fsync(f.fileno())
            stop_here(marker)
        return real(path, half)

    S.write_atomic = patched


def hold_first_epoch(marker: Path, go: Path) -> None:
    """Hold the lock: wait inside the first training epoch until the parent creates ``go``."""
    def hook(n, batches):
        if n == 1:
            marker.touch()
            deadline = time.monotonic() + 120
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        yield from batches
    train_iterations(hook)


def start_child(tmp_path: Path, tag: str, **args) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"{tag}.json"
    args = {"out": str(out), **{k: str(v) if isinstance(v, Path) else v for k, v in args.items()}}
    code = f"import sys; sys.path[:0] = [{str(TESTS)!r}, {str(ROOT)!r}]; import test_reliability; test_reliability.child(sys.argv[1])"
    log = open(tmp_path / f"{tag}.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(args)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "TQDM_DISABLE": "1"})
    log.close()
    return proc, out


def log_of(tmp_path: Path, tag: str) -> str:
    return (tmp_path / f"{tag}.log").read_text()


def wait_for(condition, proc: subprocess.Popen, what: str, tmp_path: Path, tag: str, timeout=120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"child exited ({proc.returncode}) before {what}:\n{log_of(tmp_path, tag)}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}:\n{log_of(tmp_path, tag)}")
        time.sleep(0.05)


def finish(proc: subprocess.Popen, out: Path, tmp_path: Path, tag: str) -> dict:
    try:
        proc.wait(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, log_of(tmp_path, tag)
    return json.loads(out.read_text())


# --- 1. SIGKILL at any moment, then resume ----------------------------------------------------

@pytest.mark.parametrize("where, resumes_after", [
    (dict(stall_epoch=2), 1),                              # mid-epoch: two SGD steps into epoch 2
    (dict(stall_write="checkpoint.pt", nth=2), 1),         # half of epoch 2's checkpoint on disk
    (dict(stall_write="final.pt", nth=1), 3),              # every epoch done, half of final.pt on disk
    (dict(stall_write="run.json", nth=1), 3),              # run files whole, half of the manifest on disk
], ids=["mid-epoch", "mid-checkpoint-write", "mid-final-write", "mid-manifest-write"])
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, data, whole, capsys, where, resumes_after):
    marker = tmp_path / "stalled"
    proc, _ = start_child(tmp_path, "killed", root=tmp_path, marker=marker, **where)
    try:
        wait_for(marker.exists, proc, "the stall point", tmp_path, "killed")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    path = T.run_path(CONFIG, data, tmp_path)
    assert S.verify_run(path) is None  # no manifest: not taken for a finished run
    if "stall_write" in where:  # the kill really left half a file behind, under a temporary name
        assert [p.name for p in path.glob(f".{where['stall_write']}.*.tmp")]

    capsys.readouterr()
    resumed = fit(CONFIG, data, root=tmp_path, progress=False)
    assert f"Resuming {path.name} after epoch {resumes_after}/3" in capsys.readouterr().out
    assert not resumed.cached
    assert_same_run(path, whole)
    same_history(whole.history, resumed.history)


# --- 2. damaged files are named, moved aside and rebuilt -------------------------------------

def truncate(f: Path):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def flip_byte(f: Path):
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size: only a checksum can tell
    f.write_bytes(bytes(raw))


def manifest(change):
    def damage(f: Path):
        info = json.loads(f.read_text())
        f.write_text(json.dumps(change(info)))
    return damage


def one_warning(record, name: str) -> str:
    messages = [str(w.message) for w in record if issubclass(w.category, UserWarning)]
    assert len(messages) == 1, messages
    assert name in messages[0] and "\n" not in messages[0], messages[0]
    return messages[0]


@pytest.mark.parametrize("name, damage", [
    ("final.pt", truncate),
    ("final.pt", flip_byte),
    ("best.pt", flip_byte),
    ("history.csv", flip_byte),
    ("run.json", truncate),
    ("run.json", manifest(lambda info: [info])),                          # valid JSON, not a manifest
    ("run.json", manifest(lambda info: {**info, "files": {}})),           # lists no files
    ("run.json", manifest(lambda info: {**info, "files": {"final.pt": {"size": 1}}})),  # no checksum
], ids=["final-truncated", "final-flipped", "best-flipped", "history-flipped", "manifest-truncated",
        "manifest-not-a-dict", "manifest-without-files", "manifest-entry-incomplete"])
def test_damaged_run_file_is_named_moved_aside_and_retrained(tmp_path, data, whole, name, damage):
    path = cached_copy(whole, tmp_path)
    damage(path / name)
    with pytest.warns(UserWarning) as record:
        again = fit(CONFIG, data, root=tmp_path, progress=False)
    one_warning(record, name)
    assert not again.cached
    assert_same_run(path, whole)
    (aside,) = path.parent.glob(f"{path.name}.broken-*")
    assert (aside / name).exists()  # kept for inspection, damage and all


def test_run_that_no_longer_fits_the_model_is_moved_aside(tmp_path, data, whole, monkeypatch):
    """A cached run whose weights do not load (the model's code changed since) is retrained, not a
    page of load_state_dict errors."""
    path = cached_copy(whole, tmp_path)
    weights = torch.load(path / "final.pt")
    weights.pop(next(iter(weights)))  # as if the model had gained a layer since
    S.save_torch(weights, path / "final.pt")
    info = json.loads((path / "run.json").read_text())
    info["files"]["final.pt"] = {"size": (path / "final.pt").stat().st_size, "sha256": S.sha256(path / "final.pt")}
    (path / "run.json").write_text(json.dumps(info))  # checksums fine: the file is whole, just stale
    with pytest.warns(UserWarning) as record:
        again = fit(CONFIG, data, root=tmp_path, progress=False)
    one_warning(record, "final.pt")
    assert not again.cached
    assert_same_run(path, whole)


def interrupted_run(root: Path, data, interrupt_epoch) -> Path:
    """A run stopped during epoch 2: checkpoint.pt holds epoch 1."""
    interrupt_epoch(2)
    with pytest.raises(interrupt_epoch.Interrupt):
        fit(CONFIG, data, root=root, progress=False)
    interrupt_epoch.restore()
    path = T.run_path(CONFIG, data, root)
    assert (path / "checkpoint.pt").exists()
    return path


@pytest.mark.parametrize("damage", [truncate, flip_byte], ids=["truncated", "flipped"])
def test_damaged_checkpoint_is_named_moved_aside_and_training_restarts(tmp_path, data, whole, interrupt_epoch,
                                                                       capsys, damage):
    path = interrupted_run(tmp_path, data, interrupt_epoch)
    damage(path / "checkpoint.pt")
    capsys.readouterr()
    with pytest.warns(UserWarning) as record:
        again = fit(CONFIG, data, root=tmp_path, progress=False)
    one_warning(record, "checkpoint.pt")
    assert "Resuming" not in capsys.readouterr().out  # started over: nothing of the damaged file was used
    assert not again.cached
    assert_same_run(path, whole)
    assert len(list(path.glob("checkpoint.pt.broken-*"))) == 1


def write_tree(root: Path) -> None:
    """A tiny image-folder dataset: two classes, three train and two test PNGs each."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")


@pytest.mark.parametrize("damage", [truncate, flip_byte], ids=["truncated", "flipped"])
def test_damaged_data_cache_is_named_moved_aside_and_rebuilt(tmp_path, damage):
    write_tree(tmp_path / "tree")
    source, root = f"folder:{tmp_path / 'tree'}", tmp_path / "data"
    first = load_dataset(source, root=root)
    (cache,) = (root / "cache").iterdir()
    damage(cache)
    with pytest.warns(UserWarning) as record:
        again = load_dataset(source, root=root)
    one_warning(record, cache.name)
    assert again.fingerprint() == first.fingerprint()  # the damaged pixels were not used
    assert len(list(cache.parent.glob(f"{cache.name}.broken-*"))) == 1
    assert D.folder.read_cache(cache) is not None  # rebuilt whole


# --- 3. two processes, one run -----------------------------------------------------------------

def test_two_processes_training_the_same_run_share_one_result(tmp_path, data, whole):
    go = tmp_path / "go"
    first, first_out = start_child(tmp_path, "first", root=tmp_path, marker=tmp_path / "training", hold=go)
    second = None
    try:
        wait_for((tmp_path / "training").exists, first, "the first process to start training", tmp_path, "first")
        second, second_out = start_child(tmp_path, "second", root=tmp_path)
        wait_for(lambda: "waiting for it to finish" in log_of(tmp_path, "second"), second,
                 "the second process to wait on the lock", tmp_path, "second")
        go.touch()  # the first one may finish now; the second one was waiting all along
        a = finish(first, first_out, tmp_path, "first")
        b = finish(second, second_out, tmp_path, "second")
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
                proc.wait()
    assert not a["cached"] and b["cached"]  # one trained, the other loaded its result
    assert a["path"] == b["path"] and a["final_sha256"] == b["final_sha256"]
    assert [p for p in (tmp_path / "runs").iterdir() if p.is_dir()] == [Path(a["path"])]
    assert_same_run(Path(a["path"]), whole)


# --- 4. bad input: a clear error before any work ----------------------------------------------

@pytest.mark.parametrize("changes, message", [
    (dict(lr="0.1"), "lr must be a number > 0, not '0.1'"),
    (dict(width="x"), "width must be a number > 0"),
    (dict(width=0), "width must be a number > 0"),
    (dict(val_fraction="0.1"), r"val_fraction must be in \[0, 1\)"),
    (dict(val_fraction=-0.1), r"val_fraction must be in \[0, 1\)"),
    (dict(label_smoothing=None), r"label_smoothing must be in \[0, 1\)"),
    (dict(momentum=-0.9), "momentum must be a number >= 0"),
    (dict(weight_decay=-1e-4), "weight_decay must be a number >= 0"),
    (dict(gamma=0), "gamma must be a number > 0"),
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(epochs=True), "epochs must be a positive integer"),
    (dict(step_size=0), "step_size must be a positive integer"),
    (dict(milestones=(5, 2)), "milestones must be increasing positive integers"),
    (dict(milestones="5"), "milestones must be increasing positive integers"),
    (dict(seed="a"), "seed must be an integer"),
    (dict(split_seed=None), "split_seed must be an integer"),
    (dict(nesterov="yes"), "nesterov must be True or False"),
    (dict(deterministic="no"), "deterministic must be True or False"),
    (dict(name="a/b"), "name must be"),
    (dict(name=""), "name must be"),
    (dict(augment={"flip_h": 2}), "augment: flip_h is a probability"),
    (dict(augment="crop"), "augment must be a dict"),
    (dict(model_kwargs={"batchnorm": True}), r"unknown simple_cnn option\(s\) \['batchnorm'\]; valid: \['batch_norm'\]"),
    (dict(model_kwargs={"width": 2}), "model_kwargs: set width with the width setting"),
    (dict(normalize=((0.5,), (0.5,))), r"normalize must be 'dataset', 'cifar10' or \(mean, std\)"),
    (dict(normalize=((0.5,) * 3, (0.0,) * 3)), "normalize std must be > 0"),
    (dict(device="gpu"), "unknown device 'gpu'; valid: auto, cpu, cuda"),
])
def test_bad_training_settings_are_rejected_when_the_config_is_made(changes, message):
    with pytest.raises(ValueError, match=f"TrainConfig: {message}"):
        CONFIG.replace(**changes)


def test_bad_settings_are_rejected_through_the_profiles_too():
    with pytest.raises(ValueError, match="lr must be a number > 0, not 'fast'"):
        settings("bn_ablation", "smoke", lr="fast")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        settings("bn_ablation", "smoke", device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so device='cuda' is valid here")
def test_cuda_requested_without_a_gpu_says_so_before_training(data, tmp_path):
    with pytest.raises(ValueError, match="device 'cuda' .* not available here"):
        fit(CONFIG.replace(device="cuda"), data, root=tmp_path, progress=False)
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.parametrize("sizes, val_fraction, message", [
    (dict(n_train=0, n_test=50), 0.0, "no training images"),
    (dict(n_train=0, n_test=50), 0.2, "no training images"),
    (dict(n_train=100, n_test=0), 0.0, "no test images to validate on"),
])
def test_empty_data_is_rejected_before_training(tmp_path, sizes, val_fraction, message):
    with pytest.raises(ValueError, match=message):
        fit(CONFIG.replace(val_fraction=val_fraction), make_synthetic(**sizes), root=tmp_path, progress=False)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cifar11"], "--dataset: unknown dataset 'cifar11'; valid: auto, synthetic, cifar10, cifar100, folder:PATH"),
    (["--dataset", "folder:/no/such/folder"], "--dataset: dataset folder:/no/such/folder: no such file or folder"),
    (["--timeout", "0"], "--timeout must be a positive number of seconds, not 0"),
    (["--workers", "0"], "argument --workers: must be a positive integer or auto, not '0'"),
    (["--workers", "many"], "argument --workers: must be a positive integer or auto, not 'many'"),
    (["-p", "epochs", "-1"], "05_bn_ablation: TrainConfig: epochs must be a positive integer, not -1"),
    (["-p", "device", "gpu"], "05_bn_ablation: TrainConfig: unknown device 'gpu'; valid: auto, cpu, cuda, cuda:N, mps"),
    (["-p", "epochs", "many"], "05_bn_ablation: TrainConfig: epochs must be a positive integer, not 'many'"),
    (["-p", "seeds", "two"], "05_bn_ablation: seeds must be an integer k from 1 to 20"),
    (["-p", "seeds", "100000000"], "05_bn_ablation: seeds must be an integer k from 1 to 20"),  # not minutes of runs
    (["-p", "device", "cuda:99"], "05_bn_ablation: TrainConfig: device 'cuda:99' is not"),  # not a kernel's error
])
def test_runner_rejects_bad_values_before_running(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setattr(runner, "run_one", lambda *a, **k: pytest.fail("a notebook was started"))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        runner.main(["05", "--no-pdf", "--output", str(out), *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not out.exists()


def test_runner_rejects_a_folder_dataset_smaller_than_the_profile_before_any_kernel(tmp_path, capsys, monkeypatch):
    """A 6-image folder: the quick profile keeps 20,000 training images; one line names the fix."""
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / "six" / split / cls).mkdir(parents=True)
            for i in range(2 if split == "train" else 1):  # 4 training images, 2 test images
                Image.new("RGB", (32, 32), (40 * i, 0, 0)).save(tmp_path / "six" / split / cls / f"{i}.png")
    monkeypatch.setattr(runner, "run_one", lambda *a, **k: pytest.fail("a notebook was started"))
    with pytest.raises(SystemExit) as exit_:
        runner.main(["05", "--no-pdf", "--output", str(tmp_path / "out"), "--dataset", f"folder:{tmp_path / 'six'}"])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the quick profile keeps n_train=20,000 images, but folder:" in last and "at least 10 images" in last
    with pytest.raises(SystemExit):  # the full profile keeps all 6: too few to hold validation images out
        runner.main(["05", "--no-pdf", "--output", str(tmp_path / "out"), "--dataset", f"folder:{tmp_path / 'six'}",
                     "--profile", "full"])
    assert "cannot be split 90% / 10%" in capsys.readouterr().err.strip().splitlines()[-1]


def test_runner_announces_a_fallback_to_the_synthetic_stand_in(tmp_path, capsys, monkeypatch):
    """quick runs on "auto" data: without CIFAR in the data folder and offline, the runner says so in
    one line before the notebook starts (the notebook's title block says it too)."""
    monkeypatch.setenv("HELPERS_OFFLINE", "1")
    monkeypatch.setattr(runner, "run_one", lambda *a, **k: runner.Result("05_bn_ablation", "ok"))
    runner.run_notebooks(["05"], profile="quick", output=tmp_path / "out", pdf=False)
    line = [x for x in capsys.readouterr().out.splitlines() if "stand-in" in x]
    assert len(line) == 1 and line[0].startswith("[1/1] 05_bn_ablation: Using the synthetic stand-in: CIFAR-10 is not in")


def test_runner_rejects_an_output_folder_it_cannot_write(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "run_one", lambda *a, **k: pytest.fail("a notebook was started"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_:
        runner.main(["05", "--no-pdf", "--output", str(blocker / "reports")])
    assert exit_.value.code == 2
    assert f"cannot write reports to {blocker / 'reports'}" in capsys.readouterr().err


# --- 5. full disk, read-only folders ----------------------------------------------------------

class FillsUp:
    """A file on a disk with ``room`` bytes left: what goes beyond fails as the OS would fail it."""

    def __init__(self, f, code: int, room: int = 100):
        self.f, self.code, self.room = f, code, room

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        self.f.write(data[: self.room])
        if len(data) > self.room:
            self.room = 0
            raise OSError(self.code, os.strerror(self.code))
        self.room -= len(data)
        return len(data)

    def __getattr__(self, name):  # flush, close, fileno...
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["disk-full", "read-only"])
@pytest.mark.parametrize("fails_on, resumes_after", [("checkpoint.pt", None), ("final.pt", 3), ("run.json", 3)])
def test_write_failure_is_clear_and_leaves_the_cache_intact(tmp_path, data, whole, monkeypatch, capsys,
                                                            code, fails_on, resumes_after):
    cached = cached_copy(whole, tmp_path)
    before = {p.name: S.sha256(p) for p in cached.iterdir()}
    other = CONFIG.replace(seed=7)
    real = S.write_atomic

    def disk_fills_up(path, write):
        if Path(path).name != fails_on:
            return real(path, write)
        return real(path, lambda f: write(FillsUp(f, code)))

    with monkeypatch.context() as m:
        m.setattr(S, "write_atomic", disk_fills_up)
        with pytest.raises(OSError) as err:
            fit(other, data, root=tmp_path, progress=False)
    path = T.run_path(other, data, tmp_path)
    message = str(err.value)
    assert err.value.errno == code
    assert str(path) in message and os.strerror(code) in message and "\n" not in message
    assert "Free some space, or set HELPERS_DATA to a writable folder" in message
    # nothing cached was touched, nothing half-written was left, nothing claims to be finished
    assert S.verify_run(cached) is not None and {p.name: S.sha256(p) for p in cached.iterdir()} == before
    assert S.verify_run(path) is None and not list(path.glob("*.tmp"))

    capsys.readouterr()
    finished = fit(other, data, root=tmp_path, progress=False)  # space freed: the run completes
    out = capsys.readouterr().out
    assert (f"after epoch {resumes_after}/3" in out) if resumes_after else ("Resuming" not in out)
    assert not finished.cached and S.verify_run(path) is not None


def test_finished_run_loads_from_a_read_only_cache(tmp_path, data, whole, monkeypatch):
    """A read-only data folder (a shared, pre-trained cache) still serves its finished runs; training
    a new run there is a clear error. Simulated at open(): tests may run as root, which chmod does not stop."""
    cached = cached_copy(whole, tmp_path)

    def read_only_open(file, mode="r", *args, **kwargs):
        if set(mode) & set("wax+"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return open(file, mode, *args, **kwargs)

    class ReadOnlyLock:  # filelock opens its lock file for writing, which a read-only folder refuses
        def __init__(self, path):
            self.path = path

        def acquire(self, timeout=None):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self.path))

    monkeypatch.setattr(S, "open", read_only_open, raising=False)  # the store's own file writes
    monkeypatch.setattr(S, "FileLock", ReadOnlyLock)
    run = fit(CONFIG, data, root=tmp_path, progress=False)
    assert run.cached
    same_weights(run.model.state_dict(), whole.model.state_dict())
    with pytest.raises(OSError, match=r"cannot write to .*runs/rel-\w+: Read-only file system"):
        fit(CONFIG.replace(seed=7), data, root=tmp_path, progress=False)
    assert S.verify_run(cached) is not None


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root: chmod does not stop root from writing (the simulated "
                           "tests above cover the same code)")
def test_read_only_data_root_is_a_clear_error(tmp_path, data, whole):
    cached = cached_copy(whole, tmp_path)
    (tmp_path / "runs").chmod(0o555)  # before any lock file exists
    try:
        assert fit(CONFIG, data, root=tmp_path, progress=False).cached  # a finished run still loads
        with pytest.raises(OSError, match="runs/rel-.*Permission denied.*writable"):
            fit(CONFIG.replace(seed=7), data, root=tmp_path, progress=False)
    finally:
        (tmp_path / "runs").chmod(0o755)
    assert S.verify_run(cached) is not None


def test_data_cache_write_failure_warns_and_keeps_the_data(tmp_path, monkeypatch):
    write_tree(tmp_path / "tree")
    source, root = f"folder:{tmp_path / 'tree'}", tmp_path / "data"
    monkeypatch.setattr(S, "open", lambda *a, **k: FillsUp(open(*a, **k), errno.ENOSPC), raising=False)
    with pytest.warns(UserWarning, match="could not write data cache .*No space left on device"):
        loaded = load_dataset(source, root=root)
    assert len(loaded.train_labels) == 6
    assert not list((root / "cache").iterdir())  # no half-written cache file


# --- 6. determinism ---------------------------------------------------------------------------

def test_same_seed_in_another_process_is_bit_identical(tmp_path, data, whole):
    proc, out = start_child(tmp_path, "other", root=tmp_path)
    result = finish(proc, out, tmp_path, "other")
    assert not result["cached"]
    assert_same_run(Path(result["path"]), whole)
    assert result["final_sha256"] == S.sha256(whole.path / "final.pt")
    assert torch.equal(torch.load(str(out) + ".logits.pt"), predictions(whole.model, data))


def test_run_records_the_determinism_settings_in_force(whole):
    env = whole.info["environment"]
    assert env["deterministic"] is True
    assert env["cudnn_deterministic"] == torch.backends.cudnn.deterministic is True
    assert env["cudnn_benchmark"] == torch.backends.cudnn.benchmark is False
    assert env["deterministic_algorithms"] == torch.are_deterministic_algorithms_enabled()
    assert json.loads((whole.path / "run.json").read_text())["environment"] == env
