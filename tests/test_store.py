"""The store: a shared run folder cannot run code on load, and the run lock works without fcntl (Windows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from helpers import store as S
from helpers.data import make_synthetic
from helpers.train import TrainConfig, fit, run_path

ROOT = Path(__file__).resolve().parents[1]
TINY = TrainConfig(name="store", model="simple_cnn", width=0.0625, epochs=2, batch_size=32, lr=0.05,
                   val_fraction=0.2, device="cpu")


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_train=96, n_test=32, seed=5)


class Payload:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a shared file could run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def restamp(path: Path, name: str) -> None:
    """Rewrite the manifest's checksum of ``name``, as whoever shared the folder could."""
    info = json.loads((path / "run.json").read_text())
    info["files"][name] = {"size": (path / name).stat().st_size, "sha256": S.sha256(path / name)}
    (path / "run.json").write_text(json.dumps(info))


@pytest.mark.parametrize("name", ["final.pt", "best.pt"])
def test_run_file_carrying_a_pickled_callable_is_refused(tmp_path, data, name):
    run = fit(TINY, data, root=tmp_path, progress=False)
    marker = tmp_path / "code-ran"
    weights = torch.load(run.path / name)
    torch.save({**weights, "extra": Payload(marker)}, run.path / name)
    restamp(run.path, name)
    with pytest.raises(S.UnsafeFile, match=rf"{name}: refused to load: it holds Python objects other than tensors"):
        loaded = fit(TINY, data, root=tmp_path, progress=False)
        loaded.load_weights("best")  # best.pt is read on request only
    assert not marker.exists(), "the payload ran"


def test_checkpoint_carrying_a_pickled_callable_is_refused(tmp_path, data, interrupt_epoch):
    interrupt_epoch(2)
    with pytest.raises(interrupt_epoch.Interrupt):
        fit(TINY, data, root=tmp_path, progress=False)
    interrupt_epoch.restore()
    path = run_path(TINY, data, tmp_path)
    marker = tmp_path / "code-ran"
    S.save_checked({"model": Payload(marker)}, path / "checkpoint.pt")  # its own checksum is right
    with pytest.raises(S.UnsafeFile, match="checkpoint.pt: refused to load"):
        fit(TINY, data, root=tmp_path, progress=False)
    assert not marker.exists(), "the payload ran"


def test_checkpoint_round_trips_through_weights_only(tmp_path, data, interrupt_epoch):
    """Everything a checkpoint holds (RNG states included) loads with weights_only=True, and resumes."""
    interrupt_epoch(2)
    with pytest.raises(interrupt_epoch.Interrupt):
        fit(TINY, data, root=tmp_path, progress=False)
    interrupt_epoch.restore()
    ckpt = S.load_checked(run_path(TINY, data, tmp_path) / "checkpoint.pt", torch.device("cpu"))
    assert ckpt["epoch"] == 1 and {"python", "numpy", "torch"} <= ckpt["rng"].keys()
    assert not fit(TINY, data, root=tmp_path, progress=False).cached


# Each child blocks fcntl before anything is imported, as on Windows, then trains the same run.
CHILD = textwrap.dedent("""
    import json, sys
    sys.modules["fcntl"] = None  # `import fcntl` now raises ImportError
    import helpers.train, helpers.store
    from helpers.data import make_synthetic
    from helpers.train import TrainConfig, fit
    config = TrainConfig(name="nofcntl", model="simple_cnn", width=0.0625, epochs=3, batch_size=32, lr=0.05,
                         val_fraction=0.2, device="cpu")
    run = fit(config, make_synthetic(n_train=96, n_test=32, seed=5), root=sys.argv[1], progress=False)
    print(json.dumps({"cached": run.cached, "path": str(run.path),
                      "final": helpers.store.sha256(run.path / "final.pt")}))
""")


def test_two_processes_without_fcntl_share_one_run(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sorted(r["cached"] for r in results) == [False, True]  # one trained, the other loaded its result
    assert results[0]["path"] == results[1]["path"] and results[0]["final"] == results[1]["final"]
    assert [p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")] == [Path(results[0]["path"]).name]
