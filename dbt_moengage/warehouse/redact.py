"""Secrets kept out of what the warehouse code shows or stores.

Paths and URLs are shown with the values of secret query parameters and the password of
`user:password@` replaced by `***`: a dbt-duckdb `path` of
`md:analytics?motherduck_token=...` names its database, never its token. Text written to
the state (a run row's `error`) also loses any Authorization value, control characters
and all but its first ERROR_CHARS characters.

A known secret (the MoEngage API key) is masked by `redact_secret` in every form a server
may echo it in; the MoEngage client applies it to whatever it quotes of an answer, before
the text reaches an exception, and so the results file or the state.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote, quote_plus

MASK = "***"
# A run row's error is for people reading the state: the cause fits well within this.
ERROR_CHARS = 2_000
CUT = "..."

# `?name=value`, `&name=value` (also `;`); secret when the name holds one of SECRET_NAMES.
# The value runs to the next separator, space or quote: a path echoed as 'md:x?t=v' or
# "md:x?t=v" by repr or DuckDB keeps its closing quote. No class here repeats inside
# another, so the scan stays linear on a megabyte of server text.
SECRET_NAMES = ("token", "password", "secret", "key")
_PARAM = re.compile(r"(?P<name>[?&;][^=&;?#\s'\"]*=)(?P<value>[^&;#\s'\"]+)")
# scheme://user:password@ (userinfo holds no / ? # by RFC 3986).
_USERINFO = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]{0,31}://[^:/?#@\s'\"]*:)(?P<password>[^@/?#\s'\"]+)(?=@)",
    re.IGNORECASE,
)
# An Authorization header or a credential after its scheme, as a server may echo them:
# `Authorization: Basic dXNl...`, `'authorization': 'Bearer ey...'`, `Bearer ey...`.
_AUTH_HEADER = re.compile(
    r"(?P<head>\bauthorization['\"]?\s*[:=]\s*['\"]?)(?:(?P<scheme>basic|bearer)\s+)?"
    r"(?P<value>[^\s'\",;}]+)",
    re.IGNORECASE,
)
_AUTH_SCHEME = re.compile(r"\b(?P<scheme>basic|bearer)\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)
# C0 and C1 controls and DEL but tab and newline, and the bidi overrides that reorder
# text on a terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def redact_path(text: str) -> str:
    """`text` (a path, URL or a message holding them) with secret values shown as ***."""
    text = _PARAM.sub(_param, text)
    return _USERINFO.sub(lambda m: m["head"] + MASK, text)


def redact_authorization(text: str) -> str:
    """`text` with every Authorization credential (Basic, Bearer or bare) shown as ***."""

    def header(match: re.Match[str]) -> str:
        scheme = f"{match['scheme']} " if match["scheme"] else ""
        return f"{match['head']}{scheme}{MASK}"

    text = _AUTH_HEADER.sub(header, text)
    return _AUTH_SCHEME.sub(lambda m: f"{m['scheme']} {MASK}", text)


def redact_secret(text: str, secret: str, user: str = "") -> str:
    """`text` with every form of `secret` a server may echo shown as ***.

    The forms: the secret itself; in hex; in base64, standard and URL-safe, padded or not,
    of the secret alone and of the Basic token `user:secret`; each also URL-quoted; all in
    any case (an upper-cased echo). A page echoing the request's headers shows the token.
    """
    if not secret:
        return text
    forms: set[str] = set()
    for plain in {secret, f"{user}:{secret}"}:
        # requests sends Basic credentials in Latin-1; a server may echo UTF-8.
        for data in {plain.encode("latin-1", "replace"), plain.encode("utf-8")}:
            encoded = {plain, data.hex()}
            for b64 in (base64.b64encode(data), base64.urlsafe_b64encode(data)):
                encoded |= {b64.decode(), b64.decode().rstrip("=")}
            forms |= encoded | {quote(form, safe="") for form in encoded}
            forms |= {quote_plus(form) for form in encoded}
    # Longest first, so a token is masked whole rather than around the key inside it.
    pattern = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
    return re.sub(pattern, MASK, text, flags=re.IGNORECASE)


def stored_error(text: str | None, limit: int = ERROR_CHARS) -> str | None:
    """An error as the state keeps it: secrets redacted, controls escaped, at most `limit`."""
    if text is None:
        return None
    # Only the start can be kept; the regexes need not read a page of megabytes past it.
    text = redact_authorization(redact_path(text[: limit * 100]))
    text = _CONTROL.sub(_escaped, text)
    return text if len(text) <= limit else text[: limit - len(CUT)] + CUT


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _param(match: re.Match[str]) -> str:
    name = match["name"].lower()
    return match["name"] + MASK if any(word in name for word in SECRET_NAMES) else match[0]
