"""Compare the metrics of two report folders, notebook by notebook: did a change move any number?

    python -m benchmarks.compare_metrics reports/quick /tmp/other/quick [--rename old=new ...]

Reads ``<folder>/<notebook>/metrics.json`` on both sides and compares every value, nested dicts and
lists included, exactly (floats to the last bit): a refactoring that should not change training or
evaluation must print ``identical`` for every notebook. Left out, because they differ from run to
run or machine to machine: wall-clock times (``run_seconds``, ``train_seconds``, ``time (s)``,
``seconds``...), log folders (``logs``) and the figure list's order. ``--rename old=new`` maps a key
that a change renamed on purpose (``--rename corrected=rescued``); keys present on one side only
are listed, so a dropped or added metric shows too; NaN equals NaN; ``--ignore KEY`` leaves a key out.
Exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

TIMES = ("seconds", "time (s)", "logs", "figures", "key_figure")
IGNORED: set[str] = set()  # --ignore KEY: e.g. dataset_note, which names the data folder of each run


def timing(key: str) -> bool:
    return any(key == t or key.endswith("_" + t) or key.endswith(t) for t in TIMES)


def walk(a, b, path: str, renames: dict, out: list) -> None:
    """Append a line to ``out`` for every difference between ``a`` and ``b`` below ``path``."""
    if isinstance(a, dict) and isinstance(b, dict):
        a = {renames.get(k, k): v for k, v in a.items()}
        for key in sorted(set(a) | set(b), key=str):
            if timing(str(key)) or key in IGNORED:
                continue
            where = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                out.append(f"{where}: only in {'the second' if key not in a else 'the first'}")
            else:
                walk(a[key], b[key], where, renames, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items against {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]", renames, out)
    elif isinstance(a, str) and isinstance(b, str) and a in renames:
        if renames[a] != b:
            out.append(f"{path}: {a!r} against {b!r}")
    elif a != b and not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        out.append(f"{path}: {a!r} against {b!r}")


def compare(first: Path, second: Path, renames: dict) -> dict[str, list[str]]:
    """Notebook -> its differences (empty: identical) for every notebook folder on either side."""
    names = sorted({p.parent.name for side in (first, second) for p in side.glob("*/metrics.json")})
    result = {}
    for name in names:
        files = [side / name / "metrics.json" for side in (first, second)]
        if not all(f.is_file() for f in files):
            result[name] = [f"metrics.json missing in {files[0 if not files[0].is_file() else 1].parent}"]
            continue
        out: list[str] = []
        walk(*(json.loads(f.read_text()) for f in files), "", renames, out)
        result[name] = out
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare_metrics", description=__doc__.split("\n")[0])
    p.add_argument("first", type=Path, help="a profile's report folder, e.g. reports/quick")
    p.add_argument("second", type=Path)
    p.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                   help="a key or value renamed on purpose between the two")
    p.add_argument("--ignore", action="append", default=[], metavar="KEY",
                   help="a key left out, e.g. dataset_note (it names each run's data folder)")
    args = p.parse_args(argv)
    IGNORED.update(args.ignore)
    renames = dict(r.split("=", 1) for r in args.rename)
    result = compare(args.first, args.second, renames)
    if not result:
        print(f"no metrics.json under {args.first} or {args.second}")
        return 1
    for name, diffs in result.items():
        print(f"{name}: " + ("identical" if not diffs else f"{len(diffs)} differences"))
        for line in diffs[:40]:
            print(f"    {line}")
    return 1 if any(result.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
