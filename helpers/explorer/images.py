"""Any test image through both models (01, 02, 05): what the explorer computes, draws and controls.

**One image's view**: each model's five most probable classes (from the notebook's Predictions),
its Grad-CAM for its own answer and for the true class (:func:`helpers.cam.compute_cams`) and each
map's ROAD score beside a random map's of the same values (:func:`helpers.cam.faithfulness`), in
points of probability. ROAD runs at two percentiles, :data:`PERCENTILES`, not the notebooks' four:
its imputation is nearly all of a view's cost, and two keep a view under a second on a 2-core CPU
(``benchmarks/explorer.py`` times it); the panel says which. One torch thread: a view works on one or
two images (:func:`helpers.device.torch_threads`). Nothing is trained.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython import display as ipython_display  # display() looked up at each call: tests replace it

from .. import cam, page
from .. import evaluate as ev
from ..device import torch_threads
from ..plots import to_hwc
from .frontend import NoteBundle, live, png_bytes

PERCENTILES = (20, 80)         # ROAD's percentiles in the explorer (the notebooks' tables: 20, 40, 60, 80)
ALL = "all test images"
NOTE = ("A static view of a few images: the live explorer is in the notebook. Open it in JupyterLab (make lab) "
        "and run it to pick any test image by index, by class or from these lists, and step through them.")
CACHE = 256                    # views kept per explorer (a view with its PNG is about 80 KB)


@dataclass
class View:
    """What the explorer shows for one test image (01, 02, 05): per model (by its label) the five most
    probable classes with their probabilities, the answer, and per map kind ("answer", "true class")
    the Grad-CAM map and its ROAD score and a random map's, in points of probability."""

    index: int
    label: int
    top5: dict[str, list[tuple[int, float]]]
    pred: dict[str, int]
    maps: dict[tuple[str, str], np.ndarray]
    road: dict[tuple[str, str], tuple[float, float]]
    percentiles: tuple = PERCENTILES          # ROAD's
    seconds: float = 0.0                      # to compute it (maps and scores), the first time
    png: bytes | None = field(default=None, repr=False)


