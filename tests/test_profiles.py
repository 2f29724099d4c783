"""Profiles: the full profile is each report's protocol; overrides, bad names, seeds and study runs."""

import pytest
import torch

from helpers import studies
from helpers.data import CIFAR10_MEAN, CIFAR10_STD
from helpers.profiles import parse_seeds, settings
from helpers.train import norm_stats

STUDIES = list(studies.STUDIES)


def study_runs(study, profile="quick", **overrides):
    return settings(study, profile, **overrides).runs()


def get(s, name):
    """A setting of Settings ``s`` by name: a TrainConfig field, an Augment field, a study extra or dataset."""
    if name in s.extra:
        return s.extra[name]
    if name.startswith("augment."):
        return s.config.augment.get(name.split(".", 1)[1], 0)
    return getattr(s.config, name)


# Taken by hand from the report texts (/work/shared/reference-reports): study, setting, the value
# the report states, and the report's words. The full profile must use every one of them.
REPORTED = [
    # report 000
    ("stress_test", "epochs", 40, "Epochs: 40 (below the 50-epoch guideline)"),
    ("stress_test", "batch_size", 64, "Batch size: 64"),
    ("stress_test", "lr", 0.01, "One-Cycle LR with maximum learning rate 0.01"),
    ("stress_test", "schedule", "onecycle", "Learning rate schedule: One-Cycle LR"),
    ("stress_test", "momentum", 0.9, "SGD with momentum 0.9"),
    ("stress_test", "weight_decay", 5e-4, "weight decay 5x10^-4"),
    ("stress_test", "seed", 2026, "Fixed random seed: 2026, applied to Python, NumPy, and PyTorch"),
    ("stress_test", "val_fraction", 0.1, "a deterministic 90/10 split of the official training set"),
    ("stress_test", "deterministic", True, "with deterministic CuDNN configuration"),
    ("stress_test", "normalize", "cifar10", "normalization with CIFAR-10 channel means and standard deviations"),
    # report 001
    ("cutmix_study", "epochs", 50, "Training setup: 50 epochs"),
    ("cutmix_study", "lr", 0.1, "LR = 0.1 decayed 10x at epochs 25 and 40"),
    ("cutmix_study", "schedule", "multistep", "decayed 10x at epochs 25 and 40"),
    ("cutmix_study", "milestones", (25, 40), "decayed 10x at epochs 25 and 40"),
    ("cutmix_study", "gamma", 0.1, "decayed 10x"),
    ("cutmix_study", "momentum", 0.9, "SGD (momentum 0.9, weight decay 5x10^-4)"),
    ("cutmix_study", "weight_decay", 5e-4, "SGD (momentum 0.9, weight decay 5x10^-4)"),
    ("cutmix_study", "seed", 42, "Seed 42, deterministic CuDNN"),
    ("cutmix_study", "val_fraction", 0.1, "We used 45k/5k/10k for train/val/test splits"),
    ("cutmix_study", "cutmix_alpha", 1.0, "Beta distribution alpha = 1.0"),
    ("cutmix_study", "cutmix_p", 0.5, "applied with probability 0.5 per batch"),
    ("cutmix_study", "label_smoothing", 0.1, "We also used label smoothing (0.1)"),
    # report 002
    ("resnet_budget", "model", "budget_resnet", "a [4,4,4,3] block configuration"),
    ("resnet_budget", "epochs", 100, "reduce the initial rate (eta_max = 0.1) over 100 epochs"),
    ("resnet_budget", "lr", 0.1, "eta_max = 0.1"),
    ("resnet_budget", "schedule", "cosine", "uses Cosine annealing to reduce the initial rate"),
    ("resnet_budget", "momentum", 0.9, "SGD classifier with momentum (beta = 0.9)"),
    ("resnet_budget", "weight_decay", 5e-4, "weight decay (lambda = 5x10^-4)"),
    ("resnet_budget", "augment.crop_padding", 2, "32x32 patches from 36x36 padded images"),
    ("resnet_budget", "augment.flip_h", 0.5, "Horizontal/Vertical Flips ... probabilities 50% and 5%"),
    ("resnet_budget", "augment.flip_v", 0.05, "Horizontal/Vertical Flips ... probabilities 50% and 5%"),
    ("resnet_budget", "augment.blur_kernel", 3, "Gaussian Blur on kernel size 3x3"),
    ("resnet_budget", "augment.blur_p", 0.3, "applied with 30% probability"),
    # report 003
    ("worksheet_analysis", "epochs", 25, "Epochs 25 25"),
    ("worksheet_analysis", "batch_size", 64, "Batch Size 64 128"),
    ("worksheet_analysis", "batch_size_2", 128, "Batch Size 64 128"),
    ("worksheet_analysis", "lr", 0.15, "Learning Rate 0.15 0.20"),
    ("worksheet_analysis", "lr_2", 0.20, "Learning Rate 0.15 0.20"),
    ("worksheet_analysis", "momentum", 0.9, "Momentum 0.9 0.9"),
    ("worksheet_analysis", "weight_decay", 5e-4, "Weight Decay 5x10^-4"),
    ("worksheet_analysis", "schedule", "cosine", "LR Scheduler Cosine Annealing"),
    ("worksheet_analysis", "augment.crop_padding", 4, "Random Crop 32x32 with padding of 4 pixels"),
    ("worksheet_analysis", "augment.flip_h", 0.5, "Random Horizontal Flip with probability = 0.5"),
    ("worksheet_analysis", "augment.jitter", 0.2, "Color Jitter for brightness, contrast, saturation +-0.2"),
    ("worksheet_analysis", "drop_last", True, "more gradient updates per epoch (781 vs 390)"),
    ("worksheet_analysis", "record_every", 100, "Gradient magnitudes were tracked every 100 batches"),
    ("worksheet_analysis", "val_fraction", 0.0, "Training Set: 50,000 images. Test Set: 10,000"),
    # report 004
    ("bn_ablation", "epochs", 30, "batch size 128, 30 training epochs"),
    ("bn_ablation", "batch_size", 128, "batch size 128"),
    ("bn_ablation", "lr", 0.01, "initial learning rate 0.01"),
    ("bn_ablation", "schedule", "step", "StepLR decay (factor 0.1 every 10 epochs)"),
    ("bn_ablation", "step_size", 10, "factor 0.1 every 10 epochs"),
    ("bn_ablation", "gamma", 0.1, "factor 0.1 every 10 epochs"),
    ("bn_ablation", "momentum", 0.9, "SGD optimizer with momentum 0.9 and weight decay 5e-4"),
    ("bn_ablation", "weight_decay", 5e-4, "SGD optimizer with momentum 0.9 and weight decay 5e-4"),
    ("bn_ablation", "seed", 42, "all random seeds (Python, NumPy, PyTorch) were reset to the same value (42)"),
    ("bn_ablation", "val_fraction", 0.1, "split into 45,000 for training and 5,000 for validation"),
]


