"""Tests that constraints.txt (the exact set CI tested) and pyproject.toml (ranges) agree.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_deps.py -q
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def pins() -> dict[str, str]:
    """constraints.txt as {canonical name: version}; every line must be name==version."""
    out = {}
    for i, line in enumerate((ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"constraints.txt:{i}: {line!r} is not name==version"
        name = canonicalize_name(req.name)
        assert name not in out or req.marker, f"constraints.txt:{i}: {req.name} pinned twice"
        out[name] = specs[0].version
    return out


def dependencies() -> list[str]:
    extras = PROJECT["optional-dependencies"]
    return PROJECT["dependencies"] + [r for e in sorted(extras) for r in extras[e]]


@pytest.mark.parametrize("raw", dependencies())
def test_every_dependency_is_pinned_inside_its_range(raw):
    req, pinned = Requirement(raw), pins()
    name = canonicalize_name(req.name)
    assert name in pinned, f"{req.name} (pyproject.toml) has no pin in constraints.txt"
    assert req.specifier.contains(pinned[name], prereleases=True), \
        f"constraints.txt pins {req.name}=={pinned[name]}, outside pyproject.toml's {req.specifier}"


@pytest.mark.parametrize("name, breaking", [("flax", "0.13.0"), ("orbax-checkpoint", "1.0.0")])
def test_ranges_stop_before_the_announced_api_breaks(name, breaking):
    req = next(Requirement(r) for r in dependencies() if canonicalize_name(Requirement(r).name) == name)
    assert not req.specifier.contains(breaking, prereleases=True)


def test_ci_and_the_readme_install_with_the_constraints():
    ci = [l for l in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines() if "pip install" in l and ".[" in l]
    assert ci and all("-c constraints.txt" in l for l in ci), ci
    readme = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## ", 1)[0]  # the lines before the first section
    installs = [l for l in readme.splitlines() if re.search(r"pip install -e", l)]
    assert len(installs) >= 2, "the README opens with the install command for Linux/macOS and for Windows"
    assert all("-c constraints.txt" in l for l in installs), installs


def test_license_is_an_spdx_expression():
    assert isinstance(PROJECT["license"], str)  # the {text = ...} table is deprecated (PEP 639)
