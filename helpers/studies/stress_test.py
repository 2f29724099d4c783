"""Study 01 (report 000): a plain and a residual FlexibleCNN, stress-tested for confident failures,
with Grad-CAM maps measured instead of read by eye.

``STUDY`` is the study's definition (``helpers.studies.base``). The rest is what only notebook 01
asks, "does the model look at the background?" measured as Grad-CAM energy on the object:

- :func:`sample_groups` -- a seeded sample of a model's failures and of its correct predictions
- :func:`attention_on_object` -- Grad-CAM share inside the object mask for such a sample, one row per image
- :func:`summarize_attention` -- the notebook's table: images, mean, standard error, median per group
- :func:`attention_figure` -- means with 95% intervals (left) and distributions (right), per model and group
- :func:`score_maps` -- one net's Grad-CAM maps with, per map, how diffuse it is, its share on the object
  and (``faithful=True``) pytorch-grad-cam's faithfulness scores against a random map
- :func:`cam_notes` -- the line under each studied map in the Grad-CAM figure: prediction, ROAD, on object
- :func:`paired_rows` -- several per-image numbers of two models (or of a map and a random map), paired:
  report 000's "less diffuse" heatmaps and "do the maps beat random maps?", each with its interval
- :func:`error_counts` -- wrong and confidently wrong test images of two models, paired (McNemar)
- :func:`change_counts` -- what became of every failure of the first model under the second
- :func:`case_columns` -- the canonical failures' measured cues, one column per case, for the page

Heatmaps explain each model's *own* prediction (``targets = preds.pred``), as in the notebook's
Grad-CAM figure: for a failure, the question is what the model looked at when it chose the wrong
class. Masks exist on the synthetic source only (``Dataset.test_masks``).
"""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import MatplotlibDeprecationWarning

from .. import evidence as E
from ..cam import compute_cams, energy_in_mask, faithfulness, spread
from ..evaluate import CHANGES, Predictions, failures, pick_diverse
from ..models import Net
from .base import BATCHES, COMMON_STATED, CROP_FLIP, LOSS, ONE_VAL_SPLIT, Headline, Study, read_log

CANONICAL = (6070, 4528, 9227)  # report 000's three canonical failures: test images of torchvision's CIFAR-10


def card_rows(S) -> dict[str, str]:
    """The study's own protocol-card rows: where Grad-CAM looks and which failures are studied (01)."""
    return {"Grad-CAM layer": "the last block's second convolution, before its BatchNorm",
            "failure cases": f"the {S.extra['failures']} most confident per model; the code's canonical three "
                             f"({', '.join(map(str, S.extra['canonical']))}) on torchvision's CIFAR-10 test set"}


def logs() -> dict:
    """Report 000's code's logged epochs, variant -> history (train and validation loss and accuracy)."""
    log = read_log("000_epochs.csv")
    return {model: log[log["model"] == model].drop(columns="model").reset_index(drop=True)
            for model in ("plain", "residual")}


