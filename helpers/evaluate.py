"""Evaluating trained models: predictions, accuracy tables, failure cases and model-vs-model changes.

Plain torch / NumPy / pandas, one small function per question a notebook asks:

- :func:`predict` -- softmax probabilities of a trained net over a uint8 image tensor (01, 02, 03, 05)
- :func:`per_class_accuracy`, :func:`confusion`, :func:`confusion_difference` -- the tables of every
  notebook (05 compares two confusion matrices)
- :func:`failures`, :func:`pick_diverse` -- the most confident mistakes, and a few of them that
  cover different error types (01 picks its three canonical failures, 02 its five)
- :func:`embed`, :func:`nearest_train_classes`, :func:`case_table` -- measured evidence for each
  studied failure: its nearest training images in the model's feature space (01, 02)
- :func:`rescued`, :func:`broken`, :func:`compare_cases`, :func:`migration` -- what changed between
  model A and model B on the same images: the images B *rescued* (A wrong, B right) and *broke* (A
  right, B wrong) (02: baseline vs CutMix; 01: plain vs residual; 05: without vs with BatchNorm)
- :func:`epochs_to_reach` -- convergence speed from a training history (04, 05)
- :data:`TTA_VIEWS` and ``predict(..., views=...)`` -- test-time augmentation (03)

How confident a model is when it is wrong lives in :mod:`helpers.confidence`. Conventions: "index"
always means the position of a sample in the evaluated image tensor. A *net* is a trained
``helpers.train.Run`` or any ``helpers.models.Net`` (a model with the mean and std its inputs are
normalised with). Every array argument may be a NumPy array, a torch tensor (any device) or a
list; results are NumPy arrays or pandas DataFrames on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from scipy import ndimage
from torchvision.transforms.v2 import functional as TF

from .device import autocast
from .loader import normalize
from .models import Net, evaluating

__all__ = ["CHANGES", "Predictions", "TTA_VIEWS", "broken", "case_table", "compare_cases", "confusion",
           "confusion_difference", "embed", "epochs_to_reach", "failures", "migration", "nearest_train_classes",
           "per_class_accuracy", "pick_diverse", "predict", "rescued"]


def _np(x, dtype=None) -> np.ndarray:
    """A NumPy copy-or-view of an array-like or a torch tensor (moved to the CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)


def _labels_1d(pred, labels) -> tuple[np.ndarray, np.ndarray]:
    pred, labels = _np(pred, np.int64).ravel(), _np(labels, np.int64).ravel()
    if pred.shape != labels.shape:
        raise ValueError(f"pred and labels differ in length: {len(pred)} vs {len(labels)}")
    return pred, labels


# --- predictions ---------------------------------------------------------------------------------


