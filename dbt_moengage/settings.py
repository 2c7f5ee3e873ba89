"""MoEngage settings from the environment; the API key is held so it cannot be printed."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from .errors import SettingsError
from .urls import check_url

DEFAULT_PARTNER = "dbt-moengage"
DEFAULT_RATE_LIMIT_PER_MIN = 300
# MoEngage says 128 KB; 128,000 bytes fits both the decimal and the binary reading of that.
DEFAULT_MAX_BODY_BYTES = 128_000
# MoEngage refuses (413) a request body above 128 KB in its binary reading.
MOENGAGE_BODY_LIMIT_BYTES = 131_072
DEFAULT_MAX_IN_FLIGHT = 4
# ASCII digits only: \d would also take other scripts' digits, e.g. Arabic-Indic. Three
# digits for data centers such as 101.
_DATA_CENTER_RE = re.compile(r"\A[0-9]{2,3}\Z")
# MoEngage's API introduction lists these; another one still works, with a warning.
DOCUMENTED_DATA_CENTERS = ("01", "02", "03", "04", "05", "06", "101")
# A whole number or a float read from a variable (`_positive`).
_N = TypeVar("_N", int, float)


class Secret:
    """A string that shows as '***' in repr, str and f-strings; `.reveal()` gives it back."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class MoEngageSettings:
    """Where and how to talk to one MoEngage workspace."""

    workspace_id: str
    api_key: Secret
    base_url: str
    partner: str = DEFAULT_PARTNER
    rate_limit_per_min: int = DEFAULT_RATE_LIMIT_PER_MIN
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    timeout_seconds: float = 60.0
    # One request, answer included, ends by this wall clock (a trickling server cannot
    # hold the run); a request that misses it is retried.
    request_deadline_seconds: float = 120.0
    max_attempts: int = 8
    # One budget per destination per run: its failing attempts and the waits between them
    # end by this, and no wait or attempt is begun that would end past it (a Retry-After of
    # a day, or an outage, cannot hold the run for hours); then the destination is down.
    retry_budget_seconds: float = 600.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    lock_wait_seconds: float = 300.0
    lock_stale_seconds: float = 120.0

    @property
    def endpoint(self) -> str:
        """The Cohort Sync endpoint URL."""
        return self.base_url.rstrip("/") + "/v1/integrations/cohortsync"

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        require_credentials: bool = True,
        destination: str | None = None,
    ) -> MoEngageSettings:
        """Read MOENGAGE_* variables; refuse missing credentials and unsafe URLs.

        A named destination reads its workspace, key, data center, base URL, partner and
        quota from MOENGAGE_<NAME>_*; it never borrows another destination's credentials.
        """
        env = os.environ if environ is None else environ
        if destination:
            try:
                return cls.from_env(
                    destination_env(env, destination), require_credentials, destination=None
                )
            except SettingsError as exc:
                # Name the variables the user must set for this destination.
                message = str(exc)
                for name in PER_DESTINATION:
                    message = message.replace(
                        f"MOENGAGE_{name}", destination_prefix(destination) + name
                    )
                raise SettingsError(f"destination '{destination}': {message}") from None
        workspace_id = env.get("MOENGAGE_WORKSPACE_ID", "").strip()
        api_key = env.get("MOENGAGE_API_KEY", "")
        missing = [
            name
            for name, value in (
                ("MOENGAGE_WORKSPACE_ID", workspace_id),
                ("MOENGAGE_API_KEY", api_key.strip()),
            )
            if not value
        ]
        if missing and require_credentials:
            raise SettingsError(
                f"missing {' and '.join(missing)}: set the workspace id and the Data API key "
                "(MoEngage dashboard: Settings -> Account -> APIs -> Data API Settings)"
            )
        # Whatever is set is checked, even when it is not required (a dry run).
        if api_key.strip():
            check_header_value("MOENGAGE_API_KEY", api_key, "the API key")
        if workspace_id:
            check_header_value("MOENGAGE_WORKSPACE_ID", workspace_id, "the workspace id")
        base_url = base_url_from_env(env, required=require_credentials)
        max_body_bytes = _positive_int(env, "MOENGAGE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
        if max_body_bytes > MOENGAGE_BODY_LIMIT_BYTES:
            raise SettingsError(
                f"MOENGAGE_MAX_BODY_BYTES = {max_body_bytes}: above MoEngage's limit of "
                f"{MOENGAGE_BODY_LIMIT_BYTES} bytes (128 KB) per request, which it would refuse "
                f"(HTTP 413); set it to {MOENGAGE_BODY_LIMIT_BYTES} or less, or unset it for the "
                f"default of {DEFAULT_MAX_BODY_BYTES}"
            )
        return cls(
            workspace_id=workspace_id,
            api_key=Secret(api_key),
            base_url=base_url,
            partner=env.get("MOENGAGE_PARTNER", DEFAULT_PARTNER).strip() or DEFAULT_PARTNER,
            rate_limit_per_min=_positive_int(
                env, "MOENGAGE_RATE_LIMIT_PER_MIN", DEFAULT_RATE_LIMIT_PER_MIN
            ),
            max_body_bytes=max_body_bytes,
            max_in_flight=_positive_int(env, "MOENGAGE_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT),
            timeout_seconds=_positive_float(env, "MOENGAGE_TIMEOUT_SECONDS", 60.0),
            request_deadline_seconds=_positive_float(
                env, "MOENGAGE_REQUEST_DEADLINE_SECONDS", 120.0
            ),
            max_attempts=_positive_int(env, "MOENGAGE_MAX_ATTEMPTS", 8),
            retry_budget_seconds=_positive_float(env, "MOENGAGE_RETRY_BUDGET_SECONDS", 600.0),
            backoff_initial=_positive_float(env, "MOENGAGE_RETRY_INITIAL_SECONDS", 1.0),
            backoff_max=_positive_float(env, "MOENGAGE_RETRY_MAX_SECONDS", 60.0),
            lock_wait_seconds=_positive_float(env, "MOENGAGE_LOCK_WAIT_SECONDS", 300.0),
            lock_stale_seconds=_positive_float(env, "MOENGAGE_LOCK_STALE_SECONDS", 120.0),
        )


# What each destination sets for itself; everything else (timeouts, retries) is shared.
PER_DESTINATION = (
    "WORKSPACE_ID",
    "API_KEY",
    "DATA_CENTER",
    "BASE_URL",
    "PARTNER",
    "RATE_LIMIT_PER_MIN",
)
# A destination's name (meta.moengage.destination): it names its MOENGAGE_<NAME>_* variables.
DESTINATION_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")


def destination_prefix(destination: str) -> str:
    """MOENGAGE_<NAME>_ for a destination name."""
    return f"MOENGAGE_{destination.upper()}_"


def destination_env(env: Mapping[str, str], destination: str) -> dict[str, str]:
    """The environment as a named destination sees it, under the default names."""
    if not DESTINATION_NAME_RE.match(destination):
        raise SettingsError(
            f"destination {destination!r}: use letters, digits and _ (it names the "
            f"{destination_prefix('<name>')}* variables)"
        )
    view = {k: v for k, v in env.items() if not k.startswith("MOENGAGE_")}
    prefix = destination_prefix(destination)
    for key, value in env.items():
        name = key.removeprefix("MOENGAGE_")
        if key.startswith("MOENGAGE_") and name not in PER_DESTINATION:
            view[key] = value
    for name in PER_DESTINATION:
        if prefix + name in env:
            view["MOENGAGE_" + name] = env[prefix + name]
    return view


def base_url_from_env(env: Mapping[str, str], required: bool = True) -> str:
    """MOENGAGE_BASE_URL if set, else https://api-{MOENGAGE_DATA_CENTER}.moengage.com.

    A dry run sends nothing, so it needs neither; whatever is set is still checked.
    """
    base_url = env.get("MOENGAGE_BASE_URL", "").strip()
    data_center = env.get("MOENGAGE_DATA_CENTER", "").strip()
    if data_center and not _DATA_CENTER_RE.match(data_center):
        raise SettingsError(
            f"MOENGAGE_DATA_CENTER = {data_center!r}: must be two or three digits, such as "
            f"{', '.join(DOCUMENTED_DATA_CENTERS)} (the number in your dashboard's URL, "
            "dashboard-NN.moengage.com)"
        )
    if not base_url:
        if not data_center and not required:
            return ""
        if not data_center:
            raise SettingsError(
                "set MOENGAGE_DATA_CENTER (two or three digits, e.g. '01') or MOENGAGE_BASE_URL"
            )
        return f"https://api-{data_center}.moengage.com"
    check_base_url(base_url)
    return base_url.rstrip("/")


def data_center_warning(env: Mapping[str, str], destination: str | None = None) -> str | None:
    """A warning when the data center in use is not one MoEngage documents; None otherwise.

    It never refuses: a new region works before this list knows it. A malformed value is
    from_env's to refuse, and a data center that MOENGAGE_BASE_URL overrides is not used.
    """
    if destination:
        env = destination_env(env, destination)
    data_center = env.get("MOENGAGE_DATA_CENTER", "").strip()
    if env.get("MOENGAGE_BASE_URL", "").strip() or not _DATA_CENTER_RE.match(data_center):
        return None
    if data_center in DOCUMENTED_DATA_CENTERS:
        return None
    name = (destination_prefix(destination) if destination else "MOENGAGE_") + "DATA_CENTER"
    return (
        f"{name} = {data_center!r} is not a data center MoEngage documents "
        f"({', '.join(DOCUMENTED_DATA_CENTERS)}); requests will go to "
        f"https://api-{data_center}.moengage.com: check it against your dashboard's URL "
        "(dashboard-NN.moengage.com)"
    )


def check_base_url(url: str) -> None:
    """Refuse a base URL that would send credentials in clear or is not a URL (the one rule
    of every URL setting, urls.py)."""
    check_url(
        url,
        "MOENGAGE_BASE_URL",
        carries="credentials",
        example="https://api-01.moengage.com",
        fix="use MOENGAGE_API_KEY instead",
    )


MOENGAGE_DASHBOARD = "the MoEngage dashboard (Settings -> Account -> APIs -> Data API Settings)"


def check_header_value(name: str, value: str, what: str, source: str = MOENGAGE_DASHBOARD) -> None:
    """Refuse a value that cannot go in an HTTP header, naming what is wrong but not the value.

    MoEngage's key travels in Basic auth (Latin-1) and the workspace id also in MOE-APPKEY,
    dbt Cloud's token in Authorization: only printable Latin-1 fits. No value is echoed:
    the key and the token are secret, and the workspace id is kept out too, so that the
    rule is the same for all. `what` names the value, `source` where to copy it from.
    """
    if value != value.strip():
        raise SettingsError(
            f"{name} starts or ends with whitespace (a space, tab or line break): remove it; "
            f"it is almost always left over from copying {what}"
        )
    for position, char in enumerate(value, start=1):
        if ord(char) <= 0xFF and char.isprintable():
            continue
        raise SettingsError(
            f"{name} has {_character_kind(char)} (U+{ord(char):04X}) at character {position} "
            f"of {len(value)}; HTTP headers take printable Latin-1 only: copy {what} again "
            f"from {source} and paste it as plain text"
        )


def _character_kind(char: str) -> str:
    """What sort of character is wrong, in words a user can act on."""
    category = unicodedata.category(char)
    if category == "Cc":
        return "a control character (such as a line break, tab or DEL)"
    if category == "Cf":
        return "an invisible formatting character (such as a zero-width space)"
    if category.startswith("Z"):
        return "a non-standard space (such as a non-breaking space)"
    return "a character outside Latin-1 (such as a typographic dash or quote)"


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    return _positive(env, name, default, int, "a positive whole number")


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    return _positive(env, name, default, float, "a positive number of seconds")


def _positive(
    env: Mapping[str, str], name: str, default: _N, parse: Callable[[str], _N], what: str
) -> _N:
    """The variable `name` read with `parse`, `default` when unset or blank; SettingsError
    saying it must be `what` when it is not a number above 0."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value: _N | None = parse(raw)
    except ValueError:
        value = None
    if value is None or not value > 0:
        raise SettingsError(f"{name} = {raw!r}: must be {what}")
    return value
