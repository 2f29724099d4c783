"""Folders and files from someone else: a shared run folder, a dataset tree or archive, a stale
result.json, a Ray task's result. Each is refused in one line naming the file (or, in a run folder,
treated as damage: moved aside, one warning, retrained); nothing is written outside the data folder,
and nothing hangs or fills the memory.

Calls that could hang (a FIFO) or eat the memory (/dev/zero, a sparse tar member) run in a child
process with a timeout and an address-space limit, so that this file itself can never hang.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import helpers
from helpers import runner
from helpers import store as S
from helpers.data import load_dataset, make_synthetic
from helpers.index import write_index
from helpers.train import TrainConfig, fit, run_path

PACKAGE_ROOT = Path(helpers.__file__).resolve().parents[1]  # the checkout under test, for child processes
TINY = TrainConfig(name="untrusted", model="simple_cnn", width=0.0625, epochs=2, batch_size=32, lr=0.05,
                   val_fraction=0.2, device="cpu")
EMPTY_SHA = hashlib.sha256(b"").hexdigest()
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="FIFOs, /dev/zero and RLIMIT_AS as on Linux")


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_train=96, n_test=32, seed=7)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    """A finished run, trained once; each test works on a copy (:func:`copy_run`)."""
    return fit(TINY, data, root=tmp_path_factory.mktemp("finished"), progress=False)


def copy_run(finished, root: Path) -> Path:
    path = root / "runs" / finished.path.name
    shutil.copytree(finished.path, path)
    return path


def edit_manifest(path: Path, change) -> None:
    info = json.loads((path / "run.json").read_text())
    change(info)
    (path / "run.json").write_text(json.dumps(info))


def entry(f: Path) -> dict:
    return {"size": f.stat().st_size, "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}


def one_line_warning(record, name: str) -> str:
    messages = [str(w.message) for w in record if issubclass(w.category, UserWarning)]
    assert len(messages) == 1, messages
    assert name in messages[0] and "\n" not in messages[0], messages[0]
    return messages[0]


def retrained_after_one_warning(path: Path, data, name: str) -> None:
    """``fit`` moves the damaged folder aside with one warning naming ``name`` and trains the run again."""
    with pytest.warns(UserWarning) as record:
        again = fit(TINY, data, root=path.parents[1], progress=False)
    one_line_warning(record, name)
    assert not again.cached and S.verify_run(path) is not None
    assert len(list(path.parent.glob(f"{path.name}.broken-*"))) == 1


def tree_of(root: Path) -> dict:
    """Every entry under ``root`` with its size (links not followed): what a test may not change."""
    return {str(p.relative_to(root)): p.lstat().st_size for p in root.rglob("*")}


def child(code: str, timeout: float = 120, memory: int | None = None) -> str:
    """Run ``code`` in a fresh Python with this checkout's helpers; return its last line of output, or
    "TIMEOUT" when it ran past ``timeout`` seconds (it is killed). ``memory``: bytes the child may
    allocate beyond what its imports took (RLIMIT_AS), so a read that never ends fails fast."""
    limit = "" if memory is None else textwrap.dedent(f"""
        import resource
        vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + {memory}, vm + {memory}))
    """)
    script = ("import helpers.data, helpers.store, resource\n" + limit + "try:\n"
              + textwrap.indent(textwrap.dedent(code), "    ")
              + "\nexcept BaseException as e:\n    print('RAISED', type(e).__name__, ' '.join(str(e).split()))\n")
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                              env=env)
    except subprocess.TimeoutExpired:
        return "TIMEOUT"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[-1] if lines else f"exit {done.returncode}"


# --- run folders --------------------------------------------------------------------------------

@pytest.mark.parametrize("force", [False, True], ids=["fit", "force"])
def test_run_folder_that_is_a_link_is_refused_and_nothing_is_written_through_it(tmp_path, data, force):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / ".notes.txt.tmp").write_text("someone's file")
    (target / "keep.txt").write_text("kept")
    before = tree_of(target)
    link = run_path(TINY, data, tmp_path / "data")
    link.parent.mkdir(parents=True)
    link.symlink_to(target, target_is_directory=True)
    with pytest.raises(ValueError) as err:
        fit(TINY, data, root=tmp_path / "data", force=force, progress=False)
    message = str(err.value)
    assert str(link) in message and "symbolic link" in message and "\n" not in message, message
    assert tree_of(target) == before  # nothing written through the link, nothing deleted in the target
    assert link.is_symlink()


@pytest.mark.parametrize("name, named", [("../../../outside.txt", "run.json"), ("ABSOLUTE", "run.json"),
                                         ("final-link.pt", "final-link.pt")],
                         ids=["dot-dot", "absolute", "link-to-a-file-outside"])
def test_manifest_naming_a_file_outside_the_folder_is_damage(tmp_path, data, finished, name, named):
    path = copy_run(finished, tmp_path / "data")
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of any run")
    if name == "ABSOLUTE":
        name = str(outside)
    elif name == "final-link.pt":
        (path / name).symlink_to(outside)
    edit_manifest(path, lambda info: info["files"].update({name: entry(outside)}))
    with pytest.raises(S.DamagedRun, match=named):
        S.verify_run(path)
    retrained_after_one_warning(path, data, named)
    assert outside.read_text() == "not part of any run"


@linux_only
@pytest.mark.parametrize("case", ["dev-zero", "history-fifo"])
def test_manifest_naming_a_device_or_a_fifo_never_blocks(tmp_path, data, finished, case):
    path = copy_run(finished, tmp_path / "data")
    if case == "dev-zero":
        edit_manifest(path, lambda info: info["files"].update({"/dev/zero": {"size": 0, "sha256": EMPTY_SHA}}))
        name = "run.json"
    else:
        (path / "history.csv").unlink()
        os.mkfifo(path / "history.csv")  # a reader of a FIFO without a writer waits forever
        edit_manifest(path, lambda info: info["files"].update({"history.csv": {"size": 0, "sha256": EMPTY_SHA}}))
        name = "history.csv"
    last = child(f"helpers.store.verify_run(__import__('pathlib').Path({str(path)!r}))\nprint('ACCEPTED')",
                 timeout=60, memory=1 << 30)
    assert last.startswith("RAISED DamagedRun") and name in last, last
    retrained_after_one_warning(path, data, name)


def test_manifest_listing_a_folder_is_damage(tmp_path, data, finished):
    path = copy_run(finished, tmp_path / "data")
    (path / "a-folder").mkdir()
    edit_manifest(path, lambda info: info["files"].update(
        {"a-folder": {"size": (path / "a-folder").stat().st_size, "sha256": EMPTY_SHA}}))
    retrained_after_one_warning(path, data, "a-folder")


@pytest.mark.parametrize("field, value", [("engine", "2"), ("best_acc", "0.9"), ("config", []),
                                          ("environment", "cpu")])
def test_manifest_field_of_the_wrong_type_is_damage(tmp_path, data, finished, field, value):
    path = copy_run(finished, tmp_path / "data")
    edit_manifest(path, lambda info: info.update({field: value}))
    with pytest.raises(S.DamagedRun, match=field):
        S.verify_run(path)
    retrained_after_one_warning(path, data, "run.json")


@pytest.mark.parametrize("text", ["", "epoch,train_loss,lr,seconds\n", "epoch,lr\n1,\"unclosed\n"],
                         ids=["empty", "no-rows", "unparsable"])
def test_history_that_does_not_read_is_damage(tmp_path, data, finished, text):
    path = copy_run(finished, tmp_path / "data")
    (path / "history.csv").write_text(text)
    edit_manifest(path, lambda info: info["files"].update({"history.csv": entry(path / "history.csv")}))
    retrained_after_one_warning(path, data, "history.csv")


class Payload:
    """Unpickling it calls ``call(*args)``: what a shared file could make a loader run."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return (self.call, self.args)