def _pad_centre_crop(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    # Report 002's fourth view: zero-pad by 4, then take the centre 32x32. The centre crop of a
    # symmetric pad is the original image again, so this view is pixel-identical to "original";
    # it is kept because the report lists it (notebook 03 shows the check), not for its effect.
    h, w = x.shape[-2:]
    return TF.center_crop(TF.pad(x, [pad]), [h, w])


def _blur_hwc(x: torch.Tensor) -> torch.Tensor:
    # Report 002's code: scipy's gaussian_filter with sigma 1.0 on the height x width x channel array,
    # so the colour channels are blurred into each other too (reflected at the borders, as scipy does).
    hwc = x.permute(0, 2, 3, 1).cpu().numpy()
    out = ndimage.gaussian_filter(hwc, sigma=(0, 1.0, 1.0, 1.0), mode="reflect")
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(x.device)


# Test-time views of an N,C,H,W batch in [0, 1], before it is normalised (03). "blur": kernel 3 as in
# training, sigma 1.0 (report 002's text gives no test-time sigma; 1.0 is inside its training range);
# "blur_hwc": what the report's code did instead (see _blur_hwc).
TTA_VIEWS = {
    "original": lambda x: x,
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "pad_crop": _pad_centre_crop,
    "blur": lambda x: TF.gaussian_blur(x, kernel_size=[3, 3], sigma=[1.0, 1.0]),
    "blur_hwc": _blur_hwc,
}


@dataclass(eq=False)
class Predictions:
    """A model's outputs on N images, all NumPy arrays on the CPU (from :func:`predict`).

    Studies: 01, 02, 03, 05. ``labels`` is set when :func:`predict` was given them; ``correct``
    needs them.
    """

    probs: np.ndarray  # float32 N x C, softmax of the logits (rows sum to 1)
    pred: np.ndarray  # int64 N, argmax of probs
    conf: np.ndarray  # float32 N, probs[i, pred[i]] (the confidence in the predicted class)
    labels: np.ndarray | None = None  # int64 N, the true classes, when known

    def __len__(self) -> int:
        return len(self.pred)

    @property
    def correct(self) -> np.ndarray:
        """bool N: prediction equals the label (needs ``labels``)."""
        return self._labels() == self.pred

    def _labels(self) -> np.ndarray:
        if self.labels is None:
            raise ValueError("these Predictions have no labels; pass labels= to predict()")
        return self.labels


def predict(net: Net, images, labels=None, *, batch_size: int = 500, views: Sequence[str] = ("original",),
            precision: str = "fp32", stats: tuple | None = None, average: str = "probs") -> Predictions:
    """Softmax predictions of a trained ``net`` on uint8 ``images`` (N,3,H,W), in batches (01, 02, 03, 05).

    Each batch goes to the model's device, is normalised as the net was evaluated (``net.mean`` /
    ``net.std``; ``stats=(mean, std)`` for others: 03's code made its TTA predictions with the
    training statistics) and run under ``torch.no_grad()`` in eval mode and fp32, as every report
    evaluated (``precision="bf16"``: bf16 autocast, CUDA only); probabilities are taken in float32.
    The model's train/eval mode is restored afterwards. The result does not depend on
    ``batch_size`` (beyond float rounding on a GPU).

    ``views`` names test-time augmentations from :data:`TTA_VIEWS`, applied to the images in [0, 1]
    before they are normalised; with more than one, the softmax is averaged over the views (03's TTA),
    or with ``average="logits"`` the logits, then the softmax taken (report 002's code). Each batch
    is transformed as a whole.
    """
    unknown = [v for v in views if v not in TTA_VIEWS]
    if unknown or not views:
        raise ValueError(f"unknown view(s) {unknown}; valid views: {', '.join(TTA_VIEWS)}")
    if average not in ("probs", "logits"):
        raise ValueError(f"average must be 'probs' or 'logits', not {average!r}")
    images = torch.as_tensor(images)
    if images.dim() != 4:
        raise ValueError(f"images must be N,C,H,W, got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if labels is not None:
        labels = _np(labels, np.int64).ravel()
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
    model = net.model
    device = next(model.parameters()).device
    mean, std = (net.mean, net.std) if stats is None else stats
    chunks = []
    with evaluating(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device, non_blocking=True).float().div_(255)
            total = 0
            for view in views:
                with autocast(device, precision):
                    logits = model(normalize(TTA_VIEWS[view](x), mean, std)).float()
                total = total + (logits if average == "logits" else logits.softmax(dim=1))
            mean_out = total / len(views)
            chunks.append((mean_out.softmax(dim=1) if average == "logits" else mean_out).cpu())
    if not chunks:
        raise ValueError("no images to predict")
    probs = torch.cat(chunks).numpy()
    pred = probs.argmax(axis=1).astype(np.int64)
    conf = probs[np.arange(len(pred)), pred]
    return Predictions(probs=probs, pred=pred, conf=conf, labels=labels)


# --- accuracy tables -----------------------------------------------------------------------------


def per_class_accuracy(pred, labels, num_classes: int) -> np.ndarray:
    """Accuracy within each true class (recall), float64 of length ``num_classes`` (02, 03, 05).

    A class with no samples gets NaN.
    """
    cm = confusion(pred, labels, num_classes)
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / totals, np.nan)


def confusion(pred, labels, num_classes: int) -> np.ndarray:
    """Confusion counts, int64 ``num_classes x num_classes``: row = true class, column = predicted (02, 03).

    ``cm[t, p]`` counts samples of true class ``t`` predicted as ``p``; rows sum to class counts.
    """
    pred, labels = _labels_1d(pred, labels)
    for name, x in (("pred", pred), ("labels", labels)):
        if len(x) and not 0 <= x.min() <= x.max() < num_classes:
            raise ValueError(f"{name} must lie in [0, {num_classes}), got [{x.min()}, {x.max()}]")
    flat = np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def confusion_difference(cm_a, cm_b) -> np.ndarray:
    """``cm_b - cm_a`` as signed int64 (05): positive cells are confusions B makes more often.

    On the diagonal, positive means B gets that class right more often.
    """
    a, b = _np(cm_a).astype(np.int64), _np(cm_b).astype(np.int64)
    if a.shape != b.shape:
        raise ValueError(f"confusion matrices differ in shape: {a.shape} vs {b.shape}")
    return b - a


# --- failure cases -------------------------------------------------------------------------------


def _order_by_conf(conf: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``idx`` sorted by ``conf[idx]`` descending; ties keep ascending index order."""
    return idx[np.argsort(-conf[idx], kind="stable")]


def failures(preds: Predictions, classes: Sequence[str]) -> pd.DataFrame:
    """Misclassified samples, most confident first (01, 02).

    Columns ``index, true, pred, confidence, true_name, pred_name``; ``confidence`` is the
    probability of the (wrong) predicted class. Ties keep index order. Row labels are 0..k-1.
    """
    labels = preds._labels()
    wrong = _order_by_conf(preds.conf, np.flatnonzero(preds.pred != labels))
    names = np.asarray(list(classes), dtype=object)
    return pd.DataFrame({
        "index": wrong.astype(np.int64),
        "true": labels[wrong],
        "pred": preds.pred[wrong],
        "confidence": preds.conf[wrong],
        "true_name": names[labels[wrong]],
        "pred_name": names[preds.pred[wrong]],
    })


def pick_diverse(failures_df: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """The ``k`` most confident failures that cover different error types (01 picks 3, 02 picks 5).

    Greedy, in order of confidence (highest first): each step takes the most confident remaining
    failure whose true class is not yet used (so its (true, pred) pair is new too); when none is
    left, the most confident one whose (true, pred) pair is new; only when no new pair is left,
    the most confident remaining one (a repeat). Returns the picked rows of ``failures_df`` (as
    made by :func:`failures`), most confident first; fewer than ``k`` if there are fewer failures.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    df = failures_df.sort_values("confidence", ascending=False, kind="stable")
    rows = list(zip(df.index, df["true"].to_numpy(), df["pred"].to_numpy()))
    picked, used_true, used_pairs = [], set(), set()
    while len(picked) < min(k, len(rows)):
        remaining = [r for r in rows if r[0] not in picked]
        choice = (next((r for r in remaining if r[1] not in used_true), None)
                  or next((r for r in remaining if (r[1], r[2]) not in used_pairs), None)
                  or remaining[0])
        picked.append(choice[0])
        used_true.add(choice[1])
        used_pairs.add((choice[1], choice[2]))
    return df.loc[picked].sort_values("confidence", ascending=False, kind="stable")


def embed(net: Net, images, *, batch_size: int = 500) -> np.ndarray:
    """What the net's classifier sees: the input of its last ``nn.Linear`` layer (the pooled
    features), L2-normalised, float32 N x D (01, 02's case tables). Eval mode, fp32, no gradients;
    the model's train/eval mode is restored."""
    model = net.model
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError(f"{type(model).__name__} has no Linear layer to read features from")
    images = torch.as_tensor(images)
    device = next(model.parameters()).device
    chunks = []
    hook = last[-1].register_forward_pre_hook(lambda _, inputs: chunks.append(inputs[0].detach().float().cpu()))
    try:
        with evaluating(model), torch.no_grad():
            for start in range(0, len(images), batch_size):
                model(normalize(images[start : start + batch_size].to(device), net.mean, net.std))
    finally:
        hook.remove()
    feats = torch.cat(chunks) if chunks else torch.zeros(0, last[-1].in_features)
    return torch.nn.functional.normalize(feats.flatten(1), dim=1).numpy()


def nearest_train_classes(query: np.ndarray, train: np.ndarray, train_labels, k: int = 5) -> np.ndarray:
    """Labels of the ``k`` training images most similar to each query in feature space (cosine
    similarity of :func:`embed` features), nearest first: int64 N x k (01, 02's case tables).

    A measured cue for a failure: if most of a confidently misclassified image's neighbours are of
    the predicted class, the model's features put it among that class's training images."""
    train_labels = _np(train_labels, np.int64).ravel()
    if len(train) != len(train_labels) or not 1 <= k <= len(train):
        raise ValueError(f"need 1 <= k <= {len(train)} training images with one label each, got k={k}, "
                         f"{len(train_labels)} labels")
    sims = torch.from_numpy(np.asarray(query, np.float32)) @ torch.from_numpy(np.asarray(train, np.float32)).T
    return train_labels[sims.topk(k, dim=1).indices.numpy()]


def case_table(cases: pd.DataFrame, neighbours: np.ndarray, classes: Sequence[str],
               on_object=None) -> pd.DataFrame:
    """One row per studied failure, every column measured (01's canonical cases, 02's five cases):
    true class, prediction and confidence, how many of its ``k`` nearest training images (in the
    model's feature space) carry the predicted and the true class, and, where object masks exist,
    the share of its Grad-CAM heatmap on the object. ``cases``: rows of :func:`failures`;
    ``neighbours``: :func:`nearest_train_classes` for the same images; ``on_object``: one share
    per case (``helpers.cam.energy_in_mask``) or None."""
    names = list(classes)
    k = neighbours.shape[1]
    table = pd.DataFrame({
        "test index": cases["index"].to_numpy(), "true": cases["true_name"].to_numpy(),
        "predicted": cases["pred_name"].to_numpy(), "confidence": cases["confidence"].to_numpy(),
        f"neighbours of predicted class (of {k})": (neighbours == cases["pred"].to_numpy()[:, None]).sum(1),
        f"neighbours of true class (of {k})": (neighbours == cases["true"].to_numpy()[:, None]).sum(1),
        "most common neighbour": [names[np.bincount(row).argmax()] for row in neighbours],
    })
    if on_object is not None:
        table["Grad-CAM share on object"] = np.asarray(on_object, dtype=float)
    return table.set_index("test index")


# --- model A vs model B --------------------------------------------------------------------------


def _pair(a: Predictions, b: Predictions) -> np.ndarray:
    la, lb = a._labels(), b._labels()
    if len(la) != len(lb) or not np.array_equal(la, lb):
        raise ValueError("A and B must be predictions on the same labelled images")
    return la


def rescued(a: Predictions, b: Predictions) -> np.ndarray:
    """Indices that B gets right and A gets wrong, B's most confident first (02, 05).

    Ties keep index order. Both must be predictions on the same labelled images.
    """
    _pair(a, b)
    return _order_by_conf(b.conf, np.flatnonzero(~a.correct & b.correct))


def broken(a: Predictions, b: Predictions) -> np.ndarray:
    """The reverse of :func:`rescued`: indices A gets right and B gets wrong (02, 05).

    Also sorted by B's confidence, descending (ties by index): B's most confident new mistakes
    first. (The same set as ``rescued(b, a)``, which would order by A's confidence instead.)
    """
    _pair(a, b)
    return _order_by_conf(b.conf, np.flatnonzero(a.correct & ~b.correct))


CHANGES = (
    "rescued",
    "broken",
    "unchanged (right)",
    "still wrong, now another class",
    "still wrong, more confident",
    "still wrong, less confident",
)


def _change(right_a: bool, right_b: bool, pred_a: int, pred_b: int, conf_a: float, conf_b: float) -> str:
    if right_a and right_b:
        return "unchanged (right)"
    if right_a:
        return "broken"
    if right_b:
        return "rescued"
    if pred_a != pred_b:
        return "still wrong, now another class"
    return "still wrong, more confident" if conf_b > conf_a else "still wrong, less confident"


def compare_cases(indices, a: Predictions, b: Predictions, classes: Sequence[str]) -> pd.DataFrame:
    """How model B's prediction on each of ``indices`` differs from model A's (02, 01).

    One row per index, in the given order, with columns ``index, true, true_name, pred_a,
    pred_a_name, conf_a, pred_b, pred_b_name, conf_b, change``; ``conf_*`` is each model's
    probability of its own predicted class. ``change`` is exactly one of :data:`CHANGES`:

    - ``"rescued"``: A wrong, B right
    - ``"broken"``: A right, B wrong
    - ``"unchanged (right)"``: both right
    - ``"still wrong, now another class"``: both wrong, with different predicted classes
    - ``"still wrong, more confident"``: both wrong with the same class, ``conf_b > conf_a``
    - ``"still wrong, less confident"``: both wrong with the same class, ``conf_b <= conf_a``
      (an exact tie counts here: "not more confident")
    """
    labels = _pair(a, b)
    idx = _np(indices, np.int64).ravel()
    if len(idx) and not 0 <= idx.min() <= idx.max() < len(labels):
        raise IndexError(f"indices must lie in [0, {len(labels)})")
    names = np.asarray(list(classes), dtype=object)
    true, pa, pb = labels[idx], a.pred[idx], b.pred[idx]
    ca, cb = a.conf[idx], b.conf[idx]
    change = [_change(t == x, t == y, x, y, u, v) for t, x, y, u, v in zip(true, pa, pb, ca, cb)]
    return pd.DataFrame({
        "index": idx, "true": true, "true_name": names[true],
        "pred_a": pa, "pred_a_name": names[pa], "conf_a": ca,
        "pred_b": pb, "pred_b_name": names[pb], "conf_b": cb,
        "change": change,
    })


def migration(a: Predictions, b: Predictions) -> dict:
    """Where samples moved from model A to model B (02, 05): counts of ``rescued`` (A wrong, B
    right), ``broken`` (A right, B wrong), ``net`` (rescued - broken), ``still_wrong`` (both wrong)
    and, of those, ``still_wrong_less_confident`` (B's confidence in its predicted class below A's)
    with its ``share_less_confident``."""
    n_rescued, n_broken = len(rescued(a, b)), len(broken(a, b))  # both check the pairing
    both_wrong = ~a.correct & ~b.correct
    less = int((both_wrong & (b.conf < a.conf)).sum())
    n_wrong = int(both_wrong.sum())
    return dict(rescued=n_rescued, broken=n_broken, net=n_rescued - n_broken, still_wrong=n_wrong,
                still_wrong_less_confident=less, share_less_confident=less / n_wrong if n_wrong else float("nan"))


# --- training histories --------------------------------------------------------------------------


def epochs_to_reach(history_df: pd.DataFrame, threshold: float, column: str = "val_acc") -> int | None:
    """The first epoch whose ``column`` is >= ``threshold``, or None if never reached (05).

    Epochs are the history's ``epoch`` column (1-based, as ``train.fit`` writes it); a history
    without one counts rows from 1.
    """
    if column not in history_df.columns:
        raise KeyError(f"history has no column {column!r}; columns: {list(history_df.columns)}")
    reached = np.flatnonzero(history_df[column].to_numpy(dtype=float) >= threshold)
    if len(reached) == 0:
        return None
    row = reached[0]
    return int(history_df["epoch"].iloc[row]) if "epoch" in history_df.columns else int(row) + 1
