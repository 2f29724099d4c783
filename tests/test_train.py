"""The training engine: learning, the run cache, resume, determinism and the reports' LR rules."""

import math

import pandas as pd
import pytest
import torch

from helpers import train as T
from helpers.device import pick_device
from helpers.data import make_synthetic
from helpers.train import TrainConfig, fit, make_scheduler

TINY = TrainConfig(name="tiny", model="simple_cnn", width=0.25, epochs=3, batch_size=32, lr=0.05,
                   schedule="step", step_size=2, augment=dict(crop_padding=2, flip_h=0.5), val_fraction=0.2,
                   device="cpu")


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_train=400, n_test=200, seed=1)


def same_history(a: pd.DataFrame, b: pd.DataFrame):
    cols = [c for c in a.columns if c != "seconds"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)


def same_weights(a: torch.nn.Module, b: torch.nn.Module):
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


# --- learning rate rules, checked against the numbers the reports print ---------------------

def lrs_after_each_epoch(config: TrainConfig, steps_per_epoch: int = 10) -> list[float]:
    """LR after each epoch's scheduler steps, as report 003's table lists them (epoch 1 = after one epoch):
    T.lr_trace, the schedule alone, which notebooks 03 and 04 set beside the reports' logs."""
    return [end for _, end in T.lr_trace(config, steps_per_epoch)]


@pytest.mark.parametrize("lr,table", [
    (0.15, {1: 0.1494, 5: 0.1357, 10: 0.0982, 15: 0.0518, 20: 0.0143, 25: 0.0000}),  # report 003 exp 1
    (0.20, {1: 0.1992, 5: 0.1809, 10: 0.1309, 15: 0.0691, 20: 0.0191, 25: 0.0000}),  # report 003 exp 2
])
def test_cosine_matches_report_003(lr, table):
    lrs = lrs_after_each_epoch(TrainConfig(lr=lr, epochs=25, schedule="cosine"))
    for epoch, expected in table.items():
        assert round(lrs[epoch - 1], 4) == expected


def test_cosine_100_epochs_follows_report_002_shape():
    # report 002's log (printed for a run whose peak was 0.01): epoch 55 -> 0.004218, epoch 80 -> 0.000955
    lrs = lrs_after_each_epoch(TrainConfig(lr=0.01, epochs=100, schedule="cosine"))
    assert round(lrs[54], 6) == 0.004218 and round(lrs[79], 6) == 0.000955


def test_step_lr_matches_report_004():
    lrs = lrs_after_each_epoch(TrainConfig(lr=0.01, epochs=30, schedule="step", step_size=10, gamma=0.1))
    # LR in use during epochs 1-10, 11-20, 21-30 (the value after epoch k is the one epoch k+1 uses)
    used = [0.01] + lrs[:-1]
    assert used[9] == pytest.approx(0.01) and used[10] == pytest.approx(0.001) and used[20] == pytest.approx(1e-4)


def test_multistep_matches_report_001():
    lrs = lrs_after_each_epoch(TrainConfig(lr=0.1, epochs=50, schedule="multistep", milestones=(25, 40)))
    used = [0.1] + lrs[:-1]
    assert used[24] == pytest.approx(0.1) and used[25] == pytest.approx(0.01) and used[40] == pytest.approx(0.001)


def test_onecycle_keeps_momentum_at_the_reports_value():
    # report 000: "SGD with momentum 0.9"; torch's OneCycle would cycle it between 0.85 and 0.95
    cfg = TrainConfig(lr=0.01, epochs=4, schedule="onecycle", step_per="batch", momentum=0.9)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr, momentum=cfg.momentum)
    sched = make_scheduler(opt, cfg, 10)
    seen = set()
    for _ in range(39):
        opt.step()
        sched.step()
        seen.add(opt.param_groups[0]["momentum"])
    assert seen == {0.9}


