"""helpers.instrument: FLOPs against the report and a hand count, gradient and update records."""

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import instrument as I
from helpers.models import resnet18_cifar


def test_resnet18_cifar_macs_match_report_003():
    table, totals = I.flops(resnet18_cifar())
    assert totals["macs"] / 1e9 == pytest.approx(0.5567, rel=0.01)  # report 003: 0.5567 G multiply-adds
    assert totals["flops"] == 2 * totals["macs"]
    assert totals["params"] == 11_173_962
    assert table["share"].sum() == pytest.approx(1.0)
    assert table["layer"].iloc[0] == "conv1" and table["layer"].iloc[-1] == "fc"
    assert (table["type"].isin(["Conv2d", "Linear"])).all()


def test_small_conv_and_linear_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 32 * 32, 10))
    table, totals = I.flops(model)
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
    grads, updates = I.GradientRecorder(model, every), I.UpdateRecorder(model, every)
    for step in range(1, steps + 1):
        x, y = torch.randn(5, 3, 8, 8), torch.randint(0, 3, (5,))
        F.cross_entropy(model(x), y).backward()
        grads.after_backward(step, epoch=1)
        before = [p.detach().clone() for _, p in I.layers(model)]
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
    rec = I.GradientRecorder(model, every=1)
    rec.after_backward(1, 0)
    row = rec.frame().iloc[0]
    g = model.weight.grad
    assert row["mean_abs"] == pytest.approx(g.abs().mean().item())
    assert row["max_abs"] == pytest.approx(g.abs().max().item())
    assert row["norm"] == pytest.approx(g.norm().item())


def test_update_is_the_change_since_the_last_record():
    model = nn.Linear(4, 2)
    rec = I.UpdateRecorder(model, every=2)
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


def test_flags_and_tables():
    g = pd.DataFrame(dict(step=[1, 1, 2, 2], epoch=1, layer=["a", "b", "a", "b"], mean_abs=[1e-9, 0.1, 0.2, 0.1],
                          max_abs=1.0, norm=[0.1, 50.0, 0.2, 0.3]))
    rec = I.GradientRecorder(nn.Linear(2, 2), every=1)
    rec.rows = g.to_dict("records")
    flagged = rec.frame()
    assert flagged["vanishing"].tolist() == [True, False, False, False]
    assert flagged["exploding"].tolist() == [False, True, False, False]
    ranges = I.gradient_ranges(flagged)
    assert ranges.loc["b", "norm max"] == 50.0 and ranges.loc["a", "vanishing records"] == 1
    u = pd.DataFrame(dict(step=[1, 1], epoch=1, layer=["a", "b"], update_norm=1.0, relative_update=[0.01, 0.5],
                          weight_norm=1.0, weight_mean=0.0, weight_std=0.1))
    assert I.update_ranking(u).index.tolist() == ["b", "a"]


def test_bad_interval_and_logger():
    with pytest.raises(ValueError, match="positive integer"):
        I.GradientRecorder(nn.Linear(2, 2), every=0)
    with pytest.raises(ValueError, match="valid: none, tensorboard, wandb"):
        I.log_run(None, to="mlflow")
