"""Section ``real_data``: notebook 05 (BatchNorm ablation) at the quick profile on real CIFAR-10:
test accuracy of both models (``metrics.json``: ``test_acc_baseline``, ``test_acc_batchnorm``), wall
time, peak memory.

Runs ``python -m helpers.runner 05 --profile quick --dataset folder:ARCHIVE --no-pdf`` into a
temporary folder, with a fresh run cache (the models train from scratch) that shares the project's
decoded-dataset cache (``data/cache``). The archive's one-time JPEG decode is done and timed first,
in this process, as its own row, so the runner row times the notebook, not the decode. The archive is
``$CIFAR10_ARCHIVE``, else ``../shared/data/cifar10-jpg.tar.gz`` next to the project root. Skipped
when the archive is absent, and in ``--smoke`` (a quick-profile training run on 60,000 real images
takes minutes).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from .harness import ROOT, skipped_row
from .runner import time_runner

S, NAME = "real_data", "notebook 05, quick profile, CIFAR-10"


def cifar10_archive() -> Path:
    """The CIFAR-10 JPEG archive: ``$CIFAR10_ARCHIVE``, else ``../shared/data/cifar10-jpg.tar.gz``
    next to the project root."""
    return Path(os.environ.get("CIFAR10_ARCHIVE") or ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz")


def _time_load(archive: Path, data_dir: Path) -> dict:
    """Load the archive once, decoding it into data/cache unless an earlier run did: the row times that."""
    from helpers.data import load_dataset

    cache = data_dir / "cache"
    before = set(cache.glob("*.pt")) if cache.is_dir() else set()
    t0 = time.perf_counter()
    load_dataset(f"folder:{archive}", root=data_dir)
    load_s = time.perf_counter() - t0
    decoded = bool(set(cache.glob("*.pt")) - before)
    return {"section": S, "name": f"load archive ({'decoded and cached' if decoded else 'from data/cache'})",
            "value": load_s, "unit": "s", "archive": str(archive)}


def _read_accuracies(out: Path) -> list[dict]:
    """Test accuracy of both models from the notebook's metrics.json (none if it wrote none)."""
    metrics_files = sorted(out.glob("05*/metrics.json"))
    if not metrics_files:
        return []
    metrics = json.loads(metrics_files[0].read_text())
    rows = []
    for model in ("baseline", "batchnorm"):
        key, row = f"test_acc_{model}", {"section": S, "name": f"{NAME}: test_acc_{model}", "unit": "%"}
        if key in metrics:
            row.update(value=100 * metrics[key], dataset=metrics.get("dataset"),
                       train_seconds=metrics.get(f"train_seconds_{model}"))
        else:
            row.update(value=None, error=f"{key} missing from {metrics_files[0]}")
        rows.append(row)
    return rows


def bench_real_data(smoke: bool = False) -> list[dict]:
    """Notebook 05 at the quick profile on real CIFAR-10: accuracies, time, memory (module docstring)."""
    archive = cifar10_archive()
    if smoke:
        return [skipped_row(S, NAME, "s", "smoke: training on 60,000 real images takes minutes")]
    if not archive.is_file():
        return [skipped_row(S, NAME, "s", f"archive not found at {archive} (set CIFAR10_ARCHIVE to its path)")]
    from helpers import DATA_DIR

    rows = [_time_load(archive, Path(DATA_DIR))]
    with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp:
        tmp = Path(tmp)
        (tmp / "data").mkdir()
        cache = Path(DATA_DIR) / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        (tmp / "data" / "cache").symlink_to(cache.resolve(), target_is_directory=True)
        result, runner_rows = time_runner(S, NAME, tmp, ["05"], "quick", timeout=3600,
                                          options=("--dataset", f"folder:{archive}"))
        rows += runner_rows
        if result["returncode"] == 0:
            rows += _read_accuracies(tmp / "out" / "quick")
    return rows