def test_lr_trace_is_what_training_logs(tmp_path, data):
    # notebooks 03 and 04 read the reports' schedules off lr_trace: it must equal what training records
    for config in (TINY.replace(schedule="cosine", epochs=3, drop_last=True),
                   TINY.replace(schedule="onecycle", step_per="batch", epochs=2, val_fraction=0.0)):
        run = fit(config, data, root=tmp_path, progress=False)
        train_loader, _ = T.make_loaders(config, data, torch.device("cpu"))
        assert T.batches_per_epoch(config, len(data.train_labels)) == len(train_loader)
        trace = T.lr_trace(config, len(train_loader))
        assert run.history[["lr", "lr_end"]].to_numpy().ravel().tolist() == pytest.approx([v for t in trace for v in t])


def test_onecycle_matches_report_000_rule():
    # OneCycle with max lr 0.01 over 40 epochs, per batch: starts at max/25, peaks at 30%, ends near 0
    steps = 20
    cfg = TrainConfig(lr=0.01, epochs=40, schedule="onecycle", step_per="batch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr, momentum=0.9)
    sched = make_scheduler(opt, cfg, steps)
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(cfg.epochs * steps - 1):
        opt.step()
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen[0] == pytest.approx(0.01 / 25)
    assert max(seen) == pytest.approx(0.01) and seen.index(max(seen)) == pytest.approx(0.3 * len(seen), abs=2)
    assert seen[-1] < 1e-6


# --- fit ------------------------------------------------------------------------------------

def test_fit_learns_and_records_history(tmp_path):
    data = make_synthetic(n_train=2000, n_test=200, seed=1)
    config = TINY.replace(epochs=4, lr=0.05, step_size=3, model_kwargs={"batch_norm": True}, val_fraction=0.2)
    run = fit(config, data, root=tmp_path, progress=False)
    h = run.history
    assert list(h.columns) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "lr_end", "seconds"]
    assert list(h.epoch) == [1, 2, 3, 4] and not run.cached
    assert h.train_loss.iloc[-1] < h.train_loss.iloc[0]
    assert h.val_acc.max() > 0.2  # chance is 0.1
    assert h.lr.tolist() == pytest.approx([0.05, 0.05, 0.05, 0.005])  # StepLR every 3 epochs
    assert h.lr_end.tolist() == pytest.approx([0.05, 0.05, 0.005, 0.005])  # after each epoch's step
    assert (run.path / "run.json").exists() and not (run.path / "checkpoint.pt").exists()


def test_second_fit_loads_from_cache_without_training(tmp_path, data, monkeypatch):
    first = fit(TINY, data, root=tmp_path, progress=False)
    monkeypatch.setattr(T, "train_epoch", lambda *a, **k: pytest.fail("trained again"))
    second = fit(TINY, data, root=tmp_path, progress=False)
    assert second.cached and second.path == first.path
    same_history(first.history, second.history)
    same_weights(first.model, second.model)
    # where it runs is not part of the run's identity; what it learns is
    assert T.run_path(TINY.replace(device="cuda"), data, tmp_path) == first.path
    assert T.run_path(TINY.replace(lr=0.04), data, tmp_path) != first.path
    assert T.run_path(TINY, make_synthetic(n_train=400, n_test=200, seed=2), tmp_path) != first.path


def test_force_retrains(tmp_path, data):
    fit(TINY, data, root=tmp_path, progress=False)
    assert not fit(TINY, data, root=tmp_path, progress=False, force=True).cached


