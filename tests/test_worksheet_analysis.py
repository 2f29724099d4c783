"""FLOPs (helpers.models) against report 003 and a hand count, the gradient and update records (helpers.records),
and notebook 04's tables (helpers.studies.worksheet_analysis)."""

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import models, records
from helpers.studies import worksheet_analysis as W
from helpers.models import resnet18_cifar


def test_resnet18_cifar_macs_match_report_003():
    table, totals = models.flops(resnet18_cifar())
    assert totals["macs"] / 1e9 == pytest.approx(0.5567, rel=0.01)  # report 003: 0.5567 G multiply-adds
    assert totals["flops"] == 2 * totals["macs"]
    assert totals["params"] == 11_173_962
    assert table["share"].sum() == pytest.approx(1.0)
    assert table["layer"].iloc[0] == "conv1" and table["layer"].iloc[-1] == "fc"
    assert (table["type"].isin(["Conv2d", "Linear"])).all()


def test_small_conv_and_linear_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 32 * 32, 10))
    table, totals = models.flops(model)
    conv_macs = 8 * 32 * 32 * 3 * 3 * 3      # outputs x (inputs per output)
    linear_macs = 8 * 32 * 32 * 10
    assert table["macs"].tolist() == [conv_macs, linear_macs]
    assert totals["macs"] == conv_macs + linear_macs
    assert totals["flops_per_param"] == pytest.approx(2 * (conv_macs + linear_macs) / (8 * 27 + 8 + 8192 * 10 + 10))
    assert table["layer"].tolist() == ["0", "2"]


def tiny_training(every, steps=7):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    grads, updates = records.GradientRecorder(model, every), records.UpdateRecorder(model, every)
    for step in range(1, steps + 1):
        x, y = torch.randn(5, 3, 8, 8), torch.randint(0, 3, (5,))
        F.cross_entropy(model(x), y).backward()
        grads.after_backward(step, epoch=1)
        before = [p.detach().clone() for _, p in records.layers(model)]
        opt.step()
        updates.after_step(step, epoch=1)
        opt.zero_grad()
    return model, grads, updates, before


def test_one_record_per_layer_per_interval():
    model, grads, updates, _ = tiny_training(every=3, steps=7)
    g, u = grads.frame(), updates.frame()
    assert g.groupby("step")["layer"].apply(list).to_dict() == {3: ["0", "3"], 6: ["0", "3"]}
    assert u.groupby("step")["layer"].apply(list).to_dict() == {3: ["0", "3"], 6: ["0", "3"]}
    assert not g["vanishing"].any() and not g["exploding"].any()


def test_gradient_numbers_are_the_gradients():
    torch.manual_seed(1)
    model = nn.Linear(4, 2)
    model(torch.randn(3, 4)).sum().backward()
    rec = records.GradientRecorder(model, every=1)
    rec.after_backward(1, 0)
    row = rec.frame().iloc[0]
    g = model.weight.grad
    assert row["mean_abs"] == pytest.approx(g.abs().mean().item())
    assert row["max_abs"] == pytest.approx(g.abs().max().item())
    assert row["norm"] == pytest.approx(g.norm().item())


def test_update_is_the_change_since_the_last_record():
    model = nn.Linear(4, 2)
    rec = records.UpdateRecorder(model, every=2)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)      # step 1: not recorded
    rec.after_step(1, 0)
    with torch.no_grad():
        model.weight.add_(1.0)      # step 2: recorded, change since creation = 2 per element
    rec.after_step(2, 0)
    row = rec.frame().iloc[0]
    assert row["update_norm"] == pytest.approx((model.weight - start).norm().item())
    assert row["relative_update"] == pytest.approx(row["update_norm"] / model.weight.norm().item())
    assert row["weight_std"] == pytest.approx(model.weight.std().item())
    assert row["weight_max_abs"] == pytest.approx(model.weight.abs().max().item())


def test_vanishing_threshold_is_report_003s():
    # report 003: "No vanishing gradients (all layers maintain > 10^-6)"
    g = pd.DataFrame(dict(step=1, epoch=1, layer=["a", "b", "c"], mean_abs=[5e-7, 1.5e-6, 0.01], max_abs=1.0, norm=1.0))
    assert records.VANISH == 1e-6 and records.flag(g)["vanishing"].tolist() == [True, False, False]


