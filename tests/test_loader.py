"""helpers.loader: per-sample batched augmentation and the on-device BatchLoader."""

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from helpers.loader import (
    Augment,
    BatchLoader,
    augment,
    batch_adjust,
    batch_blur,
    batch_crop,
    batch_flip,
    batch_jitter,
    normalize,
)

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def _images(n, seed=0, device="cpu", size=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g).to(device)


def _gen(device="cpu", seed=0):
    return torch.Generator(device=device).manual_seed(seed)


def _highfreq(x):
    """Per-sample energy of neighbour differences (what a blur removes)."""
    return (x.diff(dim=-1) ** 2).sum(dim=(1, 2, 3)) + (x.diff(dim=-2) ** 2).sum(dim=(1, 2, 3))


# --- Augment -----------------------------------------------------------------------------------


def test_augment_enabled_only_when_something_changes_images():
    assert not Augment().enabled()
    assert not Augment(blur_kernel=5, blur_sigma=(0.5, 2.0)).enabled()  # blur settings alone do nothing
    for kw in ({"crop_padding": 4}, {"flip_h": 0.5}, {"flip_v": 0.05}, {"jitter": 0.2}, {"blur_p": 0.3}):
        assert Augment(**kw).enabled(), kw


BAD_SETTINGS = [
    {"crop_padding": -1},
    {"flip_h": 1.5},
    {"blur_p": -0.1},
    {"jitter": -1},
    {"blur_kernel": 4},
    {"blur_sigma": (0, 1)},
]


@pytest.mark.parametrize("kw", BAD_SETTINGS)
def test_augment_rejects_bad_settings(kw):
    with pytest.raises(ValueError):
        Augment(**kw)


# --- crop --------------------------------------------------------------------------------------


