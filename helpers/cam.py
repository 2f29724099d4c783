"""Grad-CAM heatmaps through pytorch-grad-cam (notebooks 01 and 02): thin wrappers, no own Grad-CAM.

- :func:`target_layer` -- which module's output the heatmap is computed on (one rule, below)
- :func:`compute_cams` -- N heatmaps of 32x32 in [0, 1], one target class per image, in batches
- :func:`overlay` -- heatmaps drawn over the images, for figures
- :func:`energy_in_mask` -- share of each heatmap inside the object mask (synthetic data's
  ``test_masks``): notebook 01's measured version of "the model looks at the background"
- :func:`spread` -- how diffuse each heatmap is (entropy, area above half the peak): "less diffuse"
- :func:`faithfulness` -- does a heatmap show what the model uses? pytorch-grad-cam's ROAD and
  keep-the-highlighted-region scores, for the map and for a seeded random map of the same values

**Target layer rule.** A model that names its own (``cam_layer()``) gets that one; else the output
of the model's last feature *block* where the model has blocks, else its last convolution:

- ``FlexibleCNN`` (plain or residual): report 000's code's layer, the last block's second
  convolution, its output before that block's BatchNorm, shortcut and ReLU, so the plain and
  residual variants are compared at the same place (notebook 01);
- ``CifarResNet`` / torchvision ResNets (``layer1`` .. ``layerN``): ``model.layerN[-1]``, the last
  BasicBlock (the choice of the pytorch-grad-cam docs, ``model.layer4[-1]``);
- anything else (``SimpleCNN``): :func:`helpers.models.last_conv`.

**Side effects.** pytorch-grad-cam puts the model in eval mode, registers forward hooks, runs a
backward pass and zeroes parameter gradients. :func:`compute_cams` undoes all of it: hooks are
released by the ``with GradCAM(...)`` block; the parameters' ``requires_grad`` flags are switched
off for the call (gradients flow from the input instead, which also skips every weight gradient)
and restored with any ``.grad`` they held; the previous train/eval mode is restored.

**A pitfall handled here.** pytorch-grad-cam stores the target layer's output with
``.cpu().detach()``, which on the CPU is the *same* memory as the live tensor: when the next op
is in place (``SimpleCNN``'s last conv is followed by ``ReLU(inplace=True)``) the stored
activation is silently rectified while the gradient is not (on a GPU ``.cpu()`` copies, so the
result would depend on the device; measured on the CPU: heatmaps up to 1.0 apart on the [0, 1]
scale). A copying ``reshape_transform`` snapshots the activation at hook time, so every device
gets the conv's own output (tests/test_cam.py checks it against a model without in-place ReLUs).

**Speed** (width-0.25 residual FlexibleCNN, 512 images of 32x32, CPU, 1 torch thread, on a shared
2-core box, so read the ratios): ``batch_size=64`` 320-590 CAMs/s, one image at a time 150-260
CAMs/s, i.e. batching is ~2.3x faster in every run; pytorch-grad-cam used as-is (weight gradients
computed too) ~1.35x slower than here at batch 64. With 2 torch threads on the loaded box every
small op waited on a preempted thread: 100-110 CAMs/s batched, 28-44 one at a time.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.metrics.road import ROADCombined
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
from torch import nn

from .loader import normalize
from .models import Net, evaluating, last_conv

__all__ = ["compute_cams", "energy_in_mask", "faithfulness", "overlay", "random_maps", "spread", "target_layer"]


def target_layer(model: nn.Module) -> nn.Module:
    """The default Grad-CAM target layer: the model's own, else its last block, else its last conv
    (see the module docstring)."""
    if callable(getattr(model, "cam_layer", None)):
        return model.cam_layer()
    layers = sorted(
        (int(m.group(1)), child)
        for name, child in model.named_children()
        if (m := re.fullmatch(r"layer(\d+)", name)) and isinstance(child, nn.Sequential) and len(child)
    )
    if layers:
        return layers[-1][1][-1]
    return last_conv(model)


def _snapshot(t: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam ``reshape_transform``: copy the hooked tensor (see "A pitfall" above)."""
    return t.clone()


def _targets(targets, n: int) -> list[int] | None:
    """None (each image's predicted class), or one class index per image."""
    if targets is None:
        return None
    if isinstance(targets, (int, np.integer)) or (isinstance(targets, torch.Tensor) and targets.dim() == 0):
        classes = [int(targets)] * n
    else:
        t = targets.detach().cpu().numpy() if isinstance(targets, torch.Tensor) else np.asarray(targets)
        classes = [int(c) for c in t.ravel()]
        if len(classes) != n:
            raise ValueError(f"{len(classes)} targets for {n} images; give one per image, an int, or None")
    if any(c < 0 for c in classes):
        raise ValueError(f"target classes must be >= 0, got {min(classes)}")
    return classes


