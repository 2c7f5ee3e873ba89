"""settings: MoEngage settings from the environment, and the Secret that holds the key."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests

from dbt_moengage.errors import ConfigError, SettingsError
from dbt_moengage.integrations.dbt_cloud import check_cloud_host
from dbt_moengage.notify import NotifySettings
from dbt_moengage.settings import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_RATE_LIMIT_PER_MIN,
    DOCUMENTED_DATA_CENTERS,
    MoEngageSettings,
    Secret,
    data_center_warning,
)
from dbt_moengage.urls import check_url, is_loopback

KEY = "sk-live-7f3a9c1e-never-print-me"
WORKSPACE = "WS_TEST_123"
# Unicode digits that `\d` would take but a URL host must not.
ARABIC_INDIC_01 = "\u0660\u0661"
FULLWIDTH_01 = "\uff10\uff11"


def env(**overrides: str) -> dict[str, str]:
    """A complete environment for data center 01, with `overrides` applied."""
    base = {
        "MOENGAGE_WORKSPACE_ID": WORKSPACE,
        "MOENGAGE_API_KEY": KEY,
        "MOENGAGE_DATA_CENTER": "01",
    }
    return {**base, **overrides}


def without(*names: str) -> dict[str, str]:
    """The complete environment less `names`."""
    return {k: v for k, v in env().items() if k not in names}


def refused(environ: dict[str, str]) -> str:
    """from_env must raise SettingsError; its message, checked free of the key."""
    with pytest.raises(SettingsError) as info:
        MoEngageSettings.from_env(environ)
    message = str(info.value)
    assert KEY not in message
    return message


def test_complete_environment() -> None:
    settings = MoEngageSettings.from_env(env())
    assert settings.workspace_id == WORKSPACE
    assert settings.api_key.reveal() == KEY
    assert settings.base_url == "https://api-01.moengage.com"
    assert settings.endpoint == "https://api-01.moengage.com/v1/integrations/cohortsync"
    assert settings.partner == "dbt-moengage"
    assert settings.rate_limit_per_min == DEFAULT_RATE_LIMIT_PER_MIN == 300
    assert settings.max_body_bytes == DEFAULT_MAX_BODY_BYTES == 128_000
    assert settings.max_in_flight == DEFAULT_MAX_IN_FLIGHT


def test_workspace_id_is_stripped() -> None:
    assert MoEngageSettings.from_env(env(MOENGAGE_WORKSPACE_ID="  WS  ")).workspace_id == "WS"


# Credentials


@pytest.mark.parametrize(
    ("environ", "named", "not_named"),
    [
        (without("MOENGAGE_WORKSPACE_ID"), ["MOENGAGE_WORKSPACE_ID"], ["MOENGAGE_API_KEY"]),
        (env(MOENGAGE_WORKSPACE_ID="   "), ["MOENGAGE_WORKSPACE_ID"], ["MOENGAGE_API_KEY"]),
        (without("MOENGAGE_API_KEY"), ["MOENGAGE_API_KEY"], ["MOENGAGE_WORKSPACE_ID"]),
        (env(MOENGAGE_API_KEY=""), ["MOENGAGE_API_KEY"], ["MOENGAGE_WORKSPACE_ID"]),
        (without("MOENGAGE_WORKSPACE_ID", "MOENGAGE_API_KEY"), ["MOENGAGE_WORKSPACE_ID"], []),
    ],
)
def test_missing_credentials_are_named(
    environ: dict[str, str], named: list[str], not_named: list[str]
) -> None:
    message = refused(environ)
    assert message.startswith("missing ")
    for name in named:
        assert name in message
    for name in not_named:
        assert name not in message
    assert "Data API Settings" in message


def test_both_credentials_missing_names_both() -> None:
    message = refused(without("MOENGAGE_WORKSPACE_ID", "MOENGAGE_API_KEY"))
    assert "MOENGAGE_WORKSPACE_ID and MOENGAGE_API_KEY" in message


def test_settings_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        MoEngageSettings.from_env({})


def test_credentials_may_be_left_out_when_not_required() -> None:
    settings = MoEngageSettings.from_env({"MOENGAGE_DATA_CENTER": "02"}, require_credentials=False)
    assert settings.workspace_id == ""
    assert not settings.api_key
    assert settings.base_url == "https://api-02.moengage.com"


def test_reads_os_environ_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env(MOENGAGE_DATA_CENTER="03").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MOENGAGE_BASE_URL", raising=False)
    assert MoEngageSettings.from_env().base_url == "https://api-03.moengage.com"


# Data center and base URL


@pytest.mark.parametrize(
    ("data_center", "url"),
    [
        ("01", "https://api-01.moengage.com"),
        ("02", "https://api-02.moengage.com"),
        (" 03 ", "https://api-03.moengage.com"),
        ("99", "https://api-99.moengage.com"),
        ("101", "https://api-101.moengage.com"),
        ("001", "https://api-001.moengage.com"),
    ],
)
def test_data_center_gives_the_url(data_center: str, url: str) -> None:
    assert MoEngageSettings.from_env(env(MOENGAGE_DATA_CENTER=data_center)).base_url == url


@pytest.mark.parametrize(
    "data_center",
    ["1", "1010", "ab", "0a", "10a", "dc01", "1 2", "1.0", ARABIC_INDIC_01, FULLWIDTH_01],
)
def test_data_center_must_be_two_or_three_digits(data_center: str) -> None:
    message = refused(env(MOENGAGE_DATA_CENTER=data_center))
    assert "MOENGAGE_DATA_CENTER" in message
    assert repr(data_center.strip()) in message
    assert "two or three digits" in message
    assert "101" in message


def test_documented_data_centers_give_no_warning() -> None:
    assert DOCUMENTED_DATA_CENTERS == ("01", "02", "03", "04", "05", "06", "101")
    for data_center in DOCUMENTED_DATA_CENTERS:
        environ = env(MOENGAGE_DATA_CENTER=f" {data_center} ")
        url = MoEngageSettings.from_env(environ).base_url
        assert url == f"https://api-{data_center}.moengage.com"
        assert data_center_warning(environ) is None


@pytest.mark.parametrize("data_center", ["07", "99", "00", "102", "001"])
def test_undocumented_data_center_warns_but_works(data_center: str) -> None:
    environ = env(MOENGAGE_DATA_CENTER=data_center)
    assert MoEngageSettings.from_env(environ).base_url == f"https://api-{data_center}.moengage.com"
    warning = data_center_warning(environ)
    assert warning is not None
    assert f"MOENGAGE_DATA_CENTER = {data_center!r}" in warning
    assert "01, 02, 03, 04, 05, 06, 101" in warning
    assert f"https://api-{data_center}.moengage.com" in warning


@pytest.mark.parametrize(
    "environ",
    [
        without("MOENGAGE_DATA_CENTER"),
        env(MOENGAGE_DATA_CENTER=""),
        env(MOENGAGE_DATA_CENTER="abc"),  # from_env refuses it; no warning on top
        env(MOENGAGE_DATA_CENTER="07", MOENGAGE_BASE_URL="https://proxy.example.com"),
    ],
)
def test_no_data_center_warning_when_none_is_used(environ: dict[str, str]) -> None:
    assert data_center_warning(environ) is None


def test_data_center_warning_names_the_destination_variable() -> None:
    environ = {"MOENGAGE_DATA_CENTER": "01", "MOENGAGE_EU_DATA_CENTER": "09"}
    warning = data_center_warning(environ, destination="eu")
    assert warning is not None and warning.startswith("MOENGAGE_EU_DATA_CENTER = '09'")
    assert data_center_warning(environ) is None
    assert data_center_warning({"MOENGAGE_DATA_CENTER": "09"}, destination="eu") is None


def test_neither_data_center_nor_base_url() -> None:
    message = refused(without("MOENGAGE_DATA_CENTER"))
    assert "MOENGAGE_DATA_CENTER" in message and "MOENGAGE_BASE_URL" in message
    assert "two or three digits" in message


def test_base_url_overrides_the_data_center() -> None:
    settings = MoEngageSettings.from_env(env(MOENGAGE_BASE_URL="https://proxy.example.com/moe/"))
    assert settings.base_url == "https://proxy.example.com/moe"
    assert settings.endpoint == "https://proxy.example.com/moe/v1/integrations/cohortsync"


def test_base_url_alone_is_enough() -> None:
    environ = without("MOENGAGE_DATA_CENTER")
    environ["MOENGAGE_BASE_URL"] = "https://api-05.moengage.com"
    assert MoEngageSettings.from_env(environ).base_url == "https://api-05.moengage.com"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8765",
        "http://127.0.0.1",
        "http://127.1.2.3:9000/base",
        "http://localhost:8080",
        "http://LOCALHOST:8080",
        "http://[::1]:8765",
    ],
)
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    assert MoEngageSettings.from_env(env(MOENGAGE_BASE_URL=url)).base_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "http://10.0.0.1:8765",
        "http://192.168.1.1",
        "http://[2001:db8::1]:80",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
    ],
)
def test_plain_http_elsewhere_is_refused(url: str) -> None:
    message = refused(env(MOENGAGE_BASE_URL=url))
    assert "MOENGAGE_BASE_URL" in message and repr(url) in message
    assert "loopback" in message and "https://" in message


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@api-01.moengage.com",
        "https://:hunter2@api-01.moengage.com",
        "https://user@api-01.moengage.com",
        "http://user:hunter2@127.0.0.1:8765",
        "ftp://user:hunter2@example.com",
        "http://user:hunter2@",
        "https://user:hunter2@[::1",
    ],
)
def test_url_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    message = refused(env(MOENGAGE_BASE_URL=url))
    assert "MOENGAGE_BASE_URL" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "url", ["api-01.moengage.com", "ftp://api-01.moengage.com", "https://", "http://[::1"]
)
def test_base_url_that_is_not_an_http_url(url: str) -> None:
    message = refused(env(MOENGAGE_BASE_URL=url))
    assert "MOENGAGE_BASE_URL" in message


# One URL rule for every URL setting (urls.py)


def _base_url(url: str) -> None:
    MoEngageSettings.from_env(env(MOENGAGE_BASE_URL=url))


def _destination_base_url(url: str) -> None:
    MoEngageSettings.from_env(
        {"MOENGAGE_EU_WORKSPACE_ID": "W", "MOENGAGE_EU_API_KEY": KEY, "MOENGAGE_EU_BASE_URL": url},
        destination="eu",
    )


def _cloud_host(url: str) -> None:
    check_cloud_host(url)


def _notify_url(url: str) -> None:
    NotifySettings.from_env({"MOENGAGE_NOTIFY_URL": url})


URL_SETTINGS = {
    "MOENGAGE_BASE_URL": _base_url,
    "MOENGAGE_EU_BASE_URL": _destination_base_url,
    "DBT_CLOUD_HOST": _cloud_host,
    "MOENGAGE_NOTIFY_URL": _notify_url,
}
# URLs whose host depends on who parses them, or that carry a user part.
AMBIGUOUS = [
    "http://127.1:8080\\@127.0.0.1/secret-path",
    "http://evil.example\\@127.0.0.1/secret-path",
    "https://evil.example\\@api-01.moengage.com/secret-path",
    "http://127.0.0.1:80\\secret-path",
    "http://evil.example:80@127.0.0.1/secret-path",
    "https://secret-path@api-01.moengage.com",
]


@pytest.mark.parametrize("url", AMBIGUOUS)
@pytest.mark.parametrize("name", list(URL_SETTINGS))
def test_every_url_setting_refuses_what_parsers_disagree_on(name: str, url: str) -> None:
    with pytest.raises(SettingsError) as caught:
        URL_SETTINGS[name](url)
    message = str(caught.value)
    assert name in message
    assert "secret-path" not in message and "evil.example" not in message


@pytest.mark.parametrize(
    "url",
    [
        *AMBIGUOUS,
        "http://127.0.0.1:8765/base",
        "http://[::1]:8765",
        "http://LOCALHOST:8080",
        "http://127.0.0.1#@evil.example/",
        "http://127.0.0.1?@evil.example/",
        "http://127.0.0.1/%5C@evil.example/",
        "http://127.0.0.1:8080/a@b/c",
        "https://api-01.moengage.com/x@y",
        "http://127.0.0.1\t.evil.example/",
        "http://127.0.0.1%2F@evil.example/",
        "http://evil.example%40127.0.0.1/",
        "http://0x7f.1/",
        "http://127.0.0.1./",
    ],
)
def test_an_accepted_url_goes_to_the_host_the_check_saw(url: str) -> None:
    try:
        checked = check_url(url, "URL", carries="it", example="https://x", fix="no")
    except SettingsError:
        return
    sent = requests.Request("POST", url).prepare().url
    assert sent is not None
    parts = urlsplit(sent)
    assert (parts.hostname, parts.port) == ((checked.host or "").strip("[]"), checked.port)
    assert checked.scheme == "https" or is_loopback(parts.hostname or "")


# Positive whole numbers


@pytest.mark.parametrize(
    ("name", "attribute"),
    [
        ("MOENGAGE_RATE_LIMIT_PER_MIN", "rate_limit_per_min"),
        ("MOENGAGE_MAX_BODY_BYTES", "max_body_bytes"),
        ("MOENGAGE_MAX_IN_FLIGHT", "max_in_flight"),
        ("MOENGAGE_MAX_ATTEMPTS", "max_attempts"),
        ("MOENGAGE_TIMEOUT_SECONDS", "timeout_seconds"),
    ],
)
def test_positive_int_settings(name: str, attribute: str) -> None:
    settings = MoEngageSettings.from_env(env(**{name: " 7 "}))
    assert getattr(settings, attribute) == 7
    blank = MoEngageSettings.from_env(env(**{name: ""}))
    assert getattr(blank, attribute) == getattr(MoEngageSettings.from_env(env()), attribute)


@pytest.mark.parametrize("raw", ["abc", "0", "-5", "1.5", "3e2", "ten"])
def test_positive_int_refused(raw: str) -> None:
    message = refused(env(MOENGAGE_RATE_LIMIT_PER_MIN=raw))
    assert f"MOENGAGE_RATE_LIMIT_PER_MIN = {raw!r}" in message
    assert "positive whole number" in message


def test_timeout_is_a_float() -> None:
    timeout = MoEngageSettings.from_env(env(MOENGAGE_TIMEOUT_SECONDS="30")).timeout_seconds
    assert isinstance(timeout, float)
    assert timeout == 30.0


# Partner


def test_partner_default_and_override() -> None:
    assert MoEngageSettings.from_env(env()).partner == "dbt-moengage"
    assert MoEngageSettings.from_env(env(MOENGAGE_PARTNER="acme-dbt")).partner == "acme-dbt"
    assert MoEngageSettings.from_env(env(MOENGAGE_PARTNER="  ")).partner == "dbt-moengage"


# Secret


def test_secret_never_shows_its_value() -> None:
    secret = Secret(KEY)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret!s}"]
    shown += [format(secret), str([secret]), str({"k": secret})]
    for text in shown:
        assert KEY not in text
        assert "***" in text
    assert secret.reveal() == KEY


def test_secret_truthiness() -> None:
    assert Secret(KEY)
    assert not Secret("")


def test_secret_has_no_instance_dict() -> None:
    secret = Secret(KEY)
    assert not hasattr(secret, "__dict__")
    assert KEY not in repr(vars(type(secret)))


def test_settings_repr_hides_the_key() -> None:
    settings = MoEngageSettings.from_env(env())
    for text in (repr(settings), str(settings), f"{settings}", str([settings])):
        assert KEY not in text
        assert WORKSPACE in text
        assert "Secret('***')" in text


# -- named destinations ---------------------------------------------------------------------


def test_named_destination_reads_its_own_variables() -> None:
    environ = {
        "MOENGAGE_WORKSPACE_ID": "WS_DEFAULT",
        "MOENGAGE_API_KEY": "default-key",
        "MOENGAGE_DATA_CENTER": "01",
        "MOENGAGE_RATE_LIMIT_PER_MIN": "300",
        "MOENGAGE_MAX_ATTEMPTS": "5",
        "MOENGAGE_EU_WORKSPACE_ID": "WS_EU",
        "MOENGAGE_EU_API_KEY": "eu-key",
        "MOENGAGE_EU_DATA_CENTER": "02",
        "MOENGAGE_EU_RATE_LIMIT_PER_MIN": "120",
    }
    eu = MoEngageSettings.from_env(environ, destination="eu")
    assert (eu.workspace_id, eu.api_key.reveal()) == ("WS_EU", "eu-key")
    assert eu.base_url == "https://api-02.moengage.com"
    assert eu.rate_limit_per_min == 120
    assert eu.max_attempts == 5  # shared tuning
    default = MoEngageSettings.from_env(environ)
    assert (default.workspace_id, default.rate_limit_per_min) == ("WS_DEFAULT", 300)


def test_named_destination_never_borrows_default_credentials() -> None:
    environ = {
        "MOENGAGE_WORKSPACE_ID": "WS_DEFAULT",
        "MOENGAGE_API_KEY": "default-key",
        "MOENGAGE_DATA_CENTER": "01",
        "MOENGAGE_EU_DATA_CENTER": "02",
    }
    with pytest.raises(SettingsError) as caught:
        MoEngageSettings.from_env(environ, destination="eu")
    message = str(caught.value)
    assert "destination 'eu'" in message
    assert "MOENGAGE_EU_WORKSPACE_ID" in message and "MOENGAGE_EU_API_KEY" in message
    assert "default-key" not in message


def test_destination_names_are_checked() -> None:
    with pytest.raises(SettingsError, match="letters, digits and _"):
        MoEngageSettings.from_env({}, destination="eu-west")


# -- credentials that cannot go in an HTTP header -------------------------------------------

# A key with no word in it, so that no piece of it can turn up in a message by chance.
ODD_KEY_PARTS = ("Q7xK2mZp", "9WvR4tLs")


def _without_any_part_of(message: str, value: str) -> None:
    """No 4-character run of `value` (nor the character at fault) is in `message`."""
    for start in range(len(value) - 3):
        assert value[start : start + 4] not in message, value[start : start + 4]
    for char in value:
        if char != " " and not (char.isascii() and char.isalnum()):
            assert char not in message


@pytest.mark.parametrize(
    ("char", "kind"),
    [
        ("\u2014", "outside Latin-1"),  # an em dash pasted from a web page
        ("\u2019", "outside Latin-1"),  # a typographic apostrophe
        ("\u200b", "zero-width space"),
        ("\ufeff", "invisible formatting character"),  # a byte order mark
        ("\u00a0", "non-standard space"),
        ("\u00ad", "invisible formatting character"),  # a soft hyphen, Latin-1 but unseen
        ("\n", "control character"),
        ("\r", "control character"),
        ("\t", "control character"),
        ("\x00", "control character"),
        ("\x7f", "control character"),  # DEL
        ("\x85", "control character"),  # a C1 control, inside Latin-1
    ],
)
@pytest.mark.parametrize("name", ["MOENGAGE_API_KEY", "MOENGAGE_WORKSPACE_ID"])
def test_a_character_no_header_can_carry_is_refused_without_the_value(
    char: str, kind: str, name: str
) -> None:
    value = ODD_KEY_PARTS[0] + char + ODD_KEY_PARTS[1]
    message = refused(env(**{name: value}))
    assert message.startswith(f"{name} has ")
    assert kind in message
    assert f"U+{ord(char):04X}" in message
    assert f"at character {len(ODD_KEY_PARTS[0]) + 1} of {len(value)}" in message
    assert "printable Latin-1" in message
    _without_any_part_of(message, value)


@pytest.mark.parametrize("value", [" " + "".join(ODD_KEY_PARTS), "".join(ODD_KEY_PARTS) + "\n"])
def test_an_api_key_with_surrounding_whitespace_is_refused_with_a_hint(value: str) -> None:
    message = refused(env(MOENGAGE_API_KEY=value))
    assert message.startswith("MOENGAGE_API_KEY starts or ends with whitespace")
    assert "copying the API key" in message
    _without_any_part_of(message, value)


def test_a_blank_api_key_is_missing() -> None:
    assert refused(env(MOENGAGE_API_KEY="  \n")).startswith("missing MOENGAGE_API_KEY")


def test_printable_latin1_credentials_are_accepted() -> None:
    # Every printable Latin-1 character, inside the value; spaces only within it.
    printable = "".join(chr(c) for c in range(0x100) if chr(c).isprintable())
    settings = MoEngageSettings.from_env(
        env(MOENGAGE_API_KEY="k" + printable + "k", MOENGAGE_WORKSPACE_ID="W é ÿ")
    )
    assert settings.api_key.reveal() == "k" + printable + "k"
    assert settings.workspace_id == "W é ÿ"


def test_whatever_from_env_accepts_goes_in_the_requests_headers() -> None:
    """Each character up to U+02FF, and a few more: refused, or fit for the client's headers."""
    import http.client

    import requests

    for code in [*range(0x300), 0x2014, 0x200B, 0x2028, 0xFEFF, 0x1F600]:
        key = workspace = f"ab{chr(code)}cd"
        try:
            settings = MoEngageSettings.from_env(
                env(MOENGAGE_API_KEY=key, MOENGAGE_WORKSPACE_ID=workspace)
            )
        except SettingsError:
            continue
        request = requests.Request(
            "POST",
            "http://127.0.0.1:9/",
            headers={"MOE-APPKEY": settings.workspace_id},
            auth=(settings.workspace_id, settings.api_key.reveal()),
        ).prepare()
        for header in ("MOE-APPKEY", "Authorization"):
            raw = request.headers[header].encode("latin-1")
            assert not http.client._is_illegal_header_value(raw), hex(code)  # type: ignore[attr-defined]


