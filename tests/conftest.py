"""Test-wide setup: trained runs and data caches go to a temporary folder, never the project's data/."""

import os
import tempfile

# Set before helpers is imported (it reads HELPERS_DATA once); notebook kernels inherit it.
os.environ.setdefault("HELPERS_DATA", tempfile.mkdtemp(prefix="helpers-test-data-"))
