"""Data sources for the studies: one in-memory ``Dataset`` of uint8 tensors, whatever the source.

Every notebook (01-05) starts with ``load_dataset(source)``. Sources (``SOURCES``):

- ``"synthetic"``  ten shapes on textured backgrounds, generated here from a seed in a few seconds;
  the default, so that everything runs offline. Train backgrounds carry a controllable shortcut.
- ``"cifar10"``, ``"cifar100"``  through ``torchvision.datasets`` (downloads once into ``root``).
- ``"folder:PATH"``  an ImageFolder-style tree ``train/<class>/*``, ``test/<class>/*``, or a
  ``.tar``/``.tar.gz`` of one; decoded once, then cached as tensors under ``<root>/cache/``.

Images are kept as one ``N x 3 x 32 x 32`` uint8 tensor per split (60k CIFAR images are 184 MB),
because ``helpers.loader.BatchLoader`` augments whole batches of them on the training device; no
per-sample ``Dataset.__getitem__`` is ever called.
"""

from __future__ import annotations

import hashlib
import io
import math
import operator
import os
import re
import tarfile
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import DATA_DIR

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "SHAPES",
    "SOURCES",
    "TEXTURES",
    "Dataset",
    "load_dataset",
    "make_synthetic",
    "split_indices",
]

# Normalisation constants of report 003 (the values most CIFAR-10 code copies). Dataset.mean_std()
# computes the exact ones for any dataset.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

SOURCES = ("synthetic", "cifar10", "cifar100", "folder:PATH")

SIZE = 32  # every source is delivered at 32x32, the CIFAR size all models are built for


