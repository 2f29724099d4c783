"""The documents name only what exists: every ``python -m`` command, ``helpers.`` name and project file
path in the README files and in the package's module docstrings (a stale one sends a reader nowhere)."""

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", ROOT / "data" / "README.md", ROOT / "reports" / "README.md"]
MODULES = sorted((ROOT / "helpers").rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
COMMAND = re.compile(r"python -m ((?:helpers|benchmarks)(?:\.\w+)+)")
NAME = re.compile(r"(?<![\w./-])(helpers(?:\.\w+)+)")
# Paths of the project's own files; generated ones (data/runs/..., reports/<profile>/...) are not checked.
GENERATED = ("benchmarks/results/",)  # written by make bench, never committed
# (a path with a <placeholder> in it, "notebooks/06_<name>.py", is a pattern, not a file)
PATH = re.compile(r"(?<![\w./-])((?:helpers|notebooks|tests|benchmarks|docs|\.ci)/[\w./<>-]*[\w/>])")


def documents() -> dict[str, str]:
    docs = {str(p.relative_to(ROOT)): p.read_text() for p in READMES}
    for p in MODULES:
        doc = ast.get_docstring(ast.parse(p.read_text()), clean=False)
        if doc:
            docs[f"{p.relative_to(ROOT)} (docstring)"] = doc
    return docs


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module, or a module's attribute (a function, class, constant)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            if importlib.util.find_spec(module) is None:
                continue
        except ModuleNotFoundError:
            continue
        obj = importlib.import_module(module)
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


DOCS = documents()


@pytest.mark.parametrize("doc", list(DOCS))
def test_commands_names_and_paths_exist(doc):
    text = DOCS[doc]
    missing = [f"python -m {m}" for m in COMMAND.findall(text) if importlib.util.find_spec(m) is None]
    missing += [n for n in dict.fromkeys(NAME.findall(text)) if not resolves(n.rstrip("."))]
    missing += [p for p in dict.fromkeys(PATH.findall(text))
                if "<" not in p and not (ROOT / p).exists() and not p.startswith(GENERATED)]
    assert not missing, f"{doc} names what does not exist: {missing}"


def test_the_check_can_fail():
    assert not resolves("helpers.reports") and not resolves("helpers.train.no_such_function")
    assert resolves("helpers.train.fit") and resolves("helpers.studies.base")