@pytest.mark.parametrize("study,name,value,words", REPORTED, ids=[f"{r[0]}-{r[1]}" for r in REPORTED])
def test_full_profile_uses_every_stated_value(study, name, value, words):
    """Where text and code disagree the full profile follows the code; the text's values are then its
    text reading's (notebook 03: -p reading text)."""
    text = {"reading": "text"} if studies.get(study).readings else {}
    assert get(settings(study, "full", **text), name) == value, f"the report says: {words!r}"


@pytest.mark.parametrize("study,name", [
    ("stress_test", "augment.crop_padding"),   # "random crop with padding"
    ("stress_test", "augment.flip_h"),         # "random horizontal flip"
    ("stress_test", "augment.jitter"),         # "mild color jitter"
    ("cutmix_study", "augment.crop_padding"),  # "Augmentation: random crop + horizontal flip"
    ("cutmix_study", "augment.flip_h"),
    ("bn_ablation", "augment.crop_padding"),   # "random horizontal flips and random crops with padding"
    ("bn_ablation", "augment.flip_h"),
])
def test_augmentations_named_without_a_value_are_on(study, name):
    assert get(settings(study, "full"), name) > 0


def test_full_profile_details_the_reports_give():
    assert settings("cutmix_study", "full").study.dataset == "cifar100"   # "We trained a ResNet-18 on CIFAR-100"
    s = settings("resnet_budget", "full", reading="text").config
    assert s.mix["kind"] == "cutmix"                     # "Hybrid Regularization: We used CutMix"
    assert settings("resnet_budget", "full").config.mix is None  # its code never called it
    # report 003: "Normalization channel-wise with CIFAR-10 statistics (Mean: [0.4914, 0.4822, 0.4465],
    # Std: [0.2023, 0.1994, 0.2010])"
    mean, std = norm_stats(settings("worksheet_analysis", "full").config, data=None)
    assert (mean, std) == ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)) == (CIFAR10_MEAN, CIFAR10_STD)
    for study in STUDIES:
        full = settings(study, "full")
        assert full.n_train is None and full.config.width == 1.0 and full.dataset == "auto"
        assert full.config.precision == "fp32" and full.seeds == (full.config.seed,)   # no report used bf16


