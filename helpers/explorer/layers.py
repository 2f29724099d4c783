"""One layer's gradient and weight-update records at one epoch, for both runs (04).

The records are the engine's (``helpers.records``, ``Run.gradients`` and ``Run.updates``), read
once per run and averaged per layer and epoch (:func:`epoch_means`); nothing is trained.
"""

from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt
import pandas as pd
from IPython import display as ipython_display  # display() looked up at each call: tests replace it
from matplotlib.ticker import MaxNLocator, NullFormatter

from .. import page
from ..plots import PALETTE
from .frontend import NoteBundle, live, png_bytes

RECORDS_NOTE = ("A static view of one layer: the live explorer is in the notebook. Open it in JupyterLab (make lab) "
                "and run it to pick any layer and epoch.")
RECORD_COLUMNS = {"mean_abs": "mean |gradient|", "norm": "gradient norm", "relative_update": "relative update",
                  "weight_std": "weight std", "weight_max_abs": "largest |weight|"}


def epoch_means(run) -> pd.DataFrame:
    """A run's gradient and update records joined per layer and epoch, averaged over the epoch's
    records, with their count ``records`` (04)."""
    both = run.gradients.merge(run.updates, on=["step", "epoch", "layer"])
    grouped = both.groupby(["layer", "epoch"], sort=False)
    return grouped[list(RECORD_COLUMNS)].mean().join(grouped.size().rename("records"))


def layer_table(means: dict[str, pd.DataFrame], layer: str, epoch: int) -> pd.DataFrame:
    """One row per run (by label): ``layer``'s records at ``epoch`` (means of the epoch's records) (04)."""
    for name, m in means.items():
        if (layer, epoch) not in m.index:
            layers = list(dict.fromkeys(m.index.get_level_values(0)))
            epochs = sorted(set(m.index.get_level_values(1)))
            raise ValueError(f"{name} has no record of layer {layer!r} at epoch {epoch}; layers: "
                             f"{', '.join(layers)}; epochs: {epochs}")
    rows = {name: m.loc[(layer, epoch)] for name, m in means.items()}
    return pd.DataFrame(rows).T.rename(columns=RECORD_COLUMNS).astype({"records": int})


def layer_figure(means: dict[str, pd.DataFrame], layer: str, epoch: int) -> plt.Figure:
    """``layer``'s mean |gradient|, relative update and weight std per epoch for each run, ``epoch``
    marked (04)."""
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 2.8))
    for ax, column in zip(axes, ("mean_abs", "relative_update", "weight_std")):
        for colour, (name, m) in zip(PALETTE, means.items()):
            series = m.xs(layer, level="layer")[column]
            ax.plot(series.index, series.to_numpy(), marker="o", ms=3, color=colour, label=name)
            if epoch in series.index:
                ax.plot([epoch], [series.loc[epoch]], "o", ms=8, mfc="none", color=colour)
        ax.axvline(epoch, color="grey", ls="--", lw=1)
        ax.set(title=RECORD_COLUMNS[column], xlabel="epoch", yscale="log" if column != "weight_std" else "linear")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_minor_formatter(NullFormatter())  # a narrow log range labels every minor tick
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{layer}, epoch {epoch} marked", fontsize=10)
    fig.tight_layout()
    return fig


class RecordsWidget(NoteBundle, W.VBox):
    """Notebook 04's live view: ``layer`` (dropdown) and ``epoch`` (slider) pick what ``table`` (HTML) and
    ``image`` (the plot) show."""

    def __init__(self, means: dict[str, pd.DataFrame]):
        self.means = means
        first = next(iter(means.values()))
        epochs = sorted(set(first.index.get_level_values(1)))
        self.layer = W.Dropdown(options=list(dict.fromkeys(first.index.get_level_values(0))), description="layer")
        self.epoch = W.IntSlider(min=epochs[0], max=epochs[-1], value=epochs[-1], description="epoch")
        self.table, self.image = W.HTML(), W.Image(format="png")
        super().__init__([W.HBox([self.layer, self.epoch]), self.table, self.image])
        self.layer.observe(lambda _: self.show(), "value")
        self.epoch.observe(lambda _: self.show(), "value")
        self.show()

    def show(self) -> None:
        """Redraw the table and the plot for the chosen layer and epoch."""
        layer, epoch = self.layer.value, self.epoch.value
        self.table.value = page.table(layer_table(self.means, layer, epoch), f"{layer} at epoch {epoch}: means "
                                      "of the epoch's records", formats=page.number).html
        self.image.value = png_bytes(layer_figure(self.means, layer, epoch), tight=True)


def records(runs: dict[str, object], figs: page.Figures, layer: str | None = None) -> None:
    """Notebook 04: ``runs`` (label -> a Run with records). Live: a :class:`RecordsWidget`; else
    :data:`RECORDS_NOTE`, then the figure and table of ``layer`` (default: the first) at the last epoch."""
    means = {name: epoch_means(run) for name, run in runs.items()}
    if live():
        ipython_display.display(RecordsWidget(means))
        return
    ipython_display.display(page.banner(RECORDS_NOTE))
    first = next(iter(means.values()))
    layer = layer or first.index.get_level_values(0)[0]
    epoch = int(first.index.get_level_values(1).max())
    figs.show(layer_figure(means, layer, epoch), "records_explorer",
              f"The records explorer's view of layer {layer}: per epoch the mean of its records, epoch {epoch} marked.")
    figs.table(layer_table(means, layer, epoch), "records_explorer",
               f"Layer {layer} at epoch {epoch}: each run's records, means over the epoch.", formats=page.number)
