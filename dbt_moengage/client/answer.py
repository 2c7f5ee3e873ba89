"""An answer from MoEngage: the start of its body read, and what it means.

Of an answer only the first BODY_READ bytes are ever read (`read_start`): MoEngage answers
in a few hundred bytes, and an error page of gigabytes must not fill the memory. Only a 2xx
carrying MoEngage's `{"status": "success"}` counts as accepted (`check_answer`); a redirect
is never followed, and any other status is the typed error retry.answer_error (the table
every client shares) or this API's own reading of it (a refused key, a body too large).
What an error quotes of an answer goes through `redact_secret`, which masks the key in any
form a server may echo it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests

from .. import retry
from ..errors import DestinationError, RequestRejected, WorkspaceFatal
from ..settings import MoEngageSettings
from ..warehouse.redact import redact_secret
from .failures import FIX_URL, STOPPED, host_of, without_query

# How much of an unexpected answer's body and of a redirect target an error message shows.
BODY_SHOWN = 200
LOCATION_SHOWN = 120
# At most this much of an answer's body is read (the rest is never read).
BODY_READ = 64 * 1024


def read_start(response: requests.Response, limit: int) -> tuple[bytes, bool]:
    """The first `limit` bytes of the (decoded) body, and whether there was more. The rest
    is never read: closing the response then drops the connection instead of draining it."""
    start = bytearray()
    for chunk in response.iter_content(min(limit, 16 * 1024)):
        start += chunk
        if len(start) > limit:
            return bytes(start[:limit]), True
    return bytes(start), False


@dataclass(frozen=True)
class Answer:
    """An answer as read: its status and headers, and the start of its body."""

    response: requests.Response
    body: bytes
    # The body went on past what was read.
    more: bool = False

    @property
    def text(self) -> str:
        """The body as text; decoded by hand, as guessing a charset is slow on a large page."""
        try:
            return self.body.decode(self.response.encoding or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


def check_answer(answer: Answer, settings: MoEngageSettings, size: int = 0) -> None:
    """Return if MoEngage accepted the request (of `size` bytes); raise the typed error
    otherwise."""
    response = answer.response
    status = response.status_code
    if 200 <= status < 300:
        doc = None if answer.more else _json_object(answer.body)
        if doc is not None and doc.get("status") == "success":
            return
        raise RequestRejected(status, _unexpected(answer, settings, doc is not None))
    if 300 <= status < 400:
        location = shown(without_query(response.headers.get("Location", "")), settings)
        target = f"to {location!r}" if location else "without a Location header"
        raise DestinationError(
            f"{host_of(settings.base_url)} answered HTTP {status}, a redirect {target}, "
            f"which is never followed (the credentials would go along): {FIX_URL} to "
            f"name the API host itself; {STOPPED}"
        )
    detail = _detail(answer, settings)
    problem = f"HTTP 429 rate limited: {detail}" if status == 429 else f"HTTP {status}: {detail}"
    error = retry.answer_error(status, problem, response.headers.get("Retry-After"))
    if error is not None:
        raise error
    if status in (401, 403):
        raise WorkspaceFatal(
            f"MoEngage answered HTTP {status} for workspace "
            f"'{settings.workspace_id}': check MOENGAGE_WORKSPACE_ID and "
            f"MOENGAGE_API_KEY (the Data API key, not the SDK key) and the data center "
            f"({settings.base_url}); {STOPPED}"
        )
    if status == 413:
        detail += (
            f"; this body was {size:,} bytes: lower MOENGAGE_MAX_BODY_BYTES (now "
            f"{settings.max_body_bytes:,}) below the limit MoEngage applies"
        )
    raise RequestRejected(status, detail)


def _detail(answer: Answer, settings: MoEngageSettings, limit: int = 500) -> str:
    """The body of an answer, fit for a message: secrets masked, on one line, cut short."""
    if answer.more:
        # Within `limit` too: a message has the same room whatever the body's size.
        note = f" (a body over {BODY_READ // 1024} KB: only its start was read)"
        return shown(answer.text, settings, max(limit - len(note), 20)) + note
    return shown(answer.text, settings, limit) or answer.response.reason or ""


def _unexpected(answer: Answer, settings: MoEngageSettings, is_json: bool) -> str:
    """What came back instead of MoEngage's success JSON (a proxy's page, nothing, a fail)."""
    kind = shown(answer.response.headers.get("Content-Type", ""), settings, 80) or "none"
    body = _detail(answer, settings, BODY_SHOWN) if answer.body else "empty"
    # A JSON answer is MoEngage's own word; anything else is likely another host's page.
    hint = "" if is_json else f"; if this is not MoEngage, {FIX_URL}"
    return (
        f'the answer is not the API\'s acceptance {{"status": "success"}}: Content-Type '
        f"{kind!r}, body {body!r}{hint}"
    )


def shown(text: str, settings: MoEngageSettings, limit: int = LOCATION_SHOWN) -> str:
    """`text` fit for a message: secrets masked first, then on one line and cut short."""
    key, workspace = settings.api_key.reveal(), settings.workspace_id
    text = " ".join(redact_secret(text, key, workspace).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is anything else."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting too deep to parse
        return None
    return doc if isinstance(doc, dict) else None
