"""Section ``end_to_end``: wall time and peak memory of the notebook runner, ``python -m
helpers.runner --profile P --no-pdf --output TMP`` over every notebook, in a subprocess, as a user
starts it.

Full run: all notebooks at the smoke profile (target <= 3 min on a 2-core CPU). ``quick=True``
(``--only end_to_end --quick``) adds all notebooks at the quick profile (target <= 15 min): it is
never part of the default run or of ``--smoke``. ``--smoke`` runs notebook 05 alone at the smoke
profile, to check the measurement works (~25 s); its time has no target.

Each invocation starts cold: a fresh temporary ``HELPERS_DATA``, so every model trains from scratch
as on a first run (the synthetic data is generated in seconds). The wall time includes Python and
kernel start-up and the HTML export; PDF export is off. Memory: see ``benchmarks/runner.py``
(largest single process exactly; whole tree sampled); the issue's target is <= 4 GB.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .harness import skipped_row
from .runner import time_runner

S = "end_to_end"


def _plan_runs(smoke: bool, quick: bool) -> list[tuple[str, list[str], int | None]]:
    """(profile, notebooks (none = all), target in seconds or None) of each runner invocation."""
    if smoke:
        return [("smoke", ["05"], None)]
    return [("smoke", [], 180)] + ([("quick", [], 900)] if quick else [])


def bench_end_to_end(smoke: bool = False, quick: bool = False) -> list[dict]:
    """Wall time and peak memory of the notebook runner over every notebook (module docstring)."""
    from helpers.runner import list_notebooks

    stems = list_notebooks()
    rows = []
    for profile, notebooks, target in _plan_runs(smoke, quick):
        what = f"notebook {notebooks[0]}" if notebooks else f"all {len(stems)} notebooks"
        with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
            # A generous limit (a stuck kernel should not hang the suite): 3x the target, or 10 min.
            _, runner_rows = time_runner(S, f"{profile} profile, {what}", Path(tmp), notebooks, profile,
                                         timeout=3 * target if target else 600,
                                         target_s=f"<= {target} s" if target else None, extra={"profile": profile})
        rows += runner_rows
    if not quick and not smoke:
        rows.append(skipped_row(S, "quick profile, all notebooks", "s",
                                "takes 10-15 min: run with --only end_to_end --quick"))
    return rows
