"""The package's shape: one error tree, no test double or toy server among the stages."""

from __future__ import annotations

import ast
from pathlib import Path

import dbt_moengage
from dbt_moengage import errors

PACKAGE = Path(dbt_moengage.__file__).parent
# The test double may do what the product must not (http.server, its own error type).
TESTING = PACKAGE / "testing"


def product_modules() -> list[Path]:
    """Every module of the package outside dbt_moengage/testing/."""
    return [p for p in sorted(PACKAGE.rglob("*.py")) if TESTING not in p.parents]


def imported(tree: ast.AST) -> set[str]:
    """The modules a file imports, at any depth."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_product_module_serves_http_with_http_server() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in product_modules()
        if any(name.startswith("http.server") for name in imported(ast.parse(path.read_text())))
    ]
    assert offenders == []


def test_every_exception_type_lives_in_errors_py() -> None:
    declared = []
    for path in product_modules():
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            bases = [ast.unparse(base) for base in getattr(node, "bases", [])]
            if isinstance(node, ast.ClassDef) and any(
                base.endswith(("Error", "Exception")) for base in bases
            ):
                declared.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert declared == []


def test_the_error_tree_in_the_docstring_names_every_error() -> None:
    drawn = errors.__doc__ or ""
    types = [
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.MoEngageSyncError)
    ]
    assert types
    assert [name for name in types if name not in drawn] == []
