"""Study 05 (report 004): the same small CNN with and without BatchNorm, one variable changed.

Everything about the study but its notebook's story: the report's protocol, the quick and smoke
scales, the two runs, the headline and what the report states (``helpers.studies.base``).
"""

from __future__ import annotations

from .base import COMMON_STATED, CROP_FLIP, LOSS, ONE_VAL_SPLIT, Headline, Study, read_log

# Report 004's code (authors-code/README.md): CIFAR-10's mean with std (0.2470, 0.2435, 0.2616) for every split.
CODE_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def logs() -> dict:
    """Report 004's code's printed epochs (1, 5, 10, ..., 30), variant -> history."""
    log = read_log("004_epochs.csv").rename(columns={"lr_after_epoch": "lr_end", "epoch_seconds": "seconds"})
    return {model: log[log["model"] == model].drop(columns="model").reset_index(drop=True)
            for model in ("baseline", "batchnorm")}


STUDY = Study(
    name="bn_ablation",
    notebook="05_bn_ablation",
    title="What does BatchNorm change? A one-variable ablation",
    report="004",
    dataset="cifar10",
    # SimpleCNN with and without BatchNorm, as report 004's code ran it: flip before crop, its statistics,
    # a random_split seeded 42 (helpers.data.split_indices splits the same way), the last batch kept
    full=dict(train=dict(model="simple_cnn", epochs=30, batch_size=128, lr=0.01, momentum=0.9, weight_decay=5e-4,
                         schedule="step", step_size=10, gamma=0.1, augment=dict(CROP_FLIP, flip_first=True),
                         normalize=CODE_STATS, val_fraction=0.1, split_seed=42, seed=42)),
    quick=dict(n_train=20_000, n_test=2_000, train=dict(width=0.5, epochs=12, step_size=4)),  # drops every 4 of 12
    smoke=dict(step_size=1),
    variants=lambda extra: {
        "baseline": dict(name="bn_ablation-baseline", model_kwargs={"batch_norm": False}),
        "batchnorm": dict(name="bn_ablation-batchnorm", model_kwargs={"batch_norm": True})},
    headline=Headline("baseline", "batchnorm", "baseline", "BatchNorm", (78.15, 81.62)),
    stated={
        **COMMON_STATED, "dataset": "CIFAR-10", "images": ONE_VAL_SPLIT,
        "split": "45,000 / 5,000 with a fixed random seed",
        "model": "3 conv blocks (32-64-128), FC 256, dropout 0.5; without / with BatchNorm",
        "parameters": "620,362 / 621,322", "epochs": "30", "batch size": "128", "learning rate": "0.01",
        "schedule": "StepLR x0.1 every 10 epochs", "crop": "random crops with padding (padding not given)",
        "flips": "random horizontal flips (p not given)", "normalisation": "normalisation (values not given)",
        "seeds": "42"},
    code={
        "images": "45,000 / 5,000 / 10,000",
        "split": "random_split of the 50,000 into 45,000 / 5,000, generator seeded 42",
        "model": "as the report; every conv and linear layer has a bias, in the BatchNorm model too",
        "parameters": "620,362 / 621,322", "epochs": "30", "batch size": "128, shuffled",
        "batches per epoch": "352 (the last partial batch kept)", "learning rate": "0.01",
        "schedule": "StepLR step 10, x0.1, stepped per epoch", "momentum": "0.9", "weight decay": "5e-4",
        "crop": "random crop 32, padding 4 (after the flip)", "flips": "horizontal p 0.5, before the crop",
        "normalisation": "mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616), every split",
        "seeds": "42, reset before each model is built", "checkpoint tested": "the last epoch's weights"},
    chosen={"loss": LOSS, "determinism": "deterministic kernels, for reproducible runs"},
    logs=logs,
    reported={"train_seconds": (135.5, 150.8)},  # on Apple MPS
)
