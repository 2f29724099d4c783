"""Headless runner: execute the study notebooks with papermill and export HTML/PDF reports.

Command line (run from anywhere; ``-h`` for all options)::

    python -m helpers.runner                          # every notebook, profile "quick"
    python -m helpers.runner 05 cutmix_study --profile smoke --no-pdf
    python -m helpers.runner 03 -p seed 1 -p device cpu
    python -m helpers.runner --list                   # notebook names and their parameters
    python -m helpers.runner --sync                   # pair/sync notebooks/*.py, strip outputs
    python -m helpers.runner --screenshots docs/      # PNGs of the index and a report page

For each notebook it writes ``<output>/<profile>/<stem>/``: the executed ``<stem>.ipynb``, the
report without code ``<stem>.html`` and ``<stem>.pdf``, the notebook with code ``<stem>-code.html``
(``helpers.export``), the kernel's own output ``kernel.log`` and a ``result.json`` record, next to
whatever the notebook itself writes there (``metrics.json``, ``figures/``).
``<output>/<profile>/index.html`` (``helpers.index``) shows them all as cards. While a notebook
runs, the runner shows its progress; at the end, a summary table (``helpers.progress``).

Python::

    from helpers.runner import run_notebooks, list_notebooks
    results = run_notebooks(["05"], profile="smoke", pdf=False)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import nbformat
import papermill
from papermill.cli import _resolve_type  # private, but papermill is pinned and a test checks it

from . import parallel, studies
from .export import export_code_html, export_html, export_pdf, pdf_engine_missing, sync_notebooks
from .index import Result, load_runs, read_metrics, write_index
from .kernel import (KERNEL, ROOT, UsageError, ensure_kernel, find_kernel,  # noqa: F401 (API)
                     kernel_env, kernel_is_ours, quiet_kernel)
from .profiles import PROFILES, check_dataset, setting_names, settings
from .progress import Progress, describe_failure, source_cell, summary_table
from .screenshots import take_screenshots

NOTEBOOKS_DIR = ROOT / "notebooks"
REPORTS_DIR = ROOT / "reports"
# Parameters the runner always sets itself; -p may not override them (use the options instead).
RUNNER_PARAMS = {"profile": "--profile", "dataset": "--dataset", "output_dir": "--output"}
PDF_HINT = ("PDF skipped: xelatex/pandoc not found (install: apt-get install texlive-xetex "
            "texlive-fonts-recommended texlive-plain-generic pandoc)")


def parse_value(text: str):
    """Parse a -p value the way papermill's CLI does: True/False/None/int/float, else the string."""
    return _resolve_type(text)


# --- choosing notebooks and parameters -------------------------------------------------------

def list_notebooks(notebooks_dir: str | Path | None = None) -> list[str]:
    """Return the stems of the notebooks in ``notebooks_dir`` (default ``notebooks/``), sorted."""
    folder = Path(notebooks_dir or NOTEBOOKS_DIR)
    return sorted(p.stem for p in folder.glob("*.ipynb"))


def resolve_notebook(name: str, stems: list[str]) -> str:
    """Map a stem, a number ("05" or "5") or a short name ("bn_ablation") to a notebook stem."""
    name = Path(name).stem if name.endswith(".ipynb") else name
    for stem in stems:
        number, _, short = stem.partition("_")
        if name in (stem, short) or (name.isdigit() and number.isdigit() and int(name) == int(number)):
            return stem
    raise UsageError(f"unknown notebook {name!r} (valid: {', '.join(stems) or 'none found'})")


def notebook_params(path: Path) -> dict:
    """Return the parameters declared in the notebook's ``parameters`` cell (papermill's view)."""
    return papermill.inspect_notebook(str(path))


def check_params(path: Path, params: dict) -> None:
    """Raise UsageError unless the notebook declares a parameters cell and every name in params."""
    declared = notebook_params(path)
    if not declared:
        raise UsageError(f"{path.name} has no cell tagged 'parameters'")
    for name in params:
        if name in RUNNER_PARAMS:
            raise UsageError(f"parameter {name!r} is set by the runner; use {RUNNER_PARAMS[name]}")
        if name not in declared:
            raise UsageError(f"unknown parameter {name!r} for {path.stem} "
                             f"(valid: {', '.join(declared)})")