@pytest.mark.parametrize("study", STUDIES)
@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_scaled_profiles_keep_the_protocol_shape(study, profile):
    small, full = settings(study, profile), settings(study, "full")
    assert small.dataset == ("synthetic" if profile == "smoke" else "auto") and small.n_train <= 20_000
    assert small.config.width < 1 and small.config.epochs < full.config.epochs
    for name in ("model", "schedule", "step_per", "momentum", "weight_decay", "seed", "normalize", "drop_last",
                 "precision"):
        assert getattr(small.config, name) == getattr(full.config, name)


def test_overrides_and_none_values():
    s = settings("bn_ablation", "quick", epochs=3, dataset="cifar10", seed=None)
    assert s.config.epochs == 3 and s.dataset == "cifar10" and s.config.seed == 42
    assert s.n_train == 20_000  # a dataset given on top of quick keeps quick's subset size
    assert s.overrides == {"epochs": 3, "dataset": "cifar10"}
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
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'; valid: auto, synthetic, cifar10, cifar100, folder:PATH"):
        settings("bn_ablation", "quick", dataset="cifar11")
    with pytest.raises(ValueError, match="unknown precision 'fp16'; valid: fp32, bf16"):
        settings("bn_ablation", "quick", precision="fp16")


def test_bf16_without_cuda_is_refused_by_settings(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'bf16' .* runs on CUDA only"):
        settings("bn_ablation", "full", precision="bf16")
    with pytest.raises(ValueError, match="runs on CUDA only"):
        settings("bn_ablation", "full", precision="bf16", device="cpu")


# --- seeds ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seeds,expected", [
    (1, (42,)), (3, (42, 43, 44)), ([7, 3], (7, 3)), ((5,), (5,)),
    ("1,2,3", (1, 2, 3)), ("[1, 2, 3]", (1, 2, 3)), (" 4 , 9 ", (4, 9)), ("(8, 9)", (8, 9)), ("6", (6,)),
])
def test_seeds_accepted_forms(seeds, expected):
    assert parse_seeds(seeds, 42) == expected


@pytest.mark.parametrize("seeds", [0, -2, True, 1.5, "a,b", "1;2", "", [], [1, 1], [1, "2"], [True], None, {1: 2},
                                   21, 100_000_000, list(range(21))])
def test_bad_seeds_name_the_accepted_forms(seeds):
    with pytest.raises(ValueError, match="seeds must be an integer k from 1 to 20 .*a list or tuple .*'1,2,3'"):
        parse_seeds(seeds, 42)


