"""Everything the package writes to disk, written so that a crash or a copied folder cannot hurt.

Two kinds of stored things use this module: trained runs (``helpers.train.fit``, all notebooks) and
the decoded folder-dataset cache (``helpers.data.folder``). Both go through one writer and one
"move a damaged file aside":

- :func:`write_atomic` -- a temporary file, fsync, then a rename: a reader never sees half a file.
- :func:`move_aside` -- a damaged file or folder is kept for inspection as ``<name>.broken-<time>``.
- :func:`load_tensors` -- ``torch.load(..., weights_only=True)``: a stored file may hold tensors,
  numbers, strings and containers of them, never code. Students share run folders; one from
  someone else must not be able to run anything on load (:class:`UnsafeFile`).

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
import os
import pickle
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch
from filelock import FileLock, Timeout

# --- files -----------------------------------------------------------------------------------------


def write_atomic(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write through a temporary file, fsync and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class UnsafeFile(ValueError):
    """A stored file holds Python objects that could run code when loaded: refused, never loaded."""


def load_tensors(source, name: str | Path, map_location=None):
    """``torch.load`` with ``weights_only=True``; a file carrying anything else is an :class:`UnsafeFile`.

    ``source``: a path or a file object; ``name`` says which file it is in the error.
    """
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise UnsafeFile(
            f"{name}: refused to load: it holds Python objects other than tensors and numbers, which could "
            f"run code ({first[:160]}). Use run folders only from people you trust; delete it to train the "
            "run again.") from None


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


def verify_run(path: Path) -> dict | None:
    """The manifest of a complete, intact run folder; None if unfinished; DamagedRun if damaged."""
    manifest = path / "run.json"
    if not manifest.exists():
        return None
    try:
        info = json.loads(manifest.read_text())
        # every run file must be listed with both numbers, or a damaged file could go unchecked; optional
        # files (the gradient / update records) are checked when the manifest lists them
        expected = {name: (info["files"][name]["size"], info["files"][name]["sha256"]) for name in RUN_FILES}
        expected |= {name: (e["size"], e["sha256"]) for name, e in info["files"].items() if name not in expected}
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # not JSON, not a dict, an entry missing
        raise DamagedRun(f"{manifest}: damaged manifest ({type(e).__name__}: {e})") from None
    for name, (size, digest) in expected.items():
        f = path / name
        if not f.exists() or f.stat().st_size != size or sha256(f) != digest:
            raise DamagedRun(f"{f}: missing, truncated or changed since the run was saved")
    return info


def write_manifest(path: Path, info: dict, files: list[str]) -> dict:
    """Add each file's size and sha256 to ``info`` and write ``run.json``, last: the run is complete."""
    info = dict(info, files={n: {"size": (path / n).stat().st_size, "sha256": sha256(path / n)} for n in files})
    save_text(json.dumps(info, indent=2), path / "run.json")
    return info


@contextmanager
def locked(path: Path):
    """Hold an exclusive lock on a run folder: a second process training the same run waits."""
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

