"""Reliability: bad input everywhere a user types something fails at once, in one clear line."""

from __future__ import annotations

import pytest
import torch

from helpers import reports
from helpers.data import make_synthetic
from helpers.profiles import settings
from helpers.train import TrainConfig, fit

# Dropout and BatchNorm, crop and flip, a step schedule: RNG state, buffers and the scheduler all
# have to survive a resume for the result to match. 160 train images = 5 batches an epoch.
CONFIG = TrainConfig(name="rel", model="simple_cnn", model_kwargs={"batch_norm": True}, width=0.125, epochs=3,
                     batch_size=32, lr=0.05, schedule="step", step_size=2, augment=dict(crop_padding=2, flip_h=0.5),
                     val_fraction=0.2, device="cpu")


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_train=200, n_test=100, seed=1)


# --- 4. bad input: a clear error before any work ----------------------------------------------

@pytest.mark.parametrize("changes, message", [
    (dict(lr="0.1"), "lr must be a number > 0, not '0.1'"),
    (dict(width="x"), "width must be a number > 0"),
    (dict(width=0), "width must be a number > 0"),
    (dict(val_fraction="0.1"), r"val_fraction must be in \[0, 1\)"),
    (dict(val_fraction=-0.1), r"val_fraction must be in \[0, 1\)"),
    (dict(label_smoothing=None), r"label_smoothing must be in \[0, 1\)"),
    (dict(momentum=-0.9), "momentum must be a number >= 0"),
    (dict(weight_decay=-1e-4), "weight_decay must be a number >= 0"),
    (dict(gamma=0), "gamma must be a number > 0"),
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(epochs=True), "epochs must be a positive integer"),
    (dict(step_size=0), "step_size must be a positive integer"),
    (dict(milestones=(5, 2)), "milestones must be increasing positive integers"),
    (dict(milestones="5"), "milestones must be increasing positive integers"),
    (dict(seed="a"), "seed must be an integer"),
    (dict(split_seed=None), "split_seed must be an integer"),
    (dict(nesterov="yes"), "nesterov must be True or False"),
    (dict(deterministic="no"), "deterministic must be True or False"),
    (dict(name="a/b"), "name must be"),
    (dict(name=""), "name must be"),
    (dict(augment={"flip_h": 2}), "augment: flip_h is a probability"),
    (dict(augment="crop"), "augment must be a dict"),
    (dict(model_kwargs={"batchnorm": True}), r"unknown simple_cnn option\(s\) \['batchnorm'\]; valid: \['batch_norm'\]"),
    (dict(model_kwargs={"width": 2}), "model_kwargs: set width with the width setting"),
    (dict(normalize=((0.5,), (0.5,))), r"normalize must be 'dataset', 'cifar10' or \(mean, std\)"),
    (dict(normalize=((0.5,) * 3, (0.0,) * 3)), "normalize std must be > 0"),
    (dict(device="gpu"), "unknown device 'gpu'; valid: auto, cpu, cuda"),
])
def test_bad_training_settings_are_rejected_when_the_config_is_made(changes, message):
    with pytest.raises(ValueError, match=f"TrainConfig: {message}"):
        CONFIG.replace(**changes)


def test_bad_settings_are_rejected_through_the_profiles_too():
    with pytest.raises(ValueError, match="lr must be a number > 0, not 'fast'"):
        settings("bn_ablation", "smoke", lr="fast")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        settings("bn_ablation", "smoke", device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so device='cuda' is valid here")
def test_cuda_requested_without_a_gpu_says_so_before_training(data, tmp_path):
    with pytest.raises(ValueError, match="device 'cuda' .* not available here"):
        fit(CONFIG.replace(device="cuda"), data, root=tmp_path, progress=False)
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.parametrize("sizes, val_fraction, message", [
    (dict(n_train=0, n_test=50), 0.0, "no training images"),
    (dict(n_train=0, n_test=50), 0.2, "no training images"),
    (dict(n_train=100, n_test=0), 0.0, "no test images to validate on"),
])
def test_empty_data_is_rejected_before_training(tmp_path, sizes, val_fraction, message):
    with pytest.raises(ValueError, match=message):
        fit(CONFIG.replace(val_fraction=val_fraction), make_synthetic(**sizes), root=tmp_path, progress=False)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cifar11"], "unknown dataset 'cifar11' (valid: synthetic, cifar10, cifar100, folder:PATH)"),
    (["--dataset", "folder:/no/such/folder"], "--dataset folder:/no/such/folder: no such file or folder"),
    (["--timeout", "0"], "--timeout must be a positive number of seconds, not 0"),
    (["-p", "epochs", "-1"], "05_bn_ablation: TrainConfig: epochs must be a positive integer, not -1"),
    (["-p", "device", "gpu"], "05_bn_ablation: TrainConfig: unknown device 'gpu'; valid: auto, cpu, cuda, cuda:N, mps"),
    (["-p", "epochs", "many"], "05_bn_ablation: TrainConfig: epochs must be a positive integer, not 'many'"),
])
def test_runner_rejects_bad_values_before_running(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setattr(reports, "run_one", lambda *a, **k: pytest.fail("a notebook was started"))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        reports.main(["05", "--no-pdf", "--output", str(out), *args])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: {message}")
    assert not out.exists()


def test_runner_rejects_an_output_folder_it_cannot_write(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(reports, "run_one", lambda *a, **k: pytest.fail("a notebook was started"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_:
        reports.main(["05", "--no-pdf", "--output", str(blocker / "reports")])
    assert exit_.value.code == 2
    assert f"cannot write reports to {blocker / 'reports'}" in capsys.readouterr().err