def compute_cams(net: Net, images_uint8, *, targets=None, layer: nn.Module | None = None,
                 batch_size: int = 64) -> np.ndarray:
    """Grad-CAM heatmaps of a trained ``net``, float32 N x H x W, each min-max scaled to [0, 1]
    (notebooks 01, 02).

    ``images_uint8``: uint8 N,3,H,W (a ``Dataset``'s images), normalised as in training
    (``net.mean`` / ``net.std``). ``targets``: the class each heatmap explains -- None: each image's predicted class; an
    int: that class for every image; a sequence: one class per image. ``layer``: the module whose
    output is used (default :func:`target_layer`). Runs pytorch-grad-cam's ``GradCAM`` once per chunk
    of ``batch_size`` images, with one ``ClassifierOutputTarget`` per image, in fp32 (no autocast:
    the library converts activations to NumPy) on the model's device. A heatmap whose weighted
    activations are all <= 0 comes back all zeros. Leaves the model as it was (module docstring).
    """
    images = torch.as_tensor(images_uint8)
    if images.dim() != 4:
        raise ValueError(f"images must be N,C,H,W, got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(images)
    classes = _targets(targets, n)
    if n == 0:
        return np.zeros((0, *images.shape[2:]), dtype=np.float32)
    model = net.model
    layer = target_layer(model) if layer is None else layer
    device = next(model.parameters()).device
    params = list(model.parameters())
    saved = [(p.requires_grad, p.grad) for p in params]
    chunks = []
    try:
        for p in params:
            p.requires_grad_(False)
        with evaluating(model), torch.enable_grad(), \
                GradCAM(model=model, target_layers=[layer], reshape_transform=_snapshot) as cam:
            for start in range(0, n, batch_size):
                x = normalize(images[start : start + batch_size].to(device), net.mean, net.std).requires_grad_(True)
                chunk_targets = None if classes is None else [
                    ClassifierOutputTarget(c) for c in classes[start : start + batch_size]]
                chunks.append(np.asarray(cam(input_tensor=x, targets=chunk_targets), dtype=np.float32))
    finally:
        for p, (flag, grad) in zip(params, saved):
            p.requires_grad_(flag)
            p.grad = grad
    if sum(len(c) for c in chunks) != n:
        # GradCAM.__exit__ swallows IndexError (printing a message), e.g. a class beyond the outputs.
        raise ValueError("pytorch-grad-cam failed on a chunk (IndexError): is a target class beyond the "
                         "model's outputs?")
    return np.concatenate(chunks)


def overlay(images_uint8, cams, alpha: float = 0.5) -> np.ndarray:
    """Heatmaps drawn over their images: float N x H x W x 3 in [0, 1], for ``imshow`` (01, 02).

    ``images_uint8``: uint8 N,3,H,W (the raw image / 255 is the de-normalised image); ``cams``: N x H x W
    in [0, 1]. ``alpha`` is the heatmap's weight (pytorch-grad-cam's ``show_cam_on_image`` with
    ``image_weight = 1 - alpha``, jet colormap, RGB), which then rescales each result so its maximum is 1.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    images = images_uint8.detach().cpu().numpy() if isinstance(images_uint8, torch.Tensor) else np.asarray(images_uint8)
    cams = cams.detach().cpu().numpy() if isinstance(cams, torch.Tensor) else np.asarray(cams)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be N,3,H,W, got shape {images.shape}")
    if cams.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"cams must be N x H x W = {(images.shape[0], *images.shape[2:])}, got {cams.shape}")
    hwc = images.transpose(0, 2, 3, 1).astype(np.float32) / 255.0
    out = [show_cam_on_image(img, np.clip(c, 0.0, 1.0), use_rgb=True, image_weight=1.0 - alpha)
           for img, c in zip(hwc, cams)]
    return np.stack(out).astype(np.float32) / 255.0 if out else np.zeros((0, *hwc.shape[1:]), np.float32)


def energy_in_mask(cams, masks) -> np.ndarray:
    """Share of each heatmap's total (sum) inside its object mask, float64 N in [0, 1] (01).

    ``cams``: N x H x W, non-negative; ``masks``: bool N x H x W (the synthetic data's ``test_masks``).
    1.0 = all attention on the object, 0.0 = all on the background; a uniform heatmap scores the
    mask's area fraction. An all-zero heatmap has no energy to share: NaN.
    """
    cams = (cams.detach().cpu().numpy() if isinstance(cams, torch.Tensor) else np.asarray(cams)).astype(np.float64)
    masks = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if cams.shape != masks.shape or cams.ndim != 3:
        raise ValueError(f"cams and masks must both be N x H x W, got {cams.shape} and {masks.shape}")
    total = cams.sum(axis=(1, 2))
    inside = np.where(masks.astype(bool), cams, 0.0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)


def _maps(cams) -> np.ndarray:
    cams = (cams.detach().cpu().numpy() if isinstance(cams, torch.Tensor) else np.asarray(cams)).astype(np.float64)
    if cams.ndim != 3 or (cams < 0).any() or np.isnan(cams).any():
        raise ValueError(f"cams must be N x H x W, non-negative and without NaN, got shape {cams.shape}")
    return cams


def spread(cams) -> pd.DataFrame:
    """How diffuse each heatmap is, one row per map: ``entropy`` and ``above_half`` (01, 02).

    ``entropy``: the map scaled to sum 1, its Shannon entropy divided by log(H*W); 1.0 = the same value
    on every pixel, 0.0 = everything on one pixel, and ``(H*W) ** entropy`` is how many evenly lit
    pixels would have the same entropy (0.9 on 32x32: 512 of 1,024). ``above_half``: share of pixels
    at or above half the map's peak. "Less diffuse" means lower on both. An all-zero map has no
    distribution: NaN in both.
    """
    cams = _maps(cams)
    flat = cams.reshape(len(cams), -1)
    total, peak = flat.sum(axis=1, keepdims=True), flat.max(axis=1, keepdims=True, initial=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = flat / total
        entropy = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1) / np.log(flat.shape[1])
        above = (flat >= peak / 2).mean(axis=1)
    empty = total[:, 0] == 0
    return pd.DataFrame({"entropy": np.where(empty, np.nan, np.clip(entropy, 0.0, 1.0)),
                         "above_half": np.where(empty, np.nan, above)})


def _ranks(maps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each map's pixel ranks scaled to (0, 1], ties broken at random, float32."""
    flat = maps.reshape(len(maps), int(np.prod(maps.shape[1:])))
    order = np.lexsort((rng.random(flat.shape), flat), axis=-1)  # value first, a random key among equals
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None].repeat(len(flat), 0), axis=1)
    return ((ranks + 1) / flat.shape[1]).reshape(maps.shape).astype(np.float32)


