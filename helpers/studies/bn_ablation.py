"""Study 05 (report 004): the same small CNN with and without BatchNorm, one variable changed.

Everything about the study but its notebook's story: the report's protocol, the quick and smoke
scales, the two runs, the headline and what the report states (``helpers.studies.base``).
"""

from __future__ import annotations

from .base import (BATCHES, COMMON_STATED, CROP_FLIP, LOSS, ONE_VAL_SPLIT, OWN_STATS, P_FLIP, PADDING, Headline,
                   Study)

STUDY = Study(
    name="bn_ablation",
    notebook="05_bn_ablation",
    title="What does BatchNorm change? A one-variable ablation",
    report="004",
    dataset="cifar10",
    # SimpleCNN with and without BatchNorm; padding 4 and p 0.5 are ours, normalisation values not given
    full=dict(train=dict(model="simple_cnn", epochs=30, batch_size=128, lr=0.01, momentum=0.9, weight_decay=5e-4,
                         schedule="step", step_size=10, gamma=0.1, augment=CROP_FLIP,
                         val_fraction=0.1, split_seed=42, seed=42)),
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
    chosen={
        "batches per epoch": BATCHES, "loss": LOSS, "crop": PADDING, "flips": P_FLIP, "normalisation": OWN_STATS,
        "split": "split seed 42: the report's run seed (the split's own seed is not given)",
        "determinism": "deterministic kernels, for reproducible runs"},
    reported={"train_seconds": (135.5, 150.8)},  # on Apple MPS
)
