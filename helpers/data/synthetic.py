"""The synthetic source: ten shapes on textured backgrounds, with a controllable background shortcut.

The bundle's own dataset, generated from a seed in seconds so that every notebook runs offline. The
train split carries a built-in shortcut (most images of a class share a background texture and a
tinted background colour; the test split does not), and every image comes with a mask of its object,
so that "the model looked at the background" can be measured (notebook 01). The knobs are in
``SYNTH``; ``data/README.md`` documents the design and its measured difficulty.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from .dataset import SIZE, Dataset, as_count


# Class k is shape k; in the train split, a fraction `shortcut` of class k's images sit on texture k.
SHAPES = ("disc", "ring", "square", "diamond", "triangle", "plus", "x", "star", "bar", "crescent")
TEXTURES = ("hstripes", "vstripes", "diagonal", "checker", "gradient", "rings", "blobs", "dots", "camo", "plain")

# The generator's knobs (documented in make_synthetic and data/README.md). Lengths in pixels.
SYNTH = dict(
    radius=(8.0, 14.0),  # object radius (centre to farthest point), uniform
    tilt=20.0,  # degrees: square/diamond/plus/x rotate at most this much (else they would swap names)
    period=(3.0, 9.0),  # texture period, uniform
    texture_contrast=0.4,  # the texture's second colour differs from its first by at most this per channel
    noise=(0.01, 0.08),  # std of the Gaussian pixel noise (in [0,1] units), uniform per image
    background_value=(0.0, 0.7),  # background colour channels, uniform (before inversion)
    object_value=(0.35, 1.0),  # object colour channels, uniform (before inversion)
    dark_p=0.2,  # fraction of images inverted: dark object on a light background
    min_contrast=0.4,  # least RGB distance between object colour and background mean colour ([0,1] units)
    shading=0.3,  # lit from one side: brightness x (1 +- shading/2) at the object's edges, at most
    occluder_p=0.2,  # probability of a random bar drawn across the image (it may hide part of the object)
    tint=0.6,  # shortcut images: background colour moved this far towards the class's colour (_TINTS)
)
# One background colour per class (the shortcut's tint), within the background's value range.
_TINTS = 0.7 * torch.tensor([[0.12, 0.47, 0.71], [1.0, 0.5, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16],
                             [0.58, 0.4, 0.74], [0.55, 0.34, 0.29], [0.89, 0.47, 0.76], [0.5, 0.5, 0.5],
                             [0.74, 0.74, 0.13], [0.09, 0.75, 0.81]])
_CHUNK = 512  # images per rendering chunk
_ORIENTED = ("square", "diamond", "plus", "x")  # shapes whose name depends on their orientation
_ORIENTED_MASK = torch.tensor([name in _ORIENTED for name in SHAPES])


def make_synthetic(n_train: int = 50_000, n_test: int = 10_000, seed: int = 0, shortcut: float = 0.8) -> Dataset:
    """Ten shape classes on textured backgrounds, bit-identical for a given seed; with object masks.

    Studies: all, under the quick and smoke profiles (the offline source). 01 reads its failure
    cases and confusion pairs and scores Grad-CAM against ``test_masks``; the background shortcut
    is what makes "confidently wrong for a known reason" measurable there.

    Each image (knobs in ``SYNTH``): one object of class ``SHAPES[k]`` -- disc, ring, square,
    diamond, triangle, plus, x, star, bar, crescent; confusable pairs disc/ring, square/diamond,
    plus/x, x/star, crescent/bar -- of radius ~ U(8, 14) px, centred anywhere that keeps 60% of the
    radius in frame, rotated freely (at most +-20 degrees for the orientation-named square, diamond,
    plus, x), in a random colour with channels ~ U(0.35, 1), a mild shading gradient and
    anti-aliased edges; on a background ``TEXTURES[t]`` -- horizontal, vertical or diagonal
    stripes, checker, linear gradient, concentric rings, blobs, dots, camouflage noise, plain -- of
    period ~ U(3, 9) px, mixing a colour with channels ~ U(0, 0.7) and a second one at most 0.4
    per channel away. 20% of images are inverted (dark object, light background); an object closer
    than 0.4 (RGB distance) to the background's mean colour is recoloured. With probability 0.2 a
    grey bar 1-4 px wide crosses the image in front of the object. Gaussian pixel noise of std
    ~ U(0.01, 0.08) per image.

    The shortcut: in the train split, a fraction ``shortcut`` of each class's images use texture
    t = k and a background tinted 60% towards class k's colour (``SYNTH["tint"]``, ``_TINTS``), the
    rest a uniformly random texture and no tint; in the test split backgrounds are always random. A
    model that learns the backgrounds is right on train and confidently wrong on test. Measured
    with a 3-conv CNN (Adam, 5 epochs, 5k train images, no augmentation): see data/README.md.

    Labels are balanced: class k gets ``n // 10`` images, plus one for the first ``n % 10`` classes,
    in shuffled order. ``*_masks`` are True on the object's visible pixels (coverage > 1/2, minus
    what the occluding bar hides). Train and test draw from separate streams of ``seed``, so the test
    split does not depend on ``n_train``. ~3 s for the default 60k images on one CPU core.
    """
    if not 0.0 <= shortcut <= 1.0:
        raise ValueError(f"shortcut is a fraction in [0, 1], got {shortcut}")
    n_train, n_test = as_count("n_train", n_train), as_count("n_test", n_test)
    with _one_thread():
        train_images, train_labels, train_masks = _synth_split(n_train, seed, 0, shortcut)
        test_images, test_labels, test_masks = _synth_split(n_test, seed, 1, 0.0)
    return Dataset("synthetic", list(SHAPES), train_images, train_labels, test_images, test_labels,
                   train_masks, test_masks)


@contextmanager
def _one_thread():
    """Run torch single-threaded inside: the generator's ops are small (one 512-image chunk), and on a
    busy 2-core machine intra-op threads made 60k images take 3-30 s instead of a steady 2.8 s. It
    also keeps results independent of the machine's thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _synth_split(n: int, seed: int, stream: int, shortcut: float) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(int(seed) * 2 + stream)
    k = len(SHAPES)
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
    # All per-image parameters are drawn up front, in a fixed order, so chunking cannot change them.
    u = lambda *shape: torch.rand(n, *shape, generator=g)  # noqa: E731
    cue = u() < shortcut  # this image carries its class's background cue (texture and tint)
    texture = torch.where(cue, labels, torch.randint(0, k, (n,), generator=g))
    p = {
        "cue": cue,
        "radius": SYNTH["radius"][0] + (SYNTH["radius"][1] - SYNTH["radius"][0]) * u(),
        "centre": u(2),
        "angle": u(),
        "shape_extra": u(),
        "colour": u(3),
        "polarity": u(),
        "shade": u(),
        "bg_colours": u(2, 3),
        "period": SYNTH["period"][0] + (SYNTH["period"][1] - SYNTH["period"][0]) * u(),
        "bg_angle": u(),
        "bg_phase": u(2),
        "bg_soft": u(),
        "blobs": u(5, 4),
        "camo": u(1, 5, 5),
        "occluder": u(6),
        "noise": SYNTH["noise"][0] + (SYNTH["noise"][1] - SYNTH["noise"][0]) * u(),
    }
    images = torch.empty(n, 3, SIZE, SIZE, dtype=torch.uint8)
    masks = torch.empty(n, SIZE, SIZE, dtype=torch.bool)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        chunk = {key: value[sl] for key, value in p.items()}
        noise = torch.randn(sl.stop - sl.start, 3, SIZE, SIZE, generator=g)
        img, mask = _render(labels[sl], texture[sl], chunk, noise)
        images[sl], masks[sl] = img, mask
    return images, labels, masks


