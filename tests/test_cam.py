"""helpers.cam: the wrappers around pytorch-grad-cam (targets, batching, side effects, overlay, mask energy)."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from helpers.cam import _ranks, compute_cams, energy_in_mask, faithfulness, overlay, random_maps, spread, target_layer
from helpers.data import make_synthetic
from helpers.loader import normalize
from helpers.models import MODELS, FlexibleCNN, Net, SimpleCNN, build_model, last_conv
from reference_models import torchvision_resnet18_cifar

NORM = dict(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_train=0, n_test=8, seed=3)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FlexibleCNN(num_classes=10, residual=True, width=0.25).eval()


@pytest.fixture(scope="module")
def cams_pred(model, data):
    return compute_cams(Net(model, **NORM), data.test_images)


# --- target layer ----------------------------------------------------------------------------------

EXPECTED_LAYER = {  # model name -> the module target_layer must pick
    "flexible_cnn": lambda m: m.stages[-1][-1].conv2[0],  # report 000's code: conv2 of the last block, before its BN
    "resnet18_cifar": lambda m: m.layer4[-1],
    "budget_resnet": lambda m: m.layer4[-1],
    "simple_cnn": lambda m: m.features[6],  # conv, relu, pool x 3: the third conv
}


def test_every_model_has_an_expected_layer():
    assert set(EXPECTED_LAYER) == set(MODELS)


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYER))
def test_target_layer_per_model(name):
    m = build_model(name, width=0.25)
    assert target_layer(m) is EXPECTED_LAYER[name](m)


def test_target_layer_variants():
    for residual in (False, True):  # plain and residual FlexibleCNN are compared at the same place
        m = FlexibleCNN(residual=residual, width=0.25)
        assert target_layer(m) is m.stages[2][4].conv2[0]  # 5 blocks a stage, as the code builds it
    m = SimpleCNN(batch_norm=True, width=0.25)
    assert target_layer(m) is m.features[8] is last_conv(m)  # conv, bn, relu, pool x 3
    tv = torchvision_resnet18_cifar()
    assert target_layer(tv) is tv.layer4[1]


# --- compute_cams ----------------------------------------------------------------------------------

def test_shapes_and_range(cams_pred, data):
    assert cams_pred.shape == (len(data.test_images), 32, 32)
    assert cams_pred.dtype == np.float32
    assert cams_pred.min() >= 0.0 and cams_pred.max() <= 1.0 + 1e-6
    nonzero = cams_pred.reshape(len(cams_pred), -1).max(axis=1) > 0
    assert nonzero.sum() >= len(cams_pred) // 2  # min-max scaled: a non-empty map reaches 1
    np.testing.assert_allclose(cams_pred.reshape(len(cams_pred), -1).max(axis=1)[nonzero], 1.0, atol=1e-5)


def test_none_targets_are_the_predictions(model, data, cams_pred):
    with torch.no_grad():
        pred = model(normalize(data.test_images, **NORM)).argmax(1)
    np.testing.assert_allclose(compute_cams(Net(model, **NORM), data.test_images, targets=pred.tolist()), cams_pred,
                               atol=1e-6)


def test_one_target_per_image(model, data):
    images = data.test_images[:6]
    c0 = compute_cams(Net(model, **NORM), images, targets=0)
    c1 = compute_cams(Net(model, **NORM), images, targets=1)
    assert not np.allclose(c0, c1, atol=1e-3)  # different classes, different explanations
    per_image = np.array([0, 1, 1, 0, 1, 0])  # the second chunk (batch 4) needs its own targets
    mixed = compute_cams(Net(model, **NORM), images, targets=per_image, batch_size=4)
    np.testing.assert_allclose(mixed, np.where(per_image[:, None, None] == 1, c1, c0), atol=1e-5)
    np.testing.assert_allclose(compute_cams(Net(model, **NORM), images, targets=torch.tensor([1] * 6)), c1, atol=1e-6)


def test_batched_equals_one_at_a_time(model, data, cams_pred):
    np.testing.assert_allclose(compute_cams(Net(model, **NORM), data.test_images, batch_size=3), cams_pred, atol=1e-4)
    np.testing.assert_allclose(compute_cams(Net(model, **NORM), data.test_images, batch_size=1), cams_pred, atol=1e-4)


def test_layer_argument(model, data, cams_pred):
    np.testing.assert_allclose(compute_cams(Net(model, **NORM), data.test_images, layer=target_layer(model)), cams_pred)
    early = compute_cams(Net(model, **NORM), data.test_images, layer=model.stages[0])
    assert early.shape == cams_pred.shape and not np.allclose(early, cams_pred, atol=1e-3)


def test_no_side_effects_left(data):
    torch.manual_seed(1)
    m = FlexibleCNN(residual=True, width=0.25).train()
    frozen = m.stem[0][0].weight
    frozen.requires_grad_(False)
    kept = m.fc.weight
    kept.grad = torch.full_like(kept, 7.0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    compute_cams(Net(m, **NORM), data.test_images[:4])
    assert m.training  # mode given back
    assert all(not mod._forward_hooks and not mod._backward_hooks for mod in m.modules())
    assert not frozen.requires_grad
    assert all(p.requires_grad for p in m.parameters() if p is not frozen)
    assert torch.equal(kept.grad, torch.full_like(kept, 7.0))
    assert all(p.grad is None for p in m.parameters() if p is not kept)
    # eval mode inside: BatchNorm running statistics untouched
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())


def test_works_under_no_grad(model, data, cams_pred):
    with torch.no_grad():
        np.testing.assert_allclose(compute_cams(Net(model, **NORM), data.test_images), cams_pred, atol=1e-6)


def test_bad_targets(model, data):
    images = data.test_images[:3]
    with pytest.raises(ValueError):
        compute_cams(Net(model, **NORM), images, targets=[0, 1])  # not one per image
    with pytest.raises(ValueError):
        compute_cams(Net(model, **NORM), images, targets=-1)  # would silently index from the end
    with pytest.raises(ValueError):
        compute_cams(Net(model, **NORM), images, targets=10)  # beyond the 10 outputs
    assert compute_cams(Net(model, **NORM), images[:0]).shape == (0, 32, 32)


def test_cpu_matches_a_model_without_inplace_ops(data):
    """SimpleCNN's last conv feeds an in-place ReLU: the CAM must use the conv's own output."""
    torch.manual_seed(2)
    m = SimpleCNN(width=0.25).eval()
    ref_model = copy.deepcopy(m)
    for mod in ref_model.modules():
        if isinstance(mod, nn.ReLU):
            mod.inplace = False
    x = normalize(data.test_images, **NORM)
    with GradCAM(model=ref_model, target_layers=[last_conv(ref_model)]) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(3)] * len(x))
    np.testing.assert_allclose(compute_cams(Net(m, **NORM), data.test_images, targets=3), ref, atol=1e-5)


# --- overlay ---------------------------------------------------------------------------------------

def test_overlay_shape_and_range(data, cams_pred):
    out = overlay(data.test_images, cams_pred)
    assert out.shape == (len(cams_pred), 32, 32, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    with pytest.raises(ValueError):
        overlay(data.test_images, cams_pred[:, :16])


def test_overlay_weights(data):
    images = data.test_images[:2]
    zeros = np.zeros((2, 32, 32), np.float32)
    only_image = overlay(images, zeros, alpha=0.0)  # image weight 1: the image, rescaled to max 1
    img = images.permute(0, 2, 3, 1).numpy() / 255.0
    expected = img / img.max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(only_image, expected, atol=1.5 / 255)
    only_heat = overlay(images, zeros, alpha=1.0)  # jet at 0 is dark blue, whatever the image
    np.testing.assert_allclose(only_heat[..., 0], 0.0)
    np.testing.assert_allclose(only_heat[..., 1], 0.0)
    assert (only_heat[..., 2] == 1.0).all()


# --- energy_in_mask --------------------------------------------------------------------------------

def test_energy_in_mask_hand_cases():
    mask = np.zeros((32, 32), bool)
    mask[8:16, 8:24] = True  # 128 of 1024 pixels: 1/8 of the area
    inside = np.where(mask, 0.7, 0.0)
    outside = np.where(mask, 0.0, 0.3)
    uniform = np.full((32, 32), 0.5)
    half = np.zeros((32, 32))
    half[8, 8], half[0, 0] = 1.0, 1.0  # one unit inside, one outside
    cams = np.stack([inside, outside, uniform, half, np.zeros((32, 32))])
    masks = np.stack([mask] * 5)
    e = energy_in_mask(cams, masks)
    np.testing.assert_allclose(e[:4], [1.0, 0.0, 1 / 8, 0.5])
    assert np.isnan(e[4])  # an empty map has no energy to share
    np.testing.assert_allclose(energy_in_mask(torch.tensor(cams[:4]), torch.tensor(masks[:4])), e[:4])
    with pytest.raises(ValueError):
        energy_in_mask(cams, masks[:, :16])


def test_energy_in_mask_on_synthetic_masks(data, cams_pred):
    e = energy_in_mask(cams_pred, data.test_masks)
    assert e.shape == (len(cams_pred),)
    ok = ~np.isnan(e)
    assert ok.any() and ((e[ok] >= 0) & (e[ok] <= 1)).all()


# --- spread ----------------------------------------------------------------------------------------

def test_spread_hand_cases():
    uniform = np.full((32, 32), 0.3)
    one_hot = np.zeros((32, 32))
    one_hot[5, 7] = 1.0
    two = np.zeros((32, 32))
    two[0, 0], two[9, 9] = 0.5, 0.5  # two equal pixels: entropy log 2 / log 1024 = 1/10
    half = np.where(np.arange(1024).reshape(32, 32) < 256, 1.0, 0.4)  # a quarter at the peak, the rest below half
    s = spread(np.stack([uniform, one_hot, two, half, np.zeros((32, 32))]))
    np.testing.assert_allclose(s["entropy"][:3], [1.0, 0.0, 0.1], atol=1e-12)
    np.testing.assert_allclose(s["above_half"][:4], [1.0, 1 / 1024, 2 / 1024, 0.25])
    assert 0.1 < s["entropy"][3] < 1.0
    assert s.iloc[4].isna().all()  # an empty map has no distribution
    with pytest.raises(ValueError):
        spread(-uniform[None])


def test_spread_orders_real_maps(cams_pred):
    """Blurring a map makes it more diffuse on both measures."""
    s = spread(cams_pred)
    blurred = torch.nn.functional.avg_pool2d(torch.tensor(cams_pred)[:, None], 9, 1, 4, count_include_pad=False)
    b = spread(blurred[:, 0].numpy())
    ok = s["entropy"].notna()
    assert (b["entropy"][ok] >= s["entropy"][ok] - 1e-9).all()
    assert (b["entropy"][ok] > s["entropy"][ok]).any()


# --- random maps and faithfulness --------------------------------------------------------------------

def test_random_maps_keep_each_maps_values(cams_pred):
    r = random_maps(cams_pred, seed=1)
    assert r.shape == cams_pred.shape and r.dtype == np.float32
    np.testing.assert_allclose(np.sort(r.reshape(len(r), -1)), np.sort(cams_pred.reshape(len(r), -1)), atol=1e-6)
    assert np.array_equal(r, random_maps(cams_pred, seed=1))
    assert not np.array_equal(r, random_maps(cams_pred, seed=2))
    assert np.abs(r - cams_pred).mean() > 0.05  # the values moved


def test_ranks_break_ties():
    maps = np.array([[[0.0, 0.0], [0.5, 0.0]], [[1.0, 0.2], [0.3, 0.4]]])
    r = _ranks(maps, np.random.default_rng(0))
    assert sorted(r[0].ravel()) == sorted(r[1].ravel()) == [0.25, 0.5, 0.75, 1.0]  # a permutation each
    assert r[0, 1, 0] == 1.0  # the one non-zero pixel ranks first
    np.testing.assert_allclose(r[1], [[1.0, 0.25], [0.5, 0.75]])  # distinct values keep their order


PATCH = (slice(12, 20), slice(12, 20))


class PatchModel(nn.Module):
    """Two classes; class 1's logit is 4 x the mean of the normalised image on one 8x8 patch, nothing else.
    A BatchNorm in front changes the output (and its running statistics) if run in training mode."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3, affine=False)
        self.gain = nn.Parameter(torch.tensor(4.0))

    def forward(self, x):
        s = self.bn(x)[:, :, PATCH[0], PATCH[1]].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(s), self.gain * s], dim=1)