def _window_match(padded, out):
    """N,k,k bool: which (dy, dx) windows of each padded image equal the output image."""
    h, w = out.shape[-2:]
    windows = padded.unfold(2, h, 1).unfold(3, w, 1).permute(0, 2, 3, 1, 4, 5)  # N, k, k, C, H, W
    return (windows == out[:, None, None]).flatten(3).all(dim=3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding", [2, 4])
def test_crop_is_a_window_of_the_padded_image_at_a_per_sample_offset(device, padding):
    x = _images(256, device=device)
    out = batch_crop(x, padding, _gen(device))
    assert out.shape == x.shape and out.dtype == torch.uint8 and out.device == x.device
    k = 2 * padding + 1
    match = _window_match(F.pad(x, (padding,) * 4), out)
    assert match.flatten(1).any(dim=1).all(), "some crop is not a window of its padded image"
    offsets = {divmod(int(i), k) for i in match.flatten(1).float().argmax(dim=1)}
    assert len(offsets) > k * k // 2, f"only {len(offsets)} distinct offsets over 256 samples"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("flip_p", [0.0, 0.5, 1.0])
def test_crop_fused_with_flip_is_the_flip_of_a_window(device, flip_p):
    x = _images(200, device=device)
    out = batch_crop(x, 4, _gen(device), flip_p=flip_p)
    padded = F.pad(x, (4,) * 4)
    plain = _window_match(padded, out).flatten(1).any(1)
    flipped = _window_match(padded, out.flip(-1)).flatten(1).any(1)
    assert (plain ^ flipped).all(), "every sample is a window, or a mirrored window, not both or neither"
    rate = flipped.float().mean().item()
    assert {0.0: rate == 0, 1.0: rate == 1, 0.5: 0.35 < rate < 0.65}[flip_p], rate
    assert torch.equal(batch_crop(x, 0, _gen(device), flip_p=1.0), x.flip(-1))  # no padding: flip only


def test_crop_of_identical_images_differs_per_sample_and_padding_is_zero():
    x = torch.full((64, 3, 32, 32), 200, dtype=torch.uint8)
    out = batch_crop(x, 4, _gen())
    assert len({tuple(o.flatten().tolist()) for o in out}) > 10  # different crops within one batch
    assert set(out.unique().tolist()) == {0, 200}  # zero padding shows at the borders
    assert torch.equal(batch_crop(x, 0, _gen()), x)


# --- flip --------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dim", [-1, -2])
def test_flip_probability_extremes(device, dim):
    x = _images(32, device=device)
    assert torch.equal(batch_flip(x, 0.0, _gen(device), dim=dim), x)
    assert torch.equal(batch_flip(x, 1.0, _gen(device), dim=dim), torch.flip(x, [dim]))


@pytest.mark.parametrize("dim", [-1, -2])
def test_flip_is_per_sample(dim):
    x = _images(400)
    out = batch_flip(x, 0.5, _gen(), dim=dim)
    same = (out == x).flatten(1).all(1)
    flipped = (out == torch.flip(x, [dim])).flatten(1).all(1)
    assert (same ^ flipped).all(), "every sample is either untouched or flipped as a whole"
    assert 0.4 < flipped.float().mean() < 0.6


def test_flip_v_rare_probability():
    out = batch_flip(_images(2000), 0.05, _gen(), dim=-2)
    rate = (out != _images(2000)).flatten(1).any(1).float().mean()
    assert 0.03 < rate < 0.07


# --- colour jitter -----------------------------------------------------------------------------


def test_adjust_matches_torchvision_per_sample():
    x = _images(8).float() / 255
    g = _gen()
    fb, fc, fs = (torch.rand(8, generator=g) * 1.2 + 0.4 for _ in range(3))
    out = batch_adjust(x, fb, fc, fs)
    for i in range(8):
        ref = TF.adjust_brightness(x[i], float(fb[i]))
        ref = TF.adjust_contrast(ref, float(fc[i]))
        ref = TF.adjust_saturation(ref, float(fs[i]))
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_adjust_factor_one_is_identity_and_brightness_scales():
    x = _images(4).float() / 255
    ones = torch.ones(4)
    torch.testing.assert_close(batch_adjust(x, ones, ones, ones), x, atol=1e-6, rtol=0)
    half = batch_adjust(x, torch.full((4,), 0.5), ones, ones)
    torch.testing.assert_close(half, x * 0.5, atol=1e-6, rtol=0)
    # saturation 0 -> grey (all channels equal); contrast 0 -> one flat value per image
    grey = batch_adjust(x, ones, ones, torch.zeros(4))
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-6) and torch.allclose(grey[:, 1], grey[:, 2], atol=1e-6)
    flat = batch_adjust(x, ones, torch.zeros(4), ones)
    assert (flat.flatten(1).amax(1) - flat.flatten(1).amin(1)).max() < 1e-6
    assert torch.equal(x, _images(4).float() / 255), "input must not be modified in place"


@pytest.mark.parametrize("device", DEVICES)
def test_jitter_is_per_sample_within_range(device):
    x = torch.full((256, 3, 32, 32), 0.5, device=device)
    x[:, 0] = 0.3  # some colour, so saturation has something to act on
    out = batch_jitter(x, 0.2, _gen(device))
    assert out.shape == x.shape and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1
    assert len(out[:, :, 0, 0].unique(dim=0)) > 200, "factors must differ between samples"
    # Brightness alone would give [0.8, 1.2] x the mean; contrast/saturation keep the grey mean.
    ratio = _gray_mean(out) / _gray_mean(x)
    assert ratio.min() >= 0.8 - 1e-4 and ratio.max() <= 1.2 + 1e-4
    assert ratio.min() < 0.85 and ratio.max() > 1.15
    assert torch.equal(batch_jitter(x, 0.0, _gen(device)), x)


def _gray_mean(x):
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(1, 2))


# --- blur --------------------------------------------------------------------------------------


def test_blur_tiny_sigma_is_identity_and_p0_changes_nothing():
    x = _images(16).float() / 255
    torch.testing.assert_close(batch_blur(x, 1.0, _gen(), 3, (1e-3, 1e-3)), x, atol=1e-6, rtol=0)
    assert torch.equal(batch_blur(x, 0.0, _gen()), x)