def choose_notebooks(names, profile: str, params: dict, notebooks_dir) -> list[Path]:
    """Validate the whole request before anything runs; return the notebook paths to execute."""
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r} (valid: {', '.join(PROFILES)})")
    folder = Path(notebooks_dir or NOTEBOOKS_DIR)
    stems = list_notebooks(folder)
    if not stems:
        raise UsageError(f"no notebooks found in {folder}")
    chosen = [resolve_notebook(str(n), stems) for n in names] if names else stems
    paths = [folder / f"{stem}.ipynb" for stem in dict.fromkeys(chosen)]  # dedupe, keep order
    for path in paths:
        check_params(path, params)
    return paths


def check_values(paths: list[Path], profile: str, dataset: str | None, params: dict) -> dict[str, str]:
    """Give each study notebook's settings, -p values included, to helpers.profiles.settings, as the
    notebook's first cell will: a bad value (-p epochs -1, -p seeds x) fails here rather than in a
    kernel. Returns, per notebook, the one-line note of a study that falls back to the synthetic
    stand-in ("auto" data without CIFAR), for the runner to announce."""
    notes = {}
    for path in paths:
        study = studies.for_notebook(path.stem)
        if study is None:
            continue
        names = setting_names(study.name)
        try:
            s = settings(study.name, profile, dataset=dataset, **{k: v for k, v in params.items() if k in names})
            if s.dataset.startswith("folder:"):  # decoded once and cached: the kernel then loads it in a second
                s.load_data()
        except ValueError as err:
            raise UsageError(f"{path.stem}: {err}") from None
        if s.data_choice.fell_back:
            notes[path.stem] = s.data_choice.banner()
    return notes


def check_output(out: Path) -> None:
    """Make the report folder, or say in one line why it cannot be written (read-only, full, a file)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise UsageError(f"cannot write reports to {out}: {err.strerror or err}") from None


# --- running one notebook ---------------------------------------------------------------------

def clear_previous(folder: Path, stem: str) -> None:
    """Delete the outputs of an earlier run so a failed run cannot show stale metrics/figures."""
    for name in (f"{stem}.ipynb", f"{stem}.html", f"{stem}.pdf", f"{stem}-code.html", "result.json",
                 "metrics.json", "kernel.log", "thumbnail.png"):
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / "figures", ignore_errors=True)


def execute(source: Path, target: Path, parameters: dict, timeout: int | None, tag: str) -> None:
    """Run one notebook with papermill into ``target`` (kernel python3, cwd = notebook folder),
    showing its progress; the kernel's own output goes to ``kernel.log`` beside ``target``."""
    source_nb = nbformat.read(source, as_version=4)
    with Progress(tag, source_nb, lambda index: source_cell(index, source_nb)) as progress:
        papermill.execute_notebook(
            str(source), str(target), parameters=parameters, kernel_name=KERNEL,
            cwd=str(source.parent), execution_timeout=timeout,
            progress_bar=False,  # papermill's bar counts cells without saying which; Progress does
            **progress.hooks(), **quiet_kernel(target.parent / "kernel.log"))


def export(result: Result, executed: Path, pdf: bool) -> None:
    """Export the report's HTML and the notebook-with-code HTML (always, for inspection) and the
    report's PDF (finished runs only) into result's folder; an export error is recorded in result
    rather than raised."""
    try:
        result.html = export_html(executed).name
        result.code_html = export_code_html(executed).name
        if result.ok and not pdf:
            result.pdf_note = "skipped"
        elif result.ok:
            result.pdf_note = "export failed"  # until it succeeds
            result.pdf = export_pdf(executed).name
            result.pdf_note = "yes"
    except Exception as err:  # a broken export must not hide the run or stop the other notebooks
        message = f"export failed: {type(err).__name__}: {str(err)[-500:]}"
        result.error = f"{result.error}\n    {message}" if result.error else message


def run_one(source: Path, profile: str, dataset: str | None, params: dict, out: Path,
            timeout: int | None, pdf: bool, tag: str = "", train_seconds: float = 0.0) -> Result:
    """Execute one notebook, export it, record ``result.json``; failures become the Result."""
    folder = (out / profile / source.stem).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    clear_previous(folder, source.stem)
    executed = folder / f"{source.stem}.ipynb"
    parameters = {"profile": profile, "output_dir": str(folder), **params}
    if dataset is not None:  # None leaves the notebook's default: the profile's own dataset
        parameters["dataset"] = dataset
    result = Result(source.stem, "ok", folder=str(folder), train_seconds=train_seconds)
    start = time.perf_counter()
    try:
        execute(source, executed, parameters, timeout, tag or source.stem)
    except Exception as err:  # any failure is reported per notebook; the others still run
        result.status, result.error, result.failed_source = describe_failure(err, source, executed)
    result.seconds = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    if executed.exists():  # papermill keeps the partial notebook of a failed run: export it too
        export(result, executed, pdf)
    result.export_seconds = round(time.perf_counter() - start, 1)
    result.metrics = read_metrics(folder)
    result.finished = datetime.now().isoformat(timespec="seconds")
    (folder / "result.json").write_text(json.dumps(asdict(result), indent=1))
    return result