class FakeRun:
    """What weight_check reads of a helpers.train.Run: the model, its weights' name and update records."""

    def __init__(self, model, updates=None, weights="final"):
        self.model, self.updates, self.weights = model, updates, weights


def test_weight_check_reads_records_and_final_weights():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.fill_(0.2)
        model[1].weight.fill_(-0.7)   # largest |w| of the final weights: 0.7, in layer "1"
    records = pd.DataFrame(dict(step=[10, 10, 20, 20], epoch=[1, 1, 2, 2], layer=["0", "1", "0", "1"],
                                weight_max_abs=[0.3, 0.5, 1.2, 0.6]))  # layer "0" passed 1.0 at step 20
    table = W.weight_check({"recorded": FakeRun(model, records), "unrecorded": FakeRun(model)})
    assert table.loc["recorded", "largest |weight|"] == 1.2 and table.loc["recorded", "layer"] == "0"
    assert table.loc["recorded", "when"] == "step 20 (epoch 2)" and not table.loc["recorded", "all < 1"]
    assert table.loc["unrecorded", "largest |weight|"] == pytest.approx(0.7) and table.loc["unrecorded", "layer"] == "1"
    assert table.loc["unrecorded", "all < 1"] and table.loc["unrecorded", "checked"] == "weights only (no records)"
    old = records.drop(columns="weight_max_abs")   # recorded before the column existed
    assert W.weight_check({"old": FakeRun(model, old)}).loc["old", "checked"] == "weights only (no records)"


def test_flags():
    g = pd.DataFrame(dict(step=[1, 1, 2, 2], epoch=1, layer=["a", "b", "a", "b"], mean_abs=[1e-9, 0.1, 0.2, 0.1],
                          max_abs=1.0, norm=[0.1, 50.0, 0.2, 0.3]))
    rec = records.GradientRecorder(nn.Linear(2, 2), every=1)
    rec.rows = g.to_dict("records")
    flagged = rec.frame()
    assert flagged["vanishing"].tolist() == [True, False, False, False]
    assert flagged["exploding"].tolist() == [False, True, False, False]


def test_bad_interval_and_logger():
    with pytest.raises(ValueError, match="positive integer"):
        records.GradientRecorder(nn.Linear(2, 2), every=0)
    with pytest.raises(ValueError, match="valid: none, tensorboard, wandb"):
        W.log_run(None, to="mlflow")


# --- records through the engine ---------------------------------------------------------------------

from helpers import train as T  # noqa: E402
from helpers.data import make_synthetic  # noqa: E402
from helpers.train import TrainConfig, fit  # noqa: E402

RECORDED = TrainConfig(model="simple_cnn", width=0.125, epochs=3, batch_size=32, lr=0.05, val_fraction=0.2,
                       record_every=4)


@pytest.fixture(scope="module")
def small_data():
    return make_synthetic(n_train=320, n_test=64, seed=3)


def test_fit_stores_records_with_the_run(tmp_path, small_data, monkeypatch):
    run = fit(RECORDED, small_data, root=tmp_path, progress=False)
    steps_per_epoch = 8  # 256 training images / 32
    g, u = run.gradients, run.updates
    expected_steps = list(range(4, 3 * steps_per_epoch + 1, 4))
    layer_names = [n for n, _ in records.layers(run.model)]
    for df in (g, u):
        assert sorted(df["step"].unique()) == expected_steps
        assert df.groupby("step")["layer"].apply(list).map(lambda v: v == layer_names).all()
    assert g["epoch"].tolist()[0] == 1 and g["epoch"].tolist()[-1] == 3
    assert {"gradients.csv", "updates.csv"} <= set(run.info["files"])
    # the cache hands the same records back, without training
    monkeypatch.setattr(T, "train_epoch", lambda *a, **k: pytest.fail("trained again"))
    again = fit(RECORDED, small_data, root=tmp_path, progress=False)
    assert again.cached
    pd.testing.assert_frame_equal(again.gradients, g)
    pd.testing.assert_frame_equal(again.updates, u)


def test_a_changed_record_file_is_caught(tmp_path, small_data):
    run = fit(RECORDED, small_data, root=tmp_path, progress=False)
    with open(run.path / "updates.csv", "a") as f:
        f.write("1,1,x,0,0,0,0,0\n")
    with pytest.warns(UserWarning, match="updates.csv"):
        again = fit(RECORDED, small_data, root=tmp_path, progress=False)
    assert not again.cached