@pytest.mark.parametrize("device", DEVICES)
def test_blur_lowers_high_frequencies_and_matches_torchvision(device):
    x = _images(16, device=device).float() / 255
    out = batch_blur(x, 1.0, _gen(device), 3, (1.0, 1.0))
    assert (_highfreq(out) < 0.7 * _highfreq(x)).all()
    torch.testing.assert_close(out, TF.gaussian_blur(x, [3, 3], [1.0, 1.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        batch_blur(x, 1.0, _gen(device), 5, (0.7, 0.7)), TF.gaussian_blur(x, [5, 5], [0.7, 0.7]), atol=1e-5, rtol=0
    )


def test_blur_is_per_sample():
    x = _images(1).float().div(255).expand(300, -1, -1, -1).contiguous()
    out = batch_blur(x, 0.3, _gen(), 3, (0.8, 1.5))  # sigma >= 0.8: every blur is visible
    changed = (out - x).abs().flatten(1).amax(1) > 1e-4
    assert 0.2 < changed.float().mean() < 0.4  # p applies per sample
    assert len(out[changed].flatten(1).unique(dim=0)) == int(changed.sum()), "sigma drawn per sample"
    assert torch.equal(out[~changed], x[~changed])


# --- normalize / augment -----------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_normalize_known_statistics(device):
    x = _images(64, device=device)
    f = x.float() / 255
    mean, std = f.mean(dim=(0, 2, 3)).tolist(), f.std(dim=(0, 2, 3)).tolist()
    out = normalize(x, mean, std)
    assert out.dtype == torch.float32 and out.device == x.device
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3, device=device), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(dim=(0, 2, 3)), torch.ones(3, device=device), atol=1e-4, rtol=0)
    ref = (f - torch.tensor(MEAN, device=device).view(1, 3, 1, 1)) / torch.tensor(STD, device=device).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize(x, MEAN, STD), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(normalize(f, MEAN, STD), ref, atol=1e-5, rtol=0)  # float [0, 1] input too


@pytest.mark.parametrize("device", DEVICES)
def test_augment_returns_float01_and_disabled_is_plain_scaling(device):
    x = _images(64, device=device)
    aug = Augment(crop_padding=4, flip_h=0.5, flip_v=0.05, jitter=0.2, blur_p=0.3)
    out = augment(x, aug, _gen(device))
    assert out.dtype == torch.float32 and out.shape == x.shape and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x.float() / 255)
    torch.testing.assert_close(augment(x, Augment(), _gen(device)), x.float() / 255)
    assert torch.equal(augment(x, aug, _gen(device, 7)), augment(x, aug, _gen(device, 7)))


# --- BatchLoader -------------------------------------------------------------------------------


def _loader(n=1000, batch=128, device="cpu", **kw):
    images = _images(n)
    labels = torch.arange(n)  # label == index, so y shows which samples a batch holds
    kw.setdefault("augment", Augment(crop_padding=4, flip_h=0.5, jitter=0.2))
    return images, BatchLoader(images, labels, batch, mean=MEAN, std=STD, device=device, **kw)


def _epoch(loader, epoch=None):
    if epoch is not None:
        loader.set_epoch(epoch)
    return list(loader)


def test_loader_len_and_num_samples():
    _, a = _loader(1000, 128)
    assert len(a) == 8 and a.num_samples == 1000 and len(_epoch(a)) == 8
    _, b = _loader(1000, 128, drop_last=True)
    assert len(b) == 7 and len(_epoch(b)) == 7
    _, c = _loader(1024, 128, drop_last=True)
    assert len(c) == 8


@pytest.mark.parametrize("device", DEVICES)
def test_loader_covers_every_index_once_per_epoch(device):
    _, loader = _loader(1000, 128, device=device)
    batches = _epoch(loader, 0)
    sizes = [len(y) for _, y in batches]
    assert sizes == [128] * 7 + [104]
    ys = torch.cat([y for _, y in batches])
    assert torch.equal(ys.sort().values.cpu(), torch.arange(1000))
    assert not torch.equal(ys.cpu(), torch.arange(1000)), "shuffled"
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape == (128, 3, 32, 32) and x.device.type == device
    assert y.dtype == torch.int64 and y.device.type == device