# --- the API the command line wraps ------------------------------------------------------------

def run_notebooks(names=None, profile: str = "quick", dataset: str | None = None, params=None,
                  output: str | Path | None = None, pdf: bool = True, timeout: int | None = None,
                  notebooks_dir: str | Path | None = None, *, train_first: bool = False, workers: int | str = 1,
                  ray: str | None = None) -> list[Result]:
    """Execute notebooks (default: all) and export their reports; return one Result each.

    names: stems, numbers or short names. params: extra notebook parameters (must exist in each
    notebook's parameters cell). output: report folder (default ``reports/`` in the project
    root). timeout: seconds allowed per cell (papermill's execution_timeout). train_first, workers,
    ray: train every run first (``helpers.parallel``); workers "auto" is ``parallel.auto_workers`` (the
    command line's default), and more than one worker implies train_first. Raises UsageError before running anything if
    the request is invalid; notebook failures are in the Results.
    """
    params = dict(params or {})
    paths = choose_notebooks(names, profile, params, notebooks_dir)
    if timeout is not None and not timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, not {timeout}")
    if dataset is not None:
        try:
            dataset = check_dataset(dataset)
        except ValueError as err:
            raise UsageError(f"--dataset: {err}") from None
    fallbacks = check_values(paths, profile, dataset, params)
    if workers == "auto":
        workers = parallel.auto_workers(profile, params)
    elif isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"--workers must be a positive integer or auto, not {workers}")
    if pdf and pdf_engine_missing():
        print(PDF_HINT, flush=True)
        pdf = False
    out = Path(output) if output is not None else REPORTS_DIR
    check_output(out)
    trained = {}  # study -> seconds its runs trained before the notebooks
    if train_first or workers > 1 or ray is not None:
        trained = train_runs(paths, profile, dataset, params, workers, ray)
    with kernel_env():
        ensure_kernel()
        results = [run_announced(path, f"[{i}/{len(paths)}] {path.stem}", fallbacks.get(path.stem), trained,
                                 profile=profile, dataset=dataset, params=params, out=out, timeout=timeout, pdf=pdf)
                   for i, path in enumerate(paths, 1)]
    index = write_index(out / profile, load_runs(out / profile, list_notebooks(notebooks_dir)))
    print("\n" + summary_table(results))
    print(f"\nindex: {index.resolve()}")
    return results


def train_runs(paths: list[Path], profile: str, dataset: str | None, params: dict, workers: int,
               ray: str | None) -> dict[str, float]:
    """Train every run the notebooks' studies need first (``helpers.parallel``); return, per study,
    the seconds its runs trained (runs loaded from the cache count nothing)."""
    names = [study.name for study in map(studies.for_notebook, (p.stem for p in paths)) if study is not None]
    trained: dict[str, float] = {}
    for run in parallel.train_studies(names, profile, dataset, params, workers, ray):
        if not run["cached"]:
            trained[run["study"]] = round(trained.get(run["study"], 0) + run["seconds"], 1)
    return trained


def run_announced(path: Path, tag: str, fallback: str | None, trained: dict, **options) -> Result:
    """:func:`run_one` with a line before it (what runs, and a fallback to the stand-in data) and after
    it (status and time, the error if any)."""
    print(f"{tag}: running (profile {options['profile']}, dataset {options['dataset'] or 'the profile default'})",
          flush=True)
    if fallback:
        print(f"{tag}: {fallback}", flush=True)
    study = studies.for_notebook(path.stem)
    result = run_one(path, tag=tag, train_seconds=trained.get(study.name, 0.0) if study else 0.0, **options)
    print(f"{tag}: {result.status} in {result.seconds:.1f} s (+{result.export_seconds:.1f} s export)", flush=True)
    if result.error:
        print(f"    {result.error}", flush=True)
    return result


