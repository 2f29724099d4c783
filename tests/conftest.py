"""Test-wide setup: trained runs and data caches go to a temporary folder, never the project's data/."""

import os
import tempfile

# Set before helpers is imported (it reads HELPERS_DATA once); notebook kernels inherit it.
os.environ.setdefault("HELPERS_DATA", tempfile.mkdtemp(prefix="helpers-test-data-"))

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tests use tiny models and batches, which gain nothing from intra-op threads; and on a loaded
    2-core box every op then waits for a descheduled thread (measured: 36 ms vs 0.2 ms for one
    small conv). Notebook kernels are separate processes and keep torch's default."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Interrupt(Exception):
    """Stands for Ctrl-C / a killed kernel in the resume tests."""


@pytest.fixture
def interrupt_epoch(monkeypatch):
    """``interrupt_epoch(n)``: the n-th call of ``helpers.train.train_epoch`` raises Interrupt;
    ``interrupt_epoch.restore()`` puts the real one back. Resume tests use it."""
    from helpers import train as T

    real = T.train_epoch

    def arm(n):
        calls = []

        def dies(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise Interrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(T, "train_epoch", dies)

    arm.restore = lambda: monkeypatch.setattr(T, "train_epoch", real)
    arm.Interrupt = Interrupt
    return arm