def test_records_do_not_change_training_and_off_means_no_files(tmp_path, small_data):
    on = fit(RECORDED, small_data, root=tmp_path / "on", progress=False)
    off = fit(RECORDED.replace(record_every=0), small_data, root=tmp_path / "off", progress=False)
    pd.testing.assert_frame_equal(on.history.drop(columns="seconds"), off.history.drop(columns="seconds"))
    assert off.gradients is None and off.updates is None


def test_records_survive_an_interruption(tmp_path, small_data, interrupt_epoch):
    whole = fit(RECORDED, small_data, root=tmp_path / "whole", progress=False)
    interrupt_epoch(3)
    with pytest.raises(interrupt_epoch.Interrupt):
        fit(RECORDED, small_data, root=tmp_path / "cut", progress=False)
    interrupt_epoch.restore()
    resumed = fit(RECORDED, small_data, root=tmp_path / "cut", progress=False)
    pd.testing.assert_frame_equal(resumed.gradients, whole.gradients)
    pd.testing.assert_frame_equal(resumed.updates, whole.updates)


def test_bad_record_interval_is_rejected():
    with pytest.raises(ValueError, match="record_every must be an integer >= 0"):
        TrainConfig(record_every=-1)


def test_tensorboard_log_has_the_history_and_records(tmp_path, small_data):
    pytest.importorskip("tensorboard", reason="tensorboard is in the test extra; without it this path is untested")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = fit(RECORDED, small_data, root=tmp_path, progress=False)
    folder = W.log_run(run, to="tensorboard")
    assert folder == run.path / "tensorboard"
    events = EventAccumulator(str(folder / run.path.name))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert [e.value for e in events.Scalars("epoch/val_acc")] == pytest.approx(run.history["val_acc"].tolist())
    assert f"gradients/{run.gradients['layer'].iloc[0]}" in tags and any(t.startswith("updates/") for t in tags)
    assert W.log_run(run, to="none") is None


def test_missing_logger_package_says_how_to_install(tmp_path, small_data, monkeypatch):
    import builtins

    run = fit(RECORDED, small_data, root=tmp_path, progress=False)
    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(ImportError, match="pip install wandb"):
        W.log_run(run, to="wandb")


def test_wandb_log_has_the_history_and_records(tmp_path, small_data, monkeypatch):
    """A stand-in wandb module records what log_run sends (wandb itself is not a dependency)."""
    import sys
    import types

    calls = {"init": [], "define": [], "log": []}

    class FakeWandbRun:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def define_metric(self, name, step_metric=None):
            calls["define"].append((name, step_metric))

        def log(self, row):
            calls["log"].append(dict(row))

    def init(**kwargs):
        calls["init"].append(kwargs)
        return FakeWandbRun()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    run = fit(RECORDED, small_data, root=tmp_path, progress=False)
    assert W.log_run(run, to="wandb") == run.path / "wandb"
    assert calls["init"][0]["mode"] == "offline" and calls["init"][0]["dir"] == str(run.path / "wandb")
    assert ("gradients/*", "gradients_step") in calls["define"] and ("updates/*", "updates_step") in calls["define"]
    epochs = [row for row in calls["log"] if "epoch" in row]
    assert [row["epoch/val_acc"] for row in epochs] == pytest.approx(run.history["val_acc"].tolist())
    for kind, value in (("gradients", "norm"), ("updates", "relative_update")):
        logged = {(row[f"{kind}_step"], key.split("/", 1)[1]): v for row in calls["log"] if f"{kind}_step" in row
                  for key, v in row.items() if key.startswith(f"{kind}/")}
        df = getattr(run, kind)
        assert logged == pytest.approx({(s, layer): v for s, layer, v in zip(df["step"], df["layer"], df[value])})


# --- report 003's tables ------------------------------------------------------------------------------

def test_architecture_has_the_reports_shapes_and_counts():
    arch = W.architecture(resnet18_cifar())
    assert arch["parameters"].sum() == 11_173_962                 # report 003's total
    assert (arch["type"] == "BasicBlock").sum() == 8              # "8 (2 per layer group)"
    assert arch.loc["layer1.0", "output"] == "64 x 32 x 32" and arch.loc["layer4.1", "output"] == "512 x 4 x 4"
    assert arch.loc["fc", "output"] == "10"
    assert arch["MACs"].sum() == models.flops(resnet18_cifar())[1]["macs"] and arch["share (%)"].sum() == pytest.approx(100)


