"""Images without labels, to write a prediction file for (notebook 03's competition file).

:func:`load_unlabelled` reads a folder of images, a ``.npy`` / ``.pt`` uint8 array, or the
competition's own pickle (``.pkl`` / ``.pickle``: a dict with ``b'data'`` and ``b'ids'``, as
report 002's code read it). A pickle can run code when loaded, so it goes through
:class:`RestrictedUnpickler`, which rebuilds only plain containers, bytes, strings, numbers and
numpy arrays, and refuses anything else before it is called: a file from someone else cannot run
anything here.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import store
from .dataset import SIZE
from .folder import IMAGE_EXTENSIONS, _read_file, decode_images

PICKLES = (".pkl", ".pickle")
# The only globals a pickle of dicts, lists, bytes and numpy arrays needs (numpy 1 and 2 module names).
ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
           ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
           ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
           ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}


class UnsafePickle(ValueError):
    """A pickle that names something other than plain data: refused before anything in it runs."""


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ALLOWED` globals (the competition's test set)."""

    def __init__(self, file, name: str):
        super().__init__(file, encoding="bytes")
        self.name = name

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise UnsafePickle(f"{self.name}: refused: the pickle asks for {module}.{name}, which is not plain "
                               "data (only containers, bytes, numbers and numpy arrays are read); nothing in it ran")
        return super().find_class(module, name)


def read_competition_pickle(path: Path) -> tuple[list[str], Tensor]:
    """The competition's unlabelled test set: ``b'data'`` (N rows of 3,072 values, channel-major as
    CIFAR's own batches, or N,32,32,3) and ``b'ids'`` (03)."""
    with store.open_regular(path) as f:
        blob = RestrictedUnpickler(f, str(path)).load()
    if not isinstance(blob, dict) or b"data" not in blob or b"ids" not in blob:
        raise ValueError(f"{path}: expected a dict with b'data' and b'ids' (the competition's test set), got "
                         f"{type(blob).__name__} with {sorted(map(repr, blob))[:4] if isinstance(blob, dict) else '-'}")
    data = np.asarray(blob[b"data"])
    if data.dtype != np.uint8 or data.ndim not in (2, 4) or (data.ndim == 2 and data.shape[1] != 3 * SIZE * SIZE):
        raise ValueError(f"{path}: b'data' must be uint8 N x 3072 or N x 32 x 32 x 3, got {data.dtype} {data.shape}")
    images = torch.from_numpy(data.reshape(-1, 3, SIZE, SIZE) if data.ndim == 2 else data.transpose(0, 3, 1, 2))
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in list(blob[b"ids"])]
    if len(ids) != len(images):
        raise ValueError(f"{path}: {len(ids)} ids for {len(images)} images")
    return ids, images.contiguous()


def load_unlabelled(path: str | Path) -> tuple[list[str], Tensor]:
    """Images without labels, to write a prediction file for (03's Kaggle-style ``predictions.csv``).

    ``path`` is a folder of image files (IDs: the file names without extension, in sorted order;
    any size, framed to 32x32 like a folder dataset), a ``.npy`` / ``.pt`` array of N uint8 images
    shaped N,32,32,3 or N,3,32,32 (IDs: 0..N-1), or the competition's pickle
    (:func:`read_competition_pickle`). Returns (ids, N,3,32,32 uint8 tensor).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"unlabelled image set {path} does not exist (a folder of images, .npy/.pt, or "
                                "the competition's .pkl)")
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
        bad = [f.name for f in files if f.suffix.lower() not in IMAGE_EXTENSIONS]
        if bad:
            raise ValueError(f"{path}: not image files: {', '.join(bad[:5])} (valid: {', '.join(IMAGE_EXTENSIONS)})")
        if not files:
            raise ValueError(f"{path}: no image files")
        images = decode_images([(str(f), lambda f=f: _read_file(f, str(f))) for f in files])  # regular files only
        return [f.stem for f in files], images
    if path.suffix.lower() in PICKLES:
        return read_competition_pickle(path)
    if path.suffix not in (".npy", ".pt"):
        raise ValueError(f"{path}: an unlabelled image set is a folder of images, a .npy or .pt file, or the "
                         "competition's .pkl")
    try:
        with store.open_regular(path) as f:  # not a FIFO or a device: those would block or never end
            array = torch.as_tensor(np.load(f) if path.suffix == ".npy" else torch.load(f, weights_only=True))
    except Exception as err:
        raise ValueError(f"cannot read {path}: {type(err).__name__}: {err}") from err
    if array.dtype != torch.uint8 or array.dim() != 4:
        raise ValueError(f"{path}: expected uint8 images N,32,32,3 or N,3,32,32, got {array.dtype} {tuple(array.shape)}")
    if array.shape[-1] == 3 and array.shape[1] != 3:
        array = array.permute(0, 3, 1, 2)
    if tuple(array.shape[1:]) != (3, SIZE, SIZE):
        raise ValueError(f"{path}: expected images of 3x32x32, got {tuple(array.shape[1:])}")
    return [str(i) for i in range(len(array))], array.contiguous()
