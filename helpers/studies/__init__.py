"""The studies: one module per study, each defining ``STUDY`` (a :class:`~helpers.studies.base.Study`).

Every module in this folder (but ``base``) is a study and is registered when the package is first
imported, in the order of its notebook; ``HELPERS_STUDIES=pkg.mod,other.mod`` registers more from
outside the package (a course's own study, or the test that adds a sixth one). The profiles, the
protocol cards, the notebooks' shared steps, the runner and the tests all read :data:`STUDIES`;
nothing else lists studies.

    >>> from helpers import studies
    >>> studies.get("bn_ablation").report
    '004'
    >>> studies.for_notebook("05_bn_ablation").name
    'bn_ablation'

Adding a study is one new module here and one notebook (the README's "Adding a study").
"""

from __future__ import annotations

import importlib
import os
import pkgutil

from .base import Headline, Study

__all__ = ["ENV", "STUDIES", "Headline", "Study", "for_notebook", "get", "register"]

ENV = "HELPERS_STUDIES"  # comma-separated modules with a STUDY to register besides this folder's
STUDIES: dict[str, Study] = {}


def register(study: Study) -> Study:
    """Add ``study`` to :data:`STUDIES` (a name or notebook already taken by another study is an error)."""
    if not isinstance(study, Study):
        raise TypeError(f"register a helpers.studies.Study, not {type(study).__name__}")
    for other in STUDIES.values():
        if other is not study and study.notebook == other.notebook:
            raise ValueError(f"notebook {study.notebook!r} already belongs to study {other.name!r}")
    if study.name in STUDIES and STUDIES[study.name] is not study:
        raise ValueError(f"a study named {study.name!r} is registered already ({STUDIES[study.name].notebook})")
    STUDIES[study.name] = study
    return study


def get(name: str) -> Study:
    """The study called ``name``; a ValueError naming the valid ones otherwise."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; valid studies: {', '.join(STUDIES)}")
    return STUDIES[name]


def for_notebook(stem: str) -> Study | None:
    """The study notebook ``stem`` (e.g. "05_bn_ablation") runs, or None for a notebook of no study."""
    return next((s for s in STUDIES.values() if s.notebook == stem), None)


def _module_study(name: str) -> Study:
    module = importlib.import_module(name)
    study = getattr(module, "STUDY", None)
    if not isinstance(study, Study):
        raise ImportError(f"study module {name} defines no STUDY = helpers.studies.Study(...)")
    return study


def _register_all() -> None:
    found = [_module_study(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__) if m.name != "base"]
    extra = [_module_study(name.strip()) for name in os.environ.get(ENV, "").split(",") if name.strip()]
    for study in sorted(found, key=lambda s: s.notebook) + extra:
        register(study)


_register_all()