STUDY = Study(
    name="stress_test",
    notebook="01_stress_test",
    title="Stress-testing a CNN: confident failures, Grad-CAM and one residual change",
    report="000",
    dataset="cifar10",
    # Report 000's code (authors-code/README.md): 5 blocks a stage, colour jitter 0.2, PyTorch's
    # OneCycleLR defaults (momentum cycles 0.85-0.95), stepped per batch; CIFAR-10's usual constants.
    full=dict(train=dict(model="flexible_cnn", epochs=40, batch_size=64, lr=0.01, momentum=0.9, weight_decay=5e-4,
                         schedule="onecycle", step_per="batch", cycle_momentum=True,
                         augment=dict(CROP_FLIP, jitter=0.2), normalize="cifar10",
                         val_fraction=0.1, split_seed=2026, seed=2026),
              extra=dict(blocks=5, failures=12, canonical=CANONICAL)),
    # quick: 2 blocks a stage (the card marks it scaled) so that make reports stays within 10 minutes
    quick=dict(n_train=10_000, n_test=2_000, train=dict(width=0.25, epochs=8, batch_size=64), extra=dict(blocks=2)),
    smoke=dict(),
    variants=lambda extra: {
        "plain": dict(name="stress_test-plain", model_kwargs={"residual": False, "blocks": extra["blocks"]}),
        "residual": dict(name="stress_test-residual", model_kwargs={"residual": True, "blocks": extra["blocks"]})},
    headline=Headline("plain", "residual", "plain", "residual", (92.06, 93.41), weights="best"),
    stated={
        **COMMON_STATED, "dataset": "CIFAR-10", "images": ONE_VAL_SPLIT + " (90/10 split of the 50,000)",
        "split": "deterministic 90/10 split, fixed permutation; seed 2026 everywhere",
        "model": "FlexibleCNN, plain vs residual; 'several' 3x3 blocks a stage", "epochs": "40",
        "batch size": "64", "learning rate": "max 0.01", "schedule": "One-Cycle, max LR 0.01",
        "crop": "random crop with padding (padding not given)", "flips": "random horizontal flip (p not given)",
        "colour jitter": "mild colour jitter (strength not given)",
        "normalisation": "CIFAR-10 channel means and stds (values not given)", "determinism": "deterministic cuDNN",
        "seeds": "2026", "checkpoint tested": "the best validation checkpoint",
        "Grad-CAM layer": "the last convolutional layer",
        "failure cases": "three high-confidence mistakes from the baseline's ranking"},
    code={
        "images": "45,000 / 5,000 / 10,000",
        "split": "a permutation of the 50,000 from a generator seeded 2026: first 45,000 train, last 5,000 validate",
        "model": "5 blocks a stage (64, 128, 256 channels); both models build the projections",
        "parameters": "7,427,914 in both (the plain model's forward pass uses 7,386,186)",
        "epochs": "40", "batch size": "64, shuffled", "optimiser": "SGD",
        "learning rate": "OneCycleLR max 0.01 (SGD's own 0.1 is overridden)",
        "schedule": "OneCycleLR at PyTorch's defaults, per batch: 30% warm-up from max/25, cosine to max/25e4",
        "momentum": "0.9 given, but OneCycleLR cycles it between 0.85 and 0.95",
        "weight decay": "5e-4", "crop": "random crop 32, padding 4", "flips": "horizontal p 0.5",
        "colour jitter": "brightness 0.2, contrast 0.2, saturation 0.2",
        "normalisation": "mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010); val and test: that only",
        "seeds": "2026 for Python, NumPy and PyTorch", "determinism": "cuDNN deterministic, benchmark off",
        "checkpoint tested": "the epoch with the best validation accuracy (strictly better than before)",
        "Grad-CAM layer": "the last block's second conv, before that block's BN, shortcut and ReLU",
        "failure cases": "top 12 per model by confidence; canonical: the plain model's top three, 6070, 4528, 9227"},
    text_differs=("momentum",),
    chosen={"batches per epoch": BATCHES, "loss": LOSS},
    rows=card_rows,
    logs=logs,
    reported={"published_run": {"plain": 92.14, "residual": 93.52}},  # the code's own printed test accuracies
)

GROUPS = ("failure", "correct")


def sample_groups(correct, max_per_group: int | None = 500, seed: int = 0) -> dict[str, np.ndarray]:
    """Indices of failures (``correct`` False) and correct predictions, at most ``max_per_group`` each.

    A group larger than ``max_per_group`` is sampled without replacement from a generator seeded
    with ``seed`` (the same seed gives the same sample); ``None`` keeps every index. Indices come
    back sorted, int64; a group may be empty.
    """
    if max_per_group is not None and max_per_group < 0:
        raise ValueError(f"max_per_group must be >= 0 or None, got {max_per_group}")
    correct = np.asarray(correct, dtype=bool).ravel()
    rng = np.random.default_rng(seed)
    out = {}
    for name, members in (("failure", np.flatnonzero(~correct)), ("correct", np.flatnonzero(correct))):
        if max_per_group is not None and len(members) > max_per_group:
            members = np.sort(rng.choice(members, size=max_per_group, replace=False))
        out[name] = members.astype(np.int64)
    return out


