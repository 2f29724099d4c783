"""``folder:PATH``: an ImageFolder-style tree ``train/<class>/*``, ``test/<class>/*``, or a tar of one.

Decoded once, then cached as tensors under ``<root>/cache/`` (written through ``helpers.store``'s
atomic writer; a damaged cache file is moved aside and the source decoded again).

A dataset may come from anyone, so the layout is checked from the names alone before any file's
bytes are read; only regular files are read (a link, a FIFO or a device is refused by name: a FIFO
blocks a reader, ``/dev/zero`` never ends); file and archive sizes are capped
(:data:`MEMBER_LIMIT`, :data:`TOTAL_LIMIT`), counting decompressed bytes as they are read, so a small
archive cannot expand into all the memory; and names must be UTF-8.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import re
import stat
import tarfile
import warnings
import zlib
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from .. import store
from .dataset import SIZE, Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CACHE_FORMAT = 2  # bump when the cache layout changes: old files then simply stop matching (2: fingerprint)

# What a folder dataset may make this process read. CIFAR-10 as PNGs is 60,000 files of ~2.5 KB,
# ~150 MB in all (a tar of it the same, decompressed); a 4000x3000 photo as PNG is ~20 MB.
MEMBER_LIMIT = 64 * 2**20  # bytes: one image file, and any one entry of an archive (a tar header's name, say)
TOTAL_LIMIT = 2 * 2**30    # bytes: all the images of a dataset, and an archive's stream once decompressed
_REFUSED_WHY = "only regular files and folders are read; copy the real file or folder into the dataset instead"


class Member(NamedTuple):
    """An image the dataset will read: where it is (a path in a tree, an index in an archive) and its size."""

    where: object
    size: int


class Refused(str):
    """An entry that is never read (what it is, e.g. "a symbolic link"): an error if the layout uses it."""


def load_folder(source: str, root: Path, cache: bool = True) -> Dataset:
    path = Path(source[len("folder:"):]).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{source}: no such file or folder: {path}")
    path = path.resolve()
    is_archive = path.is_file()
    if is_archive and not path.name.lower().endswith(_ARCHIVE_SUFFIXES):
        raise ValueError(f"{source}: a file source must be a {'/'.join(_ARCHIVE_SUFFIXES)} archive, got {path.name}")

    listing = None if is_archive else _tree_listing(path)  # lstat only: nothing is opened yet
    cache_file = root / "cache" / f"{_safe_name(path)}-{_source_key(path, listing)}.pt" if cache else None
    if cache_file is not None and cache_file.exists():
        arrays = read_cache(cache_file)
        if arrays is not None:
            return Dataset(name=source, **arrays)

    # The layout and the sizes are checked from the listing alone, before any file's bytes are read
    # (and before the long part, decoding).
    entries = _archive_entries(path) if is_archive else _tree_entries(path, listing)
    classes, splits = _layout(entries, source)
    _check_sizes(splits, source)
    blobs = _read_members(path, {m.where for items in splits.values() for _, _, m in items}) if is_archive else None
    arrays: dict = {"classes": classes}
    for split, items in splits.items():
        arrays[f"{split}_images"] = decode_images([(name, _reader(m, name, blobs)) for name, _, m in items])
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


def _source_key(path: Path, listing: list | None = None) -> str:
    """16 hex digits from the resolved path, size and mtime; for a tree, of every file in it (``listing``).

    A directory's own mtime changes only when its direct entries do, so a tree is keyed on all its
    files (a stat walk: ~0.2 s for 60k files).
    """
    h = hashlib.sha1(f"v{CACHE_FORMAT}|{SIZE}|{path}".encode())
    if listing is None:
        st = path.stat()
        h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
    for rel, mode, size, mtime in listing or []:
        h.update((f"|dir:{rel}" if mode is None else f"|{rel}|{size}|{mtime}").encode("utf-8", "surrogateescape"))
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


# An entry of a tree or an archive: (relative name, Member), (name + "/", None) for a folder (so that
# empty class folders can be reported), or (name, Refused) for what is never read.
def _tree_listing(path: Path) -> list[tuple[str, int | None, int, int]]:
    """(relative name, lstat mode or None for a folder, size, mtime_ns) of everything in a tree;
    links are listed, not followed (os.walk does not descend into a linked folder)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        linked = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(filenames) + linked:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            out.append((os.path.relpath(full, path), st.st_mode, st.st_size, st.st_mtime_ns))
        out.append((os.path.relpath(dirpath, path), None, 0, 0))  # empty folders count too
    return out


def _tree_entries(path: Path, listing: list) -> list[tuple[str, object]]:
    entries = []
    for rel, mode, size, _ in listing:
        name = Path(rel).as_posix()
        if mode is None:
            if name != ".":
                entries.append((name + "/", None))
        elif stat.S_ISREG(mode):
            entries.append((name, Member(os.path.join(path, rel), size)))
        else:
            entries.append((name, Refused(store.kind(mode))))
    return entries


def _archive_entries(path: Path) -> list[tuple[str, object]]:
    """The archive's entries from its headers alone (one pass; no member's bytes are kept)."""
    entries = []
    with _open_tar(path) as tar:
        for i, member in enumerate(tar):
            name = member.name
            while name.startswith("./"):  # archives made with `tar -C dir .`
                name = name[2:]
            if name in ("", "."):
                continue
            if member.isdir():
                entries.append((name.rstrip("/") + "/", None))
            elif member.isfile():
                entries.append((name, Member(i, member.size)))
            else:
                entries.append((name, Refused("a link" if member.issym() or member.islnk() else "a device or FIFO")))
    return entries


