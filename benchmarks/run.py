"""Benchmark suite: ``python -m benchmarks.run [--smoke] [--json PATH] [--only SECTION ...] [--quick]``.

Each section is a function ``(smoke: bool) -> list[dict]`` in its own module, registered in
``SECTIONS``; a row has at least ``section``, ``name``, ``value`` and ``unit``, and may carry
``ratio`` (against the section's baseline row), ``target`` (the issue's goal, shown in the table)
and any extra fields, which go to the JSON as they are. A row that could not be measured has
``value`` None and says why in ``skipped`` (e.g. no CUDA, no archive) or ``error`` (the thing
measured failed); the table lists the reasons under it. The run prints one table and writes the rows
plus machine info to ``benchmarks/results/latest.json`` (git-ignored).

Machines are often shared and noisy: a section times the things it compares in the same run, on the
same data, alternating (``benchmarks/harness.py``), so read the ratios more than the absolute
numbers. ``--smoke`` runs every section tiny (well under a minute in all) and is what
``tests/test_benchmarks.py`` calls so the suite cannot rot; its numbers mean nothing.

Sections (each module's docstring says what it times and why):

- ``loader``: BatchLoader vs the usual torchvision PIL pipeline, images/s.
- ``train_step``: images/s of an SGD step of SimpleCNN and resnet18_cifar, fed by BatchLoader vs
  pre-made tensors; the loader's share of step time; achieved FLOP/s against a measured matmul peak
  (roofline ratio). With CUDA also bf16 + channels_last, ``torch.compile`` and a 50k-image epoch.
- ``cpu_path``: images/s of each study's model at its quick width on CPU: the old NCHW step, NHWC
  (channels_last) and NHWC with glibc keeping freed memory (what ``fit`` does on CPU); each in fresh
  processes, alternated (target: >= 1.5x per model).
- ``gradcam``: CAMs/s of ``helpers.cam.compute_cams``, batched vs one image at a time.
- ``explorer``: seconds per image of ``helpers.explorer``'s view (first view and a cached revisit) for
  notebooks 01, 02 and 05's models at their quick widths (target: <= 1 s per image).
- ``recording``: images/s of ``helpers.train.train_epoch`` without and with notebook 04's per-layer
  gradient and weight-update records (target: records cost <= 10%).
- ``end_to_end``: wall time and peak memory of the notebook runner (``python -m helpers.runner``)
  over every notebook at the smoke profile; with ``--quick`` (minutes: use ``--only end_to_end
  --quick``) also at the quick profile. ``--smoke`` runs one notebook only.
- ``real_data``: notebook 05 at the quick profile on the CIFAR-10 JPEG archive (``CIFAR10_ARCHIVE``,
  default ``../shared/data/cifar10-jpg.tar.gz``): accuracies and time; skipped when absent and in smoke.

- ``parallel``: the same training runs one after another, in 2 local worker processes and as Ray
  tasks (Ray's overhead against local workers); ``--smoke`` leaves Ray out.

``end_to_end`` and ``real_data`` share ``benchmarks/runner.py`` (the runner in a measured subprocess).
To add a section, write ``benchmarks/<name>.py`` with ``bench_<name>(smoke)`` returning rows (built
with the harness) and add it to ``SECTIONS``.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from .cpu_path import bench_cpu_path
from .end_to_end import bench_end_to_end
from .explorer import bench_explorer
from .gradcam import bench_gradcam
from .harness import format_table, machine_info, write_json
from .loader import bench_loader
from .parallel import bench_parallel
from .real_data import bench_real_data
from .recording import bench_recording
from .train_step import bench_train_step

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"

SECTIONS = {
    "loader": bench_loader,
    "train_step": bench_train_step,
    "cpu_path": bench_cpu_path,
    "gradcam": bench_gradcam,
    "explorer": bench_explorer,
    "recording": bench_recording,
    "end_to_end": bench_end_to_end,
    "real_data": bench_real_data,
    "parallel": bench_parallel,
}


def run(smoke: bool = False, only: list[str] | None = None, json_path: str | Path | None = DEFAULT_JSON,
        quick: bool = False) -> dict:
    """Run the sections (all, or ``only``), print the table, write JSON; returns the JSON object.

    ``quick`` goes to the sections that take it (``end_to_end``: adds the quick-profile run)."""
    names = only or list(SECTIONS)
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; known: {list(SECTIONS)}")
    rows: list[dict] = []
    for name in names:
        fn = SECTIONS[name]
        rows += fn(smoke=smoke, **({"quick": quick} if "quick" in inspect.signature(fn).parameters else {}))
    result = {"smoke": smoke, "quick": quick, "machine": machine_info(), "rows": rows}
    print(format_table(rows))
    if json_path is not None:
        print(f"wrote {write_json(result, json_path)}")
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the suite runs, numbers mean nothing")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write rows + machine info")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    p.add_argument("--quick", action="store_true",
                   help="end_to_end: also run every notebook at the quick profile (10-15 min on 2 cores); "
                        "use as --only end_to_end --quick")
    args = p.parse_args(argv)
    if args.quick and args.smoke:
        p.error("--quick times the quick-profile end-to-end run, which --smoke never does; give one of them")
    if args.quick and args.only and "end_to_end" not in args.only:
        p.error("--quick only affects the end_to_end section: use --only end_to_end --quick")
    run(smoke=args.smoke, only=args.only, json_path=args.json, quick=args.quick)


if __name__ == "__main__":
    main()