def test_loader_drop_last_gives_full_distinct_batches():
    _, loader = _loader(1000, 128, drop_last=True)
    ys = torch.cat([y for _, y in _epoch(loader)])
    assert len(ys) == 896 and len(ys.unique()) == 896


def test_loader_keeps_uint8_storage_without_copy():
    images, loader = _loader()
    assert loader.images.dtype == torch.uint8
    assert loader.images.data_ptr() == images.data_ptr(), "a tensor already on the device is not copied"
    with pytest.raises(ValueError):
        BatchLoader(images.float(), torch.arange(1000), 32, mean=MEAN, std=STD)
    with pytest.raises(ValueError):  # channels-last (N,H,W,C) input is caught by the channel count
        BatchLoader(images.permute(0, 2, 3, 1), torch.arange(1000), 32, mean=MEAN, std=STD)


def test_loader_without_augment_yields_normalised_images_in_order():
    images, loader = _loader(300, 128, augment=None, shuffle=False)
    x = torch.cat([x for x, _ in _epoch(loader)])
    torch.testing.assert_close(x, normalize(images, MEAN, STD), atol=1e-5, rtol=0)
    _, disabled = _loader(300, 128, augment=Augment(), shuffle=False)
    torch.testing.assert_close(torch.cat([x for x, _ in _epoch(disabled)]), x)


