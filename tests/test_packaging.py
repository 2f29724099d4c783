"""environment.yml and pyproject.toml must install the same packages at the same pins."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return dict(r.split("==") for r in reqs)


def environment_pins() -> dict[str, str]:
    text = (ROOT / "environment.yml").read_text()
    return dict(re.findall(r"^\s*-\s*([A-Za-z0-9_.\-]+)==(\S+)\s*$", text, re.M))


def test_every_dependency_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    assert all("==" in r for r in reqs), [r for r in reqs if "==" not in r]


def test_environment_yml_matches_pyproject():
    assert environment_pins() == pyproject_pins()


def test_environment_yml_installs_the_package_and_python_311():
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*-\s*python=3\.11\s*$", text, re.M)
    assert re.search(r"^\s*-\s*-e \.\s*$", text, re.M)
    assert "conda-forge" in text


def test_installed_versions_are_the_pinned_ones():
    """The environment the tests run in is the one pyproject.toml describes: a pin changed without a
    reinstall (or a package upgraded by hand) shows here, not as a puzzling difference later."""
    from importlib.metadata import PackageNotFoundError, version

    drift = {}
    for name, pin in pyproject_pins().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pin and not (installed or "").startswith(pin + "+"):  # torch reports 2.14.1+cu...
            drift[name] = (pin, installed)
    assert not drift, f"pinned vs installed: {drift}; run make (it reinstalls when pyproject.toml changes)"