class Explorer:
    """Two trained models, their predictions on the test images, and named lists of test indices
    (01, 02, 05); computes and caches one image's :class:`View` on demand. ``nets``, ``preds``: two
    models each, by label, same order; ``lists``: name -> indices (:func:`default_lists`); ``reasons``:
    name -> why an image is in that list (the status line); ``threads``: torch threads of a view
    (:func:`helpers.device.torch_threads`)."""

    def __init__(self, nets: dict, preds: dict, images, classes, lists: dict, reasons: dict | None = None,
                 percentiles=PERCENTILES, threads: int = 1):
        if len(nets) != 2 or list(nets) != list(preds):
            raise ValueError(f"need two models with predictions under the same labels, got {list(nets)} "
                             f"and {list(preds)}")
        self.nets, self.preds, self.images, self.classes = nets, preds, torch.as_tensor(images), list(classes)
        self.labels = next(iter(preds.values()))._labels()
        self.n, self.percentiles, self.reasons = len(self.labels), tuple(percentiles), reasons or {}
        self.threads = threads
        if any(len(p) != self.n for p in preds.values()) or len(self.images) != self.n:
            raise ValueError(f"images and predictions must cover the same test images: {len(self.images)} images, "
                             f"predictions of {[len(p) for p in preds.values()]}")
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, not {threads!r}")
        self.lists = {k: self._checked(k, v) for k, v in lists.items() if k != ALL} | {ALL: np.arange(self.n)}
        self.cache: OrderedDict[int, View] = OrderedDict()

    def _checked(self, name, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).ravel()
        if len(idx) and not 0 <= idx.min() <= idx.max() < self.n:
            raise ValueError(f"list {name!r} has test indices outside 0..{self.n - 1}")
        return idx

    def check(self, index) -> int:
        """``index`` as an int, or an error naming the valid range."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < self.n:
            raise IndexError(f"test index {index!r} is out of range: pick 0..{self.n - 1}")
        return int(index)

    def view(self, index) -> View:
        """The :class:`View` of test image ``index``: computed once, then from the cache."""
        index = self.check(index)
        if index in self.cache:
            self.cache.move_to_end(index)
            return self.cache[index]
        start = time.perf_counter()
        label = int(self.labels[index])
        top5, pred, maps, road = {}, {}, {}, {}
        for name, net in self.nets.items():
            probs = self.preds[name].probs[index]
            top5[name] = [(int(c), float(probs[c])) for c in np.argsort(-probs, kind="stable")[:5]]
            pred[name] = int(self.preds[name].pred[index])
            with torch_threads(self.threads):
                maps_, road_ = self._maps(net, index, [pred[name], label])
            maps |= {(name, kind): m for kind, m in zip(("answer", "true class"), maps_)}
            road |= {(name, kind): r for kind, r in zip(("answer", "true class"), road_)}
        view = View(index, label, top5, pred, maps, road, self.percentiles, time.perf_counter() - start)
        self.cache[index] = view
        if len(self.cache) > CACHE:
            self.cache.popitem(last=False)
        return view

    def _maps(self, net, index: int, targets: list[int]):
        """Grad-CAM and ROAD (and a random map's) of one image for each distinct target class."""
        distinct = list(dict.fromkeys(targets))
        x = self.images[[index] * len(distinct)]
        cams = cam.compute_cams(net, x, targets=distinct)
        faith = cam.faithfulness(net, x, cams, distinct, percentiles=self.percentiles)
        by = {t: (cams[i], (100 * faith["road"].iloc[i], 100 * faith["road_random"].iloc[i]))
              for i, t in enumerate(distinct)}
        return [by[t][0] for t in targets], [by[t][1] for t in targets]

    def figure(self, index) -> plt.Figure:
        """The panel of test image ``index`` (:func:`view_figure`), for a report or a widget."""
        return view_figure(self.view(index), self.images[index], self.classes)

    def png(self, index) -> bytes:
        """The panel as PNG bytes at screen resolution (cached with the view): what the widget shows."""
        view = self.view(index)
        if view.png is None:
            view.png = png_bytes(self.figure(index))
        return view.png

    def members(self, index) -> list[str]:
        """The lists (other than all test images) that hold test image ``index``."""
        return [k for k, v in self.lists.items() if k != ALL and index in v]

    def describe(self, index) -> str:
        """One line about test image ``index``: its true class and each model's answer."""
        label = int(self.labels[index])
        answers = [f"{name} says {self.classes[int(p.pred[index])]} ({p.conf[index]:.0%}, "
                   f"{'right' if p.pred[index] == label else 'wrong'})" for name, p in self.preds.items()]
        return f"test image #{index}, true class {self.classes[label]}: " + "; ".join(answers)


def default_lists(preds: dict, classes) -> tuple[dict, dict]:
    """The explorer's lists from two models' Predictions (A, then B, by label), and why an image is
    in each (01, 02, 05): each model's failures, most confident first (:func:`helpers.evaluate.failures`),
    the images B rescued and broke (:func:`helpers.evaluate.rescued`, :func:`~helpers.evaluate.broken`)."""
    (a, pa), (b, pb) = preds.items()
    lists = {f"{a}: failures": ev.failures(pa, classes)["index"].to_numpy(),
             f"{b}: failures": ev.failures(pb, classes)["index"].to_numpy(),
             f"rescued by {b}": ev.rescued(pa, pb), f"broken by {b}": ev.broken(pa, pb)}
    reasons = {f"{a}: failures": f"{a} is wrong; most confident mistakes first",
               f"{b}: failures": f"{b} is wrong; most confident mistakes first",
               f"rescued by {b}": f"{a} is wrong, {b} is right", f"broken by {b}": f"{a} is right, {b} is wrong"}
    return lists, reasons


def view_figure(view: View, image, classes) -> plt.Figure:
    """One test image through both models (01, 02, 05): the image; per model (a row) its five most
    probable classes (the true one green, a wrong answer red), its Grad-CAM for its own answer and for
    the true class over the image, each with its ROAD score and a random map's. Fixed margins, no
    tight bounding box: saving it takes half the time."""
    fig = plt.figure(figsize=(10.5, 4.8))
    grid = fig.add_gridspec(2, 4, width_ratios=[1.15, 1.5, 1, 1], wspace=0.5, hspace=0.6, left=0.02, right=0.98,
                            top=0.9, bottom=0.16)
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(to_hwc(np.asarray(image)), interpolation="nearest")
    ax.set_title(f"test image #{view.index}\ntrue class: {classes[view.label]}", fontsize=9.5)
    ax.axis("off")
    for row, name in enumerate(view.top5):
        _bars(fig.add_subplot(grid[row, 1]), view, name, classes)
        for col, kind in enumerate(("answer", "true class"), start=2):
            _map(fig.add_subplot(grid[row, col]), view, name, kind, image, classes)
    at = " and ".join(f"{p}th" for p in view.percentiles)
    fig.text(0.5, 0.015, f"Bars: the five most probable classes, the true one green, a wrong answer red. ROAD: how "
             f"much more the class's probability falls (points) when the pixels the map ranks highest are removed "
             f"than when the lowest are, at the {at} percentiles; random: a map of the same values in random "
             "places.", ha="center", va="bottom", fontsize=7.5, wrap=True)
    return fig


def _bars(ax, view: View, name: str, classes) -> None:
    """One model's five most probable classes as bars, for :func:`view_figure` (01, 02, 05)."""
    top = view.top5[name][::-1]
    colours = ["#2e7d32" if c == view.label else ("#c62828" if c == view.pred[name] else "#9e9e9e") for c, _ in top]
    bars = ax.barh([classes[c] for c, _ in top], [100 * p for _, p in top], color=colours)
    ax.bar_label(bars, [f"{100 * p:.0f}%" for _, p in top], padding=2, fontsize=7)
    ax.set_xlim(0, 115)
    ax.set_xticks([0, 50, 100])
    ax.set_xlabel("probability (%)", fontsize=8)
    ax.tick_params(labelsize=7.5)
    verdict = "right" if view.pred[name] == view.label else "wrong"
    ax.set_title(f"{name} says {classes[view.pred[name]]} ({verdict})", fontsize=9)


def _map(ax, view: View, name: str, kind: str, image, classes) -> None:
    """One model's Grad-CAM over the image with its ROAD scores, for :func:`view_figure` (01, 02, 05)."""
    heat = view.maps[(name, kind)]
    ax.imshow(cam.overlay(np.asarray(image)[None], heat[None])[0])
    ax.axis("off")
    target = view.pred[name] if kind == "answer" else view.label
    same = " (= its answer)" if kind == "true class" and target == view.pred[name] else ""
    road, rand = view.road[(name, kind)]
    ax.set_title(f"for {'its answer' if kind == 'answer' else 'the true class'}: {classes[target]}{same}\n"
                 f"ROAD {road:+.1f} (random {rand:+.1f})", fontsize=7.5)


class ExplorerWidget(NoteBundle, W.VBox):
    """The live explorer (01, 02, 05): pick a test image by ``index``, narrow a ``source`` list (or all
    test images) to one ``klass``, step with ``prev`` / ``next``; ``status`` says which image it is,
    where it is in the list and why it is there; ``image`` shows :meth:`Explorer.png`."""

    def __init__(self, explorer: Explorer, source: str | None = None):
        self.explorer, self.order, self.position = explorer, np.arange(0), None
        self.source = W.Dropdown(options=list(explorer.lists), description="list")
        self.klass = W.Dropdown(options=["any", *explorer.classes], description="class")
        self.index = W.BoundedIntText(min=0, max=explorer.n - 1, description="test index")
        self.prev, self.next = W.Button(description="◀ previous"), W.Button(description="next ▶")
        self.status, self.image = W.HTML(), W.Image(format="png")
        super().__init__([W.HBox([self.source, self.klass]), W.HBox([self.index, self.prev, self.next]),
                          self.status, self.image])
        self.source.observe(lambda _: self.narrow(), "value")
        self.klass.observe(lambda _: self.narrow(), "value")
        self.index.observe(lambda change: self.show(change["new"]), "value")
        self.prev.on_click(lambda _: self.step(-1))
        self.next.on_click(lambda _: self.step(1))
        self.pick(source or next((k for k in explorer.lists if k != ALL and len(explorer.lists[k])), ALL))

    def pick(self, source: str) -> None:
        """Show the first image of the list ``source`` (a name of ``explorer.lists``)."""
        if source not in self.explorer.lists:
            raise ValueError(f"unknown list {source!r}; the lists: {', '.join(self.explorer.lists)}")
        if self.source.value == source:
            self.narrow()
        self.source.value = source

    def narrow(self) -> None:
        """The list shown, cut to the chosen class, from its first image."""
        idx = self.explorer.lists[self.source.value]
        chosen = self.klass.value
        self.order = idx if chosen == "any" else idx[self.explorer.labels[idx] == self.explorer.classes.index(chosen)]
        self.prev.disabled = self.next.disabled = len(self.order) < 2
        if len(self.order):
            self.go(0)
        else:
            self.status.value = page.esc(f"No test image of class {chosen} in “{self.source.value}”.")

    def go(self, position: int) -> None:
        """Show the image at ``position`` of the narrowed list (wrapping around)."""
        self.position = position % len(self.order)
        target = int(self.order[self.position])
        if self.index.value == target:
            self.show(target)
        self.index.value = target

    def step(self, by: int) -> None:
        """Previous (-1) or next (+1) image of the narrowed list; from an image outside it: its first."""
        if len(self.order):
            self.go(0 if self.position is None else self.position + by)

    def show(self, index: int) -> None:
        """Draw test image ``index`` and say where it stands."""
        hits = np.flatnonzero(self.order == index)
        if self.position is None or not len(hits) or self.order[self.position] != index:
            self.position = int(hits[0]) if len(hits) else None
        self.image.value = self.explorer.png(index)
        self.status.value = self.status_line(index)

    def status_line(self, index: int) -> str:
        """The status line's HTML: the image, its place in the list and why it is there, its other lists."""
        ex, name = self.explorer, self.source.value
        where = (f"{self.position + 1} of {len(self.order)} in “{name}”" if self.position is not None
                 else f"not in “{name}”")
        where += "" if self.klass.value == "any" else f" (class {self.klass.value})"
        why = ex.reasons.get(name, "")
        other = [k for k in ex.members(index) if k != name]
        text = f"{ex.describe(index)}. {where}" + (f": {why}" if why and self.position is not None else "")
        text += f". Also in: {', '.join(other)}." if other else "."
        return f"<span style='font-size:.95em'>{page.esc(text)}</span>"


def static_panel(explorer: Explorer, figs: page.Figures, k: int = 3) -> list[int]:
    """The report's stand-in for the explorer (01, 02, 05): :data:`NOTE`, then the panel of the first image
    of each list (up to ``k`` different images) as numbered figures with captions. Returns the images
    shown."""
    shown, where = [], {}
    for name, idx in explorer.lists.items():
        if name != ALL and len(idx) and int(idx[0]) not in shown and len(shown) < k:
            shown.append(int(idx[0]))
            where[int(idx[0])] = name
    ipython_display.display(page.banner(NOTE))
    for i in shown:
        figs.show(explorer.figure(i), f"explorer_{i}", f"The explorer's view of the first image of “{where[i]}”, "
                  f"{explorer.describe(i)}: each model's five most probable classes, its Grad-CAM for its answer and "
                  "for the true class, and their ROAD scores.")
    return shown


def compare(S, runs: dict, preds: dict, data, figs: page.Figures, lists: dict | None = None,
            static: int = 3) -> None:
    """Notebooks 01, 02, 05: the explorer over the headline's two models (first seed, the checkpoint the
    notebook predicted with). ``lists``: the notebook's own lists of test indices, shown first, before
    :func:`default_lists`. Live (:func:`live`): displays an :class:`ExplorerWidget`; else
    :func:`static_panel` of up to ``static`` images."""
    h = S.study.headline
    p0 = {h.label_a: preds[h.a][0], h.label_b: preds[h.b][0]}
    defaults, reasons = default_lists(p0, data.classes)
    explorer = Explorer({h.label_a: runs[h.a][0], h.label_b: runs[h.b][0]}, p0, data.test_images, data.classes,
                        {**(lists or {}), **defaults}, reasons)
    if live():
        ipython_display.display(ExplorerWidget(explorer))
    else:
        static_panel(explorer, figs, static)