def test_same_seed_gives_identical_runs(tmp_path, data):
    a = fit(TINY, data, root=tmp_path / "a", progress=False)
    b = fit(TINY, data, root=tmp_path / "b", progress=False)
    same_history(a.history, b.history)
    same_weights(a.model, b.model)
    c = fit(TINY.replace(seed=7), data, root=tmp_path / "c", progress=False)
    assert not c.history.train_loss.equals(a.history.train_loss)


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, data, interrupt_epoch):
    config = TINY.replace(epochs=4, model_kwargs={"batch_norm": True})  # dropout + BN: RNG and buffers matter
    whole = fit(config, data, root=tmp_path / "whole", progress=False)
    interrupt_epoch(3)
    with pytest.raises(interrupt_epoch.Interrupt):
        fit(config, data, root=tmp_path / "cut", progress=False)
    interrupt_epoch.restore()
    path = T.run_path(config, data, tmp_path / "cut")
    assert (path / "checkpoint.pt").exists() and not (path / "run.json").exists()

    resumed = fit(config, data, root=tmp_path / "cut", progress=False)
    assert not resumed.cached
    same_history(whole.history, resumed.history)
    same_weights(whole.model, resumed.model)


def test_best_weights_are_kept(tmp_path, data):
    run = fit(TINY, data, root=tmp_path, progress=False)
    best = run.info["best_epoch"]
    assert run.history.val_acc.iloc[best - 1] == run.history.val_acc.max()
    run.load_weights("best")
    assert run.weights == "best"
    with pytest.raises(ValueError, match="'final' or 'best'"):
        run.load_weights("middle")


def test_damaged_run_is_moved_aside_and_retrained(tmp_path, data):
    first = fit(TINY, data, root=tmp_path, progress=False)
    with open(first.path / "final.pt", "r+b") as f:
        f.truncate(100)
    with pytest.warns(UserWarning, match="final.pt: missing, truncated or changed"):
        again = fit(TINY, data, root=tmp_path, progress=False)
    assert not again.cached
    same_history(first.history, again.history)
    assert len(list((tmp_path / "runs").glob("*.broken-*"))) == 1


def test_validation_on_test_split_when_fraction_is_zero(tmp_path, data):
    train, val = T.make_loaders(TINY.replace(val_fraction=0.0), data, torch.device("cpu"))
    assert train.num_samples == 400 and val.num_samples == 200
    train, val = T.make_loaders(TINY, data, torch.device("cpu"))
    assert train.num_samples == 320 and val.num_samples == 80


@pytest.mark.parametrize("changes,message", [
    (dict(model="vgg"), "valid models"),
    (dict(schedule="linear"), "valid: constant, step, multistep, cosine, onecycle"),
    (dict(epochs=-1), "epochs must be a positive integer"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(val_fraction=1.0), r"val_fraction must be in \[0, 1\)"),
    (dict(augment={"rotate": 10}), "unknown augment option"),
    (dict(mix={"kind": "mixup"}), "unknown mix kind"),
    (dict(normalize="imagenet"), "normalize must be"),
])
def test_bad_settings_are_rejected_before_training(changes, message):
    with pytest.raises(ValueError, match=message):
        TINY.replace(**changes)


def test_unknown_setting_names_valid_ones():
    with pytest.raises(ValueError, match="valid: .*batch_size"):
        TINY.replace(batchsize=64)


