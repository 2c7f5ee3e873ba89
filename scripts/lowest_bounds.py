"""Print pip constraints that pin each of the project's direct dependencies to its lower bound.

    python scripts/lowest_bounds.py duckdb > lowest.txt
    pip install -c lowest.txt '.[duckdb]'

Used by `make test-lowest`: installing exactly the lower bounds of pyproject.toml (for the
base install and the extras named) and running the unit tier shows that those versions
really have the APIs the code uses. Every requirement must state a `>=` bound; an upper bound
beside it (`dbt-core>=1.10.10,<1.12`), in either order, is left to pip.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*([^;]*)")
_LOWER = re.compile(r"^>=\s*([0-9][^,;\s]*)$")


def lowest(extras: list[str]) -> list[str]:
    """`name==lower` for the base dependencies and those of the extras named."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    pins: dict[str, str] = {}
    for requirement in requirements:
        parsed = _REQUIREMENT.match(requirement)
        specifiers = parsed.group(2).split(",") if parsed else []
        bounds = [_LOWER.match(spec.strip()) for spec in specifiers]
        found = [bound.group(1) for bound in bounds if bound is not None]
        if parsed is None or len(found) != 1:
            raise SystemExit(f"pyproject.toml: {requirement!r} has no '>=' lower bound")
        pins[parsed.group(1).lower()] = found[0]
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


if __name__ == "__main__":
    print("\n".join(lowest(sys.argv[1:])))