def test_credentials_set_for_a_dry_run_are_still_checked() -> None:
    with pytest.raises(SettingsError, match="MOENGAGE_API_KEY has a control character"):
        MoEngageSettings.from_env(
            {"MOENGAGE_DATA_CENTER": "01", "MOENGAGE_API_KEY": "ab\ncd"},
            require_credentials=False,
        )


def test_a_destination_key_is_named_with_its_destination() -> None:
    value = ODD_KEY_PARTS[0] + "\u200b" + ODD_KEY_PARTS[1]
    environ = {
        **env(),
        "MOENGAGE_EU_WORKSPACE_ID": "WS_EU",
        "MOENGAGE_EU_API_KEY": value,
        "MOENGAGE_EU_DATA_CENTER": "02",
    }
    with pytest.raises(SettingsError) as caught:
        MoEngageSettings.from_env(environ, destination="eu")
    message = str(caught.value)
    assert message.startswith("destination 'eu': MOENGAGE_EU_API_KEY has an invisible")
    assert "MOENGAGE_API_KEY" not in message
    _without_any_part_of(message, value)


# -- MoEngage's body limit ------------------------------------------------------------------


def test_max_body_bytes_up_to_moengages_limit() -> None:
    assert MoEngageSettings.from_env(env(MOENGAGE_MAX_BODY_BYTES="131072")).max_body_bytes == (
        131_072
    )


@pytest.mark.parametrize("raw", ["131073", "200000", " 1000000 "])
def test_max_body_bytes_above_moengages_limit_is_refused(raw: str) -> None:
    message = refused(env(MOENGAGE_MAX_BODY_BYTES=raw))
    assert message.startswith(f"MOENGAGE_MAX_BODY_BYTES = {raw.strip()}: above")
    assert "limit of 131072 bytes (128 KB)" in message
    assert "set it to 131072 or less" in message