def random_maps(cams, *, seed: int = 0, cell: int = 4) -> np.ndarray:
    """Seeded random heatmaps with each real map's own values, float32 N x H x W (01, 02).

    A smooth noise field (one Gaussian value per ``cell`` x ``cell`` pixels, bilinearly upsampled, as
    coarse as a Grad-CAM of an 8x8 layer on 32x32 images) whose pixels take the real map's values in
    rank order: the same histogram (so as much of the image is kept or removed at every threshold)
    and similar blobs, only in random places -- the baseline a faithful map must beat.
    """
    cams = _maps(cams)
    n, h, w = cams.shape
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.standard_normal((n, 1, -(-h // cell), -(-w // cell))))
    field = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    order = np.argsort(field.numpy().reshape(n, h * w), axis=1)
    out = np.empty((n, h * w))
    np.put_along_axis(out, order, np.sort(cams.reshape(n, h * w), axis=1), axis=1)
    return out.reshape(n, h, w).astype(np.float32)


FAITHFULNESS_COLUMNS = ["target", "confidence", "road", "keep", "road_random", "keep_random", "beats_random"]
# Their names in a report's table (02): the scores of each map, then of its random twin.
FAITHFULNESS_NAMES = {"confidence": "confidence", "road": "ROAD", "keep": "keep", "road_random": "ROAD, random map",
                      "keep_random": "keep, random map", "beats_random": "beats random", "in_mask": "on object",
                      "in_mask_random": "on object, random map"}


def _score_chunk(model, x, kinds: dict, classes: list[int] | None, percentiles) -> pd.DataFrame:
    """:func:`faithfulness` for one chunk: the library's ROAD (on the maps' ranks) and keep-the-map
    confidence change, for each kind of map (real, random)."""
    probs = torch.softmax(model(x).float(), dim=1).cpu()
    t = probs.argmax(1).tolist() if classes is None else classes
    if max(t) >= probs.shape[1]:
        raise ValueError(f"target class {max(t)} is beyond the model's {probs.shape[1]} outputs")
    row = {"target": t, "confidence": probs[torch.arange(len(t)), t].numpy()}
    targets = [ClassifierOutputSoftmaxTarget(c) for c in t]
    for suffix, maps in kinds.items():
        with warnings.catch_warnings():
            # the library calls np.float32() on a torch tensor (a NumPy 2 deprecation, per image and percentile)
            warnings.filterwarnings("ignore", "__array_wrap__ must accept context", DeprecationWarning)
            row[f"road{suffix}"] = ROADCombined(percentiles=list(percentiles))(x, maps["rank"], targets, model)
        row[f"keep{suffix}"] = CamMultImageConfidenceChange()(x, maps["value"], targets, model)
    return pd.DataFrame({k: np.asarray(v).ravel() for k, v in row.items()})


def faithfulness(net: Net, images_uint8, cams, targets=None, *, masks=None, batch_size: int = 64, seed: int = 0,
                 percentiles=(20, 40, 60, 80)) -> pd.DataFrame:
    """How much each heatmap of a trained ``net`` reflects what its model uses, one row per image (01, 02).

    Scores from ``pytorch_grad_cam.metrics`` on the softmax probability of the map's target class
    (``targets`` as in :func:`compute_cams`; None: the predicted class), for the real map and for
    :func:`random_maps` of the same images (same values, random places):

    - ``road`` / ``road_random``: ROAD (``ROADCombined`` over ``percentiles``): at each percentile,
      the probability change when the *least* relevant pixels are removed minus the change when the
      *most* relevant are removed, halved and averaged; removed pixels are filled in from their
      neighbours (noisy linear imputation) so the filling itself carries no signal. Faithful: clearly
      above 0 (removing what the map highlights hurts more); around 0 says the ranking is arbitrary.
    - ``keep`` / ``keep_random``: ``CamMultImageConfidenceChange``, the probability change when the
      normalised image is multiplied by the map (faded to the mean colour where the map is low, only
      the highlighted region kept). Faithful: near 0 or positive; strongly negative: the model
      needed what the map left out.
    - ``beats_random``: ``road > road_random`` and ``keep > keep_random``; over many images compare
      the columns with :func:`helpers.evidence.paired_values`. ``confidence``: the probability before.
    - with ``masks`` (synthetic data): ``in_mask`` / ``in_mask_random``, :func:`energy_in_mask` of both.

    Why not the library as-is: its thresholds ``mask < percentile(mask)`` keep nothing when the
    percentile falls on a tie (Grad-CAM maps are 0 on whole regions), so ROAD is given each map's
    ranks, ties broken at random. Seeded: the random maps, tie-breaks and the imputer's noise
    (torch's global RNG is forked, not disturbed). The model is run in eval mode under no_grad and
    left as it was.

    **Cost** (16 images, width-0.25 residual FlexibleCNN, CPU, 1 torch thread, shared 2-core box at
    load ~6, so read the ratios): 3.6-4.3 s with the default 4 percentiles, 5.2-7.1 s with the
    library's 9, 0.5-0.8 s with one; :func:`compute_cams` for the same images took 0.05 s. Nearly all
    of it is the library's imputation, one sparse solve per image, percentile, end (MoRF, LeRF) and
    map (real, random), done image by image; the model runs once per chunk of ``batch_size``.
    """
    images = torch.as_tensor(images_uint8)
    maps = _maps(cams)
    if images.dim() != 4 or maps.shape != (len(images), *images.shape[2:]):
        raise ValueError(f"images must be N,C,H,W and cams N x H x W of the same N, H, W; got "
                         f"{tuple(images.shape)} and {maps.shape}")
    if batch_size < 1 or not percentiles or not all(0 < p < 100 for p in percentiles):
        raise ValueError(f"batch_size must be >= 1 and percentiles in (0, 100), got {batch_size}, {percentiles}")
    rng = np.random.default_rng(seed)
    rand = random_maps(maps, seed=seed)
    kinds = {"": {"rank": _ranks(maps, rng), "value": maps.astype(np.float32)},
             "_random": {"rank": _ranks(rand, rng), "value": rand}}
    model = net.model
    device = next(model.parameters()).device
    classes, rows = _targets(targets, len(images)), []
    with evaluating(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(images), batch_size):
            part = slice(start, start + batch_size)
            x = normalize(images[part].to(device), net.mean, net.std)
            chunk = {kind: {k: v[part] for k, v in m.items()} for kind, m in kinds.items()}
            rows.append(_score_chunk(model, x, chunk, None if classes is None else classes[part], percentiles))
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=FAITHFULNESS_COLUMNS[:-1])
    out["beats_random"] = (out["road"] > out["road_random"]) & (out["keep"] > out["keep_random"])
    if masks is not None:
        out["in_mask"], out["in_mask_random"] = energy_in_mask(maps, masks), energy_in_mask(rand, masks)
    return out
