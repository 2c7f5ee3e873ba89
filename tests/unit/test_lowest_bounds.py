"""scripts/lowest_bounds.py (`make test-lowest`), and the dbt versions pyproject.toml allows."""

from __future__ import annotations

import importlib.util
import tomllib
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from ..conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = ("duckdb", "snowflake", "postgres", "webhook", "report")


def lowest_bounds() -> ModuleType:
    """scripts/lowest_bounds.py, imported from its file (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location(
        "lowest_bounds", ROOT / "scripts/lowest_bounds.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def requirements() -> dict[str, Requirement]:
    """The base dependencies and those of the extras `make test-lowest` installs, by name."""
    listed = list(PYPROJECT["dependencies"])
    for extra in EXTRAS:
        listed += PYPROJECT["optional-dependencies"][extra]
    return {(r := Requirement(line)).name.lower(): r for line in listed}


def test_each_pin_is_the_floor_and_inside_the_range() -> None:
    pins = dict(line.split("==") for line in lowest_bounds().lowest(list(EXTRAS)))
    required = requirements()
    assert set(pins) == set(required)
    for name, pinned in pins.items():
        floor = [s.version for s in required[name].specifier if s.operator == ">="]
        assert [pinned] == floor, name
        # An upper bound beside the floor (`>=1.10.10,<1.12`) keeps the pin inside it.
        assert required[name].specifier.contains(pinned), name
    assert pins["dbt-core"] == "1.10.10"


def lowest_of(dependencies: list[str], tmp_path: Path) -> list[str]:
    """What the script pins for a pyproject.toml listing these dependencies."""
    module: Any = lowest_bounds()
    module.PYPROJECT = tmp_path / "pyproject.toml"
    module.PYPROJECT.write_text(f"[project]\ndependencies = {dependencies!r}\n")
    pins: list[str] = module.lowest([])
    return pins


@pytest.mark.parametrize("line", ["dbt-core>=1.10.10,<1.12", "dbt-core < 1.12 , >= 1.10.10"])
def test_the_floor_is_found_beside_an_upper_bound(line: str, tmp_path: Path) -> None:
    assert lowest_of([line], tmp_path) == ["dbt-core==1.10.10"]


@pytest.mark.parametrize("line", ["a<2", "a", "a==1"])
def test_a_requirement_without_a_floor_is_refused(line: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="has no '>=' lower bound"):
        lowest_of([line], tmp_path)


@pytest.mark.parametrize("name", ["dbt-core", "dbt-duckdb", "dbt-postgres", "dbt-snowflake"])
def test_dbt_has_an_upper_bound_and_the_installed_version_is_in_range(name: str) -> None:
    # dbt-core 1.12 downloads a parser from outside the package registries as it installs:
    # the range stops below it. What this venv runs (`make test`: the newest in range; `make
    # test-lowest`: the floors) is inside the range.
    requirement = requirements()[name]
    assert any(s.operator == "<" for s in requirement.specifier), requirement
    assert requirement.specifier.contains(Version(version(name))), (name, version(name))
    dev = {
        (r := Requirement(line)).name: r.specifier
        for line in PYPROJECT["optional-dependencies"]["dev"]
    }
    assert dev.get(name, requirement.specifier) == requirement.specifier, "dev and extra differ"


def test_dbt_core_1_12_is_out_of_range() -> None:
    assert not requirements()["dbt-core"].specifier.contains("1.12.0")
    assert requirements()["dbt-core"].specifier.contains("1.11.99")
