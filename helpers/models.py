"""The four model families of the reference reports, each with a width multiplier.

``width`` scales every channel count (and SimpleCNN's hidden layer) so the quick profile can
train a narrow copy on a CPU; the parameter counts quoted below are for ``width=1`` and are
asserted in tests/test_models.py.

| name             | report / notebook            | parameters (10 classes) |
| ---------------- | ---------------------------- | ----------------------- |
| flexible_cnn     | 000 / 01 stress test         | 7,427,914 (5 blocks a stage, both variants) |
| resnet18_cifar   | 001, 003 / 02 CutMix, 04     | 11,173,962              |
| budget_resnet    | 002 / 03 ResNet budget       | 4,754,218               |
| simple_cnn       | 004 / 05 BN ablation         | 620,362 / 621,322 with BN |
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.resnet import BasicBlock


def scale(channels: int, width: float) -> int:
    """Channels after the width multiplier (at least 1)."""
    return max(1, round(channels * width))


class SubsampledConv1x1(nn.Conv2d):
    """A strided 1x1 convolution (no padding) computed as a stride-1 one of every ``stride``-th pixel.

    The same module as ``nn.Conv2d(c_in, c_out, 1, stride)``: the same parameter, state_dict key and
    initialisation, the same output and gradients (bit for bit in our CPU checks). It exists because oneDNN's
    CPU 1x1 convolution writes past its workspace in the backward-weights pass when the input is NHWC
    (every CPU run: ``device.channels_last``), the stride is not 1 and the input has fewer channels
    than the kernel's SIMD block, 8 with AVX2 and 16 with AVX-512 (uxlfoundation/oneDNN#6035, open;
    torch 2.14.1 bundles oneDNN 3.12). With 2 threads the overrun lands on the kernel's thread barrier
    and training spins forever in ``jit_avx2_1x1_convolution_bwd_weights``; with one thread it is a
    segfault, ``free(): invalid next size`` or wrong weight gradients. A stride-1 1x1 convolution
    does not take that path. (NCHW would avoid it too, but converting only the shortcut's input to
    NCHW in an NHWC model still reached the NHWC kernel: a 1x1 weight is both layouts at once.)
    tests/test_onednn_1x1.py trains on oneDNN's AVX2 kernels to catch it. See :func:`conv1x1`.
    """

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
        sh, sw = self.stride
        return nn.functional.conv2d(x[:, :, ::sh, ::sw], self.weight, self.bias)


# Channels from which oneDNN's strided 1x1 convolution is safe on every x86 ISA (AVX-512's block).
SAFE_1X1_CHANNELS = 16


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """The 1x1 convolution (no bias) of a projection shortcut: a :class:`SubsampledConv1x1` where
    oneDNN's own would overrun (a stride and fewer than 16 input channels: narrow models, e.g. the
    smoke profile's), else ``nn.Conv2d``, so full-width models and their layer tables are unchanged."""
    if stride != 1 and c_in < SAFE_1X1_CHANNELS:
        return SubsampledConv1x1(c_in, c_out, stride)
    return nn.Conv2d(c_in, c_out, 1, stride, bias=False)


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (no bias: BatchNorm's shift replaces it) followed by BatchNorm."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out))


class FlexibleBlock(nn.Module):
    """Two ConvBN layers; with ``residual`` the input is added back before the last ReLU.

    The shortcut is the identity, or a learned 1x1 projection (+BN) when the stride or the channel
    count changes. As in report 000's code the projection is built in both variants and only the
    residual one calls it: the plain model carries it unused (no gradient reaches it), so the two
    variants start from the same random draws and the code's parameter count holds for both.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, residual: bool):
        super().__init__()
        self.conv1 = conv_bn(c_in, c_out, stride)
        self.conv2 = conv_bn(c_out, c_out)
        self.residual = residual
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.conv2(torch.relu(self.conv1(x)))
        if self.residual:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return torch.relu(out)


class FlexibleCNN(nn.Module):
    """Report 000's FlexibleCNN (notebook 01, stress test), as its code builds it.

    A 3x3 conv stem with 64 channels and BatchNorm, then three stages of 64, 128 and 256 channels
    of ``blocks`` blocks each (the code: 5; the report's text says only "several"), the first block
    of stages 2 and 3 downsampling with stride 2; global average pooling and one linear layer.
    ``residual=True`` changes only the blocks' forward pass (see :class:`FlexibleBlock`). At 5
    blocks: 7,427,914 parameters in both variants (the code's count), of which the plain model's
    forward pass uses 7,386,186 (:meth:`used_parameters`: its two projections hold 41,728); 31
    convolutions on the plain path.
    """

    def __init__(self, num_classes: int = 10, residual: bool = False, width: float = 1.0, blocks: int = 5):
        super().__init__()
        if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 1:
            raise ValueError(f"blocks must be a positive integer (blocks per stage), not {blocks!r}")
        c = [scale(n, width) for n in (64, 64, 128, 256)]
        self.stem = nn.Sequential(conv_bn(3, c[0]), nn.ReLU(inplace=True))
        stages = []
        for i, (c_in, c_out) in enumerate(zip(c[:-1], c[1:])):
            stride = 1 if i == 0 else 2
            stage = [FlexibleBlock(c_in, c_out, stride, residual)]
            stage += [FlexibleBlock(c_out, c_out, 1, residual) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c[-1], num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))

    def used_parameters(self) -> int:
        """Parameters the forward pass uses: all of them but, in the plain model, the projections."""
        unused = sum(count_parameters(b.shortcut) for stage in self.stages for b in stage
                     if b.shortcut is not None and not b.residual)
        return count_parameters(self) - unused

    def cam_layer(self) -> nn.Module:
        """Report 000's code's Grad-CAM layer: the last block's second convolution, its output before
        that block's BatchNorm, shortcut and ReLU (``helpers.cam.target_layer``; 01)."""
        return self.stages[-1][-1].conv2[0]


class CifarResNet(nn.Module):
    """A ResNet for 32x32 inputs built from torchvision's ``BasicBlock``.

    3x3 stride-1 stem (no max-pool: a 32x32 image has no pixels to spare), stages of
    BasicBlocks, a 1x1 conv + BN shortcut where the stride or channel count changes, global
    average pooling and a linear layer. Module names follow torchvision (conv1, bn1,
    layer1.., fc) so weights are interchangeable with a torchvision ResNet of the same shape.
    """

    def __init__(self, blocks, channels, strides, stem_channels, num_classes=10, width=1.0):
        super().__init__()
        channels = [scale(ch, width) for ch in channels]
        c_in = scale(stem_channels, width)
        self.conv1 = nn.Conv2d(3, c_in, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.relu = nn.ReLU(inplace=True)
        for i, (n, c_out, stride) in enumerate(zip(blocks, channels, strides), start=1):
            layer = []
            for j in range(n):
                s = stride if j == 0 else 1
                down = None
                if s != 1 or c_in != c_out:
                    down = nn.Sequential(conv1x1(c_in, c_out, s), nn.BatchNorm2d(c_out))
                layer.append(BasicBlock(c_in, c_out, s, down))
                c_in = c_out
            self.add_module(f"layer{i}", nn.Sequential(*layer))
        self.num_stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        # torchvision's initialisation, so a width-1 model trains like torchvision's resnet18
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18_cifar(num_classes: int = 10, width: float = 1.0) -> CifarResNet:
    """ResNet-18 for CIFAR (reports 001 and 003; notebooks 02 and 04): 11,173,962 parameters.

    Identical in structure and parameter names to ``torchvision.models.resnet18`` with its stem
    replaced by a 3x3 stride-1 conv and the max-pool removed (tests/test_models.py compares the two);
    built here so the width multiplier applies.
    """
    return CifarResNet([2, 2, 2, 2], [64, 128, 256, 512], [1, 2, 2, 2], 64, num_classes, width)


def BudgetResNet(num_classes: int = 10, width: float = 1.0) -> CifarResNet:  # noqa: N802 (a model name)
    """Report 002's <=5M-parameter ResNet (notebook 03): 4,754,218 parameters.

    BasicBlocks in stages of [4, 4, 4, 3], channels [32, 64, 128, 256], strides [1, 2, 2, 2],
    a 3x3 stem with 32 channels, 1x1 conv shortcuts on a stride or channel change.
    """
    return CifarResNet([4, 4, 4, 3], [32, 64, 128, 256], [1, 2, 2, 2], 32, num_classes, width)


class SimpleCNN(nn.Module):
    """Report 004's three-block CNN (notebook 05, BN ablation).

    Three blocks of conv3x3 (32, 64, 128 channels) + ReLU + 2x2 max-pool, then
    Linear(2048, 256), ReLU, Dropout(0.5), Linear(256, classes): 620,362 parameters.
    ``batch_norm=True`` adds BatchNorm2d after each conv and BatchNorm1d after the first linear
    layer, each before its ReLU, and changes nothing else: 621,322 parameters.
    """

    def __init__(self, num_classes: int = 10, batch_norm: bool = False, width: float = 1.0):
        super().__init__()
        c = [scale(n, width) for n in (32, 64, 128)]
        hidden = scale(256, width)
        layers, c_in = [], 3
        for c_out in c:
            # the conv keeps its bias in both variants so BN is the only change (the report's counts)
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        head = [nn.Flatten(), nn.Linear(c_in * 4 * 4, hidden)]
        if batch_norm:
            head.append(nn.BatchNorm1d(hidden))
        head += [nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(hidden, num_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        return self.classifier(self.features(x))


MODELS = {
    "flexible_cnn": FlexibleCNN,
    "resnet18_cifar": resnet18_cifar,
    "budget_resnet": BudgetResNet,
    "simple_cnn": SimpleCNN,
}


def build_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build a model by its name in :data:`MODELS` (all notebooks, through ``train.fit``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    return MODELS[name](num_classes=num_classes, **kwargs)


@dataclass(eq=False)
class Net:
    """A model and the per-channel ``mean`` / ``std`` (in [0, 1] units) its input images are normalised
    with: what predicting, Grad-CAM and feature extraction need (``helpers.evaluate``, ``helpers.cam``).
    A trained ``helpers.train.Run`` is one, so a notebook calls ``predict(run, images)``."""

    model: nn.Module
    mean: tuple
    std: tuple


@contextmanager
def evaluating(model: nn.Module):
    """Eval mode inside the block, the model's previous train/eval mode restored after it (every
    function that runs a model without training it: predictions, Grad-CAM, FLOPs, summaries)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (notebooks 03 and 04 report it against a budget)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def flops(model: nn.Module, input_size=(3, 32, 32)) -> tuple[pd.DataFrame, dict]:
    """FLOPs of one image's forward pass, per layer and in total, counted by ``torch.utils.flop_counter``
    (04's compute tables; the runner orders training jobs by them).

    The counter reports one multiply-add as 2 FLOPs; the table gives both FLOPs and MACs
    (multiply-accumulates = FLOPs / 2). Report 003's "0.5567 GFLOPs" for ResNet-18 is in MACs. Only
    convolutions and matrix products are counted: BatchNorm, ReLU, pooling and the residual additions
    are memory-bound and add well under 1%. Returns ``(table, totals)``: one row per layer that does
    compute, in forward order, with ``layer`` (module name), ``type``, ``flops``, ``macs``, ``share``
    (of the total) and ``params``; ``totals``: ``flops``, ``macs``, ``params``, ``flops_per_param``.
    The model runs once in eval mode on a zero image (on its device).
    """
    device = next(model.parameters()).device
    with evaluating(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_size, device=device))
    counts = counter.get_flop_counts()
    prefix = type(model).__name__ + "."
    rows = []
    for name, module in model.named_modules():  # definition order = forward order here
        if not name or any(True for _ in module.children()):
            continue
        n = sum(counts.get(prefix + name, {}).values())
        if n:
            rows.append(dict(layer=name, type=type(module).__name__, flops=int(n), macs=int(n) // 2,
                             params=sum(p.numel() for p in module.parameters())))
    table = pd.DataFrame(rows)
    total = int(counter.get_total_flops())
    table["share"] = table["flops"] / total
    params = count_parameters(model)
    return table, dict(flops=total, macs=total // 2, params=params, flops_per_param=total / params)


def parameters_by_part(model: nn.Module) -> pd.Series:
    """Parameters of each top-level part of a model (stem, stages, classifier) (03's budget check)."""
    return pd.Series({name: count_parameters(child) for name, child in model.named_children()
                      if count_parameters(child)}, name="parameters")


def last_conv(model: nn.Module) -> nn.Module:
    """The last ``Conv2d`` of a model: the default Grad-CAM target layer (notebooks 01, 02)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer")
    return convs[-1]


MB = 1024 ** 2


def summary(model: nn.Module, input_size=(3, 32, 32)) -> tuple[pd.DataFrame, dict]:
    """A layer table and memory estimate in the style of torchsummary (03, 04).

    Forward hooks record, for every module that is not a container (``nn.Sequential``,
    ``nn.ModuleList``, the model itself), each call's output shape and the module's own
    parameters (weight and bias; a residual block's own row therefore shows 0). Memory, in MB for
    one fp32 image as torchsummary counts it: ``input``, ``forward_backward`` (every recorded
    output twice: the activation and its gradient), ``params`` and ``total``. In-place layers
    (a ReLU with ``inplace=True``) are listed but add no memory: their output is their input.
    """
    rows, hooks = [], []

    def hook(module, inputs, output):
        first = inputs[0] if inputs else None
        in_place = isinstance(first, torch.Tensor) and output.data_ptr() == first.data_ptr()
        own = sum(p.numel() for name, p in module.named_parameters(recurse=False))
        rows.append(dict(layer=f"{type(module).__name__}-{len(rows) + 1}",
                         output_shape=[-1, *output.shape[1:]], params=own, in_place=in_place,
                         _size=output.numel()))

    for module in model.modules():
        if module is not model and not isinstance(module, (nn.Sequential, nn.ModuleList)):
            hooks.append(module.register_forward_hook(hook))
    device = next(model.parameters()).device
    try:
        with evaluating(model), torch.no_grad():
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for h in hooks:
            h.remove()
    table = pd.DataFrame(rows)
    activations = int(table.loc[~table["in_place"], "_size"].sum())
    params = count_parameters(model)
    memory = dict(input=math.prod(input_size) * 4 / MB, forward_backward=2 * activations * 4 / MB,
                  params=params * 4 / MB)
    memory["total"] = sum(memory.values())
    return table.drop(columns="_size"), memory