@pytest.mark.parametrize("payload", [Payload(print, "the payload ran"), Payload(os.system, "true")],
                         ids=["builtin", "os-system"])
def test_unsafe_file_refusal_never_advises_loading_it_anyway(tmp_path, data, finished, payload):
    path = copy_run(finished, tmp_path / "data")
    torch.save({**torch.load(path / "final.pt"), "extra": payload}, path / "final.pt")
    edit_manifest(path, lambda info: info["files"].update({"final.pt": entry(path / "final.pt")}))
    with pytest.raises(S.UnsafeFile) as err:
        fit(TINY, data, root=tmp_path / "data", progress=False)
    message = str(err.value)
    assert str(path / "final.pt") in message and "\n" not in message, message
    assert "people you trust" in message and "delete it" in message, message
    for advice in ("weights_only", "can still be loaded", "trust the source", "allowlist", "\x1b"):
        assert advice not in message, message


@pytest.mark.parametrize("result_path, files", [
    ("/node/data/runs/untrusted-0123456789ab", {"../../x": b"written outside", "final.pt": b"w"}),
    ("/node/data/runs/untrusted-0123456789ab", {"ABSOLUTE": b"written outside"}),
    ("/node/data/runs/..", {"final.pt": b"w"}),
], ids=["dot-dot-file", "absolute-file", "dot-dot-folder"])
def test_ray_result_with_a_name_outside_the_store_is_refused_before_writing(tmp_path, result_path, files):
    from helpers import parallel

    root = tmp_path / "data"
    (root / "runs").mkdir(parents=True)
    files = {str(tmp_path / "x") if name == "ABSOLUTE" else name: body for name, body in files.items()}
    with pytest.raises(ValueError, match="refused") as err:
        parallel.receive({"label": "untrusted seed 0", "path": result_path, "files": files}, root)
    assert "\n" not in str(err.value)
    assert sorted(tree_of(tmp_path)) == ["data", "data/runs"]  # nothing written, inside the store or out