def patch_data(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    images[:, :, PATCH[0], PATCH[1]] = 255  # bright patch: class 1 with probability ~1
    yy, xx = np.mgrid[:32, :32]
    bump = np.exp(-((yy - 15.5) ** 2 + (xx - 15.5) ** 2) / (2 * 4.0**2))  # peaks on the patch
    return images, np.repeat(bump[None], n, axis=0)


def test_faithfulness_map_of_the_used_region_beats_random():
    images, cams = patch_data()
    model = PatchModel().train()
    model.gain.requires_grad_(False)
    df = faithfulness(Net(model, **NORM), images, cams)
    assert len(df) == len(images) and df["target"].eq(1).all() and (df["confidence"] > 0.99).all()
    assert df["beats_random"].all()
    # removing the patch first costs ~0.5 of probability, removing the rest first costs nothing
    assert (df["road"] > 0.15).all() and (df["road_random"].abs() < df["road"] / 2).all()
    assert (df["keep"] > -0.05).all() and (df["keep_random"] < df["keep"]).all()
    # the model was left as it was, in training mode with untouched running statistics
    assert model.training and not model.gain.requires_grad and model.gain.grad is None
    assert torch.equal(model.bn.running_mean, torch.zeros(3)) and int(model.bn.num_batches_tracked) == 0
    # a map that points away from the patch (a square in the corner) does not beat random
    away = np.zeros_like(cams)
    away[:, :8, :8] = 1.0
    bad = faithfulness(Net(model, **NORM), images, away)
    assert (bad["road"] < 0.05).all() and not bad["beats_random"].any()


def test_faithfulness_is_seeded_and_leaves_the_global_rng(model, data, cams_pred):
    images, cams = data.test_images[:4], cams_pred[:4]
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    first = faithfulness(Net(model, **NORM), images, cams, masks=data.test_masks[:4], batch_size=3, percentiles=(50,))
    assert torch.equal(torch.rand(3), expected_next)  # the imputer's noise came from a forked RNG
    again = faithfulness(Net(model, **NORM), images, cams, masks=data.test_masks[:4], batch_size=3, percentiles=(50,))
    pd.testing.assert_frame_equal(first, again)
    assert list(first.columns) == ["target", "confidence", "road", "keep", "road_random", "keep_random",
                                   "beats_random", "in_mask", "in_mask_random"]
    np.testing.assert_allclose(first["in_mask"], energy_in_mask(cams, data.test_masks[:4]))
    with pytest.raises(ValueError):
        faithfulness(Net(model, **NORM), images, cams[:3])
    with pytest.raises(ValueError, match="beyond"):
        faithfulness(Net(model, **NORM), images, cams, targets=10)
    empty = faithfulness(Net(model, **NORM), images[:0], cams[:0])
    assert len(empty) == 0 and list(empty.columns) == list(first.columns[:7])