def test_pick_device(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    has_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    expected = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    assert pick_device("auto").type == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # auto prefers CUDA wherever it exists
    assert pick_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU found"):
        pick_device("cuda")


def test_history_lr_end_follows_report_003_convention(tmp_path, data):
    # report 003 logs the LR after each epoch's step: "Epoch 1: 0.1494, Epoch 5: 0.1357" for 0.15 over
    # 25 epochs; check the same rule on a 5-epoch cosine by hand: lr_end(k) = 0.075 * (1 + cos(pi k / 5))
    run = fit(TINY.replace(lr=0.15, epochs=5, schedule="cosine", width=0.125), data, root=tmp_path, progress=False)
    expected = [0.075 * (1 + math.cos(math.pi * k / 5)) for k in range(1, 6)]
    assert run.history.lr_end.tolist() == pytest.approx(expected, abs=1e-12)
    assert run.history.lr.tolist() == pytest.approx([0.15] + expected[:-1], abs=1e-12)


def test_the_cache_version_is_part_of_every_run_key(tmp_path, data, monkeypatch):
    """Runs of an older engine stop matching when CACHE_VERSION is bumped: they train again in a folder of
    their own, and the old folder is left as it was."""
    first = fit(TINY, data, root=tmp_path, progress=False)
    assert first.info["version"] == T.CACHE_VERSION
    monkeypatch.setattr(T, "CACHE_VERSION", T.CACHE_VERSION + 1)
    assert T.run_path(TINY, data, tmp_path) != first.path and not T.cached(TINY, data, root=tmp_path)
    again = fit(TINY, data, root=tmp_path, progress=False)
    assert not again.cached and again.path != first.path and (first.path / "run.json").exists()


def test_a_run_carries_its_normalisation(tmp_path, data):
    run = fit(TINY.replace(normalize="cifar10"), data, root=tmp_path, progress=False)
    loaded = fit(TINY.replace(normalize="cifar10"), data, root=tmp_path, progress=False)
    assert (run.mean, run.std) == (loaded.mean, loaded.std) == T.norm_stats(run.config, data)
    assert run.info["normalize"] == {"mean": list(run.mean), "std": list(run.std)}


def test_precision_and_drop_last_are_part_of_the_key(tmp_path, data):
    assert TINY.key_dict()["precision"] == "fp32" and TINY.key_dict()["drop_last"] is False
    bf16 = TINY.replace(device="cuda", precision="bf16")  # a config may name CUDA anywhere; fitting it needs one
    assert bf16.key_dict()["precision"] == "bf16"
    assert T.run_path(bf16, data, tmp_path) != T.run_path(TINY, data, tmp_path)
    dropped = TINY.replace(drop_last=True)
    assert dropped.key_dict()["drop_last"] is True and T.run_path(dropped, data, tmp_path) != T.run_path(TINY, data, tmp_path)
    train, _ = T.make_loaders(dropped, data, torch.device("cpu"))
    assert len(train) == 320 // 32 and T.make_loaders(TINY.replace(batch_size=48), data, torch.device("cpu"))[0].__len__() == 7


def test_bf16_is_refused_off_cuda(tmp_path, data, monkeypatch):
    from helpers.device import autocast

    with pytest.raises(ValueError, match="precision 'bf16' .*runs on CUDA only"):
        TINY.replace(precision="bf16")             # device "cpu": refused when the config is made
    with pytest.raises(ValueError, match="unknown precision 'half'; valid: fp32, bf16"):
        TINY.replace(precision="half")
    with pytest.raises(ValueError, match="runs on CUDA only"):
        autocast(torch.device("cpu"), "bf16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(T, "train_run", lambda *a, **k: pytest.fail("started training"))
    with pytest.raises(ValueError, match="runs on CUDA only"):
        fit(TINY.replace(device="auto", precision="bf16"), data, root=tmp_path, progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA: the bf16 path (autocast + channels_last) needs a GPU")
def test_bf16_trains_on_cuda_in_channels_last(tmp_path, data):
    run = fit(TINY.replace(device="cuda", precision="bf16", epochs=1), data, root=tmp_path, progress=False)
    conv = next(p for p in run.model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    fp32 = fit(TINY.replace(device="cuda", epochs=1), data, root=tmp_path, progress=False)
    assert next(p for p in fp32.model.parameters() if p.dim() == 4).is_contiguous()
    assert run.path != fp32.path


def test_cpu_runs_take_the_cpu_path(tmp_path, data):
    """CPU training keeps model and batches in channels_last and glibc's freed memory in the heap
    (benchmarks' cpu_path section: faster for every study's quick model); the run says so."""
    import ctypes
    import platform

    from helpers import device as D

    cfg = TrainConfig(name="nhwc", model="simple_cnn", width=0.25, epochs=1, batch_size=32, device="cpu")
    run = fit(cfg, data, root=tmp_path, progress=False)
    conv = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    env = run.info["environment"]
    assert env["channels_last"] is True
    has_mallopt = platform.system() == "Linux" and hasattr(ctypes.CDLL(None), "mallopt")
    assert env["kept_freed_memory"] is has_mallopt and D.keep_freed_memory() is has_mallopt
    assert not D.channels_last(torch.device("cuda"), "fp32") and D.channels_last(torch.device("cuda"), "bf16")


def test_cached_says_what_fit_would_load(tmp_path, data):
    """train.cached (the runner's workers skip such runs) is fit's own test, read only: no folder or a
    damaged file means fit would train, so the run is not cached."""
    config = TINY.replace(schedule="onecycle", step_per="batch", epochs=1)
    assert not T.cached(config, data, root=tmp_path)
    run = fit(config, data, root=tmp_path, progress=False)
    assert T.cached(config, data, root=tmp_path)
    (run.path / "final.pt").write_bytes(b"damaged")
    assert not T.cached(config, data, root=tmp_path) and run.path.exists()  # read only: nothing moved


# --- what the reports' code ran: momentum cycling, two phases, another test normalisation ----------

def test_onecycle_cycles_momentum_as_report_000s_code_ran_it():
    """cycle_momentum: torch's OneCycleLR default, momentum 0.95 at the start, 0.85 at the LR's peak."""
    cfg = TrainConfig(lr=0.01, epochs=10, schedule="onecycle", step_per="batch", momentum=0.9, cycle_momentum=True)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr, momentum=cfg.momentum)
    sched = make_scheduler(opt, cfg, 10)
    seen = [(opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"])]
    for _ in range(99):
        opt.step()
        sched.step()
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]))
    lr, momentum = zip(*seen)
    assert momentum[0] == pytest.approx(0.95) and lr[0] == pytest.approx(0.01 / 25)  # the code's 0.0004
    peak = lr.index(max(lr))
    assert peak == 29 and momentum[peak] == pytest.approx(0.85)  # 30% warm-up of 100 steps
    assert momentum[-1] == pytest.approx(0.95, abs=1e-3) and lr[-1] < 1e-5


def test_a_second_phase_starts_from_the_firsts_last_weights(tmp_path, data):
    first = TINY.replace(name="phase1", epochs=1)
    second = TINY.replace(name="phase2", epochs=1, lr=0.001, start_from=first)
    run = fit(second, data, root=tmp_path, progress=False)
    assert run.previous is not None and run.previous.config == first and run.previous.path != run.path
    assert T.run_path(second, data, tmp_path) != T.run_path(second.replace(start_from=None), data, tmp_path)
    start = T.Trainee(second, data.num_classes, torch.device("cpu"), 10, run.previous).model.state_dict()
    final = fit(first, data, root=tmp_path, progress=False).model.state_dict()
    assert all(torch.equal(start[k], final[k]) for k in final)  # the first phase's final weights, nothing else
    again = fit(second, data, root=tmp_path, progress=False)
    assert again.cached and again.previous.cached
    with pytest.raises(ValueError, match="start_from must train the same model"):
        TINY.replace(start_from=first.replace(width=0.5))


def test_a_run_can_test_with_other_statistics_than_it_trains_with(tmp_path, data):
    """Report 002's code trained its second phase with one normalisation and tested with another."""
    config = TINY.replace(epochs=1, normalize=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), test_normalize="cifar10")
    run = fit(config, data, root=tmp_path, progress=False)
    assert (run.mean, run.std) == T.norm_stats(config, data, "test") != T.norm_stats(config, data)
    train_loader, val_loader = T.make_loaders(config, data, torch.device("cpu"))
    assert (train_loader.mean, val_loader.mean, val_loader.std) == ((0.5,) * 3, *T.norm_stats(config, data, "test"))
    with pytest.raises(ValueError, match="test_normalize must be"):
        TINY.replace(test_normalize="imagenet")