def test_loader_applies_augmentation_to_the_right_samples():
    images, loader = _loader(300, 64, augment=Augment(flip_h=1.0))
    for x, y in _epoch(loader):
        torch.testing.assert_close(x, normalize(torch.flip(images[y], [-1]), MEAN, STD), atol=1e-5, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_loader_same_seed_and_epoch_gives_identical_batches(device):
    _, a = _loader(500, 64, device=device, seed=3)
    _, b = _loader(500, 64, device=device, seed=3)
    for (xa, ya), (xb, yb) in zip(_epoch(a, 5), _epoch(b, 5), strict=True):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    ya = torch.cat([y for _, y in _epoch(a, 6)])
    assert not torch.equal(ya, torch.cat([y for _, y in _epoch(b, 5)])), "epoch changes the order"
    _, c = _loader(500, 64, device=device, seed=4)
    assert not torch.equal(ya, torch.cat([y for _, y in _epoch(c, 6)])), "seed changes the order"


def test_loader_augmentation_differs_between_epochs_for_the_same_sample():
    _, loader = _loader(200, 200, shuffle=False)
    (x0, _), (x1, _) = _epoch(loader, 0)[0], _epoch(loader, 1)[0]
    assert not torch.equal(x0, x1)


def test_loader_resume_at_epoch_k_matches_uninterrupted_run():
    _, full = _loader(300, 64, seed=1)
    uninterrupted = [_epoch(full) for _ in range(4)]  # no set_epoch: each iter() advances the epoch
    _, resumed = _loader(300, 64, seed=1)
    for _ in _loader(300, 64, seed=9)[1]:  # unrelated activity in between must not matter
        pass
    resumed.set_epoch(2)
    it = iter(resumed)
    next(it)  # abandon epoch 2 after one batch, as a run killed mid-epoch would
    for k in (2, 3):
        for (xa, ya), (xb, yb) in zip(uninterrupted[k], _epoch(resumed, k), strict=True):
            assert torch.equal(ya, yb) and torch.equal(xa, xb)
    assert resumed.epoch == 4


def test_loader_indices_select_a_subset_without_copying():
    images = _images(1000)
    idx = torch.arange(0, 1000, 3)
    loader = BatchLoader(images, torch.arange(1000), 100, mean=MEAN, std=STD, indices=idx, augment=None)
    assert loader.num_samples == len(idx) and len(loader) == 4
    assert loader.images.data_ptr() == images.data_ptr()
    ys = torch.cat([y for _, y in loader])
    assert torch.equal(ys.sort().values, idx)
    loader_ordered = BatchLoader(images, torch.arange(1000), 100, mean=MEAN, std=STD, indices=idx, shuffle=False)
    x = torch.cat([x for x, _ in loader_ordered])
    torch.testing.assert_close(x, normalize(images[idx], MEAN, STD), atol=1e-5, rtol=0)
    with pytest.raises(IndexError):
        BatchLoader(images, torch.arange(1000), 100, mean=MEAN, std=STD, indices=torch.tensor([1000]))


def test_loader_iter_takes_the_epoch_when_called():
    _, loader = _loader(300, 64, seed=2)
    first, second = iter(loader), iter(loader)  # two epochs started before either is consumed
    assert loader.epoch == 2
    ya, yb = torch.cat([y for _, y in first]), torch.cat([y for _, y in second])
    assert torch.equal(ya, torch.cat([y for _, y in _epoch(loader, 0)]))
    assert torch.equal(yb, torch.cat([y for _, y in _epoch(loader, 1)]))


# --- report 004's flip-then-crop and report 002's random erasing --------------------------------------

def test_flip_first_flips_before_the_crop():
    """Flip, then crop (004's code) draws the flip before the offsets: another stream than the fused
    crop+flip, the same distribution of results (a flipped crop is a crop of the flip)."""
    from helpers.loader import Augment, augment, batch_crop, batch_flip

    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    aug = Augment(crop_padding=4, flip_h=0.5, flip_first=True)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    expected = batch_crop(batch_flip(images, 0.5, g2), 4, g2).float().mul_(1 / 255)
    assert torch.equal(augment(images, aug, g1), expected)
    fused = augment(images, Augment(crop_padding=4, flip_h=0.5), torch.Generator().manual_seed(3))
    assert not torch.equal(fused, expected)


def test_random_erasing_follows_torchvision():
    """batch_erase as torchvision's RandomErasing(p, scale, ratio (0.3, 3.3), value 0): the share of
    erased images and the erased area, over many images, and rectangles only."""
    from torchvision.transforms import RandomErasing

    from helpers.loader import batch_erase

    x = torch.ones(4000, 3, 32, 32)
    ours = batch_erase(x.clone(), 0.5, torch.Generator().manual_seed(0), (0.02, 0.2))
    torch.manual_seed(0)
    theirs = torch.stack([RandomErasing(p=0.5, scale=(0.02, 0.2), value=0)(img) for img in x])
    shares = [(t[:, 0] == 0).float().mean((1, 2)) for t in (ours, theirs)]
    assert abs((shares[0] > 0).float().mean() - (shares[1] > 0).float().mean()) < 0.04
    assert abs(shares[0][shares[0] > 0].mean() - shares[1][shares[1] > 0].mean()) < 0.01
    erased = ours[:, 0] == 0
    rows, cols = erased.any(2), erased.any(1)
    assert torch.equal(erased.sum((1, 2)), rows.sum(1) * cols.sum(1))  # each erased region is one rectangle
    assert torch.equal(ours[:, 0] == 0, ours[:, 2] == 0)  # all channels alike
    again = batch_erase(x.clone(), 0.5, torch.Generator().manual_seed(0), (0.02, 0.2))
    assert torch.equal(ours, again)


def test_the_loader_erases_after_normalising():
    from helpers.loader import Augment, BatchLoader

    images = torch.full((40, 3, 32, 32), 200, dtype=torch.uint8)
    loader = BatchLoader(images, torch.zeros(40, dtype=torch.long), 40, mean=(0.2,) * 3, std=(0.1,) * 3,
                         augment=Augment(erase_p=1.0, erase_scale=(0.1, 0.2)), shuffle=False)
    x, _ = next(iter(loader))
    values = sorted(x.unique().tolist())
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx((200 / 255 - 0.2) / 0.1, rel=1e-5)
    assert ((x == 0).float().mean((1, 2, 3)) > 0).all()  # p 1: every image has an erased rectangle
