"""The one rule for a uid MoEngage can match, shared by the runner's SQL and the dbt test.

A uid is the model's value cast to text. It is sent when it is not null, not blank, and
has no whitespace at either end: MoEngage compares uids exactly, so `' a '` can never
match user `a`. Whitespace here is every Unicode white space, plus the characters that
render as nothing and arrive from spreadsheets and web forms (zero-width spaces, the
byte-order mark, the soft hyphen, bidi marks, Hangul fillers, the braille blank). The dbt
package's `_moengage_uid_whitespace` macro holds the same characters; tests/unit/test_uids.py
checks that they agree.
"""

from __future__ import annotations

WHITESPACE = (
    " \t\n\x0b\x0c\r"  # ASCII whitespace
    "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"  # Unicode spaces and line breaks
    "\u200b\u200c\u200d\u2060\ufeff"  # zero-width characters and the byte-order mark
    "\x1c\x1d\x1e\x1f"  # the information separators (Python's str.isspace counts them)
    # Default-ignorable characters (they render as nothing: the soft hyphen, bidi marks and
    # embeddings, invisible operators, fillers), and the braille blank. Variation selectors
    # and tag characters are left out: they end emoji and flags.
    "\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069"
    "\u206a\u206b\u206c\u206d\u206e\u206f\u2800\u3164\uffa0"
)

# Why a row of the model is not sent, as counted in the report.
NULL = "null"
BLANK = "empty"
PADDED = "whitespace"
DUPLICATE = "duplicate"
# Longer than the cohort's max_uid_length, or too long for one request body on its own.
TOO_LONG = "too_long"
DROP_REASONS = (NULL, BLANK, PADDED, DUPLICATE, TOO_LONG)


def problem(uid: str | None) -> str | None:
    """Why this uid would not be sent (a DROP_REASONS entry but duplicate and too_long, which
    depend on the other rows and the cohort), or None."""
    if uid is None:
        return NULL
    stripped = uid.strip(WHITESPACE)
    if not stripped:
        return BLANK
    if stripped != uid:
        return PADDED
    return None


def sql_literal() -> str:
    """WHITESPACE as a SQL string literal (no quote to escape in it)."""
    return "'" + WHITESPACE + "'"
