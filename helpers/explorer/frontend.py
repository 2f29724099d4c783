"""Where the explorer's widgets can work, and what a saved copy of one shows (01, 02, 04, 05).

Widgets need a frontend: papermill, the runner and nbconvert have none, and their saved output of a
widget is "VBox(children=...)" text or an empty placeholder. :func:`live` is False outside an
IPython kernel and wherever ``HELPERS_HEADLESS=1``, which the runner sets for its kernels
(:func:`helpers.kernel.kernel_env`); the explorers then show a static panel instead.
:class:`NoteBundle` makes a widget displayed anyway (papermill run by hand, a saved notebook) carry
:data:`WIDGET_NOTE` as its text/plain, text/html and text/latex, which the report export keeps
when it drops widget views (:func:`helpers.export.drop_widgets`).
"""

from __future__ import annotations

import io
import os

import matplotlib.pyplot as plt
from IPython import get_ipython

from .. import page

HEADLESS = "HELPERS_HEADLESS"  # "1" in the runner's kernels: no widget frontend
WIDGET_NOTE = ("An interactive explorer stands here when the notebook runs in JupyterLab (make lab); a saved or "
               "exported copy cannot show it.")


def live() -> bool:
    """True where widgets can be shown: inside an IPython kernel that is not one of the runner's
    (``HELPERS_HEADLESS`` unset) (01, 02, 04, 05)."""
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None and os.environ.get(HEADLESS) != "1"


def png_bytes(fig: plt.Figure, tight: bool = False) -> bytes:
    """A figure as PNG bytes at screen resolution, closed (what a widget's Image shows) (01, 02, 04, 05)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=page.SCREEN_DPI, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return buf.getvalue()


class NoteBundle:
    """Mixin: a widget whose saved output, where no widget frontend draws it, is :data:`WIDGET_NOTE`."""

    def _repr_mimebundle_(self, **kwargs):
        data = dict(super()._repr_mimebundle_(**kwargs) or {})
        note = page.banner(WIDGET_NOTE)
        return {**data, "text/plain": note.plain, "text/html": note.html, "text/latex": note.latex}