# --- command line -----------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    p = argparse.ArgumentParser(
        prog="python -m helpers.runner",
        description="Execute the study notebooks with papermill and export HTML/PDF reports "
                    "to <output>/<profile>/.")
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                   help="stem, number (05) or short name (bn_ablation); default: all notebooks")
    p.add_argument("--profile", default="quick", help=f"{', '.join(PROFILES)} (default quick)")
    p.add_argument("--dataset", default=None,
                   help="auto, synthetic, cifar10, cifar100 or folder:PATH (default: the profile's dataset: "
                        "auto for quick and full, i.e. the report's CIFAR when it is in data/ or can be "
                        "downloaded, else the synthetic stand-in; smoke always uses synthetic)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"),
                   help="set a notebook parameter; VALUE is parsed as papermill -p does")
    p.add_argument("--output", help="report folder (default: reports/ in the project root)")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF export")
    p.add_argument("--timeout", type=int, help="seconds allowed per cell (default: no limit)")
    p.add_argument("--train-first", action="store_true",
                   help="train every run the notebooks need before executing them (they then load the "
                        "runs from the run cache); implied by --workers and --ray")
    p.add_argument("--workers", type=workers_arg, default="auto", metavar="N",
                   help="train with N worker processes side by side, each with its share of the cores "
                        "(one GPU each where there are several); default auto: one per core without a GPU "
                        "(1 at the smoke profile), one per GPU with CUDA; 1 trains inside each notebook")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="train each run as a task on a Ray cluster: auto (the running cluster), HOST:PORT, "
                        "or local (start one on this machine); needs pip install -e '.[cluster]'")
    p.add_argument("--notebooks-dir", help="read notebooks from here (for tests/advanced use)")
    p.add_argument("--list", action="store_true", help="list notebooks and their parameters")
    p.add_argument("--install-kernel", action="store_true",
                   help="make sure the python3 kernel is this environment's Python (make lab), then exit")
    p.add_argument("--sync", action="store_true",
                   help="pair/sync notebooks with py:percent scripts (jupytext), strip outputs")
    p.add_argument("--screenshots", metavar="DIR",
                   help="write DIR/index.png (the profile's index page, headless Chromium) and "
                        "DIR/report-page.png (a page of a report PDF: NOTEBOOK's, default the first), "
                        "from reports already made, then exit")
    p.add_argument("--page", type=int, default=1, help="the report page --screenshots renders (default 1)")
    return p


def list_command(notebooks_dir) -> None:
    """Print each notebook: the study it runs and the report behind it, then its parameters with their
    defaults."""
    for stem in list_notebooks(notebooks_dir):
        declared = notebook_params(Path(notebooks_dir or NOTEBOOKS_DIR) / f"{stem}.ipynb")
        study = studies.for_notebook(stem)
        about = f" (study {study.name}, report {study.report})" if study else " (no study)"
        print(f"{stem}{about}: " + ", ".join(f"{k}={v['default']}" for k, v in declared.items()))


def screenshots_command(args, cli) -> int:
    """--screenshots DIR: pictures of existing reports for the README."""
    profile_dir = Path(args.output or REPORTS_DIR) / args.profile
    notebook = None
    if args.notebooks:
        try:
            notebook = resolve_notebook(args.notebooks[0], list_notebooks(args.notebooks_dir))
        except UsageError as err:
            cli.error(str(err))
    try:
        for path in take_screenshots(profile_dir, Path(args.screenshots), notebook, args.page):
            print(f"wrote {path}")
    except (RuntimeError, OSError) as err:
        cli.error(str(err))
    return 0


def workers_arg(value: str) -> int | str:
    """--workers: a positive integer or auto."""
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or auto, not {value!r}")
    return n


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 a notebook failed, 2 usage)."""
    cli = parser()
    args = cli.parse_args(argv)
    if args.list:
        list_command(args.notebooks_dir)
        return 0
    if args.install_kernel:
        try:
            print(f"python3 kernel: {ensure_kernel()}")
        except UsageError as err:
            cli.error(str(err))
        return 0
    if args.sync:
        try:
            sync_notebooks(args.notebooks_dir or NOTEBOOKS_DIR)
        except ImportError:
            cli.error("--sync needs jupytext (pip install jupytext)")
        return 0
    if args.screenshots:
        return screenshots_command(args, cli)
    params = {name: parse_value(value) for name, value in args.parameter}
    try:
        results = run_notebooks(args.notebooks, args.profile, args.dataset, params, args.output,
                                not args.no_pdf, args.timeout, args.notebooks_dir,
                                train_first=args.train_first, workers=args.workers, ray=args.ray)
    except UsageError as err:
        cli.error(str(err))  # prints usage + message, exits 2
    failed = [r for r in results if not r.ok or r.error]  # an ok run with an error: export failed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
