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


@pytest.mark.parametrize("payload", [Payload(exec, "raise SystemExit('the payload ran')"), Payload(os.system, "true")],
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


# --- folder datasets ----------------------------------------------------------------------------

def write_tree(root: Path, classes=("cat", "dog")) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in classes:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")


def tar_of(tree: Path, archive: Path, extra=()) -> Path:
    """A tar (gzip when the name ends .gz) of ``tree`` plus ``extra`` (TarInfo, file object) members."""
    with tarfile.open(archive, "w:gz" if archive.name.endswith(".gz") else "w", format=tarfile.PAX_FORMAT,
                      **({"compresslevel": 1} if archive.name.endswith(".gz") else {})) as tar:
        for split in ("train", "test"):
            tar.add(tree / split, arcname=split)
        for info, body in extra:
            tar.addfile(info, body)
    return archive


def sparse_member(name: str, size: int) -> tuple:
    """A member declaring ``size`` bytes of which none are stored: a sparse file of one hole."""
    info = tarfile.TarInfo(name)
    info.pax_headers = {"GNU.sparse.map": "0,0", "GNU.sparse.size": str(size), "GNU.sparse.numblocks": "1"}
    return info, io.BytesIO(b"")


class Zeros(io.RawIOBase):
    def __init__(self, n: int):
        self.n = n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.n)
        b[:k] = bytes(k)
        self.n -= k
        return k


def zeros_member(name: str, size: int) -> tuple:
    info = tarfile.TarInfo(name)
    info.size = size
    return info, io.BufferedReader(Zeros(size))


def load_in_child(source: str, tmp_path: Path, timeout: float = 120, memory: int = 768 << 20) -> str:
    """Load a folder dataset in a child process; its last line: "LOADED n", or "RAISED <error> <message>"."""
    return child(f"""
        ds = helpers.data.load_dataset({source!r}, root={str(tmp_path / 'data')!r}, cache=False)
        print('LOADED', len(ds.train_labels))
    """, timeout, memory)


@linux_only
def test_tar_member_declaring_gigabytes_is_refused_from_its_header(tmp_path):
    write_tree(tmp_path / "tree")
    archive = tar_of(tmp_path / "tree", tmp_path / "sparse.tar", [sparse_member("train/cat/big.png", 8 << 30)])
    assert archive.stat().st_size < 64 << 10  # a small file that declares 8 GiB
    last = load_in_child(f"folder:{archive}", tmp_path)
    assert last.startswith("RAISED ValueError") and "train/cat/big.png" in last and "MEMBER_LIMIT" in last, last


@linux_only
def test_gzip_bomb_is_refused_without_being_read(tmp_path):
    write_tree(tmp_path / "tree")
    archive = tar_of(tmp_path / "tree", tmp_path / "bomb.tar.gz", [zeros_member("train/cat/bomb.png", 512 << 20)])
    assert archive.stat().st_size < 4 << 20  # 512 MiB once decompressed
    last = load_in_child(f"folder:{archive}", tmp_path)
    assert last.startswith("RAISED ValueError") and "train/cat/bomb.png" in last and "MEMBER_LIMIT" in last, last


def test_decompressed_bytes_are_counted_while_reading(tmp_path, monkeypatch):
    """A member no image check looks at (a README next to train/) still counts: the stream stops at the cap."""
    from helpers.data import folder

    write_tree(tmp_path / "tree")
    archive = tar_of(tmp_path / "tree", tmp_path / "padded.tar.gz", [zeros_member("README", 48 << 20)])
    monkeypatch.setattr(folder, "TOTAL_LIMIT", 16 << 20, raising=False)
    with pytest.raises(ValueError, match="TOTAL_LIMIT") as err:
        load_dataset(f"folder:{archive}", root=tmp_path / "data", cache=False)
    assert str(archive) in str(err.value) and "\n" not in str(err.value)


@linux_only
@pytest.mark.parametrize("member, outcome", [("train/cat/notes.txt", "RAISED ValueError"), ("README", "LOADED 4")])
def test_members_are_not_read_before_the_layout_check(tmp_path, member, outcome):
    """A non-image member declaring 8 GiB: in a class folder the layout refuses it by name; next to
    train/ and test/ it is never read."""
    write_tree(tmp_path / "tree")
    archive = tar_of(tmp_path / "tree", tmp_path / "notes.tar", [sparse_member(member, 8 << 30)])
    last = load_in_child(f"folder:{archive}", tmp_path)
    assert last.startswith(outcome), last
    if member.endswith(".txt"):
        assert member in last and "not an image file" in last, last


@linux_only
@pytest.mark.parametrize("kind", ["fifo", "link-to-dev-zero"])
def test_tree_file_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    write_tree(tmp_path / "tree")
    bad = tmp_path / "tree" / "train" / "cat" / "2.png"
    if kind == "fifo":
        os.mkfifo(bad)
    else:
        bad.symlink_to("/dev/zero")
    last = load_in_child(f"folder:{tmp_path / 'tree'}", tmp_path, timeout=60)
    what = "a FIFO" if kind == "fifo" else "a symbolic link"
    assert last.startswith("RAISED ValueError") and "train/cat/2.png" in last and what in last, last