def test_seeds_through_settings_as_the_runner_passes_them():
    s = settings("stress_test", "quick", seeds="1,2,3")   # papermill: -p seeds 1,2,3 arrives as a string
    assert s.seeds == (1, 2, 3) and s.config.seed == 1
    assert settings("stress_test", "quick", seeds=2).seeds == (2026, 2027)
    assert settings("stress_test", "quick", seed=5, seeds=2).seeds == (5, 6)
    with pytest.raises(ValueError, match="seeds must be"):
        settings("stress_test", "quick", seeds="1,x")
    with pytest.raises(ValueError, match="disagree"):
        settings("stress_test", "quick", seed=5, seeds=[6, 7])


# --- study runs: the notebooks' configs, one per seed ---------------------------------------------

def notebook_configs(study: str, S) -> dict:
    """The configs each notebook builds today (copied from notebooks/*.py), variant by variant."""
    t, e = S.config, S.extra
    if study == "stress_test":   # 01
        return {name: t.replace(name=f"stress_test-{name}", model_kwargs=kw)
                for name, kw in {"plain": {"residual": False, "blocks": 2}, "residual": {"residual": True,
                                                                                   "blocks": 2}}.items()}
    if study == "cutmix_study":  # 02
        base = t.replace(name="cutmix_study-baseline")
        return {"baseline": base, "cutmix": base.replace(name="cutmix_study-cutmix", label_smoothing=e["label_smoothing"],
                                                         mix=dict(kind="cutmix", alpha=e["cutmix_alpha"], p=e["cutmix_p"]))}
    if study == "resnet_budget":  # 03: a second phase from the first one's weights (report 002's code)
        first = t.replace(name="resnet_budget-phase1", epochs=4, lr=0.1, schedule="multistep", milestones=(2, 3),
                          gamma=0.1, augment=dict(crop_padding=4, flip_h=0.5), normalize="cifar10",
                          test_normalize=None, mix=None)
        return {"budget": t.replace(name="resnet_budget", start_from=first)}
    if study == "worksheet_analysis":  # 04
        return {"exp1": t.replace(name="worksheet-exp1"),
                "exp2": t.replace(name="worksheet-exp2", batch_size=e["batch_size_2"], lr=e["lr_2"])}
    return {name: t.replace(name=f"bn_ablation-{name}", model_kwargs=kw)  # 05
            for name, kw in {"baseline": {"batch_norm": False}, "batchnorm": {"batch_norm": True}}.items()}


@pytest.mark.parametrize("study", STUDIES)
def test_first_seed_runs_are_the_notebooks_runs(study):
    S = settings(study, "quick", epochs=3)
    runs = study_runs(study, "quick", epochs=3)
    expected = notebook_configs(study, S)
    assert list(runs) == list(expected)
    for variant, configs in runs.items():
        assert len(configs) == 1
        assert configs[0] == expected[variant] and configs[0].key_dict() == expected[variant].key_dict()


def test_more_seeds_change_only_the_seed():
    runs = study_runs("bn_ablation", "smoke", seeds=3)
    assert {v: [c.seed for c in cs] for v, cs in runs.items()} == {"baseline": [42, 43, 44], "batchnorm": [42, 43, 44]}
    first = runs["batchnorm"][0]
    for other in runs["batchnorm"][1:]:
        assert other.replace(seed=first.seed) == first and other.split_seed == first.split_seed
    keys = {str(c.key_dict()) for cs in runs.values() for c in cs}
    assert len(keys) == 6   # six distinct runs in the cache
    assert [c.lr for c in study_runs("worksheet_analysis", "smoke", seeds=[1, 2])["exp2"]] == [0.20, 0.20]
    assert study_runs("cutmix_study", "smoke")["cutmix"][0].mix == dict(kind="cutmix", alpha=1.0, p=0.5)
