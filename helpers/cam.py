"""Grad-CAM heatmaps through pytorch-grad-cam (notebooks 01 and 02): thin wrappers, no own Grad-CAM.

- :func:`target_layer` -- which module's output the heatmap is computed on (one rule, below)
- :func:`compute_cams` -- N heatmaps of 32x32 in [0, 1], one target class per image, in batches
- :func:`overlay` -- heatmaps drawn over the images, for figures
- :func:`energy_in_mask` -- share of each heatmap inside the object mask (synthetic data's
  ``test_masks``): notebook 01's measured version of "the model looks at the background"

**Target layer rule.** The output of the model's last feature *block* where the model has blocks,
else its last convolution:

- ``FlexibleCNN`` (``stages``, plain or residual): ``model.stages[-1][-1]``, the last block; its
  output is ``relu(conv2 [+ shortcut])``, so the plain and residual variants are compared at the
  same place (notebook 01);
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

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from .loader import normalize
from .models import last_conv

__all__ = ["compute_cams", "energy_in_mask", "overlay", "target_layer"]


def target_layer(model: nn.Module) -> nn.Module:
    """The default Grad-CAM target layer: last block, else last conv (see the module docstring)."""
    stages = getattr(model, "stages", None)
    if isinstance(stages, nn.Sequential) and len(stages) and isinstance(stages[-1], nn.Sequential):
        return stages[-1][-1]
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


def compute_cams(model: nn.Module, images_uint8, *, mean, std, targets=None, layer: nn.Module | None = None,
                 batch_size: int = 64) -> np.ndarray:
    """Grad-CAM heatmaps, float32 N x H x W, each min-max scaled to [0, 1] (notebooks 01, 02).

    ``images_uint8``: uint8 N,3,H,W (a ``Dataset``'s images), normalised with ``mean``/``std`` as in
    training. ``targets``: the class each heatmap explains -- None: each image's predicted class; an
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
    layer = target_layer(model) if layer is None else layer
    device = next(model.parameters()).device
    params = list(model.parameters())
    saved = [(p.requires_grad, p.grad) for p in params]
    was_training = model.training
    chunks = []
    try:
        for p in params:
            p.requires_grad_(False)
        with torch.enable_grad(), GradCAM(model=model, target_layers=[layer], reshape_transform=_snapshot) as cam:
            for start in range(0, n, batch_size):
                x = normalize(images[start : start + batch_size].to(device), mean, std).requires_grad_(True)
                chunk_targets = None if classes is None else [
                    ClassifierOutputTarget(c) for c in classes[start : start + batch_size]]
                chunks.append(np.asarray(cam(input_tensor=x, targets=chunk_targets), dtype=np.float32))
    finally:
        for p, (flag, grad) in zip(params, saved):
            p.requires_grad_(flag)
            p.grad = grad
        model.train(was_training)
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