def test_stages_and_stage_tables():
    assert [W.stage(n) for n in ("conv1", "layer3.1.conv2", "layer2.0.downsample.0", "fc")] == \
        ["stem", "layer3", "layer2", "fc"]
    g = records.flag(pd.DataFrame(dict(step=[1, 1, 1, 2, 2, 2], epoch=1, layer=["conv1", "layer1.0.conv1", "fc"] * 2,
                                 mean_abs=[1e-3, 1e-5, 1e-1, 2e-3, 3e-5, 2e-1], max_abs=1.0,
                                 norm=[0.1, 0.01, 20.0, 0.2, 0.03, 1.0])))
    st = W.stage_gradients(g)
    assert st.index.tolist() == ["stem", "layer1", "fc"] and st.loc["layer1", "mean |grad| max"] == 3e-5
    assert st.loc["fc", "report 003"] == "1e-1 to 1e0" and st.loc["stem", "report 003"] == "—"
    health = W.gradient_health({"a": g})
    assert health.loc["records", "a"] == 2 and health.loc["vanishing (mean |grad| < 1e-06)", "a"] == 0
    assert health.loc["exploding (norm > 10)", "a"] == 1 and isinstance(health.loc["layer records", "a"], int)
    assert health.loc["mean norm, last record", "a"] == pytest.approx((0.2 + 0.03 + 1.0) / 3)
    u = pd.DataFrame(dict(step=[1, 1, 1, 2, 2, 2], epoch=1, layer=["layer1.0.conv1", "layer1.0.conv2", "fc"] * 2,
                          update_norm=[1.0, 3.0, 2.5, 1.0, 1.0, 2.5], relative_update=0.1))
    ranked = W.stage_updates(u)
    assert ranked.index.tolist() == ["fc", "layer1"] and ranked.loc["layer1", "total change"] == 3.0  # (2 + 4) / 2
    assert ranked["report 003's rank"].tolist() == [1, 5]


def test_lr_readings_match_the_report_after_the_step():
    from helpers.profiles import settings

    configs = {v: c[0] for v, c in settings("worksheet_analysis", "full").runs().items()}
    lr = W.lr_readings(configs)
    for v in ("exp1", "exp2"):  # the report logs the LR in force after the epoch's scheduler step
        assert (lr[f"{v} report"] - lr[f"{v} after step"]).abs().max() <= 1e-4
        assert (lr[f"{v} report"] - lr[f"{v} at start"]).abs().max() > 0.005  # one epoch off
    with pytest.raises(ValueError, match="cosine over 25 epochs"):
        W.lr_readings({v: c.replace(epochs=6) for v, c in configs.items()})


class SummaryRun:
    def __init__(self, history, config):
        self.history, self.config = history, config


def test_experiment_summary_counts_full_batches_as_the_report():
    from helpers.data import make_synthetic
    from helpers.profiles import settings

    configs = {v: c[0] for v, c in settings("worksheet_analysis", "full").runs().items()}
    data = make_synthetic(n_train=50_000, n_test=10, seed=0)  # only its size matters here
    h = pd.DataFrame(dict(epoch=[1, 2, 3], train_acc=[0.3, 0.8, 0.95], test_acc=[0.25, 0.88, 0.9],
                          train_loss=[2.0, 0.5, 0.1], test_loss=[1.9, 0.4, 0.3], seconds=[1.0, 1.0, 2.0]))
    table = W.experiment_summary({v: SummaryRun(h, c) for v, c in configs.items()}, data)
    assert table.loc["exp1, this run", "batches / epoch"] == 781 and table.loc["exp2, this run", "batches / epoch"] == 390
    assert table.loc["exp1, report 003", "batches / epoch"] == 781
    row = table.loc["exp1, this run"]
    assert row["gap (points)"] == pytest.approx(5.0) and row["epoch-1 test acc (%)"] == pytest.approx(25.0)
    assert row["convergence epoch"] == 2 and row["time (s)"] == 4.0          # 0.88 >= 0.95 * 0.9
    assert pd.isna(table.loc["exp2, report 003", "train loss"])               # the report gives none
