"""The one rule every URL setting passes: MOENGAGE_BASE_URL (and each destination's),
MOENGAGE_NOTIFY_URL and DBT_CLOUD_HOST.

A URL is read with urllib3's `parse_url`, the parser requests connects by, never with
another: `http://127.1:8080\\@127.0.0.1/` is host 127.0.0.1 to `urlsplit` but 127.1:8080 to
requests, so a check made with one and a request made with the other go different ways.
On top of that, what parsers disagree on is refused outright: a backslash anywhere, and a
user part (`user:password@`, any `@` before the path). An `@` in the path stays allowed
(Microsoft Teams webhook URLs have one).
"""

from __future__ import annotations

import ipaddress

from urllib3.exceptions import LocationParseError
from urllib3.util import Url, parse_url

from .errors import SettingsError


def check_url(
    url: str, name: str, *, carries: str, example: str, fix: str, shown: bool = True
) -> Url:
    """`url` as requests will use it, or SettingsError naming `name` when it is not an
    http(s) URL with a host and a valid port, holds a backslash or a user part, or is plain
    http:// to a host other than this machine.

    `carries` says what would travel in clear, `example` what a right value looks like, `fix`
    where credentials go instead. Only a URL `shown` may appear in a message, and only once
    it is known to hold no user part; a notification URL's path is its secret.
    """
    if "\\" in url:
        raise SettingsError(
            f"{name} holds a backslash, which HTTP clients read differently (one sees a "
            f"different host than another): remove it, e.g. {example}"
        )
    try:
        parts = parse_url(url)
    except LocationParseError:
        # Not echoed: the parser's message quotes the URL, which may hold a secret.
        raise SettingsError(
            f"{name} is not a valid URL (a bad host or port, or a space in it): set it to "
            f"the URL as given, e.g. {example}"
        ) from None
    if parts.auth is not None:
        raise SettingsError(f"{name} must not carry credentials (user:password@); {fix}")
    quoted = f" = {url!r}" if shown else ""
    if parts.scheme not in ("http", "https") or not parts.host:
        raise SettingsError(f"{name}{quoted}: must be an https:// URL with a host, e.g. {example}")
    if parts.scheme == "http" and not is_loopback(parts.host):
        raise SettingsError(
            f"{name}{quoted}: plain http:// is only allowed to a loopback address (127.0.0.1, "
            f"localhost, ::1), because {carries} would travel in clear; use https://"
        )
    return parts


def origin(url: str) -> str:
    """scheme://host[:port] of a URL, read as requests reads it: what may be shown of it."""
    try:
        parts = parse_url(url)
    except LocationParseError:
        return "(not a URL)"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.host or ''}{port}"


def is_loopback(host: str) -> bool:
    """Whether a URL's host is this machine (plain http is allowed only there)."""
    host = host.lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


__all__ = ["check_url", "is_loopback", "origin"]