# ---------------------------------------------------------------------------------------------------
# The Dataset container
# ---------------------------------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class Dataset:
    """Both splits of one source as uint8 image tensors and int64 labels, held in memory.

    Studies: all (01-05). ``train_masks``/``test_masks`` exist for the synthetic source only: True on
    the object's pixels, so that 01 can score Grad-CAM heatmaps against where the object really is
    (``helpers.cam.energy_in_mask``).
    """

    name: str  # the source string it came from, e.g. "synthetic", "cifar10", "folder:/x/y"
    classes: list[str]
    train_images: Tensor  # uint8 N,3,32,32
    train_labels: Tensor  # int64 N
    test_images: Tensor
    test_labels: Tensor
    train_masks: Tensor | None = None  # bool N,32,32
    test_masks: Tensor | None = None
    # Computed on first use. The arrays are treated as read-only once a Dataset exists; change them
    # and these go stale (build a new Dataset instead, as subset() does).
    _fingerprint: str | None = field(default=None, init=False)
    _mean_std: tuple | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.classes = list(self.classes)
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            masks = getattr(self, f"{split}_masks")
            if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != (3, SIZE, SIZE):
                raise ValueError(f"{split}_images must be uint8 N x 3 x {SIZE} x {SIZE}, "
                                 f"got {images.dtype} {tuple(images.shape)}")
            if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
                raise ValueError(f"{split}_labels must be int64 of length {images.shape[0]}, "
                                 f"got {labels.dtype} {tuple(labels.shape)}")
            if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < len(self.classes):
                raise ValueError(f"{split}_labels must lie in [0, {len(self.classes)}), "
                                 f"got [{int(labels.min())}, {int(labels.max())}]")
            if masks is not None and (masks.dtype != torch.bool or tuple(masks.shape) != (images.shape[0], SIZE, SIZE)):
                raise ValueError(f"{split}_masks must be bool N x {SIZE} x {SIZE}, "
                                 f"got {masks.dtype} {tuple(masks.shape)}")
            # Contiguity is part of the contract: fingerprint() hashes raw bytes and the loader gathers.
            setattr(self, f"{split}_images", images.contiguous())
            setattr(self, f"{split}_labels", labels.contiguous())
            if masks is not None:
                setattr(self, f"{split}_masks", masks.contiguous())

    def __repr__(self) -> str:
        masks = ", masks" if self.train_masks is not None else ""
        return (f"Dataset({self.name!r}, {self.num_classes} classes, "
                f"train {len(self.train_labels)}, test {len(self.test_labels)}{masks})")

    @property
    def num_classes(self) -> int:
        """Number of classes (the model's output size). Studies: all."""
        return len(self.classes)

    def mean_std(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Per-channel mean and std of the train images in [0, 1], for normalisation.

        Studies: all, through the loader's ``normalize``. Train split only, so no test information
        leaks into the model. Accumulated in float64 over chunks so 50k images need no 600 MB copy.
        """
        if self._mean_std is None:
            total = torch.zeros(3, dtype=torch.float64)
            total_sq = torch.zeros(3, dtype=torch.float64)
            for chunk in self.train_images.split(4096):
                x = chunk.to(torch.float64).div_(255.0)
                total += x.sum(dim=(0, 2, 3))
                total_sq += x.square().sum(dim=(0, 2, 3))
            count = max(self.train_images.shape[0] * SIZE * SIZE, 1)
            mean = total / count
            std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
            self._mean_std = (tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std))
        return self._mean_std

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
        """A class-stratified, seeded subset of either split or both (masks follow; None keeps all).

        Studies: all, for the smoke/quick profiles (e.g. 5k train images on a CPU). Each class gets
        its share of ``n`` in proportion to its frequency (largest remainders, ties to the lower class
        index), picked at random within the class; the chosen images keep their original order.
        """
        parts = [f"n_train={n_train}"] if n_train is not None else []
        parts += [f"n_test={n_test}"] if n_test is not None else []
        parts += [f"seed={seed}"] if seed != 0 and parts else []
        train_idx = _stratified(self.train_labels, n_train, self.num_classes, seed, 0, "n_train")
        test_idx = _stratified(self.test_labels, n_test, self.num_classes, seed, 1, "n_test")

        def take(x: Tensor | None, idx: Tensor | None) -> Tensor | None:
            return x if x is None or idx is None else x[idx]

        return Dataset(
            name=f"{self.name}[{','.join(parts)}]" if parts else self.name,
            classes=list(self.classes),
            train_images=take(self.train_images, train_idx),
            train_labels=take(self.train_labels, train_idx),
            test_images=take(self.test_images, test_idx),
            test_labels=take(self.test_labels, test_idx),
            train_masks=take(self.train_masks, train_idx),
            test_masks=take(self.test_masks, test_idx),
        )

    def fingerprint(self) -> str:
        """sha1 hex of the name, classes and every array's bytes; the training engine's cache key.

        Studies: all, through ``train.fit``'s run cache. Computed once per object (~0.2 s for 60k
        images: sha1 runs over the tensors' memory without copies).
        """
        if self._fingerprint is None:
            h = hashlib.sha1()
            h.update(self.name.encode())
            h.update(repr(self.classes).encode())
            for key in ("train_images", "train_labels", "test_images", "test_labels", "train_masks", "test_masks"):
                x = getattr(self, key)
                # Shapes go in too, so that e.g. no-masks and empty masks cannot collide.
                h.update(f"|{key}:{None if x is None else (str(x.dtype), tuple(x.shape))}|".encode())
                if x is not None and x.numel():
                    h.update(memoryview(x.contiguous().numpy()).cast("B"))
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def _stratified(labels: Tensor, n: int | None, num_classes: int, seed: int, stream: int, what: str) -> Tensor | None:
    """Indices of a class-stratified random subset of size n (sorted), or None for "all"."""
    if n is None:
        return None
    total = labels.shape[0]
    n = _count(what, n)
    if n > total:
        raise ValueError(f"{what} must be in [0, {total}], got {n}")
    counts = torch.bincount(labels, minlength=num_classes).double()
    share = counts * n / max(total, 1)
    quota = share.floor().long()
    # Largest remainder: the classes whose share lost the most to flooring get the leftovers.
    order = sorted(range(num_classes), key=lambda c: (-(share[c] - quota[c]).item(), c))
    for c in order[: n - int(quota.sum())]:
        quota[c] += 1
    g = torch.Generator().manual_seed(seed * 2 + stream)  # train and test subsets draw independently
    perm = torch.randperm(total, generator=g)
    shuffled = labels[perm]
    picked = [perm[shuffled == c][: int(quota[c])] for c in range(num_classes)]
    return torch.cat(picked).sort().values


def _count(what: str, n) -> int:
    """n as a plain int (numpy integers welcome), or a ValueError naming the argument."""
    try:
        n = operator.index(n)
    except TypeError:
        raise ValueError(f"{what} must be a non-negative integer, got {n!r}") from None
    if n < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {n}")
    return n


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded split of ``range(n)`` into (train_idx, val_idx), both sorted int64 tensors.

    Studies: 01, 02 and 05 (``val_fraction=0.1`` of the train images, through ``train.fit``; 03 and
    04 follow their reports and evaluate on the test split). ``len(val_idx) == round(n * val_fraction)``: 50,000 at
    0.1 gives 45,000/5,000. Same (n, val_fraction, seed), same split, on any machine with this torch.
    """
    n = _count("n", n)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    n_val = round(n * val_fraction)
    if not 0 < n_val < n:
        raise ValueError(f"val_fraction={val_fraction} of n={n} leaves an empty split "
                         f"({n - n_val} train / {n_val} val)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


# ---------------------------------------------------------------------------------------------------
# Source dispatch
# ---------------------------------------------------------------------------------------------------


def load_dataset(source: str = "synthetic", root: str | Path | None = None, **kwargs) -> Dataset:
    """Load one of ``SOURCES`` as a ``Dataset``; ``root`` holds downloads and ``cache/``.

    ``root`` defaults to the project's ``data/`` folder (``helpers.DATA_DIR``), wherever the
    caller runs (notebooks run inside ``notebooks/``).

    Studies: all (01-05), first cell. Keyword arguments go to the source:
    ``synthetic`` -> ``make_synthetic(n_train, n_test, seed, shortcut)``; ``cifar10``/``cifar100`` ->
    ``download=True`` (set False to never touch the network); ``folder:PATH`` -> ``cache=True``
    (False: decode every time, write nothing).
    """
    if not isinstance(source, str):
        raise ValueError(f"source must be a string, one of {SOURCES}, got {source!r}")
    if source == "synthetic":
        return make_synthetic(**kwargs)
    root = Path(DATA_DIR if root is None else root)
    if source in ("cifar10", "cifar100"):
        return _load_cifar(source, root, **kwargs)
    if source.startswith("folder:") and source[len("folder:"):].strip():
        return _load_folder(source, root, **kwargs)
    raise ValueError(f"unknown data source {source!r}; valid choices: {', '.join(SOURCES)} "
                     "(PATH: an image-folder tree or a .tar/.tar.gz of one)")


# ---------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 through torchvision
# ---------------------------------------------------------------------------------------------------


def _load_cifar(source: str, root: Path, download: bool = True) -> Dataset:
    from torchvision import datasets  # imported here: torchvision's import costs ~1 s

    cls = datasets.CIFAR10 if source == "cifar10" else datasets.CIFAR100
    root = root.expanduser()

    def read(train: bool):
        # First without download: no network traffic and no "Files already downloaded" chatter.
        try:
            return cls(str(root), train=train, download=False)
        except RuntimeError:
            if not download:
                raise FileNotFoundError(_cifar_help(cls, root, "download=False was given")) from None
        try:
            root.mkdir(parents=True, exist_ok=True)
            return cls(str(root), train=train, download=True)
        except Exception as err:  # offline: URLError, socket errors; bad archive: RuntimeError
            raise FileNotFoundError(_cifar_help(cls, root, f"download failed: {type(err).__name__}: {err}")) from err

    train, test = read(True), read(False)
    return Dataset(
        name=source,
        classes=list(train.classes),
        train_images=torch.from_numpy(np.ascontiguousarray(train.data)).permute(0, 3, 1, 2).contiguous(),
        train_labels=torch.as_tensor(train.targets, dtype=torch.int64),
        test_images=torch.from_numpy(np.ascontiguousarray(test.data)).permute(0, 3, 1, 2).contiguous(),
        test_labels=torch.as_tensor(test.targets, dtype=torch.int64),
    )


def _cifar_help(cls, root: Path, reason: str) -> str:
    return (f"{cls.__name__} not found (or corrupted) under {root}/{cls.base_folder}/ and {reason}. "
            f"Either run once on a machine with network access (load_dataset downloads it into "
            f"root={str(root)!r}), or fetch {cls.url} by hand and put {cls.filename} (or its extracted "
            f"{cls.base_folder}/ folder) into {root}/.")


# ---------------------------------------------------------------------------------------------------
# folder:PATH -- an ImageFolder-style tree or a tar of one, decoded once and cached
# ---------------------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_CACHE_FORMAT = 2  # bump when the cache layout changes: old files then simply stop matching (2: fingerprint)


def _load_folder(source: str, root: Path, cache: bool = True) -> Dataset:
    path = Path(source[len("folder:"):]).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{source}: no such file or folder: {path}")
    path = path.resolve()
    is_archive = path.is_file()
    if is_archive and not path.name.lower().endswith(_ARCHIVE_SUFFIXES):
        raise ValueError(f"{source}: a file source must be a {'/'.join(_ARCHIVE_SUFFIXES)} archive, got {path.name}")

    cache_file = root / "cache" / f"{_safe_name(path)}-{_source_key(path)}.pt" if cache else None
    if cache_file is not None and cache_file.exists():
        arrays = _read_cache(cache_file)
        if arrays is not None:
            return Dataset(name=source, **arrays)

    # Read the listing (and for an archive the bytes, ~20 MB for CIFAR-10) and check the layout
    # before the long part, decoding.
    files = _archive_files(path) if is_archive else _tree_files(path)
    classes, splits = _layout(files, source)
    arrays: dict = {"classes": classes}
    for split, items in splits.items():
        arrays[f"{split}_images"] = _decode_images([(name, read) for name, _, read in items])
        arrays[f"{split}_labels"] = torch.tensor([label for _, label, _ in items], dtype=torch.int64)
    if cache_file is not None:
        _write_cache(cache_file, arrays)
    return Dataset(name=source, **arrays)


def _safe_name(path: Path) -> str:
    name = path.name
    for suffix in _ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "folder"


def _source_key(path: Path) -> str:
    """16 hex digits from the resolved path, size and mtime; for a tree, of every file in it.

    A directory's own mtime changes only when its direct entries do, so a tree is keyed on all its
    files (a stat walk: ~0.2 s for 60k files).
    """
    h = hashlib.sha1(f"v{_CACHE_FORMAT}|{SIZE}|{path}".encode())
    if path.is_file():
        st = path.stat()
        h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                st = os.stat(full)
                h.update(f"|{os.path.relpath(full, path)}|{st.st_size}|{st.st_mtime_ns}".encode())
            h.update(f"|dir:{os.path.relpath(dirpath, path)}".encode())  # empty folders count too
    return h.hexdigest()[:16]


def _read_cache(cache_file: Path) -> dict | None:
    """The cached arrays, or None (with one warning line) when the file is unreadable; it is moved aside."""
    try:
        blob = torch.load(cache_file, map_location="cpu", weights_only=True)
        if blob.get("format") != _CACHE_FORMAT:
            raise ValueError(f"format {blob.get('format')!r}, expected {_CACHE_FORMAT}")
        arrays = {key: blob[key] for key in ("classes", "train_images", "train_labels", "test_images", "test_labels")}
        # validates dtypes, shapes and label range; the fingerprint catches changed bytes, which
        # torch.load reads without complaint
        if Dataset(name="cache", **arrays).fingerprint() != blob["fingerprint"]:
            raise ValueError("checksum mismatch: the arrays changed since they were written")
        return arrays
    except Exception as err:
        reason = (str(err).strip().splitlines() or [""])[0][:120]  # torch's messages run to many lines
        dest = cache_file.with_name(f"{cache_file.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        try:  # kept for inspection, as damaged runs are; its name no longer matches any source
            cache_file.rename(dest)
            where = f"moved to {dest.name}"
        except OSError as move_err:  # read-only, or a parallel load moved it first
            where = f"could not move it aside ({move_err.strerror})"
        warnings.warn(f"unreadable data cache {cache_file} ({type(err).__name__}: {reason}); {where}; rebuilding",
                      stacklevel=4)
        return None


def _write_cache(cache_file: Path, arrays: dict) -> None:
    """Write atomically (temp file + os.replace): a crash or a parallel run never leaves half a file."""
    # Serialised in memory first: torch.save straight into a file on a full disk raises
    # RuntimeError("[enforce fail at inline_container.cc] unexpected pos ..."), not OSError.
    buf = io.BytesIO()
    fingerprint = Dataset(name="cache", **arrays).fingerprint()
    torch.save({"format": _CACHE_FORMAT, "fingerprint": fingerprint, **arrays}, buf)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=cache_file.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getbuffer())
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is as readable as the data
            os.replace(tmp, cache_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:  # read-only or full disk: the data is loaded, only the next load is slower
        warnings.warn(f"could not write data cache {cache_file}: {err}", stacklevel=4)


# A file entry: (relative path inside the tree/archive, callable returning its bytes). Directories
# appear with read=None so that empty class folders can be reported.
def _tree_files(path: Path) -> list[tuple[str, object]]:
    entries = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        rel = Path(dirpath).relative_to(path).as_posix()
        if rel != ".":
            entries.append((rel + "/", None))
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            entries.append((Path(full).relative_to(path).as_posix(), lambda full=full: Path(full).read_bytes()))
    return entries


def _archive_files(path: Path) -> list[tuple[str, object]]:
    entries = []
    try:
        # One sequential pass keeping the bytes in memory: a gzip stream cannot seek back cheaply.
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = member.name
                while name.startswith("./"):  # archives made with `tar -C dir .`
                    name = name[2:]
                if name in ("", "."):
                    continue
                if member.isdir():
                    entries.append((name.rstrip("/") + "/", None))
                elif member.isfile():
                    data = tar.extractfile(member).read()
                    entries.append((name, lambda data=data: data))
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(f"cannot read archive {path}: {err}") from err
    return entries


def _skipped(parts: list[str]) -> bool:
    """Hidden files (.DS_Store, ._foo) and macOS archive debris are not data."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _layout(entries: list[tuple[str, object]], source: str) -> tuple[list[str], dict]:
    """Check the train/<class>/<file>, test/<class>/<file> layout; returns classes and per-split items.

    A single top-level folder around train/ and test/ is allowed (a typical tar). Everything is
    checked here, before any decoding: missing splits, files outside class folders, non-image
    extensions, empty class folders, train and test classes differing.
    """
    entries = [(name, read) for name, read in entries if name.strip("/") and not _skipped(name.strip("/").split("/"))]
    tops = {name.strip("/").split("/")[0] for name, _ in entries}
    prefix = ""
    if not {"train", "test"} <= tops and len(tops) == 1 and not tops & {"train", "test"}:
        prefix = next(iter(tops)) + "/"  # one wrapping folder, e.g. cifar10/train/...
        entries = [(name[len(prefix):], read) for name, read in entries if name[len(prefix):].strip("/")]
        tops = {name.strip("/").split("/")[0] for name, _ in entries}
    missing = {"train", "test"} - tops
    if missing:
        raise ValueError(f"{source}: expected train/<class>/ and test/<class>/ folders, found no "
                         f"{' or '.join(sorted(missing))}/ (top level: {sorted(tops)})")
    folders: dict[str, dict[str, list]] = {"train": {}, "test": {}}
    for name, read in entries:
        parts = name.strip("/").split("/")
        if parts[0] not in folders:
            continue  # e.g. a README next to train/ and test/
        is_dir = read is None
        if is_dir and len(parts) == 2:
            folders[parts[0]].setdefault(parts[1], [])
            continue
        if is_dir:
            continue  # deeper folders: their files are reported below
        if len(parts) != 3:
            raise ValueError(f"{source}: {prefix}{name} is not in a class folder ({parts[0]}/<class>/<image>)")
        if not parts[2].lower().endswith(IMAGE_EXTENSIONS):
            raise ValueError(f"{source}: {prefix}{name} is not an image file "
                             f"(extensions: {' '.join(IMAGE_EXTENSIONS)})")
        folders[parts[0]].setdefault(parts[1], []).append((prefix + name, read))
    train_classes, test_classes = sorted(folders["train"]), sorted(folders["test"])
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise ValueError(f"{source}: train and test class folders differ: only in train: {only_train}; "
                         f"only in test: {only_test}")
    for split in ("train", "test"):
        for cls, files in folders[split].items():
            if not files:
                raise ValueError(f"{source}: class folder {prefix}{split}/{cls}/ holds no images")
    if not train_classes:
        raise ValueError(f"{source}: train/ and test/ hold no class folders")
    splits = {
        split: [(name, label, read) for label, cls in enumerate(train_classes)
                for name, read in sorted(folders[split][cls], key=lambda item: item[0])]
        for split in ("train", "test")
    }
    return train_classes, splits


def _decode_one(name: str, data: bytes) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.size != (SIZE, SIZE):
                im.draft("RGB", (SIZE, SIZE))  # a big JPEG decodes at 1/2..1/8 scale: much faster
            im = im.convert("RGB")
            if im.size != (SIZE, SIZE):
                # Shorter side to 32, then the centre 32x32: CIFAR's framing, no distortion.
                scale = SIZE / min(im.size)
                w, h = max(SIZE, round(im.width * scale)), max(SIZE, round(im.height * scale))
                im = im.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=3.0)
                left, top = (w - SIZE) // 2, (h - SIZE) // 2
                im = im.crop((left, top, left + SIZE, top + SIZE))
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image {name}: {err}") from err


def _decode_images(items: list[tuple[str, object]]) -> Tensor:
    """Decode (name, read) pairs into one N,3,32,32 uint8 tensor, in order.

    A plain loop on purpose: for 32x32 JPEGs a thread pool was 2x slower (measured on 10k CIFAR
    test images, 2 cores: loop 0.8 s, 2 threads 1.7 s, 4 threads 1.5 s); the per-image Python work
    holds the GIL for longer than the decoding releases it.
    """
    out = np.empty((len(items), SIZE, SIZE, 3), dtype=np.uint8)
    for i, (name, read) in enumerate(items):
        out[i] = _decode_one(name, read())
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def load_unlabelled(path: str | Path) -> tuple[list[str], Tensor]:
    """Images without labels, to write a prediction file for (03's Kaggle-style ``predictions.csv``).

    ``path`` is a folder of image files (IDs: the file names without extension, in sorted order;
    any size, framed to 32x32 like a folder dataset), or a ``.npy`` / ``.pt`` array of N uint8
    images shaped N,32,32,3 or N,3,32,32 (IDs: 0..N-1). Returns (ids, N,3,32,32 uint8 tensor).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"unlabelled image set {path} does not exist (a folder of images, or .npy/.pt)")
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
        bad = [f.name for f in files if f.suffix.lower() not in IMAGE_EXTENSIONS]
        if bad:
            raise ValueError(f"{path}: not image files: {', '.join(bad[:5])} (valid: {', '.join(IMAGE_EXTENSIONS)})")
        if not files:
            raise ValueError(f"{path}: no image files")
        images = _decode_images([(str(f), f.read_bytes) for f in files])
        return [f.stem for f in files], images
    if path.suffix not in (".npy", ".pt"):
        raise ValueError(f"{path}: an unlabelled image set is a folder of images, a .npy or a .pt file")
    try:
        array = torch.as_tensor(np.load(path) if path.suffix == ".npy" else torch.load(path, weights_only=True))
    except Exception as err:
        raise ValueError(f"cannot read {path}: {type(err).__name__}: {err}") from err
    if array.dtype != torch.uint8 or array.dim() != 4:
        raise ValueError(f"{path}: expected uint8 images N,32,32,3 or N,3,32,32, got {array.dtype} {tuple(array.shape)}")
    if array.shape[-1] == 3 and array.shape[1] != 3:
        array = array.permute(0, 3, 1, 2)
    if tuple(array.shape[1:]) != (3, SIZE, SIZE):
        raise ValueError(f"{path}: expected images of 3x32x32, got {tuple(array.shape[1:])}")
    return [str(i) for i in range(len(array))], array.contiguous()


# ---------------------------------------------------------------------------------------------------
# The synthetic source: shapes on textured backgrounds, with a controllable background shortcut
# ---------------------------------------------------------------------------------------------------

# Class k is shape k; in the train split, a fraction `shortcut` of class k's images sit on texture k.
SHAPES = ("disc", "ring", "square", "diamond", "triangle", "plus", "x", "star", "bar", "crescent")
TEXTURES = ("hstripes", "vstripes", "diagonal", "checker", "gradient", "rings", "blobs", "dots", "camo", "plain")

# The generator's knobs (documented in make_synthetic and data/README.md). Lengths in pixels.
SYNTH = dict(
    radius=(8.0, 14.0),  # object radius (centre to farthest point), uniform
    tilt=20.0,  # degrees: square/diamond/plus/x rotate at most this much (else they would swap names)
    period=(3.0, 9.0),  # texture period, uniform
    texture_contrast=0.4,  # the texture's second colour differs from its first by at most this per channel
    noise=(0.01, 0.08),  # std of the Gaussian pixel noise (in [0,1] units), uniform per image
    background_value=(0.0, 0.7),  # background colour channels, uniform (before inversion)
    object_value=(0.35, 1.0),  # object colour channels, uniform (before inversion)
    dark_p=0.2,  # fraction of images inverted: dark object on a light background
    min_contrast=0.4,  # least RGB distance between object colour and background mean colour ([0,1] units)
    shading=0.3,  # lit from one side: brightness x (1 +- shading/2) at the object's edges, at most
    occluder_p=0.2,  # probability of a random bar drawn across the image (it may hide part of the object)
    tint=0.6,  # shortcut images: background colour moved this far towards the class's colour (_TINTS)
)
# One background colour per class (the shortcut's tint), within the background's value range.
_TINTS = 0.7 * torch.tensor([[0.12, 0.47, 0.71], [1.0, 0.5, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16],
                             [0.58, 0.4, 0.74], [0.55, 0.34, 0.29], [0.89, 0.47, 0.76], [0.5, 0.5, 0.5],
                             [0.74, 0.74, 0.13], [0.09, 0.75, 0.81]])
_CHUNK = 512  # images per rendering chunk
_ORIENTED = ("square", "diamond", "plus", "x")  # shapes whose name depends on their orientation
_ORIENTED_MASK = torch.tensor([name in _ORIENTED for name in SHAPES])


def make_synthetic(n_train: int = 50_000, n_test: int = 10_000, seed: int = 0, shortcut: float = 0.8) -> Dataset:
    """Ten shape classes on textured backgrounds, bit-identical for a given seed; with object masks.

    Studies: all, under the quick and smoke profiles (the offline source). 01 reads its failure
    cases and confusion pairs and scores Grad-CAM against ``test_masks``; the background shortcut
    is what makes "confidently wrong for a known reason" measurable there.

    Each image (knobs in ``SYNTH``): one object of class ``SHAPES[k]`` -- disc, ring, square,
    diamond, triangle, plus, x, star, bar, crescent; confusable pairs disc/ring, square/diamond,
    plus/x, x/star, crescent/bar -- of radius ~ U(8, 14) px, centred anywhere that keeps 60% of the
    radius in frame, rotated freely (at most +-20 degrees for the orientation-named square, diamond,
    plus, x), in a random colour with channels ~ U(0.35, 1), a mild shading gradient and
    anti-aliased edges; on a background ``TEXTURES[t]`` -- horizontal, vertical or diagonal
    stripes, checker, linear gradient, concentric rings, blobs, dots, camouflage noise, plain -- of
    period ~ U(3, 9) px, mixing a colour with channels ~ U(0, 0.7) and a second one at most 0.4
    per channel away. 20% of images are inverted (dark object, light background); an object closer
    than 0.4 (RGB distance) to the background's mean colour is recoloured. With probability 0.2 a
    grey bar 1-4 px wide crosses the image in front of the object. Gaussian pixel noise of std
    ~ U(0.01, 0.08) per image.

    The shortcut: in the train split, a fraction ``shortcut`` of each class's images use texture
    t = k and a background tinted 60% towards class k's colour (``SYNTH["tint"]``, ``_TINTS``), the
    rest a uniformly random texture and no tint; in the test split backgrounds are always random. A
    model that learns the backgrounds is right on train and confidently wrong on test. Measured
    with a 3-conv CNN (Adam, 5 epochs, 5k train images, no augmentation): see data/README.md.

    Labels are balanced: class k gets ``n // 10`` images, plus one for the first ``n % 10`` classes,
    in shuffled order. ``*_masks`` are True on the object's visible pixels (coverage > 1/2, minus
    what the occluding bar hides). Train and test draw from separate streams of ``seed``, so the test
    split does not depend on ``n_train``. ~3 s for the default 60k images on one CPU core.
    """
    if not 0.0 <= shortcut <= 1.0:
        raise ValueError(f"shortcut is a fraction in [0, 1], got {shortcut}")
    n_train, n_test = _count("n_train", n_train), _count("n_test", n_test)
    with _one_thread():
        train_images, train_labels, train_masks = _synth_split(n_train, seed, 0, shortcut)
        test_images, test_labels, test_masks = _synth_split(n_test, seed, 1, 0.0)
    return Dataset("synthetic", list(SHAPES), train_images, train_labels, test_images, test_labels,
                   train_masks, test_masks)


@contextmanager
def _one_thread():
    """Run torch single-threaded inside: the generator's ops are small (one 512-image chunk), and on a
    busy 2-core machine intra-op threads made 60k images take 3-30 s instead of a steady 2.8 s. It
    also keeps results independent of the machine's thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _synth_split(n: int, seed: int, stream: int, shortcut: float) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(int(seed) * 2 + stream)
    k = len(SHAPES)
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
    # All per-image parameters are drawn up front, in a fixed order, so chunking cannot change them.
    u = lambda *shape: torch.rand(n, *shape, generator=g)  # noqa: E731
    cue = u() < shortcut  # this image carries its class's background cue (texture and tint)
    texture = torch.where(cue, labels, torch.randint(0, k, (n,), generator=g))
    p = {
        "cue": cue,
        "radius": SYNTH["radius"][0] + (SYNTH["radius"][1] - SYNTH["radius"][0]) * u(),
        "centre": u(2),
        "angle": u(),
        "shape_extra": u(),
        "colour": u(3),
        "polarity": u(),
        "shade": u(),
        "bg_colours": u(2, 3),
        "period": SYNTH["period"][0] + (SYNTH["period"][1] - SYNTH["period"][0]) * u(),
        "bg_angle": u(),
        "bg_phase": u(2),
        "bg_soft": u(),
        "blobs": u(5, 4),
        "camo": u(1, 5, 5),
        "occluder": u(6),
        "noise": SYNTH["noise"][0] + (SYNTH["noise"][1] - SYNTH["noise"][0]) * u(),
    }
    images = torch.empty(n, 3, SIZE, SIZE, dtype=torch.uint8)
    masks = torch.empty(n, SIZE, SIZE, dtype=torch.bool)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        chunk = {key: value[sl] for key, value in p.items()}
        noise = torch.randn(sl.stop - sl.start, 3, SIZE, SIZE, generator=g)
        img, mask = _render(labels[sl], texture[sl], chunk, noise)
        images[sl], masks[sl] = img, mask
    return images, labels, masks


def _grid(b: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates, B,32,32 each (x to the right, y down)."""
    r = torch.arange(SIZE, dtype=torch.float32) + 0.5
    y, x = torch.meshgrid(r, r, indexing="ij")
    return x.expand(b, SIZE, SIZE), y.expand(b, SIZE, SIZE)


def _rot(x: Tensor, y: Tensor, angle: Tensor) -> tuple[Tensor, Tensor]:
    c, s = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
    return c * x + s * y, -s * x + c * y


def _shape_sdf(shape: str, u: Tensor, v: Tensor, extra: Tensor) -> Tensor:
    """Signed distance (negative inside) in object units (radius 1), roughly Euclidean near edges."""
    r = torch.sqrt(u * u + v * v)
    e = extra.view(-1, 1, 1)
    if shape == "disc":
        return r - 0.95
    if shape == "ring":
        width = 0.2 + 0.12 * e  # ring thickness varies: thin rings are the hard ones
        return (r - (1.0 - width)).abs() - width
    if shape == "square":
        return torch.maximum(u.abs(), v.abs()) - 0.72
    if shape == "diamond":
        return (u.abs() + v.abs()) * (0.5 ** 0.5) - 0.72
    if shape == "triangle":
        d = torch.stack([u * math.cos(a) + v * math.sin(a) for a in (math.pi / 2, math.pi * 7 / 6, math.pi * 11 / 6)])
        return d.amax(0) - 0.5
    if shape in ("plus", "x"):
        if shape == "x":
            u, v = (u + v) * 0.5 ** 0.5, (v - u) * 0.5 ** 0.5
        half = 0.22 + 0.08 * e
        arm_h = torch.maximum(u.abs() - 1.0, v.abs() - half)
        arm_v = torch.maximum(u.abs() - half, v.abs() - 1.0)
        return torch.minimum(arm_h, arm_v)
    if shape == "star":
        theta = torch.atan2(v, u)
        a = torch.remainder(theta * 5 / (2 * math.pi), 1.0)
        tip = (a - 0.5).abs() * 2  # 1 at a point, 0 between points
        return (r - (0.42 + 0.58 * tip)) * 0.6  # 0.6: the polar edge is slanted, keep AA widths sane
    if shape == "bar":
        return torch.maximum(u.abs() - 1.0, v.abs() - (0.22 + 0.1 * e))
    if shape == "crescent":
        bite = torch.sqrt((u - 0.45 - 0.15 * e) ** 2 + v * v)
        return torch.maximum(r - 0.95, 0.8 - bite)
    raise AssertionError(shape)


def _texture(name: str, x: Tensor, y: Tensor, p: dict) -> Tensor:
    """Texture value in [0, 1], B,32,32; mixed between the two background colours afterwards."""
    b = x.shape[0]
    period = p["period"].view(-1, 1, 1)
    phase = p["bg_phase"][:, 0].view(-1, 1, 1) * 2 * math.pi
    soft = (1.0 + 7.0 * p["bg_soft"]).view(-1, 1, 1)  # from sinusoid-like to hard-edged
    jitter = (p["bg_angle"] - 0.5) * math.radians(20)  # stripes are not perfectly axis-aligned

    def wave(s: Tensor) -> Tensor:
        return torch.sigmoid(soft * torch.sin(2 * math.pi * s / period + phase))

    if name == "hstripes":
        return wave(_rot(x, y, jitter)[1])
    if name == "vstripes":
        return wave(_rot(x, y, jitter)[0])
    if name == "diagonal":
        sign = torch.where(p["bg_phase"][:, 1] < 0.5, 1.0, -1.0)
        return wave(_rot(x, y, sign * (math.pi / 4 + jitter))[0])
    if name == "checker":
        xr, yr = _rot(x, y, jitter)
        s = torch.sin(2 * math.pi * xr / period + phase) * torch.sin(2 * math.pi * yr / period)
        return torch.sigmoid(soft * 2 * s)
    if name == "gradient":
        a = p["bg_angle"] * 2 * math.pi
        xr, _ = _rot(x - SIZE / 2, y - SIZE / 2, a)
        return (xr / SIZE + 0.5).clamp(0, 1)
    if name == "rings":
        cx = (p["bg_phase"][:, 1].view(-1, 1, 1) - 0.5) * 2 * SIZE + SIZE / 2
        cy = (p["bg_angle"].view(-1, 1, 1) - 0.5) * 2 * SIZE + SIZE / 2
        return wave(torch.sqrt((x - cx) ** 2 + (y - cy) ** 2))
    if name == "blobs":
        bl = p["blobs"]  # B,5,4: x, y, size, sign
        dx = x.unsqueeze(1) - bl[:, :, 0, None, None] * SIZE
        dy = y.unsqueeze(1) - bl[:, :, 1, None, None] * SIZE
        sigma = (2.0 + 0.6 * period.unsqueeze(1)) * (0.6 + 0.8 * bl[:, :, 2, None, None])
        sign = torch.sign(bl[:, :, 3, None, None] - 0.4)  # mostly bumps, some dips
        field = (torch.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma)) * sign).sum(1)
        return torch.sigmoid(soft * 0.5 * (field - 0.3) * 3)
    if name == "dots":
        xr, yr = _rot(x, y, jitter)
        s = torch.cos(2 * math.pi * xr / period + phase) + torch.cos(2 * math.pi * yr / period)
        return torch.sigmoid((2.0 + soft) * (s - 1.0))
    if name == "camo":
        low = F.interpolate(p["camo"], size=(SIZE, SIZE), mode="bicubic", align_corners=False)[:, 0]
        return torch.sigmoid(soft * 1.5 * (low - 0.5) * 4)
    if name == "plain":
        return torch.zeros(b, SIZE, SIZE)
    raise AssertionError(name)


def _render(labels: Tensor, texture: Tensor, p: dict, noise: Tensor) -> tuple[Tensor, Tensor]:
    """Draw one chunk: background texture, object (anti-aliased), occluder, noise -> uint8, masks."""
    b = labels.shape[0]
    x, y = _grid(b)
    # Background: texture value t in [0,1] mixes a random colour c0 with a nearby c1, so textures are
    # visible but quieter than the object.
    t = torch.empty(b, SIZE, SIZE)
    for i, name in enumerate(TEXTURES):
        sel = (texture == i).nonzero().squeeze(1)
        if sel.numel():
            t[sel] = _texture(name, x[sel], y[sel], {key: v[sel] for key, v in p.items()})
    # Colours: backgrounds darker than objects on the whole, with an overlap band; a fraction
    # dark_p of images is inverted (dark object on a light background).
    lo, hi = SYNTH["background_value"]
    c0 = lo + (hi - lo) * p["bg_colours"][:, 0]
    # The shortcut also tints the background towards a class colour, as CIFAR's skies and lawns
    # do: an easy early cue that plain SGD latches on to, and a wrong one on the test split.
    cue = p["cue"].view(-1, 1)
    c0 = torch.where(cue, torch.lerp(c0, _TINTS[labels], SYNTH["tint"]), c0)
    c1 = (c0 + (p["bg_colours"][:, 1] - 0.5) * 2 * SYNTH["texture_contrast"]).clamp(0, 1)
    lo, hi = SYNTH["object_value"]
    colour = lo + (hi - lo) * p["colour"]
    invert = (p["polarity"] < SYNTH["dark_p"]).view(-1, 1)
    c0, c1, colour = (torch.where(invert, 1.0 - c, c) for c in (c0, c1, colour))
    bg = torch.lerp(c0[:, :, None, None].expand(b, 3, SIZE, SIZE), c1[:, :, None, None].expand(b, 3, SIZE, SIZE),
                    t[:, None].expand(b, 3, SIZE, SIZE))

    # Object colour: random, but moved half-way round the colour cube (0.87 away) when it is closer
    # than min_contrast to the background's mean colour. Colour stays uninformative about the class.
    bg_mean = c0 + (c1 - c0) * t.mean(dim=(1, 2)).unsqueeze(1)
    close = (colour - bg_mean).norm(dim=1, keepdim=True) < SYNTH["min_contrast"]
    colour = torch.where(close, (bg_mean + 0.5).remainder(1.0), colour)

    # Object: local coordinates in object units, then the class's signed distance -> coverage.
    radius = p["radius"].view(-1, 1, 1)
    margin = 0.6 * p["radius"]  # the centre keeps 60% of the radius inside the frame
    cx = (margin + (SIZE - 2 * margin) * p["centre"][:, 0]).view(-1, 1, 1)
    cy = (margin + (SIZE - 2 * margin) * p["centre"][:, 1]).view(-1, 1, 1)
    tilt = math.radians(SYNTH["tilt"])
    angle = torch.where(_ORIENTED_MASK[labels], (p["angle"] - 0.5) * 2 * tilt, p["angle"] * 2 * math.pi)
    u, v = _rot((x - cx) / radius, (y - cy) / radius, angle)
    sdf = torch.empty(b, SIZE, SIZE)
    for i, name in enumerate(SHAPES):
        sel = (labels == i).nonzero().squeeze(1)
        if sel.numel():
            sdf[sel] = _shape_sdf(name, u[sel], v[sel], p["shape_extra"][sel])
    alpha = sdf.mul_(-radius).add_(0.5).clamp_(0, 1)  # distance in pixels -> a 1-pixel AA edge
    # Mild shading across the object (lit from one side), so it is not a flat sticker.
    shade = u.mul_((p["shade"] - 0.5).view(-1, 1, 1) * SYNTH["shading"]).add_(1.0)
    obj = (colour[:, :, None, None] * shade[:, None]).clamp_(0, 1)
    img = bg.lerp_(obj, alpha[:, None].expand(b, 3, SIZE, SIZE))

    # Occluder: a bar across the whole image in a random grey, in front of the object.
    oc = p["occluder"]
    on = (oc[:, 0] < SYNTH["occluder_p"]).nonzero().squeeze(1)
    occ = torch.zeros(b, SIZE, SIZE)
    if on.numel():
        ox, oy = oc[on, 1].view(-1, 1, 1) * SIZE, oc[on, 2].view(-1, 1, 1) * SIZE  # a point on the bar
        ou, _ = _rot(x[on] - ox, y[on] - oy, oc[on, 3] * math.pi)
        half = (0.6 + 1.2 * oc[on, 4]).view(-1, 1, 1)  # half-width 0.6..1.8 px
        occ[on] = (half - ou.abs() + 0.5).clamp(0, 1)
        grey = oc[on, 5].view(-1, 1, 1, 1).expand(-1, 3, SIZE, SIZE)
        img[on] = img[on].lerp_(grey, occ[on, None].expand(-1, 3, SIZE, SIZE))

    img.add_(noise.mul_(p["noise"].view(-1, 1, 1, 1)))
    mask = (alpha > 0.5) & (occ < 0.5)
    return img.mul_(255).round_().clamp_(0, 255).to(torch.uint8), mask
