"""What the runner prints: runs training before the notebooks, progress while a notebook runs, where it
failed, and the summary table (runner).

Progress comes from nbclient's cell hooks (``on_cell_start``, ``on_cell_executed``), which papermill
passes through as engine options, and from the notebook's printed lines (papermill's
``stdout_file``). Cells are numbered as a reader counts them in the source notebook, markdown
included, the same numbers the failure message uses.

- Terminal (stdout is a TTY): one line, redrawn in place every second: cell k of n, time since the
  notebook started, its section (the last markdown heading) and the last line it printed.
- Otherwise (CI logs, pipes): a plain line when a cell that took SLOW seconds or more ends, and a
  "still running" line every HEARTBEAT seconds while one cell keeps going; fast cells print
  nothing, so a log shows where the time goes without a line per cell. The environment variable
  HELPERS_PROGRESS_SLOW sets SLOW (0: a line for every cell).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

import nbformat
from papermill.exceptions import PapermillExecutionError
from tqdm import tqdm

from .page import duration, headline_rows

SLOW = 5.0        # seconds: plain mode reports cells at least this slow
HEARTBEAT = 60.0  # seconds: plain mode says a long cell is still running this often
FAILED_LINES = 15  # lines of a failing cell kept for the index page


def clock(seconds: float) -> str:
    """Elapsed time as m:ss (h:mm:ss past an hour)."""
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def slow_seconds() -> float:
    """SLOW, or HELPERS_PROGRESS_SLOW when set."""
    text = os.environ.get("HELPERS_PROGRESS_SLOW", "").strip()
    try:
        return float(text) if text else SLOW
    except ValueError:
        raise ValueError(f"HELPERS_PROGRESS_SLOW must be a number of seconds, not {text!r}") from None


def sections(nb) -> list[str]:
    """For each cell of a notebook, the text of the last markdown heading at or before it."""
    current, out = "", []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heads = [line.lstrip("#").strip() for line in cell.source.splitlines() if line.startswith("#")]
            current = heads[-1] if heads else current
        out.append(current)
    return out


class Progress:
    """Shows where one running notebook is (see the module docstring). Use as a context manager
    around papermill's run and pass ``hooks()`` as engine options."""

    def __init__(self, tag: str, source_nb, number, stream=None, tty: bool | None = None):
        self.tag, self.number = tag, number  # number: executed cell index -> source position (0: injected)
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.total, self.titles = len(source_nb.cells), sections(source_nb)
        self.slow = slow_seconds()
        self.start = self.cell_start = self.last_said = time.monotonic()
        self.cell: int | None = None
        self.last_line = ""
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.tick, daemon=True)

    def hooks(self) -> dict:
        """papermill engine options: the cell hooks and the stdout sink."""
        return {"on_cell_start": self.on_cell_start, "on_cell_executed": self.on_cell_executed,
                "stdout_file": self}

    def label(self) -> str:
        """ "cell 12/48 (Training the two models)" or "the parameters cell"."""
        if self.cell == 0:
            return "the injected parameters cell"
        section = self.titles[self.cell - 1] if self.cell else ""
        return f"cell {self.cell}/{self.total}" + (f" ({section})" if section else "")

    def on_cell_start(self, cell, cell_index, **_):
        with self.lock:
            self.cell, self.cell_start, self.last_line = self.number(cell_index), time.monotonic(), ""
        self.draw()

    def on_cell_executed(self, cell, cell_index, **_):
        took = time.monotonic() - self.cell_start
        if not self.tty and took >= self.slow:
            self.say(f"{self.label()} took {took:.0f} s")

    def write(self, text: str) -> None:
        """papermill's stdout_file: remember the notebook's last printed line for the status."""
        lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
        if lines:
            self.last_line = lines[-1]

    def flush(self) -> None:
        """Part of the file interface papermill expects."""

    def say(self, text: str) -> None:
        """A plain line (non-TTY mode)."""
        with self.lock:
            now = time.monotonic()
            self.last_said = now
            print(f"{self.tag}: {text}, {clock(now - self.start)} elapsed", file=self.stream, flush=True)

    def draw(self) -> None:
        """Redraw the one-line status (TTY mode)."""
        if not self.tty or self.cell is None:
            return
        with self.lock:
            status = f"{self.tag}: {clock(time.monotonic() - self.start)}  {self.label()}"
            if self.last_line:
                status += f"  | {self.last_line}"
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r" + status[:width].ljust(width))
            self.stream.flush()

    def tick(self) -> None:
        while not self.done.wait(1.0):
            if self.tty:
                self.draw()
            elif self.cell is not None and time.monotonic() - max(self.last_said, self.cell_start) >= HEARTBEAT:
                self.say(f"{self.label()} still running ({clock(time.monotonic() - self.cell_start)} in it)")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        if self.tty:  # leave the line clean for the result line
            with self.lock:
                self.stream.write("\r" + " " * (shutil.get_terminal_size((100, 20)).columns - 1) + "\r")
                self.stream.flush()
        return False


# --- runs trained before the notebooks (--workers, --train-first) ---------------------------------