def _read_members(path: Path, wanted: set[int]) -> dict[int, bytes]:
    """The bytes of the archive's members numbered in ``wanted`` (a second pass: a gzip stream cannot seek back)."""
    blobs = {}
    with _open_tar(path) as tar:
        for i, member in enumerate(tar):
            if i in wanted:
                blobs[i] = tar.extractfile(member).read()
                if len(blobs) == len(wanted):
                    break
    return blobs


@contextmanager
def _open_tar(path: Path):
    """A tar opened for reading through :class:`_Capped`, decompressed here so that every byte is counted."""
    try:
        with store.open_regular(path) as raw:
            with _decompressed(raw) as stream, tarfile.open(fileobj=_Capped(stream, path), mode="r:") as tar:
                yield tar
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as err:
        raise ValueError(f"cannot read archive {path}: {err}") from err


def _decompressed(raw: io.BufferedReader):
    """The archive's tar stream: gzip, bzip2 and xz by their first bytes (as tarfile's "r:*"), else as it is."""
    magic = raw.read(6)
    raw.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)
    if magic[:3] == b"BZh":
        return bz2.BZ2File(raw)
    return lzma.LZMAFile(raw) if magic == b"\xfd7zXZ\x00" else nullcontext(raw)


class _Capped:
    """A read-only stream that stops past TOTAL_LIMIT bytes and refuses any one read of more than
    MEMBER_LIMIT (tarfile reads a long name or a pax header whole); it only seeks forward, by reading."""

    def __init__(self, stream, path: Path):
        self.stream, self.path, self.pos = stream, path, 0

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0 or n > MEMBER_LIMIT:  # tarfile always asks for a size
            raise ValueError(f"cannot read archive {self.path}: an entry larger than the {_size(MEMBER_LIMIT)} "
                             "one file may have (helpers.data.folder.MEMBER_LIMIT)")
        data = self.stream.read(n)
        self.pos += len(data)
        if self.pos > TOTAL_LIMIT:
            raise ValueError(f"cannot read archive {self.path}: more than {_size(TOTAL_LIMIT)} once decompressed "
                             "(helpers.data.folder.TOTAL_LIMIT); is it a dataset of small images?")
        return data

    def tell(self) -> int:
        return self.pos

    def seek(self, target: int, whence: int = 0) -> int:
        if whence != 0 or target < self.pos:
            raise ValueError(f"cannot read archive {self.path}: a header points back into the archive")
        while self.pos < target and self.read(min(target - self.pos, 1 << 20)):
            pass
        return self.pos


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def _check_sizes(splits: dict, source: str) -> None:
    """Every image at most MEMBER_LIMIT bytes, all of them at most TOTAL_LIMIT: checked before reading."""
    total = 0
    for items in splits.values():
        for name, _, member in items:
            if member.size > MEMBER_LIMIT:
                raise ValueError(f"{source}: {name} is {_size(member.size)}, more than the {_size(MEMBER_LIMIT)} one "
                                 "image may have (helpers.data.folder.MEMBER_LIMIT); refused")
            total += member.size
    if total > TOTAL_LIMIT:
        raise ValueError(f"{source}: its images add up to {_size(total)}, more than {_size(TOTAL_LIMIT)} "
                         "(helpers.data.folder.TOTAL_LIMIT); refused")


def _reader(member: Member, name: str, blobs: dict | None):
    """What returns an image's bytes: the archive's second pass kept them, a tree's file is read when decoded."""
    if blobs is not None:
        return lambda: blobs[member.where]
    return lambda: _read_file(member.where, name)


def _read_file(where, name: str) -> bytes:
    """A tree's image file: a regular file (no link, FIFO or device) of at most MEMBER_LIMIT bytes."""
    data = store.read_regular(Path(where), MEMBER_LIMIT)
    if len(data) > MEMBER_LIMIT:
        raise ValueError(f"{name}: more than the {_size(MEMBER_LIMIT)} one image may have "
                         "(helpers.data.folder.MEMBER_LIMIT); refused")
    return data


def _skipped(parts: list[str]) -> bool:
    """Hidden files (.DS_Store, ._foo) and macOS archive debris are not data."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _visible(entries: list[tuple[str, object]], source: str) -> list[tuple[str, object]]:
    """The entries that are not hidden (:func:`_skipped`); their names must be UTF-8 (class names become
    figure labels, file names appear in messages)."""
    entries = [(name, read) for name, read in entries if name.strip("/") and not _skipped(name.strip("/").split("/"))]
    for name, _ in entries:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8, kept by the file system's surrogate escapes
            raise ValueError(f"{source}: the name {os.fsencode(name)!r} is not UTF-8; refused: rename it") from None
    return entries


def _layout(entries: list[tuple[str, object]], source: str) -> tuple[list[str], dict]:
    """Check the train/<class>/<file>, test/<class>/<file> layout; returns classes and per-split items.

    A single top-level folder around train/ and test/ is allowed (a typical tar). Everything is
    checked here, before any file is read: names not UTF-8, missing splits, links and FIFOs, files outside
    class folders, non-image extensions, empty class folders, train and test classes differing.
    """
    entries = _visible(entries, source)
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
        if isinstance(read, Refused):
            raise ValueError(f"{source}: {prefix}{name} is {read} and is refused ({_REFUSED_WHY})")
        if read is None:  # a folder: a class folder is noted; deeper ones' files are reported below
            if len(parts) == 2:
                folders[parts[0]].setdefault(parts[1], [])
            continue
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
    except UnidentifiedImageError:  # PIL's message names only an in-memory buffer
        raise ValueError(f"cannot read image {name}: not an image format PIL knows, or damaged") from None
    except Image.DecompressionBombError as err:  # a small file that decodes to billions of pixels
        raise ValueError(f"cannot read image {name}: refused: {err} (PIL.Image.MAX_IMAGE_PIXELS)") from None
    except (OSError, SyntaxError, ValueError) as err:
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