def attention_on_object(net: Net, images, masks, preds: Predictions, *, max_per_group: int | None = 500,
                        seed: int = 0, batch_size: int = 64) -> pd.DataFrame:
    """Share of each sampled image's Grad-CAM inside its object mask, for failures and correct predictions.

    ``images``/``masks``: the evaluated uint8 N,3,H,W images and their bool N,H,W object masks;
    ``preds``: the net's :class:`~helpers.evaluate.Predictions` on them (with labels). Samples
    with :func:`sample_groups`, computes one heatmap per image for the model's predicted class
    (:func:`helpers.cam.compute_cams`) and scores it with :func:`helpers.cam.energy_in_mask`.

    Returns one row per sampled image, failures first: ``index, group, energy, object_area`` --
    ``energy`` in [0, 1] (NaN for an all-zero heatmap), ``object_area`` the mask's share of the
    image, i.e. what a heatmap spread evenly over the image would score.
    """
    masks = masks.detach().cpu().numpy() if hasattr(masks, "detach") else np.asarray(masks)
    if len(masks) != len(preds):
        raise ValueError(f"{len(masks)} masks for {len(preds)} predictions")
    groups = sample_groups(preds.correct, max_per_group, seed)
    idx = np.concatenate([groups[g] for g in GROUPS])
    names = np.repeat(np.array(GROUPS, dtype=object), [len(groups[g]) for g in GROUPS])
    sel_masks = masks[idx].astype(bool)
    if len(idx):
        cams = compute_cams(net, images[idx], targets=preds.pred[idx], batch_size=batch_size)
        energy = energy_in_mask(cams, sel_masks)
    else:
        energy = np.zeros(0)
    return pd.DataFrame({
        "index": idx,
        "group": names,
        "energy": energy.astype(np.float64),
        "object_area": sel_masks.reshape(len(idx), -1).mean(axis=1) if len(idx) else np.zeros(0),
    })


def summarize_attention(df: pd.DataFrame, by=("group",)) -> pd.DataFrame:
    """Per group of ``by`` columns: images, scored (non-NaN energy), mean, sem, median energy, object area.

    ``sem`` is the standard error of the mean (NaN with fewer than two scored images);
    ``object_area`` the group's mean mask area, the score of heatmaps spread evenly over the image;
    ``vs_area`` = ``mean / object_area``: how many times more of the heatmap is on the object than
    an even spread would put there (groups can differ in object size, e.g. small objects fail more
    often, so this is the fairer comparison). Groups keep their order of first appearance.
    """
    by = list(by)
    columns = ["images", "scored", "mean", "sem", "median", "object_area", "vs_area"]
    keys, rows = [], []
    for key, g in df.groupby(by, sort=False):
        e = g["energy"].dropna()
        keys.append(key if len(by) > 1 else (key[0] if isinstance(key, tuple) else key))
        m, area = (e.mean() if len(e) else np.nan), g["object_area"].mean()
        rows.append([len(g), len(e), m, e.std(ddof=1) / np.sqrt(len(e)) if len(e) > 1 else np.nan,
                     e.median() if len(e) else np.nan, area, m / area if area > 0 else np.nan])
    index = pd.MultiIndex.from_tuples(keys, names=by) if len(by) > 1 and keys else pd.Index(keys, name=by[0])
    out = pd.DataFrame(rows, index=index, columns=columns)
    return out.astype({"images": int, "scored": int})


def attention_figure(df: pd.DataFrame, x: str = "model") -> plt.Figure:
    """Energy on the object per ``x`` value and group: mean with a 95% bootstrap interval, and distribution.

    ``df``: rows of :func:`attention_on_object` with an ``x`` column (e.g. the model's name). A
    dashed line marks the mean object area: the score of a heatmap spread evenly over the image.
    Images with a NaN energy (all-zero heatmap) are left out.
    """
    scored = df.dropna(subset=["energy"])
    order = list(dict.fromkeys(df[x]))
    hue_order = [g for g in GROUPS if g in set(df["group"])]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    if len(scored):
        sns.barplot(scored, x=x, y="energy", hue="group", order=order, hue_order=hue_order,
                    errorbar=("ci", 95), seed=0, capsize=0.1, ax=a)
        with warnings.catch_warnings():  # seaborn 0.13 passes boxplot's vert=, deprecated in Matplotlib 3.11
            warnings.simplefilter("ignore", MatplotlibDeprecationWarning)
            sns.boxplot(scored, x=x, y="energy", hue="group", order=order, hue_order=hue_order,
                        fliersize=2, ax=b, legend=False)
    area = df["object_area"].mean()
    for ax in (a, b):
        if np.isfinite(area):
            ax.axhline(area, color="grey", linestyle="--", linewidth=1, label="object area")
        ax.set_xlabel("")
        ax.set_ylim(0, 1)
    if a.get_legend_handles_labels()[0]:
        a.legend(fontsize=8, loc="upper right")  # the groups and the object-area line
    a.set_ylabel("Grad-CAM share on the object")
    a.set_title("Mean (95% interval)")
    b.set_title("Distribution")
    fig.tight_layout()
    return fig