def test_linked_class_folder_is_called_a_link(tmp_path):
    write_tree(tmp_path / "tree")
    shutil.move(tmp_path / "tree" / "train" / "dog", tmp_path / "dog")
    (tmp_path / "tree" / "train" / "dog").symlink_to(tmp_path / "dog", target_is_directory=True)
    with pytest.raises(ValueError) as err:
        load_dataset(f"folder:{tmp_path / 'tree'}", root=tmp_path / "data", cache=False)
    message = str(err.value)
    assert "train/dog" in message and "symbolic link" in message and "refused" in message, message


def test_decompression_bomb_image_is_named(tmp_path, monkeypatch):
    write_tree(tmp_path / "tree")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 32x32 = 1024 pixels: over twice the limit
    with pytest.raises(ValueError) as err:
        load_dataset(f"folder:{tmp_path / 'tree'}", root=tmp_path / "data", cache=False)
    message = str(err.value)
    assert "train/cat/0.png" in message and "MAX_IMAGE_PIXELS" in message and "\n" not in message, message


def test_unreadable_image_is_named_without_a_buffer(tmp_path):
    write_tree(tmp_path / "tree")
    (tmp_path / "tree" / "train" / "cat" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError) as err:
        load_dataset(f"folder:{tmp_path / 'tree'}", root=tmp_path / "data", cache=False)
    message = str(err.value)
    assert "train/cat/broken.png" in message and "BytesIO" not in message and "<" not in message, message


@pytest.mark.parametrize("where", ["tar", "tree"])
def test_names_that_are_not_utf8_are_refused(tmp_path, where):
    write_tree(tmp_path / "tree")
    png = (tmp_path / "tree" / "train" / "cat" / "0.png").read_bytes()
    if where == "tree":
        try:
            fd = os.open(os.path.join(os.fsencode(tmp_path / "tree" / "train" / "cat"), b"\xff.png"),
                         os.O_WRONLY | os.O_CREAT)
        except (OSError, UnicodeError):
            pytest.skip("this file system does not take names that are not UTF-8")
        os.write(fd, png)
        os.close(fd)
        source = f"folder:{tmp_path / 'tree'}"
    else:
        info = tarfile.TarInfo(b"train/cat/\xff.png".decode("utf-8", "surrogateescape"))
        info.size = len(png)
        archive = tmp_path / "names.tar"
        with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as tar:
            for split in ("train", "test"):
                tar.add(tmp_path / "tree" / split, arcname=split)
            tar.addfile(info, io.BytesIO(png))
        source = f"folder:{archive}"
    with pytest.raises(ValueError) as err:
        load_dataset(source, root=tmp_path / "data", cache=False)
    message = str(err.value)
    assert "not UTF-8" in message and r"\xff.png" in message and "\n" not in message, message


def test_helpers_data_naming_a_file_is_one_clear_line(tmp_path):
    afile = tmp_path / "data.txt"
    afile.write_text("a file, not a folder")
    done = subprocess.run([sys.executable, "-c", "import helpers"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HELPERS_DATA": str(afile), "PYTHONPATH": str(PACKAGE_ROOT)})
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    assert done.returncode != 0 and "HELPERS_DATA" in last and str(afile) in last and "names a file" in last, last


# --- the runner's result files ---------------------------------------------------------------------

@pytest.mark.parametrize("record", [
    {"notebook": "01_x", "status": 5},
    {"notebook": "01_x", "status": "ok", "seconds": "12", "finished": "2026-01-01T10:00:00"},
    {"notebook": "01_x", "status": "ok", "metrics": ["not", "a", "dict"]},
    {"notebook": "../../elsewhere", "status": "ok"},
], ids=["status-int", "seconds-str", "metrics-list", "notebook-elsewhere"])
def test_stale_result_json_of_the_wrong_types_is_skipped_with_one_line(tmp_path, capsys, record):
    profile_dir = tmp_path / "reports" / "smoke"
    (profile_dir / "01_x").mkdir(parents=True)
    (profile_dir / "01_x" / "result.json").write_text(json.dumps(record))
    runs = runner.load_runs(profile_dir, ["01_x"])
    assert [(r.notebook, r.status) for r in runs] == [("01_x", "skipped")]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1 and "01_x/result.json" in lines[0], lines
    assert write_index(profile_dir, runs).is_file()  # the index is still written
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["index.html", "result.json"]


# --- the competition's pickle (notebook 03's predict_images) -------------------------------------------

def test_the_competitions_pickle_is_read_and_a_callable_in_one_is_refused(tmp_path):
    """A plain pickle of the competition's layout loads; one that carries a callable is refused before
    anything in it runs (the payload would create a file)."""
    import pickle

    from helpers.data import load_unlabelled
    from helpers.data.unlabelled import UnsafePickle

    data = np.random.default_rng(0).integers(0, 256, (4, 3072), dtype=np.uint8)
    (tmp_path / "test.pkl").write_bytes(pickle.dumps({b"data": data, b"ids": [10, 11, 12, 13]}, protocol=4))
    ids, images = load_unlabelled(tmp_path / "test.pkl")
    assert ids == ["10", "11", "12", "13"] and images.shape == (4, 3, 32, 32)
    assert np.array_equal(images.reshape(4, -1).numpy(), data)  # rows channel-major, as CIFAR's batches
    marker = tmp_path / "the payload ran"
    evil = Payload(os.system, f"touch '{marker}'")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({b"data": evil, b"ids": [1]}))
    with pytest.raises(UnsafePickle, match=r"evil.pkl: refused: the pickle asks for (posix|os)\.system"):
        load_unlabelled(tmp_path / "evil.pkl")
    assert not marker.exists()
