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


# -- docs/architecture.md's Layout: every folder and module of the package, one line each ----

ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
# Product modules may not grow past this; testing/ holds test doubles and is exempt.
MAX_MODULE_LINES = 450


def layout_paths() -> set[str]:
    """The package paths the Layout section lists (`dbt_moengage/state/store.py`; a folder
    as `dbt_moengage/state/`), from the indentation of its indented block."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed: set[str] = set()
    parents: list[str] = []
    for line in block.splitlines():
        if not line.startswith("    ") or not line.strip():
            continue
        body = line[4:]
        depth = (len(body) - len(body.lstrip(" "))) // 2
        name = body.split()[0]
        parents = parents[:depth]
        if depth == 0 and name != "dbt_moengage/":
            continue
        if not parents and depth:
            continue
        path = "".join(parents) + name
        if name == "__init__.py":
            path = "".join(parents)
        if name.endswith("/"):
            parents.append(name)
        if path.startswith("dbt_moengage/"):
            listed.add(path)
    return listed


def package_paths() -> set[str]:
    """Every module of the package and every folder holding one (`__init__.py` stands for
    its folder)."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        if path.name == "__init__.py":
            found.add(relative.removesuffix("__init__.py"))
        else:
            found.add(relative)
    return found


def test_the_layout_in_the_docs_is_the_tree() -> None:
    listed, tree = layout_paths(), package_paths()
    assert sorted(tree - listed) == [], "in the tree, missing from docs/architecture.md"
    assert sorted(listed - tree) == [], "in docs/architecture.md, not in the tree"


def test_no_product_module_is_longer_than_the_limit() -> None:
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in product_modules()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
