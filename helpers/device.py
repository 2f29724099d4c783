"""Where a run executes and how reproducibly: the device, seeds, RNG state, the precision.

Used by training (``helpers.train``) and evaluation (``helpers.evaluate``, ``helpers.cam``) alike,
so neither depends on the other for these.
"""

from __future__ import annotations

import contextlib
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


def environment(device: torch.device, deterministic: bool) -> dict:
    """What a run executed on and which determinism settings were in force (a run's manifest)."""
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "threads": torch.get_num_threads(),
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