# --- the studied maps: faithful? diffuse? on the object? --------------------------------------------


def score_maps(net: Net, images, targets, *, masks=None, faithful: bool = True, seed: int = 0,
               batch_size: int = 64) -> tuple[np.ndarray, pd.DataFrame]:
    """Grad-CAM maps of a trained ``net`` for ``targets`` (one class per image: the model's own prediction in
    01) and one row of scores per map: ``(cams, table)``.

    ``table``: ``target``, :func:`helpers.cam.spread`'s ``entropy`` and ``above_half`` (report 000's
    "less diffuse"), with ``masks`` the share on the object ``in_mask``, and with ``faithful``
    :func:`helpers.cam.faithfulness`'s columns (``confidence``, ``road``, ``keep`` and the same for a
    random map of the same values, ``beats_random``; about 0.25 s per image on a CPU, so score a few
    dozen images, not thousands). An all-zero map has NaN spread and share (no distribution).
    """
    cams = compute_cams(net, images, targets=targets, batch_size=batch_size)
    if faithful:
        table = faithfulness(net, images, cams, targets, masks=masks, seed=seed, batch_size=batch_size)
    else:
        table = pd.DataFrame({"target": np.asarray(targets, dtype=np.int64).ravel()})
        if masks is not None:
            table["in_mask"] = energy_in_mask(cams, masks)
    return cams, pd.concat([table, spread(cams)], axis=1)


def cam_notes(table: pd.DataFrame, classes) -> list[str]:
    """The lines under each studied map of the Grad-CAM figure (01): the class the map explains with
    the model's confidence, its ROAD score beside a random map's, both in points of probability
    (faithful: clearly above the random one) and, where masks exist, its share on the object. ``table``: :func:`score_maps` with
    ``faithful=True``."""
    notes = []
    for _, r in table.iterrows():
        lines = [f"pred {classes[int(r['target'])]} {r['confidence']:.0%}",
                 f"ROAD {100 * r['road']:+.1f} (random {100 * r['road_random']:+.1f})"]
        if "in_mask" in table and not np.isnan(r["in_mask"]):
            lines.append(f"on object {r['in_mask']:.0%}")
        notes.append("\n".join(lines))
    return notes


