"""Pictures of the reports for the README: the index page through headless Chromium, a report
page through poppler's ``pdftoppm`` (``python -m helpers.runner --screenshots DIR``, ``make screenshots``).

Both are Debian packages (``apt-get install chromium poppler-utils``); CI installs them.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

# Headless, and nothing that reaches the network or a desktop session; --no-sandbox because CI
# runs as root, where Chromium refuses its sandbox.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def chromium() -> str:
    """The Chromium executable, or a RuntimeError saying how to install it."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        raise RuntimeError("headless Chromium not found (install: apt-get install chromium)")
    return exe


def screenshot_html(page: Path, target: Path, size: tuple[int, int] = (1280, 1000)) -> Path:
    """Render a local HTML file (opened as file://, as a reader would) into a PNG of ``size``."""
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={target}",
               f"--window-size={size[0]},{size[1]}", Path(page).resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if not target.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {page} (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    return target


def pdf_page_png(pdf: Path, target: Path, page: int = 1, dpi: int = 110) -> Path:
    """Render one page of a PDF into ``target`` (a PNG) with pdftoppm."""
    if not shutil.which("pdftoppm"):
        raise RuntimeError("pdftoppm not found (install: apt-get install poppler-utils)")
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    stem = target.with_suffix("")
    subprocess.run(["pdftoppm", "-png", "-r", str(dpi), "-f", str(page), "-l", str(page), "-singlefile",
                    str(pdf), str(stem)], check=True, capture_output=True, timeout=120)
    return target


def take_screenshots(profile_dir: Path, out_dir: Path, notebook: str | None = None, page: int = 1) -> list[Path]:
    """Write ``<out_dir>/index.png`` (the profile's index page) and ``<out_dir>/report-page.png``
    (page ``page`` of ``notebook``'s report PDF; default the first notebook that has one)."""
    index = profile_dir / "index.html"
    if not index.is_file():
        raise RuntimeError(f"{index} does not exist: run the notebooks first (make reports)")
    pdfs = sorted(profile_dir.glob("*/*.pdf"))
    if notebook:
        pdfs = [p for p in pdfs if p.parent.name == notebook]
    if not pdfs:
        raise RuntimeError(f"no report PDF under {profile_dir}" + (f" for {notebook}" if notebook else ""))
    return [screenshot_html(index, Path(out_dir) / "index.png", (1280, 1000)),
            pdf_page_png(pdfs[0], Path(out_dir) / "report-page.png", page)]
