"""Profiles: the full profile is each report's protocol; overrides and bad names."""

import pytest

from helpers.profiles import FULL, STUDIES, settings


def test_full_profiles_are_the_reports_protocols():
    s = settings("bn_ablation", "full").train              # report 004
    assert (s.model, s.epochs, s.batch_size, s.lr, s.schedule, s.step_size, s.gamma, s.seed, s.val_fraction) == \
        ("simple_cnn", 30, 128, 0.01, "step", 10, 0.1, 42, 0.1)
    s = settings("stress_test", "full").train              # report 000
    assert (s.model, s.epochs, s.batch_size, s.lr, s.schedule, s.step_per, s.seed, s.split_seed) == \
        ("flexible_cnn", 40, 64, 0.01, "onecycle", "batch", 2026, 2026)
    s = settings("cutmix_study", "full")                   # report 001
    assert s.dataset == "cifar100" and s.train.milestones == (25, 40) and s.train.epochs == 50
    assert s.extra == dict(cutmix_alpha=1.0, cutmix_p=0.5, label_smoothing=0.1)
    s = settings("resnet_budget", "full").train            # report 002
    assert (s.model, s.epochs, s.lr, s.schedule) == ("budget_resnet", 100, 0.1, "cosine")
    assert s.augment == dict(crop_padding=2, flip_h=0.5, flip_v=0.05, blur_p=0.3, blur_kernel=3, blur_sigma=(0.1, 1.5))
    assert s.mix == dict(kind="cutmix", alpha=1.0, p=0.5) and s.val_fraction == 0.0
    s = settings("worksheet_analysis", "full")             # report 003
    assert (s.train.batch_size, s.train.lr, s.extra["batch_size_2"], s.extra["lr_2"]) == (64, 0.15, 128, 0.20)
    assert s.train.normalize == "cifar10" and s.train.augment["jitter"] == 0.2
    for study in STUDIES:
        full = settings(study, "full")
        assert full.n_train is None and full.train.width == 1.0 and full.dataset == FULL[study]["dataset"]


@pytest.mark.parametrize("study", STUDIES)
@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_scaled_profiles_keep_the_protocol_shape(study, profile):
    small, full = settings(study, profile), settings(study, "full")
    assert small.dataset == "synthetic" and small.n_train <= 20_000
    assert small.train.width < 1 and small.train.epochs < full.train.epochs
    for name in ("model", "schedule", "step_per", "momentum", "weight_decay", "seed"):
        assert getattr(small.train, name) == getattr(full.train, name)


def test_overrides_and_none_values():
    s = settings("bn_ablation", "quick", epochs=3, dataset="cifar10", seed=None)
    assert s.train.epochs == 3 and s.dataset == "cifar10" and s.train.seed == 42
    assert s.n_train == 20_000  # a dataset given on top of quick keeps quick's subset size
    assert settings("worksheet_analysis", "quick", lr_2=0.3).extra["lr_2"] == 0.3


@pytest.mark.parametrize("args,message", [
    (("nonsense", "quick"), "valid studies: stress_test"),
    (("bn_ablation", "fast"), "valid profiles: smoke, quick, full"),
])
def test_unknown_names(args, message):
    with pytest.raises(ValueError, match=message):
        settings(*args)


def test_unknown_and_bad_settings():
    with pytest.raises(ValueError, match="unknown setting 'epoch' .*valid settings: .*epochs"):
        settings("bn_ablation", "quick", epoch=3)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        settings("bn_ablation", "quick", epochs=0)
    with pytest.raises(ValueError, match="n_train must be"):
        settings("bn_ablation", "quick", n_train=-5)
