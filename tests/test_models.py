"""Parameter counts from the reports, forward shapes, and the width multiplier."""

import pytest
import torch

from helpers.models import MODELS, build_model, count_parameters, last_conv, resnet18_cifar
from reference_models import torchvision_resnet18_cifar

# (name, kwargs, parameters at width 1 for 10 classes) -- the numbers the reports give
REPORT_COUNTS = [
    ("resnet18_cifar", {}, 11_173_962),                # reports 001, 003
    ("budget_resnet", {}, 4_754_218),                  # report 002
    ("simple_cnn", {}, 620_362),                       # report 004
    ("simple_cnn", {"batch_norm": True}, 621_322),     # report 004
    ("flexible_cnn", {}, 7_427_914),                   # report 000's code: 5 blocks a stage, both variants
    ("flexible_cnn", {"residual": True}, 7_427_914),
]


@pytest.mark.parametrize("name,kwargs,count", REPORT_COUNTS)
def test_parameter_counts_match_reports(name, kwargs, count):
    assert count_parameters(build_model(name, **kwargs)) == count


def test_budget_resnet_is_within_budget():
    assert count_parameters(build_model("budget_resnet")) <= 5_000_000


def test_resnet18_cifar_matches_torchvision_structure():
    ours, ref = resnet18_cifar(), torchvision_resnet18_cifar()
    ref_shapes = {k: v.shape for k, v in ref.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == ref_shapes
    ours.load_state_dict(ref.state_dict())  # interchangeable weights
    ours.eval(), ref.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), ref(x))


def test_flexible_variants_share_every_parameter_and_plain_leaves_the_projections_unused():
    """Report 000's code builds the projections in both models; the plain one never calls them."""
    torch.manual_seed(0)
    plain = build_model("flexible_cnn")
    torch.manual_seed(0)
    res = build_model("flexible_cnn", residual=True)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in res.state_dict().items()}
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), res.state_dict().values()))
    assert plain.used_parameters() == 7_386_186 and res.used_parameters() == 7_427_914  # the code's 41,728 unused
    plain(torch.randn(2, 3, 32, 32)).sum().backward()
    unused = {n for n, p in plain.named_parameters() if p.grad is None}
    assert unused and all(".shortcut." in n for n in unused)
    assert sum(p.numel() for n, p in plain.named_parameters() if n in unused) == 41_728
    assert sum(isinstance(m, torch.nn.Conv2d) for m in plain.modules()) - 2 == 31  # convolutions on its path


def test_flexible_blocks_per_stage_is_a_setting():
    assert len(build_model("flexible_cnn", blocks=2).stages[0]) == 2
    with pytest.raises(ValueError, match="blocks must be a positive integer"):
        build_model("flexible_cnn", blocks=0)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("width", [1.0, 0.25])
def test_forward_shapes(name, width):
    model = build_model(name, num_classes=7, width=width).eval()
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 7)


@pytest.mark.parametrize("name", MODELS)
def test_width_multiplier_shrinks_models(name):
    assert count_parameters(build_model(name, width=0.25)) < count_parameters(build_model(name)) / 8


def test_cifar100_head():
    assert build_model("resnet18_cifar", num_classes=100).fc.out_features == 100


def test_unknown_model_names_valid_choices():
    with pytest.raises(ValueError, match="valid models: flexible_cnn, resnet18_cifar"):
        build_model("resnet50")


def test_last_conv_is_the_deepest_conv():
    model = build_model("simple_cnn")
    assert last_conv(model) is model.features[6]


def test_summary_matches_report_002_memory_table():
    # Report 002's torchsummary output for its 4,754,218-parameter model: input 0.01 MB,
    # forward/backward 10.16 MB, params 18.14 MB, total 28.31 MB, 85 layers ending in Linear-85.
    from helpers.models import summary

    table, memory = summary(build_model("budget_resnet"))
    assert table["params"].sum() == 4_754_218
    assert round(memory["input"], 2) == 0.01
    assert round(memory["forward_backward"], 2) == 10.16
    assert round(memory["params"], 2) == 18.14
    assert round(memory["total"], 2) == 28.31
    counted = table[~table["in_place"]]
    assert len(counted) == 85 and counted.iloc[-1]["output_shape"] == [-1, 10]
    assert table.iloc[0].to_dict() == dict(layer="Conv2d-1", output_shape=[-1, 32, 32, 32], params=864, in_place=False)


def test_summary_restores_mode_and_removes_hooks():
    from helpers.models import summary

    model = build_model("simple_cnn", width=0.25).train()
    summary(model)
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_parameters_by_part_adds_up():
    from helpers.models import parameters_by_part

    model = build_model("budget_resnet")
    parts = parameters_by_part(model)
    assert list(parts.index) == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert parts.sum() == 4_754_218