class TrainingProgress:
    """Each run's epochs as they finish, in the worker processes or here, with the time left (runner).

    ``jobs``: run label -> (work of one epoch, its epochs over all phases); the work is any measure
    proportional to an epoch's time (images x forward FLOPs). The time left is the work still to do
    at the seconds per unit of work measured so far, shared by ``workers``. A terminal gets one bar
    per run in training (tqdm); a log gets a line per epoch."""

    def __init__(self, jobs: dict[str, tuple[float, int]], workers: int, stream=None, tty: bool | None = None):
        self.jobs, self.workers = jobs, max(1, workers)
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.done = {label: 0 for label in jobs}
        self.seconds = 0.0
        self.bars: dict = {}
        self.lock = threading.Lock()

    def left(self) -> float | None:
        """Seconds of training still to do, or None before the first epoch."""
        done = sum(self.jobs[k][0] * n for k, n in self.done.items())
        if not done:
            return None
        todo = sum(w * (epochs - self.done[k]) for k, (w, epochs) in self.jobs.items())
        return self.seconds / done * todo / self.workers

    def epoch(self, label: str, name: str, epoch: int, epochs: int, seconds: float) -> None:
        """One epoch of run ``label`` (its phase ``name``: epoch ``epoch`` of ``epochs``) took ``seconds``."""
        with self.lock:
            self.done[label] = self.done.get(label, 0) + 1
            self.seconds += seconds
            left = self.left()
            eta = "—" if left is None else duration(left)
            phase = "" if label.startswith(f"{name} ") else f"{name} "  # a run's earlier phase says which
            if self.tty:
                bar = self.bars.get(label)
                if bar is None:
                    bar = self.bars[label] = tqdm(total=self.jobs.get(label, (0, epochs))[1], desc=label,
                                                  unit="epoch", file=self.stream, position=len(self.bars), leave=False)
                bar.update(1)
                bar.set_postfix_str(f"{seconds:.1f} s/epoch, all runs: about {eta} left")
            else:
                print(f"[train] {label}: {phase}epoch {epoch}/{epochs} in {seconds:.1f} s; about {eta} left in all",
                      file=self.stream, flush=True)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


# --- a failed notebook ----------------------------------------------------------------------

def source_cell(executed_index: int, source_nb) -> int:
    """Map a cell index in papermill's output (which has the injected cell) to a 1-based
    position in the source notebook, the way a reader counts cells; 0 means the injected cell."""
    tagged = [i for i, c in enumerate(source_nb.cells) if "parameters" in c.metadata.get("tags", [])]
    injected = tagged[0] + 1 if tagged else 0
    if executed_index == injected:
        return 0
    return executed_index + (0 if executed_index > injected else 1)


def describe_failure(err: Exception, source: Path, executed: Path) -> tuple[str, str, str]:
    """Return (status, one-paragraph message, the cell's first lines) for a failed run: the
    message names the cell, its first line and the error."""
    if isinstance(err, PapermillExecutionError):
        index, code, what = err.cell_index, err.source, f"{err.ename}: {err.evalue}"
    else:  # timeout, dead kernel...: blame the last cell papermill started
        first_line = (str(err).strip().splitlines() or [""])[0]
        what, index, code = f"{type(err).__name__}: {first_line}", None, ""
        if executed.exists():
            cells = nbformat.read(executed, as_version=4).cells
            started = [i for i, c in enumerate(cells)
                       if c.metadata.get("papermill", {}).get("start_time")]
            if started:
                index, code = started[-1], cells[started[-1]].source
    if index is None:
        return "failed", what, ""
    number = source_cell(index, nbformat.read(source, as_version=4))
    cell = f"cell {number}" if number else "the injected parameters cell"
    first = next((line for line in code.splitlines() if line.strip()), "")
    lines = code.strip().splitlines()
    shown = "\n".join(lines[:FAILED_LINES] + ([f"... ({len(lines) - FAILED_LINES} more lines)"]
                                             if len(lines) > FAILED_LINES else []))
    return f"failed at {cell}", f"{what}\n    {cell}: {first}", shown


# --- the summary table ------------------------------------------------------------------------

def headline_text(metrics: dict, width: int = 42) -> str:
    """The first headline number beside the report's: "test acc plain 85.75% (report 92.06%)"."""
    rows = headline_rows(metrics.get("headline") if isinstance(metrics.get("headline"), list) else None)
    if not rows:
        return "—"
    name, value, report = rows[0]
    text = f"{name} {value}" + (f" (report {report})" if report != "—" else "")
    return text if len(text) <= width else text[:width - 1] + "…"


def verdict_text(metrics: dict) -> str:
    """The verdict's wording, or "—"."""
    v = metrics.get("verdict")
    return str(v.get("verdict") or "—") if isinstance(v, dict) else "—"


def where(path: Path) -> str:
    """A path relative to the working directory when it is under it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def summary_table(results: list) -> str:
    """The runner's closing table: notebook, status, time, headline, verdict, report (PDF, else HTML)."""

    rows = [("notebook", "status", "time", "headline (report)", "verdict", "report")]
    for r in results:
        report = r.pdf or r.html
        rows.append((r.notebook, r.status, r.time_text() if r.finished else "—", headline_text(r.metrics),
                     verdict_text(r.metrics), where(Path(r.folder) / report) if report else "—"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1]
                           for row in rows)
