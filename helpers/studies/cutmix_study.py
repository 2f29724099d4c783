"""Study 02 (report 001): ResNet-18 on CIFAR-100 without and with CutMix + label smoothing.

The study's definition (``STUDY``), report 001's confident-error counts, and the two tables only
notebook 02 shows: what separates its validation from its test images (:func:`split_shift`) and each
model's drop from one to the other (:func:`val_test_table`). The confidence analysis itself is
``helpers.confidence``.
"""

from __future__ import annotations

import math

import pandas as pd

from .. import evidence as E
from .base import (BATCHES, COMMON_STATED, CROP_FLIP, LAST_EPOCH, ONE_VAL_SPLIT, OWN_STATS, P_FLIP, PADDING, PARAMS,
                   Headline, Study)

STUDY = Study(
    name="cutmix_study",
    notebook="02_cutmix_study",
    title="Confidently wrong: what CutMix and label smoothing change in a ResNet-18",
    report="001",
    dataset="cifar100",
    # batch size not in the report: 128; "random crop + horizontal flip": padding 4, p 0.5 ours;
    # normalisation not in the report: the training split's own statistics
    full=dict(train=dict(model="resnet18_cifar", epochs=50, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4,
                         schedule="multistep", milestones=(25, 40), gamma=0.1, augment=CROP_FLIP,
                         val_fraction=0.1, split_seed=42, seed=42),
              extra=dict(cutmix_alpha=1.0, cutmix_p=0.5, label_smoothing=0.1)),
    quick=dict(n_train=8_000, n_test=2_000, train=dict(width=0.125, epochs=8, milestones=(4, 6))),
    smoke=dict(milestones=(1,)),
    variants=lambda extra: {
        "baseline": dict(name="cutmix_study-baseline"),
        "cutmix": dict(name="cutmix_study-cutmix", label_smoothing=extra["label_smoothing"],
                       mix=dict(kind="cutmix", alpha=extra["cutmix_alpha"], p=extra["cutmix_p"]))},
    headline=Headline("baseline", "cutmix", "baseline", "CutMix + label smoothing", (60.69, 75.70)),
    stated={
        **COMMON_STATED, "dataset": "CIFAR-100", "images": ONE_VAL_SPLIT, "split": "45k / 5k / 10k train / val / test",
        "model": "ResNet-18, 3x3 stem, no max-pool", "epochs": "50", "learning rate": "0.1",
        "schedule": "x0.1 at epochs 25 and 40", "loss": "cross-entropy; CutMix run: label smoothing 0.1",
        "crop": "random crop (padding not given)", "flips": "horizontal flip (p not given)",
        "mixing": "CutMix run: Beta alpha 1.0, applied with p 0.5 per batch", "determinism": "deterministic cuDNN",
        "seeds": "42"},
    chosen={
        "parameters": PARAMS, "batches per epoch": BATCHES, "crop": PADDING, "flips": P_FLIP,
        "normalisation": OWN_STATS, "batch size": "128, common for ResNet-18 on CIFAR",
        "split": "split seed 42, the report's seed", "checkpoint tested": LAST_EPOCH},
    reported={
        # wrong predictions of 10,000 test images (baseline, CutMix) at a confidence of at least the key
        # (0: all wrong answers): report 001's Table 2
        "wrong_by_confidence": {0.0: (3931, 2430), 0.9: (315, 44), 0.99: (54, 1)},
        "train_val_gap": "99.8% / about 60% (baseline), a gap of about 40 points for the baseline and about 3 "
                         "for CutMix",
        "less_confident": (0.575, 1993),  # of the images wrong in both, the share CutMix is less sure of
    },
)

SHIFTS = {
    "synthetic": "On the synthetic data the two splits differ on purpose: most training (and so validation) "
                 "images of a class sit on that class's background texture and tint, while test backgrounds "
                 "are random. A model that loses more from validation to test leans more on the background.",
    "other": "On this data the validation and test images are drawn from the same kind of images, with no "
             "designed difference between them: a drop from validation to test is not a measure of reliance "
             "on the background here, only of how the two samples differ.",
}


def split_shift(data) -> str:
    """What separates the validation from the test images on this data (02's validation-to-test table):
    the synthetic source (the one with object masks) shifts the backgrounds between them by design;
    for any other data (CIFAR, a folder) the drop measures no particular cue."""
    return SHIFTS["synthetic" if getattr(data, "test_masks", None) is not None else "other"]


def val_test_table(val: dict, test: dict, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Each model's accuracy on the validation and on the test images, and how much it loses from the
    one to the other, with intervals (02). ``val`` / ``test``: model name -> ``Predictions`` on each
    split, two models, the same images for both. Per model: validation minus test accuracy in points
    with :func:`helpers.evidence.unpaired_means` (the splits share no images); a last row: the second
    model's drop minus the first's (per-image paired differences on each split).
    Returns (the table, a JSON-ready dict of the comparisons)."""
    (na, va), (nb, vb) = val.items()
    ta, tb = test[na], test[nb]
    comparisons = {na: E.unpaired_means(ta.correct, va.correct, seed=seed),
                   nb: E.unpaired_means(tb.correct, vb.correct, seed=seed),
                   f"{nb} - {na}": E.unpaired_means(tb.correct.astype(int) - ta.correct,
                                                    vb.correct.astype(int) - va.correct, seed=seed)}
    rows = {name: {"validation acc (%)": 100 * r.mean_b, "test acc (%)": 100 * r.mean_a,
                   "validation - test (points)": 100 * r.diff,
                   "95% interval": E.format_interval((100 * r.ci[0], 100 * r.ci[1])), "p": E.format_p(r.p_value)}
            for name, r in comparisons.items()}
    last = rows[f"{nb} - {na}"]
    last["validation acc (%)"], last["test acc (%)"] = math.nan, math.nan
    return pd.DataFrame(rows).T, {name: r.to_dict() for name, r in comparisons.items()}
