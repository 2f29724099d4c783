"""Everything the package writes to disk, written so that a crash or a copied folder cannot hurt.

Two kinds of stored things use this module: trained runs (``helpers.train.fit``, all notebooks) and
the decoded folder-dataset cache (``helpers.data.folder``). Both go through one writer and one
"move a damaged file aside":

- :func:`write_atomic` -- a temporary file, fsync, then a rename: a reader never sees half a file.
- :func:`move_aside` -- a damaged file or folder is kept for inspection as ``<name>.broken-<time>``.
- :func:`load_tensors` -- ``torch.load(..., weights_only=True)``: a stored file may hold tensors,
  numbers, strings and containers of them, never code. Students share run folders; one from
  someone else must not be able to run anything on load (:class:`UnsafeFile`).
- :func:`plain_name`, :func:`open_regular` -- a shared folder names only plain files inside itself,
  and only regular files are read (no links; a FIFO or a device would block or never end): anything
  else is refused (:class:`UnsafePath`) or, in a run folder, damage.

A run folder ``data/runs/<name>-<hash>/`` (the manifest ``run.json`` is written last, so a folder
without it is unfinished)::

    checkpoint.pt   end-of-epoch state while training (weights, optimiser, scheduler, RNGs),
                    with its own sha256 in its first line (no manifest covers it)
    final.pt        weights after the last epoch
    best.pt         weights of the epoch with the best validation (or test) accuracy
    history.csv     one row per epoch
    run.json        config, environment, timings, and size + sha256 of each file above

A second process training the same run waits on a lock file beside the folder (the ``filelock``
package: works on Linux, macOS and Windows).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import pickle
import re
import stat
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from filelock import FileLock, Timeout

# --- files -----------------------------------------------------------------------------------------


def write_atomic(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write through a temporary file, fsync and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover, or a link someone left there: "x" never follows a link
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def torch_bytes(obj) -> memoryview:
    # Serialised in memory first: torch.save straight into a file turns the OS's "No space left on
    # device" into RuntimeError("[enforce fail at inline_container.cc] unexpected pos ...").
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getbuffer()


def save_torch(obj, path: Path) -> None:
    """``torch.save`` through :func:`write_atomic` (run weights, the data cache)."""
    body = torch_bytes(obj)
    write_atomic(path, lambda f: f.write(body))


def save_text(text: str, path: Path) -> None:
    """A text file through :func:`write_atomic` (histories, manifests, 03's ``predictions.csv``)."""
    write_atomic(path, lambda f: f.write(text.encode()))


def sha256(path: Path) -> str:
    """The file's sha256; only a regular file is read (:func:`open_regular`)."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- files someone else wrote ----------------------------------------------------------------------

# No link is followed, and a FIFO or a device never blocks the open: fstat says what was opened.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


class UnsafePath(ValueError):
    """A name that leaves its folder, a link, a FIFO or a device where a plain file belongs: refused."""


def plain_name(name) -> bool:
    """Whether ``name`` is a plain file name: a non-empty UTF-8 string with no folder in it (no '/',
    no '\\', not '.' or '..', no NUL), so that ``folder / name`` stays inside ``folder``."""
    if not isinstance(name, str) or name in ("", ".", "..") or len(name) > 255 or any(c in name for c in "/\\\0"):
        return False
    try:
        name.encode("utf-8")  # a surrogate-escaped byte that is not UTF-8
    except UnicodeEncodeError:
        return False
    return True


def kind(mode: int) -> str:
    """What a stat mode is, in words, for a refusal."""
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode)
            else "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a regular file" if stat.S_ISREG(mode) else "not a file")


def open_regular(path: Path) -> io.BufferedReader:
    """Open ``path`` for reading only if it is a regular file; UnsafePath if it is a link, a folder, a FIFO
    or a device (opened with O_NOFOLLOW | O_NONBLOCK and checked with fstat, so nothing blocks)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafePath(f"{path}: a symbolic link; refused (links are not followed)") from None
        if e.errno == errno.EISDIR:
            raise UnsafePath(f"{path}: a folder, not a file; refused") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafePath(f"{path}: {kind(mode)}, not a regular file; refused")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes of a regular file (more than ``limit``: the caller refuses it)."""
    with open_regular(path) as f:
        return f.read(limit + 1)


class UnsafeFile(ValueError):
    """A stored file holds Python objects that could run code when loaded: refused, never loaded."""


def load_tensors(source, name: str | Path, map_location=None):
    """``torch.load`` with ``weights_only=True``; a file carrying anything else is an :class:`UnsafeFile`.

    ``source``: a path or a file object; ``name`` says which file it is in the error.
    """
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message advises loading it anyway (weights_only=False); only the object's name is kept
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise UnsafeFile(
            f"{name}: refused to load: it holds Python objects other than tensors and numbers{what}, which "
            "could run code. Use run folders only from people you trust; delete it to train the run "
            "again.") from None


def move_aside(path: Path, why: str, then: str) -> Path:
    """Keep a damaged file or folder as ``<name>.broken-<time>`` and warn once, naming it.

    ``why`` names the file and the damage, ``then`` what happens next ("training again"). Raises
    OSError when it cannot be moved (a read-only folder): the caller decides what that means.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest, n = path.with_name(f"{path.name}.broken-{stamp}"), 1
    while dest.exists():  # damaged twice within a second
        n += 1
        dest = path.with_name(f"{path.name}.broken-{stamp}-{n}")
    path.rename(dest)
    warnings.warn(f"{why}; moved to {dest.name} and {then}", stacklevel=3)
    return dest


def one_line(e: BaseException, limit: int = 200) -> str:
    """An exception as one short line (load_state_dict's messages run to pages)."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:limit]


# Errors that mean "this folder cannot be written": fit turns them into one line saying what to do.
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def storage_error(e: OSError, path: Path) -> OSError:
    """The one-line error for a run folder that cannot be written (full disk, read-only)."""
    # Only this run's folder was being written, each file through a temporary name and a rename,
    # so finished runs and the last checkpoint are intact.
    return OSError(e.errno, f"cannot write to {path}: {e.strerror}. Free some space, or set HELPERS_DATA "
                            "to a writable folder; runs already in the cache are not affected")


# --- checkpoints -----------------------------------------------------------------------------------

# torch.load reads a file with flipped bytes in its tensor data without complaint, so a checkpoint
# (which no manifest covers: it changes every epoch) carries its own sha256 in a first line.
CHECKSUM_LINE = b"helpers checkpoint sha256 "


def save_checked(obj, path: Path) -> None:
    body = torch_bytes(obj)

    def write(f):
        f.write(CHECKSUM_LINE + hashlib.sha256(body).hexdigest().encode() + b"\n")
        f.write(body)

    write_atomic(path, write)


def load_checked(path: Path, device: torch.device):
    """A checkpoint written by :func:`save_checked`; ValueError if its bytes changed, UnsafeFile if it holds code."""
    raw = memoryview(path.read_bytes())
    end = bytes(raw[:200]).find(b"\n")
    if end < 0 or bytes(raw[:end]) != CHECKSUM_LINE + hashlib.sha256(raw[end + 1:]).hexdigest().encode():
        raise ValueError("checksum mismatch: truncated or changed since it was written")
    return load_tensors(io.BytesIO(raw[end + 1:]), path, map_location=device)


# --- run folders -----------------------------------------------------------------------------------

RUN_FILES = ("final.pt", "best.pt", "history.csv")


class DamagedRun(ValueError):
    """A run folder's file is truncated, changed, or no longer loads: move it aside and retrain."""


MANIFEST_LIMIT = 1 << 20  # bytes: a run.json is a few KB
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NUMBER = (int, float)
# The manifest's fields that train.py and the notebooks read, and their types: anything else is damage.
MANIFEST_FIELDS = {"files": dict, "config": dict, "environment": dict, "best_epoch": int, "best_acc": _NUMBER,
                   "train_seconds": _NUMBER}
OPTIONAL_FIELDS = {"engine": int, "best_split": str, "data": str, "data_fingerprint": str, "finished": str}


def check_run_folder(path: Path) -> None:
    """Refuse a run folder (or its lock file) that is a symbolic link: nothing is read, written or
    deleted through it."""
    for p in (path, path.parent / f".{path.name}.lock"):
        if p.is_symlink():
            raise UnsafePath(f"{p} is a symbolic link (to {os.readlink(p)}); refused: nothing is read or written "
                             "through it. Delete the link to train the run in a folder of its own")


def manifest_problem(info) -> str | None:
    """What is wrong with a parsed manifest's fields and types, or None."""
    if not isinstance(info, dict):
        return f"not a JSON object but {type(info).__name__}"
    for key, types in (MANIFEST_FIELDS | OPTIONAL_FIELDS).items():
        if key not in info:
            if key in MANIFEST_FIELDS:
                return f"no {key!r}"
            continue
        value = info[key]
        if isinstance(value, bool) or not isinstance(value, types) or (
                isinstance(value, float) and not math.isfinite(value)):
            return f"{key!r} is {value!r:.40}, not {getattr(types, '__name__', 'a number')}"
    missing = [name for name in RUN_FILES if name not in info["files"]]
    if missing:  # every run file must be listed, or a damaged one could go unchecked
        return f"does not list {', '.join(missing)}"
    for name, entry in info["files"].items():
        if not plain_name(name):
            return f"lists {name!r}, which is not a plain file name in the run folder"
        if not isinstance(entry, dict) or not _is_size(entry.get("size")) or not _is_sha256(entry.get("sha256")):
            return f"the entry of {name!r} is not {{size: bytes, sha256: 64 hex digits}}"
    return None


def _is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_sha256(value) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def read_manifest(manifest: Path) -> dict:
    """A run.json, parsed and checked (:func:`manifest_problem`); DamagedRun otherwise."""
    try:
        raw = read_regular(manifest, MANIFEST_LIMIT)
        if len(raw) > MANIFEST_LIMIT:
            raise ValueError(f"larger than {MANIFEST_LIMIT >> 10} KiB")
        info = json.loads(raw)
    except (ValueError, OSError) as e:  # not JSON, not UTF-8, a link, a FIFO, unreadable
        raise DamagedRun(f"{manifest}: damaged manifest ({one_line(e, 160)})") from None
    problem = manifest_problem(info)
    if problem:
        raise DamagedRun(f"{manifest}: damaged manifest ({problem})")
    return info


def check_run_file(f: Path, size: int, digest: str) -> None:
    """A listed file must be a regular file (lstat: no link, FIFO, device or folder) of the listed size and sha256."""
    changed = f"{f}: missing, truncated or changed since the run was saved"
    try:
        st = os.lstat(f)
        if not stat.S_ISREG(st.st_mode):
            raise DamagedRun(f"{f}: {kind(st.st_mode)}, not a regular file")
        if st.st_size != size or sha256(f) != digest:
            raise DamagedRun(changed)
    except FileNotFoundError:
        raise DamagedRun(changed) from None
    except (OSError, UnsafePath) as e:  # unreadable, or replaced by a link since the lstat
        raise DamagedRun(f"{f}: unreadable ({one_line(e, 120)})") from None


def check_history(f: Path) -> None:
    """history.csv must read as a table of numbers with one row per epoch (notebooks plot it)."""
    try:
        history = pd.read_csv(f)
        if history.empty or not {"epoch", "lr"} <= set(history.columns):
            raise ValueError("no rows, or no epoch and lr columns")
        if not all(pd.api.types.is_numeric_dtype(t) for t in history.dtypes):
            raise ValueError("a column that is not numbers")
    except (ValueError, OSError, pd.errors.ParserError) as e:  # EmptyDataError is a ValueError
        raise DamagedRun(f"{f}: unreadable history ({one_line(e, 120)})") from None


def verify_run(path: Path) -> dict | None:
    """The manifest of a complete, intact run folder; None if unfinished; DamagedRun if damaged.

    Damaged includes a manifest whose fields have the wrong types or that lists anything but plain
    regular files inside the folder. UnsafePath if the folder itself is a link (refused, not damaged).
    """
    check_run_folder(path)
    manifest = path / "run.json"
    if not os.path.lexists(manifest):
        return None
    info = read_manifest(manifest)
    for name, entry in info["files"].items():
        check_run_file(path / name, entry["size"], entry["sha256"])
    check_history(path / "history.csv")
    return info


def write_manifest(path: Path, info: dict, files: list[str]) -> dict:
    """Add each file's size and sha256 to ``info`` and write ``run.json``, last: the run is complete."""
    info = dict(info, files={n: {"size": (path / n).stat().st_size, "sha256": sha256(path / n)} for n in files})
    save_text(json.dumps(info, indent=2), path / "run.json")
    return info


@contextmanager
def locked(path: Path):
    """Hold an exclusive lock on a run folder: a second process training the same run waits."""
    check_run_folder(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path.parent / f".{path.name}.lock")
        lock.acquire(timeout=0)
    except Timeout:
        print(f"Another process is training {path.name}; waiting for it to finish...", flush=True)
        lock.acquire()
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES) or not (path / "run.json").exists():
            raise
        yield  # a finished run in a folder we cannot write (a shared, read-only cache) still loads
        return
    try:
        yield
    finally:
        lock.release()

