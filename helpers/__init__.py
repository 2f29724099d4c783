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

__version__ = "0.1.0"
