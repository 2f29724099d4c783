"""helpers: the library behind the CIFAR CNN study notebooks.

One small module per concept; the notebooks in ``notebooks/`` call these functions and hold only
the story and the figures.

- ``data``      data sources (synthetic, CIFAR-10/100, image folders) and the train/val split
- ``loader``    a batched, on-device augmentation loader (no DataLoader workers)
- ``models``    the four model families the reports use
- ``profiles``  smoke / quick / full settings for each study
- ``train``     ``fit``: the training engine with its run cache
- ``reports``   the headless runner (``python -m helpers.reports``)
"""

import os
from pathlib import Path

__version__ = "0.1.0"

# Downloads, caches and trained runs live in the project's data/ folder whatever the working
# directory (papermill runs notebooks inside notebooks/); HELPERS_DATA moves it elsewhere.
DATA_DIR = Path(os.environ.get("HELPERS_DATA", Path(__file__).resolve().parents[1] / "data"))
