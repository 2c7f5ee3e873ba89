"""The one uid rule: the Python rule, the runner's SQL and the dbt package's test agree."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import jinja2
import pytest

from dbt_moengage import uids

from ..conftest import ROOT

MACRO = ROOT / "macros" / "_moengage_uid_whitespace.sql"
TRIM_MACRO = ROOT / "macros" / "moengage_uid_trim.sql"


def returned_by(path: Path, call: str) -> str:
    """What the dbt package's macro call (`name(args)`, defined in `path`) returns."""
    returned: list[str] = []
    env = jinja2.Environment()
    env.globals["return"] = returned.append
    source = path.read_text(encoding="utf-8")
    env.from_string(source + "{{ " + call + " }}").render()
    assert len(returned) == 1
    return returned[0]


def test_the_dbt_package_and_the_runner_share_the_characters() -> None:
    assert returned_by(MACRO, "_moengage_uid_whitespace()") == uids.WHITESPACE


def test_bigquery_trims_the_same_characters_by_code_point() -> None:
    # The bigquery__ variant spells each character with chr(), in the same order.
    sql = returned_by(TRIM_MACRO, "bigquery__moengage_uid_trim('uid_value')")
    match = re.fullmatch(r"trim\(uid_value, concat\((.*)\)\)", sql)
    assert match, sql
    assert match[1] == ", ".join(f"chr({ord(char)})" for char in uids.WHITESPACE)


def test_every_unicode_space_is_whitespace() -> None:
    # Python's own idea of whitespace, and the zero-width characters it leaves out.
    spaces = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    spaces -= {"\x1c", "\x1d", "\x1e", "\x1f"}  # file/group/record/unit separators: controls
    assert spaces <= set(uids.WHITESPACE)
    for char in "\u200b\u200c\u200d\u2060\ufeff":
        assert unicodedata.category(char) == "Cf" and char in uids.WHITESPACE
    assert "'" not in uids.WHITESPACE and "{" not in uids.WHITESPACE


@pytest.mark.parametrize(
    ("uid", "reason"),
    [
        (None, "null"),
        ("", "empty"),
        (" \t", "empty"),
        ("\u00a0\u200b", "empty"),
        (" a", "whitespace"),
        ("a\ufeff", "whitespace"),
        ("a b", None),
        ("a\u00a0b", None),
        ("ABC", None),
    ],
)
def test_problem(uid: str | None, reason: str | None) -> None:
    assert uids.problem(uid) == reason
