"""Where a run executes and how reproducibly: the device, seeds, RNG state, the precision.

Used by training (``helpers.train``) and evaluation (``helpers.evaluate``, ``helpers.cam``) alike,
so neither depends on the other for these.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import random

import numpy as np
import torch


def pick_device(name: str = "auto") -> torch.device:
    """CUDA, then Apple's MPS, then CPU (all notebooks, through ``fit``)."""
    if name != "auto":
        device = torch.device(name)
        # say so now, in one line, rather than with a driver error once the model is built
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"TrainConfig: device {name!r} is not available here (no CUDA GPU found); use 'auto' or 'cpu'")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"TrainConfig: device {name!r} is not on this machine: it has "
                             f"{torch.cuda.device_count()} CUDA GPU(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"TrainConfig: device {name!r} is not available here (no Apple GPU found); use 'auto' or 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; make cuDNN deterministic (report 000's protocol)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def rng_state() -> dict:
    """Python, NumPy and torch RNG states as tensors, ints and strings only, so that a checkpoint
    holding them loads with ``torch.load(weights_only=True)`` (NumPy's state is an ndarray)."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, torch.tensor(words, dtype=torch.int64), gauss],
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def channels_last(device: torch.device, precision: str = "fp32") -> bool:
    """Whether a run keeps its model and batches in NHWC layout (all studies, via ``fit``).

    On CUDA only with the bf16 speed option (tensor cores want NHWC). On CPU always: oneDNN's NHWC
    convolutions beat the NCHW path for every study's model at its quick width (the benchmark's
    ``cpu_path`` section measures it per model). The arithmetic stays fp32; only the summation order
    of the convolutions changes, so runs agree with NCHW ones to float rounding, not bit for bit."""
    return precision == "bf16" or torch.device(device).type == "cpu"


_KEPT = []


def keep_freed_memory() -> bool:
    """Stop glibc from handing large freed blocks back to the OS after every training step (CPU runs).

    By default glibc serves blocks over its mmap threshold with fresh ``mmap`` calls and trims the heap
    on ``free``, so each step's activations and gradients are page-faulted in anew; with thresholds of
    1 GiB the blocks are reused from the heap (``cpu_path`` benchmark). The heap then holds on to the
    run's peak working set, which the process needs again at the next step anyway. Process-wide, once;
    False where the C library has no ``mallopt`` (macOS, Windows, musl): nothing changes there."""
    if _KEPT:
        return _KEPT[0]
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        _KEPT.append(False)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    _KEPT.append(bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 30)))
    return _KEPT[0]


@contextlib.contextmanager
def torch_threads(n: int):
    """Run torch with ``n`` intra-op threads inside, the previous count restored after (01, 02, 04, 05:
    the explorer's one-image views). Work on one or two images gains nothing from a second thread, and
    on a shared 2-core machine each small op then waits for a descheduled thread: an explorer view
    right after training in the same process took 0.3-2.1 s with 2 threads, 0.15-0.18 s with 1."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, not {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# No report trained in mixed precision; bf16 is an explicit speed option for CUDA.
PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str = "fp32"):
    """The forward pass's precision context: fp32 (every report's; the default) or bf16 autocast.

    bf16 is an explicit speed option for CUDA only (tensor-core speed without fp16's loss scaling);
    asking for it anywhere else is an error rather than a silent fp32 run. Studies: all, via ``fit``.
    """
    check_precision(precision, device)
    if precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def check_precision(precision: str, device: torch.device) -> None:
    """A ValueError naming the choices for an unknown precision, or bf16 on a device without CUDA."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "bf16" and torch.device(device).type != "cuda":
        raise ValueError(f"precision 'bf16' (bf16 autocast + channels_last) runs on CUDA only; this run's device "
                         f"is {device}. Use precision='fp32' (every report's precision).")


def environment(device: torch.device, deterministic: bool, precision: str = "fp32") -> dict:
    """What a run executed on and which determinism settings were in force (a run's manifest)."""
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "channels_last": channels_last(device, precision),
        "kept_freed_memory": bool(_KEPT and _KEPT[0]),
        "deterministic": deterministic,  # what the config asked for; below, what was in force
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        # cuBLAS is only run-to-run reproducible with a fixed workspace (":4096:8" or ":16:8")
        env["cublas_workspace_config"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    return env