def paired_rows(pairs: dict, names: tuple[str, str], *, scale: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """One row per ``label: (values_a, values_b)``, the two sides paired item by item (01): each side's
    mean, the mean difference B - A with its 95% paired-bootstrap interval and the Wilcoxon p
    (:func:`helpers.evidence.paired_values`; pairs with a NaN are left out and counted). Used for
    plain vs residual maps of the same images (report 000's "less diffuse") and for each model's
    maps against random maps of the same values (faithfulness). A label with no complete pair
    gets a row of "—". ``scale`` multiplies every value (100: shares in %, differences in points);
    tuple labels give a MultiIndex."""
    rows = {}
    for label, (a, b) in pairs.items():
        a, b = scale * np.asarray(a, dtype=float), scale * np.asarray(b, dtype=float)
        if not (~np.isnan(a) & ~np.isnan(b)).any():
            rows[label] = {names[0]: np.nan, names[1]: np.nan, "difference": np.nan, "95% interval": "—",
                           "p": "—", "pairs": 0}
            continue
        r = E.paired_values(a, b, seed=seed)
        rows[label] = {names[0]: r.mean_a, names[1]: r.mean_b, "difference": r.diff,
                       "95% interval": E.format_interval(r.ci), "p": E.format_p(r.p_value), "pairs": r.n}
    return pd.DataFrame.from_dict(rows, orient="index")


def error_counts(a: Predictions, b: Predictions, names: tuple[str, str], threshold: float = 0.9,
                 *, seed: int = 0) -> pd.DataFrame:
    """Wrong test images of two models on the same test set, and those wrong with confidence >=
    ``threshold`` (01): each model's count, the difference B - A in images with its 95% paired
    bootstrap interval, the exact McNemar p, and the images only one model gets wrong in that way
    (for "wrong": the images B rescued and the images it broke)."""
    rows = {}
    for label, wa, wb in (("wrong", ~a.correct, ~b.correct),
                          (f"wrong with confidence >= {threshold:.0%}", ~a.correct & (a.conf >= threshold),
                           ~b.correct & (b.conf >= threshold))):
        r = E.paired_proportions(wa, wb, seed=seed)
        c = r.counts()
        rows[label] = {names[0]: c["a"], names[1]: c["b"], "difference": c["diff"],
                       "95% interval": E.format_count_interval(c["ci"]), "p": E.format_p(r.p_value),
                       f"only {names[0]}": r.only_a, f"only {names[1]}": r.only_b}
    return pd.DataFrame.from_dict(rows, orient="index")


def change_counts(changes) -> pd.DataFrame:
    """How many of the given ``compare_cases`` changes fall in each of
    :data:`helpers.evaluate.CHANGES` (those that occur, in that order), with their share in % (01:
    what the residual model did to every failure of the plain one)."""
    changes = pd.Series(list(changes), dtype=object)
    counts = changes.value_counts().reindex([c for c in CHANGES if c in set(changes)])
    return pd.DataFrame({"images": counts.astype(int), "share (%)": 100 * counts / max(len(changes), 1)})


def case_columns(table: pd.DataFrame, cmp: pd.DataFrame, name_b: str, picked=None) -> pd.DataFrame:
    """The canonical failures for the page (01): one column per case ("#index"), one row per
    measured cue, as text. ``table``: :func:`helpers.evaluate.case_table` (confidence and Grad-CAM
    share shown in %); ``cmp``: :func:`helpers.evaluate.compare_cases` for the same indices, whose
    model B (``name_b``) adds its prediction with its confidence and the change; ``picked``: how
    each case was picked (:func:`study_cases`), shown first."""
    out = table.copy().astype(object)
    if picked is not None:
        out.insert(0, "picked by", list(picked))
    for col in ("confidence", "Grad-CAM share on object"):
        if col in out:
            out[col] = [f"{v:.0%}" if pd.notna(v) else "—" for v in table[col]]
    out[f"{name_b}: prediction"] = [f"{n} ({c:.0%})" for n, c in zip(cmp["pred_b_name"], cmp["conf_b"])]
    out["change"] = cmp["change"].to_numpy()
    out.index = [f"#{i}" for i in table.index]
    return out.T


# --- which failures are studied --------------------------------------------------------------------

def on_torchvision_test_set(S, data) -> bool:
    """Whether test image k of this run is test image k of torchvision's CIFAR-10, the numbering of
    report 000's canonical cases: the cifar10 source, its whole test split (01)."""
    return S.data_choice.source == "cifar10" and len(data.test_labels) == 10_000


def study_cases(S, data, preds: Predictions, k: int = 3) -> tuple[pd.DataFrame, str]:
    """The failures notebook 01 studies one by one, and a sentence for the page: ``k`` of the plain
    model's most confident failures picked to cover different error types
    (:func:`helpers.evaluate.pick_diverse`) and, where the test images are numbered as torchvision's
    CIFAR-10 test set, report 000's canonical three (``S.extra["canonical"]``) beside them, wrong or
    right in this run. Rows as :func:`helpers.evaluate.failures` gives them, plus ``picked``."""
    cases = pick_diverse(failures(preds, data.classes), k).assign(picked="this run's ranking")
    canonical = list(S.extra["canonical"])
    if not on_torchvision_test_set(S, data):
        return cases, (f"Report 000's canonical failures are test images {', '.join(map(str, canonical))} of "
                       f"torchvision's CIFAR-10 test set; this run's {len(data.test_labels):,} test images "
                       f"({S.data_choice.source}) are numbered otherwise, so they cannot be looked up here.")
    idx = np.array([i for i in canonical if i not in set(cases["index"])], dtype=np.int64)
    names = np.asarray(list(data.classes), dtype=object)
    labels = preds.labels[idx]
    extra = pd.DataFrame({"index": idx, "true": labels, "pred": preds.pred[idx], "confidence": preds.conf[idx],
                          "true_name": names[labels], "pred_name": names[preds.pred[idx]],
                          "picked": "report 000's code"})
    wrong = int((preds.pred[canonical] != preds.labels[canonical]).sum())
    return pd.concat([cases, extra], ignore_index=True), (
        f"Report 000's canonical failures, test images {', '.join(map(str, canonical))} of torchvision's "
        f"CIFAR-10 test set, are studied beside them: this run's plain model gets {wrong} of the three wrong.")
