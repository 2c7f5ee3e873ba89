"""What MoEngage's Cohort Sync API accepts and rejects: endpoint, headers, body, limits.

Pure functions over what arrives on the wire; the workspace applies them in MoEngage's
order and keeps the members (see `workspace.py`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass
from typing import Any

ENDPOINT = "/v1/integrations/cohortsync"
ACTIONS = frozenset({"add_members", "remove_members"})
FORBIDDEN_NAME_CHARS = '|*?\\:<>=$"'
RATE_LIMIT_PER_MIN = 300
WINDOW_SECONDS = 60.0
MAX_BODY_BYTES = 131072  # 128 KB of encoded JSON; 413 above it
SUCCESS_BODY: dict[str, Any] = {
    "status": "success",
    "message": "Your request has been accepted and will be processed soon.",
}


class BadRequest(Exception):
    """The body breaks the contract (400); the message names the field."""


@dataclass
class SyncRequest:
    """A body that passed `validate`: one action on one cohort."""

    action: str
    cohort_id: str
    cohort_name: str
    cohort_description: str | None
    uids: list[str]


def error_body(message: str, kind: str, request_id: str) -> dict[str, Any]:
    """MoEngage's error answer: `{"status": "fail", "error": {...}}`."""
    return {
        "status": "fail",
        "error": {"message": message, "type": kind, "request_id": request_id},
    }


def _short(value: object) -> str:
    # Bad values are echoed to help debugging, but bounded so a huge one cannot bloat replies.
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise BadRequest(f"duplicate key {key!r} in a JSON object")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise BadRequest(f"{name} is not valid JSON")


def load_json(raw: bytes) -> Any:
    """Decode a body as strict JSON (UTF-8, no duplicate keys, no NaN); raise BadRequest."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc.msg} at position {exc.pos}") from None


def _require_string(obj: dict[str, Any], key: str, where: str) -> str:
    if key not in obj:
        raise BadRequest(f"{where}{key} is missing")
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{where}{key} must be a non-empty string, got {_short(value)}")
    return value


def validate(doc: Any) -> SyncRequest:
    """Check a decoded body against the contract; raise BadRequest naming the field."""
    if not isinstance(doc, dict):
        raise BadRequest(f"body must be a JSON object, got {type(doc).__name__}")
    extra = sorted(set(doc) - {"action", "partner", "parameters"})
    if extra:
        raise BadRequest(f"unknown top-level key(s): {', '.join(extra)}")
    action = _require_string(doc, "action", "")
    if action not in ACTIONS:
        raise BadRequest(
            f"action must be one of {', '.join(sorted(ACTIONS))}, got {_short(action)}"
        )
    _require_string(doc, "partner", "")
    if "parameters" not in doc:
        raise BadRequest("parameters is missing")
    params = doc["parameters"]
    if not isinstance(params, dict):
        raise BadRequest(f"parameters must be an object, got {_short(params)}")
    allowed = {"cohort_name", "cohort_id", "cohort_description", "members"}
    extra = sorted(set(params) - allowed)
    if extra:
        raise BadRequest(f"unknown key(s) in parameters: {', '.join(extra)}")

    name = _require_string(params, "cohort_name", "parameters.")
    # MoEngage's pages disagree on a leading '.' (an example sends one, a field description
    # forbids it): both forms are accepted.
    if not name.strip().removeprefix(".").strip():
        raise BadRequest(f"parameters.cohort_name must name the cohort, got {_short(name)}")
    bad = sorted({c for c in name if c in FORBIDDEN_NAME_CHARS})
    if bad:
        raise BadRequest(
            f"parameters.cohort_name must not contain {' '.join(bad)}, got {_short(name)}"
        )
    cohort_id = _require_string(params, "cohort_id", "parameters.")
    description = params.get("cohort_description")
    if "cohort_description" in params and not isinstance(description, str):
        raise BadRequest(
            f"parameters.cohort_description must be a string, got {_short(description)}"
        )

    if "members" not in params:
        raise BadRequest("parameters.members is missing")
    members = params["members"]
    if not isinstance(members, list) or not members:
        raise BadRequest("parameters.members must be a non-empty list of {'uid': <string>}")
    uids: list[str] = []
    for i, member in enumerate(members):
        if not isinstance(member, dict) or set(member) != {"uid"}:
            raise BadRequest(
                f"parameters.members[{i}] must be exactly {{'uid': <string>}}, got {_short(member)}"
            )
        uid = member["uid"]
        if not isinstance(uid, str) or not uid:
            raise BadRequest(
                f"parameters.members[{i}].uid must be a non-empty string, got {_short(uid)}"
            )
        uids.append(uid)
    return SyncRequest(action, cohort_id, name, description, uids)


def decode_basic(header: str | None) -> tuple[str, str] | None:
    """The (user, password) of an HTTP Basic `Authorization` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # requests encodes str credentials as latin-1; accept that too.
        text = raw.decode("latin-1")
    user, sep, password = text.partition(":")
    return (user, password) if sep else None


def same_secret(a: str, b: str) -> bool:
    """Compare two credentials in constant time."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def is_json_type(header: str | None) -> bool:
    """Whether a `Content-Type` is application/json (charset utf-8 at most); else 415."""
    if not header:
        return False
    media, *params = (part.strip().lower() for part in header.split(";"))
    if media != "application/json":
        return False
    return all(p.replace(" ", "") in ("", "charset=utf-8", 'charset="utf-8"') for p in params)
