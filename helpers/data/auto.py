"""``auto``: the report's own dataset when this machine has it or can download it, else the synthetic stand-in.

The quick and full profiles default to it (``helpers.profiles``); smoke stays on ``synthetic``. The
choice is a :class:`DataChoice` that says which source, why, and whether it fell back, so the
runner and each notebook's first cell can print it in one line (:meth:`DataChoice.banner`).

"In the data folder" (``helpers.DATA_DIR``: ``data/`` or ``$HELPERS_DATA``) means, in this order:

1. torchvision's own files: ``cifar-10-batches-py/`` or ``cifar-10-python.tar.gz`` (CIFAR-100:
   ``cifar-100-python/`` or ``cifar-100-python.tar.gz``) -> source ``cifar10`` / ``cifar100``;
2. an ImageFolder copy (``train/<class>/*``, ``test/<class>/*``) as a folder or ``.tar.gz`` /
   ``.tgz`` / ``.tar`` archive named ``cifar10`` or ``cifar10-jpg`` (``cifar100``, ``cifar100-jpg``),
   e.g. ``data/cifar10-jpg.tar.gz`` -> source ``folder:<that path>``.

Otherwise, "can be downloaded" means an HTTPS ``HEAD`` request for torchvision's archive answers
within ``TIMEOUT`` seconds; ``HELPERS_OFFLINE=1`` skips it, so an offline machine falls back at
once. (HTTPS, not a bare TCP connect: sandboxes and captive networks accept any connection.)
"""

from __future__ import annotations

import os
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
TORCHVISION_FILES = {"cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz"),
                     "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz")}
FOLDER_NAMES = {"cifar10": ("cifar10", "cifar10-jpg"), "cifar100": ("cifar100", "cifar100-jpg")}
FOLDER_SUFFIXES = ("", ".tar.gz", ".tgz", ".tar")
# torchvision.datasets.CIFAR10.url / CIFAR100.url (a test keeps them equal)
URLS = {"cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"}
OFFLINE_ENV = "HELPERS_OFFLINE"
TIMEOUT = 2.0  # seconds: long enough for a real connection, short enough to fall back without a wait


@dataclass(frozen=True)
class DataChoice:
    """Which data a study runs on and why (all notebooks' first cell; the runner's summary)."""

    source: str       # what load_dataset gets: "cifar10", "folder:/.../cifar10-jpg.tar.gz", "synthetic", ...
    reason: str       # one line: why this source
    fell_back: bool   # True: the report's dataset could not be had, the synthetic stand-in runs instead
    wanted: str       # the report's dataset, "cifar10" or "cifar100"
    root: str = ""    # the data folder that was searched ("" when the dataset was given)
    download: bool = False  # True: not in the folder yet, torchvision downloads it there

    def banner(self) -> str:
        """One sentence for a notebook's first output or the runner's log."""
        label = LABELS.get(self.wanted, self.wanted)
        if self.fell_back:
            tv_archive, (folder_name, *_) = TORCHVISION_FILES[self.wanted][1], FOLDER_NAMES[self.wanted]
            return (f"Using the synthetic stand-in: {self.reason}. Put {tv_archive} (torchvision's archive) or an "
                    f"ImageFolder copy named {folder_name}/ or {folder_name}-jpg.tar.gz into {self.root}/, "
                    f"or pass --dataset (notebook parameter: dataset) to choose the data.")
        if self.source == "synthetic":
            return f"Using the synthetic stand-in for {label}: {self.reason}."
        return f"Using {self.source}: {self.reason}."


def find_local(wanted: str, root: Path) -> tuple[str, str] | None:
    """(source, file or folder name) of the report's dataset in ``root``, or None (see the module doc)."""
    for name in TORCHVISION_FILES[wanted]:
        if (root / name).exists():
            return wanted, name
    for base in FOLDER_NAMES[wanted]:
        for suffix in FOLDER_SUFFIXES:
            path = root / f"{base}{suffix}"
            if path.is_dir() if not suffix else path.is_file():
                return f"folder:{path.resolve()}", path.name
    return None


def unreachable(url: str, timeout: float = TIMEOUT) -> str | None:
    """Why a ``HEAD`` request for ``url`` gets no good answer within ``timeout`` seconds, or None
    when it does.

    The request runs in a daemon thread because the name lookup ignores socket timeouts: on a
    machine without a resolver it can hang for many seconds, and nobody should wait for that.
    """
    outcome = []

    def probe():
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
                outcome.append(None)  # urlopen raises on HTTP errors, so this is a 2xx
        except (OSError, ValueError) as err:  # URLError, HTTPError, socket and TLS errors are OSErrors
            reason = getattr(err, "reason", None) or err
            outcome.append(f"{urllib.parse.urlsplit(url).hostname}: {' '.join(str(reason).split())[:120]}")

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    return outcome[0] if outcome else f"{urllib.parse.urlsplit(url).hostname} did not answer within {timeout:g} s"


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0")


def choose_source(wanted: str, root: str | Path, timeout: float = TIMEOUT) -> DataChoice:
    """The report's dataset ``wanted`` ("cifar10" / "cifar100") if ``root`` holds it or it can be
    downloaded there, else the synthetic stand-in with the reason (all notebooks, via profiles)."""
    if wanted not in LABELS:
        raise ValueError(f"no automatic choice for {wanted!r}; valid: {', '.join(LABELS)}")
    root = Path(root).expanduser()
    label, shown = LABELS[wanted], str(root)
    found = find_local(wanted, root)
    if found:
        return DataChoice(found[0], f"{label} found in {shown}/ ({found[1]})", False, wanted, shown)
    why = f"{OFFLINE_ENV}={os.environ[OFFLINE_ENV]}" if offline() else unreachable(URLS[wanted], timeout)
    if why is None:
        return DataChoice(wanted, f"{label} is not in {shown}/ yet; its download answers, so torchvision fetches "
                                  "it there once", False, wanted, shown, download=True)
    return DataChoice("synthetic", f"{label} is not in {shown}/ and cannot be downloaded (offline: {why})", True, wanted, shown)


def given(source: str, wanted: str) -> DataChoice:
    """The choice when a dataset was named explicitly: it always wins."""
    return DataChoice(source, f"dataset {source!r} given explicitly", False, wanted)


def after_failed_download(choice: DataChoice, err: Exception) -> DataChoice:
    """The stand-in after a download that the reachability check promised but that failed."""
    cause = err.__cause__ or err  # load_cifar's own message is a how-to; the cause is the news
    reason = (f"{LABELS[choice.wanted]} is not in {choice.root}/ and its download failed "
              f"({type(cause).__name__}: {' '.join(str(cause).split())[:160]})")
    return DataChoice("synthetic", reason, True, choice.wanted, choice.root)
