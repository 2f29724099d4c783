"""``folder:PATH``: an ImageFolder-style tree ``train/<class>/*``, ``test/<class>/*``, or a tar of one.

Decoded once, then cached as tensors under ``<root>/cache/`` (written through ``helpers.store``'s
atomic writer; a damaged cache file is moved aside and the source decoded again). Also
:func:`load_unlabelled`, the images notebook 03 writes a prediction file for.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import store
from .dataset import SIZE, Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CACHE_FORMAT = 2  # bump when the cache layout changes: old files then simply stop matching (2: fingerprint)


def load_folder(source: str, root: Path, cache: bool = True) -> Dataset:
    path = Path(source[len("folder:"):]).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{source}: no such file or folder: {path}")
    path = path.resolve()
    is_archive = path.is_file()
    if is_archive and not path.name.lower().endswith(_ARCHIVE_SUFFIXES):
        raise ValueError(f"{source}: a file source must be a {'/'.join(_ARCHIVE_SUFFIXES)} archive, got {path.name}")

    cache_file = root / "cache" / f"{_safe_name(path)}-{_source_key(path)}.pt" if cache else None
    if cache_file is not None and cache_file.exists():
        arrays = read_cache(cache_file)
        if arrays is not None:
            return Dataset(name=source, **arrays)

    # Read the listing (and for an archive the bytes, ~20 MB for CIFAR-10) and check the layout
    # before the long part, decoding.
    files = _archive_files(path) if is_archive else _tree_files(path)
    classes, splits = _layout(files, source)
    arrays: dict = {"classes": classes}
    for split, items in splits.items():
        arrays[f"{split}_images"] = decode_images([(name, read) for name, _, read in items])
        arrays[f"{split}_labels"] = torch.tensor([label for _, label, _ in items], dtype=torch.int64)
    if cache_file is not None:
        write_cache(cache_file, arrays)
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
    h = hashlib.sha1(f"v{CACHE_FORMAT}|{SIZE}|{path}".encode())
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


def read_cache(cache_file: Path) -> dict | None:
    """The cached arrays, or None (with one warning line) when the file is unreadable; it is moved aside."""
    try:
        blob = store.load_tensors(cache_file, cache_file, map_location="cpu")
        if blob.get("format") != CACHE_FORMAT:
            raise ValueError(f"format {blob.get('format')!r}, expected {CACHE_FORMAT}")
        arrays = {key: blob[key] for key in ("classes", "train_images", "train_labels", "test_images", "test_labels")}
        # validates dtypes, shapes and label range; the fingerprint catches changed bytes, which
        # torch.load reads without complaint
        if Dataset(name="cache", **arrays).fingerprint() != blob["fingerprint"]:
            raise ValueError("checksum mismatch: the arrays changed since they were written")
        return arrays
    except Exception as err:
        why = f"unreadable data cache {cache_file} ({store.one_line(err, 160)})"
        try:  # kept for inspection, as damaged runs are; its name no longer matches any source
            store.move_aside(cache_file, why, "decoding the images again")
        except OSError as move_err:  # read-only, or a parallel load moved it first
            warnings.warn(f"{why}; could not move it aside ({move_err.strerror}); decoding the images again",
                          stacklevel=3)
        return None


def write_cache(cache_file: Path, arrays: dict) -> None:
    """Write atomically (``store.save_torch``): a crash or a parallel run never leaves half a file."""
    fingerprint = Dataset(name="cache", **arrays).fingerprint()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        store.save_torch({"format": CACHE_FORMAT, "fingerprint": fingerprint, **arrays}, cache_file)
    except OSError as err:  # read-only or full disk: the data is loaded, only the next load is slower
        warnings.warn(f"could not write data cache {cache_file}: {err}", stacklevel=3)


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


def decode_images(items: list[tuple[str, object]]) -> Tensor:
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
        images = decode_images([(str(f), f.read_bytes) for f in files])
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
