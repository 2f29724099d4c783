"""helpers: the library behind the CIFAR CNN study notebooks.

One small module per concept and one module per study; the notebooks in ``notebooks/`` call these
functions and hold only the story and the figures. Read roughly in this order:

- ``data``        data sources (synthetic, CIFAR-10/100, image folders), the "auto" choice, the train/val split
- ``loader``      a batched, on-device augmentation loader (no DataLoader workers)
- ``models``      the four model families of the reference reports; FLOPs, a layer table, eval mode
- ``cutmix``      CutMix for a training batch
- ``config``      ``TrainConfig``: a training run's settings, checked before any work
- ``device``      device choice, seeds and RNG state, mixed precision, the run's environment record
- ``store``       atomic writes, checksums, damaged files moved aside; the run folder and its lock
- ``records``     per-layer gradient and weight-update records of a training run (04)
- ``train``       ``fit``: the training engine with its run cache; a ``Run`` carries its normalisation
- ``evaluate``    predictions, accuracy tables, failure cases, model-vs-model changes
- ``evidence``    paired comparisons with intervals and p-values, seeds, verdicts against the reports
- ``confidence``  confident errors, calibration, risk-coverage (02)
- ``cam``         Grad-CAM through pytorch-grad-cam, map spread and faithfulness scores
- ``plots``       the notebooks' shared figures
- ``explorer``    any test image through both models, a layer's records at an epoch: ipywidgets in
                  JupyterLab, a static panel in a report (01, 02, 04, 05)
- ``page``        what a notebook displays for its report: title block, summary and verdict boxes,
                  banners, tables that fit the page, numbered figures; its metrics file
- ``studies``     one module per study (settings, runs, headline, what its report states, its own
                  tables and figures) over ``studies.base``; the registry everything else reads
- ``profiles``    a study's smoke / quick / full ``Settings``, its runs and seeds
- ``protocol``    the protocol card: each setting against the reference report's
- ``study``       what every notebook does: begin, train, predict, the verdict against the report
- ``parallel``    training several notebooks' runs first: in this process, worker processes or Ray tasks
- ``export``      the report (HTML / PDF without code), the notebook with code, the jupytext pairing
- ``index``       the index page of a profile's reports
- ``kernel``      the runner's kernel: this environment's Python, its own output kept in a log
- ``progress``    what the runner prints: progress per cell, a failing cell, the closing summary table
- ``screenshots`` pictures of the index and a report page for the README
- ``runner``      the headless runner (``python -m helpers.runner``)
"""

import os
from pathlib import Path

__version__ = "0.1.0"

# Downloads, caches and trained runs live in the project's data/ folder whatever the working
# directory (papermill runs notebooks inside notebooks/); HELPERS_DATA moves it elsewhere.
DATA_DIR = Path(os.environ.get("HELPERS_DATA", Path(__file__).resolve().parents[1] / "data"))
if DATA_DIR.exists() and not DATA_DIR.is_dir():  # else the first write fails with a bare "Not a directory"
    raise NotADirectoryError(f"HELPERS_DATA={str(DATA_DIR)!r} names a file, not a folder: set it to a folder "
                             "(created when first needed) or unset it to use the project's data/"
                             if "HELPERS_DATA" in os.environ else f"{DATA_DIR} is a file, not the data folder: move it")
