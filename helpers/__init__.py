"""helpers: the library behind the CIFAR CNN study notebooks.

One small module per concept; the notebooks in ``notebooks/`` call these functions and hold only
the story and the figures. Read roughly in this order:

- ``data``        data sources (synthetic, CIFAR-10/100, image folders), "auto" choice, the train/val split
- ``loader``      a batched, on-device augmentation loader (no DataLoader workers)
- ``models``      the four model families of the reference reports; a layer table and memory estimate
- ``cutmix``      CutMix for a training batch
- ``config``      ``TrainConfig``: a training run's settings, checked before any work
- ``device``      device choice, seeds and RNG state, mixed precision, the run's environment record
- ``store``       atomic writes, checksums, damaged files moved aside; the run folder and its lock
- ``train``       ``fit``: the training engine with its run cache
- ``profiles``    smoke / quick / full settings for each study, its training runs and seeds
- ``protocol``    the protocol card: each setting against the reference report's
- ``evaluate``    predictions, accuracy tables, failure cases, model-vs-model changes, calibration
- ``evidence``    paired comparisons with intervals and p-values, seeds, verdicts against the reports
- ``cam``         Grad-CAM through pytorch-grad-cam, map spread and faithfulness scores
- ``stress``      notebook 01's Grad-CAM-on-the-object measurement
- ``instrument``  notebook 04's FLOPs, gradient and weight-update records, experiment logs
- ``plots``       the notebooks' figures
- ``page``        what a notebook displays for its report: title block, summary and verdict boxes,
                  banners, tables that fit the page, numbered figures; its metrics file
- ``export``      the report (HTML / PDF without code) and the notebook with code, via nbconvert
- ``index``       the index page of a profile's reports
- ``kernel``      the runner's kernel: this environment's Python, its own output kept in a log
- ``progress``    what the runner prints: progress per cell, the closing summary table
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
