"""A request to MoEngage that got no answer: what `requests` raised, as a typed error.

One table (`_KINDS`) says which failure an exception is, and what each failure says
(`_TRANSIENT`, `_FATAL`). Transient (retried): timeouts, refused or reset connections (also
mid-handshake), a body cut short or not decodable, and anything unknown. Destination-fatal
(no retry, every later send stops): what no retry can fix, a host that does not resolve, a
TLS or certificate failure, a redirect loop, a bad URL or header. Which exceptions count as
no answer at all is retry.NO_ANSWER, shared by every HTTP client of the runner (the
notifications and dbt Cloud's artifacts client take them all as transient: `no_answer_error`);
only the MoEngage client, which stops a destination for good, reads them further. Messages
show the host, never the URL's credentials or the key.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import urllib3.exceptions
from requests import exceptions as rex

from ..errors import DestinationError, MoEngageSyncError, TransientError
from ..settings import DOCUMENTED_DATA_CENTERS, MoEngageSettings

CONNECT_TIMEOUT = 10.0
FIX_URL = "fix MOENGAGE_BASE_URL or MOENGAGE_DATA_CENTER"
# How a destination-fatal error ends: the client sends the destination nothing more.
STOPPED = "no further requests were sent to it"
# What urllib3 and the socket module raise for a name that does not resolve.
_DNS_ERRORS = (urllib3.exceptions.NameResolutionError, socket.gaierror)
# What ssl raises when the peer closes the connection before TLS is set up.
_TLS_HANG_UPS = (ssl.SSLEOFError, ssl.SSLZeroReturnError)

_Types = tuple[type[BaseException], ...]
# Which failure an exception is: the first row whose type it is, and when the row names
# some, that wraps one of them, names it; where types nest, the narrower row comes first.
_KINDS: tuple[tuple[_Types, _Types, str], ...] = (
    # Timeout first: ConnectTimeout is a ConnectionError too.
    ((rex.ConnectTimeout,), (), "connect_timeout"),
    ((rex.Timeout,), (), "timeout"),
    # SSLError before ConnectionError, of which it is a subclass. A hang-up mid-handshake is
    # a dropped connection; any other TLS failure (certificate, protocol) recurs every time.
    ((rex.SSLError,), _TLS_HANG_UPS, "tls_hang_up"),
    ((rex.SSLError,), (), "tls"),
    # A proxy's own failure (including its name not resolving) is not the destination's.
    ((rex.ProxyError,), (), "proxy"),
    ((rex.ConnectionError,), _DNS_ERRORS, "dns"),
    ((rex.TooManyRedirects,), (), "redirects"),
    # Before InvalidURL, of which it is a subclass.
    ((rex.InvalidProxyURL,), (), "proxy_url"),
    ((rex.InvalidURL, rex.InvalidSchema, rex.MissingSchema), (), "url"),
    ((rex.InvalidHeader, UnicodeError), (), "header"),
    ((rex.ChunkedEncodingError,), (), "cut_off"),
    ((rex.ContentDecodingError,), (), "undecodable"),
    ((rex.ConnectionError,), (), "connection"),
)
# What each failure says (str.format, with the fields `request_error` fills in). A retry
# may fix these: a TransientError; "other" is an exception no row names.
_TRANSIENT = {
    "connect_timeout": "could not connect to {host} within {connect:g} s",
    "timeout": "no answer from {host} within {timeout:g} s",
    "tls_hang_up": "{host} hung up during the TLS handshake",
    "proxy": "the proxy to {host} failed ({cause})",
    "cut_off": "the answer from {host} was cut off mid-body",
    # The request may have been applied; sending it again only repeats uids, harmlessly.
    "undecodable": (
        "the answer from {host} could not be decoded (its Content-Encoding does not match)"
    ),
    "connection": "connection to {host} failed ({cause})",
    "other": "request to {host} failed ({type})",
}
# No retry can fix these: a DestinationError, and no further request to the destination.
_FATAL = {
    "tls": (
        "TLS with {host} failed ({tls}): the host is not the MoEngage API, or a proxy "
        "intercepts TLS (give its CA in REQUESTS_CA_BUNDLE); {fix}"
    ),
    "dns": (
        "host {host} does not resolve (DNS): check MOENGAGE_DATA_CENTER (documented: "
        "{documented}) or MOENGAGE_BASE_URL"
    ),
    "redirects": "{host} redirected too many times: {fix}",
    "proxy_url": "the proxy URL for {host} (HTTPS_PROXY or ALL_PROXY) is not valid",
    "url": "the endpoint {endpoint!r} is not an http(s) URL requests can send to ({type}): {fix}",
    # Not echoed: requests quotes the offending header value.
    "header": (
        "a request header for {host} holds characters HTTP cannot carry ({type}): check "
        "MOENGAGE_WORKSPACE_ID and MOENGAGE_API_KEY"
    ),
}


def request_error(exc: Exception, settings: MoEngageSettings) -> MoEngageSyncError:
    """The typed error for an exception from sending a request: the one place that maps them
    (the tables above)."""
    kind = next(
        (
            name
            for raised, wrapping, name in _KINDS
            if isinstance(exc, raised) and (not wrapping or _wraps(exc, wrapping))
        ),
        "other",
    )
    fields = {
        "host": host_of(settings.base_url),
        "connect": CONNECT_TIMEOUT,
        "timeout": settings.timeout_seconds,
        "tls": _tls_reason(exc),
        "cause": _cause_name(exc),
        "type": type(exc).__name__,
        "endpoint": without_query(settings.endpoint),
        "documented": ", ".join(DOCUMENTED_DATA_CENTERS),
        "fix": FIX_URL,
    }
    if kind in _FATAL:
        return DestinationError(f"{_FATAL[kind].format(**fields)}; {STOPPED}")
    return TransientError(_TRANSIENT[kind].format(**fields))


def _wrapped(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and all it wraps: causes, contexts, urllib3's `reason`, requests' first arg."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(inner, BaseException):
                stack.append(inner)
        stack.extend(arg for arg in current.args[:1] if isinstance(arg, BaseException))


def _wraps(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(inner, types) for inner in _wrapped(exc))


def _cause_name(exc: BaseException) -> str:
    """The innermost wrapped error's type: ConnectionRefusedError says more than MaxRetryError."""
    names = [type(inner).__name__ for inner in _wrapped(exc)]
    return names[-1]


def _tls_reason(exc: BaseException) -> str:
    """What TLS disliked, e.g. 'self-signed certificate', from the ssl error inside."""
    # getattr: ssl sets these attributes only on the errors it raises itself.
    for inner in _wrapped(exc):
        verify = getattr(inner, "verify_message", None)
        if isinstance(inner, ssl.SSLCertVerificationError) and verify:
            return f"certificate verify failed: {verify}"
        reason = getattr(inner, "reason", None)
        if isinstance(inner, ssl.SSLError) and reason:
            return str(reason)
    return type(exc).__name__


def host_of(url: str) -> str:
    """host[:port] of a URL, without any user:password@ before it."""
    authority = url.partition("://")[2] if "://" in url else url
    for end in "/?#":
        authority = authority.split(end, 1)[0]
    return authority.rpartition("@")[2] or "(no host)"


def without_query(url: str) -> str:
    """`url` less its query string, fragment and user:password@, which may carry secrets."""
    url = url.split("?", 1)[0].split("#", 1)[0]
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"
