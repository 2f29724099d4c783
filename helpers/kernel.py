"""The Jupyter kernel the runner executes notebooks in: this environment's Python, quiet (runner).

- ``ensure_kernel``: the ``python3`` kernelspec papermill gets must start this interpreter.
- ``kernel_env``: the environment variables the kernels inherit (no progress bars, no live widgets).
- ``quiet_kernel``: engine options for papermill that keep the kernel's own noise out of the
  runner's output. The kernel process inherits the runner's stdout/stderr, so whatever ipykernel
  logs there (``[IPKernelApp] WARNING | Kernel is running over TCP without encryption...``, the
  "KeyboardInterrupt caught in kernel" line at shutdown) and whatever a library writes to file
  descriptor 2 landed in the middle of the runner's progress. The kernel's stdout/stderr go to a
  log file in the notebook's report folder instead (nothing of the notebook's own output is lost:
  that reaches the notebook through the kernel protocol), and where pyzmq and the kernelspec
  support it, jupyter_client provisions CurveZMQ keys so the channels are encrypted, which is what
  the warning asks for.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import zmq
from ipykernel.kernelspec import install
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from traitlets import Unicode
from traitlets.config import Config

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "python3"


class UsageError(ValueError):
    """A bad request found before anything ran (the command line exits with status 2)."""


def kernel_is_ours(spec) -> bool:
    """True when a kernelspec starts this interpreter's environment.

    jupyter_client swaps an argv[0] of "python"/"python3"/"python3.X" for sys.executable, so those
    count as ours; otherwise compare bin folders (realpath would equate a venv with its base).
    """
    exe = spec.argv[0] if spec.argv else ""
    if exe in {"python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]}:
        return True
    return Path(exe).absolute().parent == Path(sys.executable).absolute().parent


def find_kernel():
    """Return the kernelspec papermill would get for KERNEL, or None when there is none."""
    try:
        return KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        return None


def install_env_kernel() -> None:
    """Register KERNEL in sys.prefix for this interpreter (``ipykernel install --sys-prefix``)
    unless a spec there already runs it."""
    folder = Path(sys.prefix, "share", "jupyter", "kernels", KERNEL)
    if (folder / "kernel.json").is_file() and kernel_is_ours(KernelSpec.from_resource_dir(str(folder))):
        return
    install(kernel_name=KERNEL, prefix=sys.prefix)


def ensure_kernel() -> str:
    """Make KERNEL resolve to this environment's Python; return the kernelspec folder used.

    A ``python3`` spec registered at user level (say for the system Python) shadows the venv's
    unless Jupyter prefers environment paths, so: register one in sys.prefix (``--sys-prefix``)
    if missing, and set JUPYTER_PREFER_ENV_PATH=1 for this process so it wins.
    """
    spec = find_kernel()
    if spec is not None and kernel_is_ours(spec):
        return spec.resource_dir
    if spec is not None:
        print(f"note: kernel {KERNEL!r} at {spec.resource_dir} runs another Python "
              f"({spec.argv[0]}); preferring this environment's", flush=True)
    install_env_kernel()
    os.environ["JUPYTER_PREFER_ENV_PATH"] = "1"
    spec = find_kernel()
    if spec is None or not kernel_is_ours(spec):
        where = spec.resource_dir if spec else "nowhere"
        raise UsageError(f"kernel {KERNEL!r} resolves to {where} ({spec.argv[0] if spec else '-'}), "
                         f"not {sys.executable}; remove it (jupyter kernelspec remove {KERNEL}) "
                         "or fix JUPYTER_PATH")
    return spec.resource_dir


@contextmanager
def kernel_env():
    """Environment for the kernels papermill starts; restores os.environ afterwards."""
    saved = dict(os.environ)
    # A non-inline backend (MPLBACKEND=Agg, common in CI) stops ipykernel from installing the
    # inline backend, so figures would vanish from the executed notebooks and their reports.
    os.environ.pop("MPLBACKEND", None)
    # Let the kernel import helpers from this checkout even if the package is not installed.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved.get("PYTHONPATH")]))
    # Progress bars are for people watching a live notebook; in a saved report they are widget
    # placeholders ("HBox(children=...)") or pages of redrawn bars. The runner prints progress.
    os.environ["TQDM_DISABLE"] = "1"
    # No frontend draws widgets here: helpers.explorer shows its static panel instead (its HEADLESS).
    os.environ["HELPERS_HEADLESS"] = "1"
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class LoggedKernelManager(AsyncKernelManager):
    """nbclient's default kernel manager, with the kernel's stdout/stderr sent to ``log_file``."""

    log_file = Unicode("", config=True, help="append the kernel process's stdout/stderr here")

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if not self.log_file:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        # Popen gives the kernel its own copy of the descriptor, so ours can close at once.
        with open(self.log_file, "ab") as log:
            return await super()._async_launch_kernel(kernel_cmd, **{**kw, "stdout": log, "stderr": log})


def quiet_kernel(log_file: Path) -> dict:
    """papermill engine options: the kernel's own output goes to ``log_file``; encrypted channels
    where possible (see the module docstring)."""
    config = Config({"LoggedKernelManager": {"log_file": str(log_file)}})
    if zmq.has("curve"):  # "auto": encrypt when the kernelspec declares support, else as before
        config.KernelManager.transport_encryption = "auto"
    return {"kernel_manager_class": LoggedKernelManager, "config": config}
