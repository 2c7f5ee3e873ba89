"""Secrets kept out of what the warehouse code shows or stores: paths, URLs, run errors."""

from __future__ import annotations

import base64
import time
from urllib.parse import quote

import pytest

from dbt_moengage.warehouse.redact import (
    ERROR_CHARS,
    redact_authorization,
    redact_path,
    redact_secret,
    stored_error,
)

# -- redact_path ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("md:analytics?motherduck_token=eyJh.bGc-_x", "md:analytics?motherduck_token=***"),
        ("md:?TOKEN=abc", "md:?TOKEN=***"),
        ("https://h/db?password=hunter2", "https://h/db?password=***"),
        ("https://h/db?client_secret=s3", "https://h/db?client_secret=***"),
        ("s3://bucket/x.duckdb?api_key=k1", "s3://bucket/x.duckdb?api_key=***"),
        ("s3://bucket/x.duckdb?Access_Key=k2", "s3://bucket/x.duckdb?Access_Key=***"),
        ("x?MotherDuck_Token=t", "x?MotherDuck_Token=***"),
        (
            "md:db?user=ann&motherduck_token=t1&saas_mode=true&session_key=k;secret=s#frag",
            "md:db?user=ann&motherduck_token=***&saas_mode=true&session_key=***;secret=***#frag",
        ),
        ("https://ann:hunter2@host:8443/db", "https://ann:***@host:8443/db"),
        (
            "postgresql://ann:p%40ss@db.example.com/x?sslkey=k",
            "postgresql://ann:***@db.example.com/x?sslkey=***",
        ),
        ("/data/analytics.duckdb", "/data/analytics.duckdb"),
        ("https://host:8443/db?schema=main&user=ann", "https://host:8443/db?schema=main&user=ann"),
        ("md:analytics", "md:analytics"),
        ("", ""),
    ],
)
def test_secret_values_in_paths_are_masked(text: str, shown: str) -> None:
    assert redact_path(text) == shown


def test_paths_inside_messages_keep_their_quotes_and_the_rest() -> None:
    text = (
        "cannot open DuckDB database 'x.duckdb?motherduck_token=abc': IO Error: Cannot open "
        'file "x.duckdb?motherduck_token=abc": No such file; check the profile\'s `path`'
    )
    assert redact_path(text) == (
        "cannot open DuckDB database 'x.duckdb?motherduck_token=***': IO Error: Cannot open "
        'file "x.duckdb?motherduck_token=***": No such file; check the profile\'s `path`'
    )


# -- redact_authorization ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
        ("{'authorization': 'Bearer abc.def'}", "{'authorization': 'Bearer ***'}"),
        ('"Authorization":"Bearer abc.def"', '"Authorization":"Bearer ***"'),
        ("authorization=raw-token; next", "authorization=***; next"),
        ("sent Bearer abc.def and BASIC dXNlcjpwYXNz=", "sent Bearer *** and BASIC ***"),
        ("HTTP 401: check MOENGAGE_API_KEY", "HTTP 401: check MOENGAGE_API_KEY"),
    ],
)
def test_authorization_values_are_masked(text: str, shown: str) -> None:
    assert redact_authorization(text) == shown


# -- stored_error --------------------------------------------------------------------------


def test_stored_error_is_capped_with_a_marker() -> None:
    assert stored_error("short") == "short"
    assert stored_error(None) is None
    cut = stored_error("y" * 1_000_000)
    assert cut is not None and len(cut) == ERROR_CHARS and cut.endswith("...")
    assert stored_error("z" * ERROR_CHARS) == "z" * ERROR_CHARS


def test_stored_error_escapes_controls_but_tab_and_newline() -> None:
    assert stored_error("a\x00b\x1b[2Jc\r\n\td\x7f\x9b\u202e") == (
        "a\\x00b\\x1b[2Jc\\x0d\n\td\\x7f\\x9b\\u202e"
    )


def test_stored_error_redacts_paths_and_authorization() -> None:
    stored = stored_error("GET md:x?motherduck_token=t1 with Authorization: Bearer abc.def")
    assert stored == "GET md:x?motherduck_token=*** with Authorization: Bearer ***"


@pytest.mark.parametrize(
    "text",
    ["?" * 1_000_000, "a-" * 500_000, "x://a:" + "b" * 1_000_000, "bearer " * 150_000],
)
def test_redaction_stays_fast_on_a_megabyte_of_odd_text(text: str) -> None:
    started = time.perf_counter()
    stored = stored_error(text)
    assert stored is not None and len(stored) <= ERROR_CHARS
    assert time.perf_counter() - started < 5


# -- redact_secret -------------------------------------------------------------------------

USER = "WS_REDACT"
# `+` and `/` in its base64, `/` and `+` in it: every form differs from the others.
SECRET = "sk/Redact+key-\u00e9?~~~"
TOKEN = f"{USER}:{SECRET}"


def forms() -> dict[str, str]:
    latin1, utf8, key = TOKEN.encode("latin-1"), TOKEN.encode(), SECRET.encode("latin-1")
    b64, safe = base64.b64encode(latin1).decode(), base64.urlsafe_b64encode(latin1).decode()
    return {
        "itself": SECRET,
        "upper-cased": SECRET.upper(),
        "lower-cased": SECRET.lower(),
        "url-quoted": quote(SECRET, safe=""),
        "url-quoted upper-cased": quote(SECRET, safe="").upper(),
        "hex": key.hex(),
        "hex upper-cased": key.hex().upper(),
        "token base64": b64,
        "token base64 unpadded": b64.rstrip("="),
        "token base64 url-safe": safe,
        "token base64 url-safe unpadded": safe.rstrip("="),
        "token base64 url-quoted": quote(b64, safe=""),
        "token base64 of utf-8": base64.b64encode(utf8).decode(),
        "key base64": base64.b64encode(key).decode(),
        "key base64 url-safe unpadded": base64.urlsafe_b64encode(key).decode().rstrip("="),
    }


@pytest.mark.parametrize("form", list(forms()))
def test_every_form_of_a_known_secret_is_masked(form: str) -> None:
    echoed = forms()[form]
    text = f'{{"echo": "Basic {echoed}", "seen": [{echoed!r}]}} and more'
    shown = redact_secret(text, SECRET, USER)
    assert echoed not in shown and echoed.lower() not in shown.lower()
    assert shown == '{"echo": "Basic ***", "seen": [\'***\']} and more'


def test_no_secret_masks_nothing() -> None:
    assert redact_secret("Basic abc", "", USER) == "Basic abc"


def test_masking_a_secret_stays_fast_on_the_start_of_a_large_page() -> None:
    started = time.perf_counter()
    assert redact_secret("<p>" * 30_000, SECRET, USER) == "<p>" * 30_000
    assert time.perf_counter() - started < 1
