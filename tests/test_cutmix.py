import pytest
import torch
import torch.nn.functional as F

from helpers.cutmix import cutmix
from helpers.data import make_synthetic
from helpers.train import TrainConfig, fit


def numbered_batch(n=16, size=32):
    """Image i is filled with the value i, so every pixel says which image it came from."""
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, size, size).clone()
    y = torch.arange(n) % 10
    return x, y


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("seed", range(20))
def test_lambda_is_the_area_each_image_keeps_and_labels_mix_in_that_ratio(seed):
    x, y = numbered_batch()
    out, target = cutmix(x, y, 10, gen(seed), alpha=1.0, p=1.0)
    assert target.shape == (16, 10)
    assert torch.allclose(target.sum(1), torch.ones(16))
    for i in range(16):
        kept = (out[i] == i).float().mean().item()          # area of image i still there
        pasted = (out[i] == (i - 1) % 16).float().mean().item()  # area that came from image i-1
        assert kept + pasted == pytest.approx(1.0)
        if y[i] != y[i - 1]:
            assert target[i, y[i]].item() == pytest.approx(kept, abs=1e-6)
            assert target[i, y[i - 1]].item() == pytest.approx(pasted, abs=1e-6)


def test_box_is_one_rectangle_shared_by_the_batch():
    x, y = numbered_batch()
    out, _ = cutmix(x, y, 10, gen(3), p=1.0)
    changed = out[5, 0] != 5
    rows, cols = changed.any(1).nonzero().ravel(), changed.any(0).nonzero().ravel()
    if len(rows):  # the box is the full rectangle spanned by the changed rows and columns
        assert changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
    for i in range(16):
        assert torch.equal(out[i, 0] != i, changed)


def test_probability_zero_and_one():
    x, y = numbered_batch()
    same_x, same_y = cutmix(x, y, 10, gen(), p=0.0)
    assert same_x is x and same_y is y
    mixed = sum(cutmix(x, y, 10, gen(s), p=0.5)[1].dim() == 2 for s in range(400))
    assert 160 < mixed < 240  # about half of the batches are mixed


def test_same_generator_state_gives_the_same_mix_and_leaves_global_rng_alone():
    x, y = numbered_batch()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = cutmix(x, y, 10, gen(7), p=1.0)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = cutmix(x, y, 10, gen(7), p=1.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_lambda_follows_beta_one_one_on_average():
    # alpha = 1 draws the cut area uniformly; clipping at the border only shrinks boxes, so the
    # mean kept area is a little above 1/2.
    x, y = numbered_batch(n=2)
    kept = [(cutmix(x, y, 10, gen(s), p=1.0)[0][0] == 0).float().mean().item() for s in range(500)]
    assert 0.5 < sum(kept) / len(kept) < 0.75


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_mixed_loss_is_the_lambda_weighted_sum_of_the_two_losses(smoothing):
    logits = torch.randn(6, 10, generator=gen(1))
    y_a, y_b, lam = torch.tensor([0, 1, 2, 3, 4, 5]), torch.tensor([9, 8, 7, 6, 5, 4]), 0.3
    soft = lam * F.one_hot(y_a, 10).float() + (1 - lam) * F.one_hot(y_b, 10).float()
    mixed = F.cross_entropy(logits, soft, label_smoothing=smoothing)
    weighted = (lam * F.cross_entropy(logits, y_a, label_smoothing=smoothing)
                + (1 - lam) * F.cross_entropy(logits, y_b, label_smoothing=smoothing))
    assert mixed.item() == pytest.approx(weighted.item(), rel=1e-6)


def test_bad_parameters_are_named():
    x, y = numbered_batch()
    with pytest.raises(ValueError, match="p must be"):
        cutmix(x, y, 10, gen(), p=1.5)
    with pytest.raises(ValueError, match="alpha must be"):
        cutmix(x, y, 10, gen(), alpha=0)
    with pytest.raises(ValueError, match=r"unknown cutmix option.*'beta'.*valid: \['alpha', 'p'\]"):
        TrainConfig(mix=dict(kind="cutmix", beta=1.0))
    with pytest.raises(ValueError, match="unknown mix kind 'mixup'; valid: cutmix"):
        TrainConfig(mix=dict(kind="mixup"))


def test_engine_trains_with_cutmix_and_changes_the_run(tmp_path):
    data = make_synthetic(n_train=256, n_test=64, seed=1)
    base = TrainConfig(model="simple_cnn", width=0.125, epochs=1, batch_size=32, val_fraction=0.25)
    plain = fit(base, data, root=tmp_path, progress=False)
    mixed_cfg = base.replace(mix=dict(kind="cutmix", alpha=1.0, p=1.0), label_smoothing=0.1)
    mixed = fit(mixed_cfg, data, root=tmp_path, progress=False)
    again = fit(mixed_cfg, data, root=tmp_path, progress=False, force=True)
    assert plain.path != mixed.path
    assert plain.history["train_loss"][0] != pytest.approx(mixed.history["train_loss"][0])
    assert (mixed.history.drop(columns="seconds").equals(again.history.drop(columns="seconds")))


def test_mix_given_as_a_string_is_a_clear_error():
    with pytest.raises(ValueError, match="mix must be None or a dict"):
        TrainConfig(mix="cutmix")
