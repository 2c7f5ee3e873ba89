"""The one uid rule: the Python rule, the runner's SQL and the dbt package's test agree."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import jinja2
import pytest

from dbt_moengage import uids
from dbt_moengage.warehouse.bigquery import WHITESPACE_SET

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
    # The bigquery__ variant spells the characters by code point, in the same order.
    sql = returned_by(TRIM_MACRO, "bigquery__moengage_uid_trim('uid_value')")
    match = re.fullmatch(r"trim\(uid_value, code_points_to_string\(\[(.*)\]\)\)", sql)
    assert match, sql
    codes = [int(n) for n in match[1].split(", ")]
    assert "".join(map(chr, codes)) == uids.WHITESPACE
    # The engine's set is the same text.
    assert sql.removeprefix("trim(uid_value, ").removesuffix(")") == WHITESPACE_SET


def test_every_unicode_space_is_whitespace() -> None:
    # Python's own idea of whitespace, and the zero-width characters it leaves out.
    spaces = {chr(c) for c in range(0x110000) if chr(c).isspace()}
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
        # Blank-looking: a Hangul filler, the braille blank, a Mongolian vowel separator,
        # a soft hyphen, an information separator, bidi marks.
        ("\u3164", "empty"),
        ("\u2800", "empty"),
        ("a\u180e", "whitespace"),
        ("\u00ad", "empty"),
        ("\x1c", "empty"),
        ("\u200e\u202e", "empty"),
        ("\u00adabc", "whitespace"),
        # Kept: inside a uid they are part of it; a variation selector ends an emoji.
        ("a\u00adb", None),
        ("\u2764\ufe0f", None),
    ],
)
def test_problem(uid: str | None, reason: str | None) -> None:
    assert uids.problem(uid) == reason
