"""Look at any test image through both models in JupyterLab (01, 02, 05), and at one layer's
gradient and update records at one epoch (04): ipywidgets over the runs the notebook loaded.

- :func:`compare` -- notebooks 01, 02, 05, one call after their predictions: the live explorer in
  JupyterLab, a static panel of a few images in a report (``images``)
- :class:`Explorer` -- what the explorer shows for one test image (:meth:`Explorer.view`, cached)
  and its panel figure (:meth:`Explorer.figure`, the same for the widget and the report)
- :class:`ExplorerWidget` -- the controls: test index, class, list, previous / next, a status line
- :func:`records` -- notebook 04: a layer dropdown and an epoch slider over both runs' records
  (``layers``: :func:`layer_table`, :func:`layer_figure`, :class:`RecordsWidget`)
- :func:`live` -- whether widgets can work here (``frontend``)

**Live or static.** In JupyterLab both calls display their widget. Where no frontend can draw one
(the runner's papermill kernels, which set ``HELPERS_HEADLESS=1``; plain Python) they show numbered
figures of a few chosen images, or of one layer, after a note that the notebook has the live
explorer. A widget displayed anyway carries a note as its text/plain, text/html and text/latex, and
the report export drops widget views (:func:`helpers.export.drop_widgets`): a report never shows
"VBox(children=...)" or an empty placeholder.
"""

from .frontend import HEADLESS, WIDGET_NOTE, NoteBundle, live, png_bytes
from .images import (ALL, NOTE, PERCENTILES, Explorer, ExplorerWidget, View, compare, default_lists, static_panel,
                     view_figure)
from .layers import RECORD_COLUMNS, RECORDS_NOTE, RecordsWidget, epoch_means, layer_figure, layer_table, records

__all__ = ["ALL", "HEADLESS", "NOTE", "PERCENTILES", "RECORDS_NOTE", "RECORD_COLUMNS", "WIDGET_NOTE", "Explorer",
           "ExplorerWidget", "NoteBundle", "RecordsWidget", "View", "compare", "default_lists", "epoch_means",
           "layer_figure", "layer_table", "live", "png_bytes", "records", "static_panel", "view_figure"]