def _grid(b: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates, B,32,32 each (x to the right, y down)."""
    r = torch.arange(SIZE, dtype=torch.float32) + 0.5
    y, x = torch.meshgrid(r, r, indexing="ij")
    return x.expand(b, SIZE, SIZE), y.expand(b, SIZE, SIZE)


def _rot(x: Tensor, y: Tensor, angle: Tensor) -> tuple[Tensor, Tensor]:
    c, s = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
    return c * x + s * y, -s * x + c * y


def _shape_sdf(shape: str, u: Tensor, v: Tensor, extra: Tensor) -> Tensor:
    """Signed distance (negative inside) in object units (radius 1), roughly Euclidean near edges."""
    r = torch.sqrt(u * u + v * v)
    e = extra.view(-1, 1, 1)
    if shape == "disc":
        return r - 0.95
    if shape == "ring":
        width = 0.2 + 0.12 * e  # ring thickness varies: thin rings are the hard ones
        return (r - (1.0 - width)).abs() - width
    if shape == "square":
        return torch.maximum(u.abs(), v.abs()) - 0.72
    if shape == "diamond":
        return (u.abs() + v.abs()) * (0.5 ** 0.5) - 0.72
    if shape == "triangle":
        d = torch.stack([u * math.cos(a) + v * math.sin(a) for a in (math.pi / 2, math.pi * 7 / 6, math.pi * 11 / 6)])
        return d.amax(0) - 0.5
    if shape in ("plus", "x"):
        if shape == "x":
            u, v = (u + v) * 0.5 ** 0.5, (v - u) * 0.5 ** 0.5
        half = 0.22 + 0.08 * e
        arm_h = torch.maximum(u.abs() - 1.0, v.abs() - half)
        arm_v = torch.maximum(u.abs() - half, v.abs() - 1.0)
        return torch.minimum(arm_h, arm_v)
    if shape == "star":
        theta = torch.atan2(v, u)
        a = torch.remainder(theta * 5 / (2 * math.pi), 1.0)
        tip = (a - 0.5).abs() * 2  # 1 at a point, 0 between points
        return (r - (0.42 + 0.58 * tip)) * 0.6  # 0.6: the polar edge is slanted, keep AA widths sane
    if shape == "bar":
        return torch.maximum(u.abs() - 1.0, v.abs() - (0.22 + 0.1 * e))
    if shape == "crescent":
        bite = torch.sqrt((u - 0.45 - 0.15 * e) ** 2 + v * v)
        return torch.maximum(r - 0.95, 0.8 - bite)
    raise AssertionError(shape)


def _texture(name: str, x: Tensor, y: Tensor, p: dict) -> Tensor:
    """Texture value in [0, 1], B,32,32; mixed between the two background colours afterwards."""
    b = x.shape[0]
    period = p["period"].view(-1, 1, 1)
    phase = p["bg_phase"][:, 0].view(-1, 1, 1) * 2 * math.pi
    soft = (1.0 + 7.0 * p["bg_soft"]).view(-1, 1, 1)  # from sinusoid-like to hard-edged
    jitter = (p["bg_angle"] - 0.5) * math.radians(20)  # stripes are not perfectly axis-aligned

    def wave(s: Tensor) -> Tensor:
        return torch.sigmoid(soft * torch.sin(2 * math.pi * s / period + phase))

    if name == "hstripes":
        return wave(_rot(x, y, jitter)[1])
    if name == "vstripes":
        return wave(_rot(x, y, jitter)[0])
    if name == "diagonal":
        sign = torch.where(p["bg_phase"][:, 1] < 0.5, 1.0, -1.0)
        return wave(_rot(x, y, sign * (math.pi / 4 + jitter))[0])
    if name == "checker":
        xr, yr = _rot(x, y, jitter)
        s = torch.sin(2 * math.pi * xr / period + phase) * torch.sin(2 * math.pi * yr / period)
        return torch.sigmoid(soft * 2 * s)
    if name == "gradient":
        a = p["bg_angle"] * 2 * math.pi
        xr, _ = _rot(x - SIZE / 2, y - SIZE / 2, a)
        return (xr / SIZE + 0.5).clamp(0, 1)
    if name == "rings":
        cx = (p["bg_phase"][:, 1].view(-1, 1, 1) - 0.5) * 2 * SIZE + SIZE / 2
        cy = (p["bg_angle"].view(-1, 1, 1) - 0.5) * 2 * SIZE + SIZE / 2
        return wave(torch.sqrt((x - cx) ** 2 + (y - cy) ** 2))
    if name == "blobs":
        bl = p["blobs"]  # B,5,4: x, y, size, sign
        dx = x.unsqueeze(1) - bl[:, :, 0, None, None] * SIZE
        dy = y.unsqueeze(1) - bl[:, :, 1, None, None] * SIZE
        sigma = (2.0 + 0.6 * period.unsqueeze(1)) * (0.6 + 0.8 * bl[:, :, 2, None, None])
        sign = torch.sign(bl[:, :, 3, None, None] - 0.4)  # mostly bumps, some dips
        field = (torch.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma)) * sign).sum(1)
        return torch.sigmoid(soft * 0.5 * (field - 0.3) * 3)
    if name == "dots":
        xr, yr = _rot(x, y, jitter)
        s = torch.cos(2 * math.pi * xr / period + phase) + torch.cos(2 * math.pi * yr / period)
        return torch.sigmoid((2.0 + soft) * (s - 1.0))
    if name == "camo":
        low = F.interpolate(p["camo"], size=(SIZE, SIZE), mode="bicubic", align_corners=False)[:, 0]
        return torch.sigmoid(soft * 1.5 * (low - 0.5) * 4)
    if name == "plain":
        return torch.zeros(b, SIZE, SIZE)
    raise AssertionError(name)


def _render(labels: Tensor, texture: Tensor, p: dict, noise: Tensor) -> tuple[Tensor, Tensor]:
    """Draw one chunk: background texture, object (anti-aliased), occluder, noise -> uint8, masks."""
    b = labels.shape[0]
    x, y = _grid(b)
    bg, bg_mean, invert = _background(labels, texture, p, x, y)
    colour = _object_colour(p, bg_mean, invert)
    alpha, shade = _object(labels, p, x, y)
    obj = (colour[:, :, None, None] * shade[:, None]).clamp_(0, 1)
    img = bg.lerp_(obj, alpha[:, None].expand(b, 3, SIZE, SIZE))
    occ = _occlude(img, p["occluder"], x, y)
    img.add_(noise.mul_(p["noise"].view(-1, 1, 1, 1)))
    mask = (alpha > 0.5) & (occ < 0.5)
    return img.mul_(255).round_().clamp_(0, 255).to(torch.uint8), mask


def _background(labels: Tensor, texture: Tensor, p: dict, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Background images B,3,32,32, their mean colours B,3 and the inverted-polarity flags B,1."""
    b = labels.shape[0]
    # Texture value t in [0,1] mixes a random colour c0 with a nearby c1, so textures are visible
    # but quieter than the object.
    t = torch.empty(b, SIZE, SIZE)
    for i, name in enumerate(TEXTURES):
        sel = (texture == i).nonzero().squeeze(1)
        if sel.numel():
            t[sel] = _texture(name, x[sel], y[sel], {key: v[sel] for key, v in p.items()})
    # Colours: backgrounds darker than objects on the whole, with an overlap band; a fraction
    # dark_p of images is inverted (dark object on a light background).
    lo, hi = SYNTH["background_value"]
    c0 = lo + (hi - lo) * p["bg_colours"][:, 0]
    # The shortcut also tints the background towards a class colour, as CIFAR's skies and lawns
    # do: an easy early cue that plain SGD latches on to, and a wrong one on the test split.
    cue = p["cue"].view(-1, 1)
    c0 = torch.where(cue, torch.lerp(c0, _TINTS[labels], SYNTH["tint"]), c0)
    c1 = (c0 + (p["bg_colours"][:, 1] - 0.5) * 2 * SYNTH["texture_contrast"]).clamp(0, 1)
    invert = (p["polarity"] < SYNTH["dark_p"]).view(-1, 1)
    c0, c1 = (torch.where(invert, 1.0 - c, c) for c in (c0, c1))
    bg = torch.lerp(c0[:, :, None, None].expand(b, 3, SIZE, SIZE), c1[:, :, None, None].expand(b, 3, SIZE, SIZE),
                    t[:, None].expand(b, 3, SIZE, SIZE))
    return bg, c0 + (c1 - c0) * t.mean(dim=(1, 2)).unsqueeze(1), invert


def _object_colour(p: dict, bg_mean: Tensor, invert: Tensor) -> Tensor:
    """Object colours B,3: random, but moved half-way round the colour cube (0.87 away) when closer
    than min_contrast to the background's mean colour. Colour stays uninformative about the class."""
    lo, hi = SYNTH["object_value"]
    colour = lo + (hi - lo) * p["colour"]
    colour = torch.where(invert, 1.0 - colour, colour)
    close = (colour - bg_mean).norm(dim=1, keepdim=True) < SYNTH["min_contrast"]
    return torch.where(close, (bg_mean + 0.5).remainder(1.0), colour)


def _object(labels: Tensor, p: dict, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The object's coverage (alpha, a 1-pixel anti-aliased edge) and its shading, B,32,32 each."""
    b = labels.shape[0]
    # Local coordinates in object units, then the class's signed distance -> coverage.
    radius = p["radius"].view(-1, 1, 1)
    margin = 0.6 * p["radius"]  # the centre keeps 60% of the radius inside the frame
    cx = (margin + (SIZE - 2 * margin) * p["centre"][:, 0]).view(-1, 1, 1)
    cy = (margin + (SIZE - 2 * margin) * p["centre"][:, 1]).view(-1, 1, 1)
    tilt = math.radians(SYNTH["tilt"])
    angle = torch.where(_ORIENTED_MASK[labels], (p["angle"] - 0.5) * 2 * tilt, p["angle"] * 2 * math.pi)
    u, v = _rot((x - cx) / radius, (y - cy) / radius, angle)
    sdf = torch.empty(b, SIZE, SIZE)
    for i, name in enumerate(SHAPES):
        sel = (labels == i).nonzero().squeeze(1)
        if sel.numel():
            sdf[sel] = _shape_sdf(name, u[sel], v[sel], p["shape_extra"][sel])
    alpha = sdf.mul_(-radius).add_(0.5).clamp_(0, 1)  # distance in pixels -> a 1-pixel AA edge
    # Mild shading across the object (lit from one side), so it is not a flat sticker.
    shade = u.mul_((p["shade"] - 0.5).view(-1, 1, 1) * SYNTH["shading"]).add_(1.0)
    return alpha, shade


def _occlude(img: Tensor, oc: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Draw a bar across the whole image in a random grey, in front of the object, into ``img``
    (for the images whose draw says so); returns the bar's coverage B,32,32."""
    on = (oc[:, 0] < SYNTH["occluder_p"]).nonzero().squeeze(1)
    occ = torch.zeros(img.shape[0], SIZE, SIZE)
    if on.numel():
        ox, oy = oc[on, 1].view(-1, 1, 1) * SIZE, oc[on, 2].view(-1, 1, 1) * SIZE  # a point on the bar
        ou, _ = _rot(x[on] - ox, y[on] - oy, oc[on, 3] * math.pi)
        half = (0.6 + 1.2 * oc[on, 4]).view(-1, 1, 1)  # half-width 0.6..1.8 px
        occ[on] = (half - ou.abs() + 0.5).clamp(0, 1)
        grey = oc[on, 5].view(-1, 1, 1, 1).expand(-1, 3, SIZE, SIZE)
        img[on] = img[on].lerp_(grey, occ[on, None].expand(-1, 3, SIZE, SIZE))
    return occ
