"""warehouse.snowflake_connect: dbt-snowflake profile targets to connect() arguments."""

from __future__ import annotations

import base64
import shutil
import subprocess
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import snowflake.connector
import snowflake.connector.errors as sf_errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dbt_moengage.errors import ProfileError
from dbt_moengage.warehouse.profiles import ProfileTarget
from dbt_moengage.warehouse.snowflake_connect import QUERY_TAG, connect_args, open_connection

PASSWORD = "pw-7Hq2!x&y=z-do-not-leak"
PASSPHRASE = "pp-9xK4-do-not-leak"
TOKEN = "tok-3Jd8-do-not-leak"
CLIENT_SECRET = "cs-5Rt1-do-not-leak"
ACCESS_TOKEN = "at-8Wq6-do-not-leak"
SECRETS = (PASSWORD, PASSPHRASE, TOKEN, CLIENT_SECRET, ACCESS_TOKEN)

PROFILE = {
    "type": "snowflake",
    "account": "ab12345.eu-west-1",
    "database": "ANALYTICS",
    "schema": "MARTS",
    "warehouse": "TRANSFORMING",
    "role": "TRANSFORMER",
}

# What every target gives, whatever the authentication (SnowflakeConnectionManager.open()).
BASE: dict[str, Any] = {
    "account": "ab12345.eu-west-1",
    "database": "ANALYTICS",
    "schema": "MARTS",
    "warehouse": "TRANSFORMING",
    "role": "TRANSFORMER",
    "autocommit": True,
    "client_session_keep_alive": False,
    "application": "dbt-moengage",
    "platform_detection_timeout_seconds": 0.0,
    "session_parameters": {"QUERY_TAG": "dbt-moengage"},
    "ocsp_root_certs_dict_lock_timeout": 10,
    "paramstyle": "qmark",
}
# auth_args() adds these for any explicit authenticator.
CACHES = {"client_store_temporary_credential": True, "client_request_mfa_token": True}


def target(**fields: Any) -> ProfileTarget:
    """A snowflake target of profile 'shop', target 'prod'; None removes a field."""
    merged = {**PROFILE, **fields}
    merged = {k: v for k, v in merged.items() if v is not None}
    return ProfileTarget("shop", "prod", Path("/home/me/.dbt/profiles.yml"), merged)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def der(key: rsa.RSAPrivateKey) -> bytes:
    """The key as the connector gets it: DER PKCS#8, unencrypted."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pem(key: rsa.RSAPrivateKey, passphrase: str | None = None) -> bytes:
    """PKCS#8 PEM, encrypted when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def profile_error(fields: dict[str, Any]) -> str:
    """The message of the ProfileError connect_args raises for these fields."""
    with pytest.raises(ProfileError) as info:
        connect_args(target(**fields))
    message = str(info.value)
    assert message.startswith("profile 'shop' target 'prod': ")
    for secret in SECRETS:
        assert secret not in message
    return message


# --- one test per authentication method --------------------------------------------------


def test_password() -> None:
    args = connect_args(target(user="LOADER", password=PASSWORD))
    assert args == {**BASE, "user": "LOADER", "password": PASSWORD, "private_key": None}


def test_key_pair_from_unencrypted_pem_file(
    tmp_path: Path, key: rsa.RSAPrivateKey, der: bytes
) -> None:
    path = tmp_path / "rsa_key.p8"
    path.write_bytes(pem(key))
    args = connect_args(target(user="LOADER", private_key_path=str(path)))
    assert args == {**BASE, "user": "LOADER", "private_key": der}


def test_key_pair_from_encrypted_pem_file(
    tmp_path: Path, key: rsa.RSAPrivateKey, der: bytes
) -> None:
    path = tmp_path / "rsa_key.p8"
    path.write_bytes(pem(key, PASSPHRASE))
    fields = {"private_key_path": str(path), "private_key_passphrase": PASSPHRASE}
    args = connect_args(target(user="LOADER", **fields))
    assert args == {**BASE, "user": "LOADER", "private_key": der}


def test_key_pair_from_der_file(tmp_path: Path, der: bytes) -> None:
    path = tmp_path / "rsa_key.der"
    path.write_bytes(der)
    args = connect_args(target(user="LOADER", private_key_path=str(path)))
    assert args["private_key"] == der


def test_key_pair_from_inline_pem_with_snowflake_jwt(key: rsa.RSAPrivateKey, der: bytes) -> None:
    inline = pem(key).decode()
    args = connect_args(target(user="LOADER", authenticator="snowflake_jwt", private_key=inline))
    expected = {**BASE, "user": "LOADER", "authenticator": "snowflake_jwt", **CACHES}
    assert args == {**expected, "private_key": der}


@pytest.mark.parametrize("encrypted", [False, True])
def test_key_pair_from_inline_base64_der(
    key: rsa.RSAPrivateKey, der: bytes, encrypted: bool
) -> None:
    if encrypted:
        raw = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE.encode()),
        )
        fields = {"private_key_passphrase": PASSPHRASE}
    else:
        raw, fields = der, {}
    inline = base64.b64encode(raw).decode()
    args = connect_args(target(user="LOADER", private_key=inline, **fields))
    assert args == {**BASE, "user": "LOADER", "private_key": der}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_key_pair_legacy_encryption_loads_through_pyopenssl(
    tmp_path: Path, key: rsa.RSAPrivateKey, der: bytes
) -> None:
    plain = tmp_path / "plain.pem"
    plain.write_bytes(pem(key))
    legacy = tmp_path / "legacy.p8"
    # PBES1 with single DES: cryptography refuses it, OpenSSL still reads it (auth.py).
    command = ["openssl", "pkcs8", "-topk8", "-v1", "PBE-SHA1-DES", "-in", str(plain)]
    command += ["-out", str(legacy), "-passout", f"pass:{PASSPHRASE}"]
    # OpenSSL 3 keeps single DES in its legacy provider.
    legacy_provider = ["-provider", "default", "-provider", "legacy"]
    if all(
        subprocess.run(c, capture_output=True).returncode
        for c in (command, command + legacy_provider)
    ):
        pytest.skip("this openssl cannot write PBE-SHA1-DES keys")
    fields = {"private_key_path": str(legacy), "private_key_passphrase": PASSPHRASE}
    assert connect_args(target(user="LOADER", **fields))["private_key"] == der
    message = profile_error({"user": "LOADER", **fields, "private_key_passphrase": "wrong"})
    assert "private_key_passphrase does not decrypt" in message


def test_externalbrowser() -> None:
    args = connect_args(target(user="me@shop.com", authenticator="externalbrowser"))
    expected = {**BASE, "user": "me@shop.com", "authenticator": "externalbrowser", **CACHES}
    assert args == {**expected, "private_key": None}


def test_oauth_token() -> None:
    # dbt-snowflake lets oauth go without a user.
    args = connect_args(target(authenticator="oauth", token=TOKEN))
    expected = {**BASE, "authenticator": "oauth", "token": TOKEN, **CACHES}
    assert args == {**expected, "private_key": None}


class FakeResponse:
    def __init__(self, status_code: int, body: Any) -> None:
        self.status_code = status_code
        self.body = body

    def json(self) -> Any:
        if isinstance(self.body, Exception):
            raise self.body
        return self.body


def test_oauth_refresh_token_is_exchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def post(url: str, **kwargs: Any) -> FakeResponse:
        calls.append({"url": url, **kwargs})
        return FakeResponse(200, {"access_token": ACCESS_TOKEN})

    monkeypatch.setattr(requests, "post", post)
    fields = {"oauth_client_id": "CLIENT", "oauth_client_secret": CLIENT_SECRET}
    args = connect_args(target(user="ME", authenticator="oauth", token=TOKEN, **fields))
    assert args["token"] == ACCESS_TOKEN
    assert args["authenticator"] == "oauth"
    (call,) = calls
    assert call["url"] == "https://ab12345.eu-west-1.snowflakecomputing.com/oauth/token-request"
    assert call["data"]["grant_type"] == "refresh_token"
    assert call["data"]["refresh_token"] == TOKEN
    basic = base64.b64encode(f"CLIENT:{CLIENT_SECRET}".encode()).decode()
    assert call["headers"]["Authorization"] == f"Basic {basic}"
    assert ACCESS_TOKEN not in repr(args)


@pytest.mark.parametrize(
    "answer",
    [
        FakeResponse(400, {"error": "invalid_grant", "message": TOKEN}),
        FakeResponse(502, ValueError("not json")),
        requests.ConnectionError(f"refused, body refresh_token={TOKEN}"),
    ],
)
def test_oauth_refresh_failure_names_the_settings(
    monkeypatch: pytest.MonkeyPatch, answer: Any
) -> None:
    def post(url: str, **kwargs: Any) -> FakeResponse:
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(requests, "post", post)
    fields = {"oauth_client_id": "CLIENT", "oauth_client_secret": CLIENT_SECRET}
    with pytest.raises(ProfileError) as info:
        connect_args(target(authenticator="oauth", token=TOKEN, **fields))
    message = str(info.value)
    assert "refresh token" in message
    # The request's exception holds the refresh token and the client secret: not kept.
    assert info.value.__cause__ is None and info.value.__context__ is None
    for secret in SECRETS:
        assert secret not in message


def test_username_password_mfa() -> None:
    fields = {"authenticator": "username_password_mfa", "password": PASSWORD}
    args = connect_args(target(user="LOADER", **fields))
    expected = {**BASE, "user": "LOADER", "password": PASSWORD, **CACHES}
    assert args == {**expected, "authenticator": "username_password_mfa", "private_key": None}


def test_jwt_is_an_oauth_token() -> None:
    args = connect_args(target(authenticator="jwt", token=TOKEN))
    expected = {**BASE, "authenticator": "oauth", "token": TOKEN, **CACHES}
    assert args == {**expected, "private_key": None}


def test_programmatic_access_token() -> None:
    args = connect_args(target(authenticator="programmatic_access_token", token=TOKEN))
    expected = {**BASE, "authenticator": "programmatic_access_token", "token": TOKEN, **CACHES}
    assert args == {**expected, "private_key": None}


def test_okta_url_is_passed_through() -> None:
    okta = "https://shop.okta.com"
    args = connect_args(target(user="ME", password=PASSWORD, authenticator=okta))
    expected = {**BASE, "user": "ME", "password": PASSWORD, "authenticator": okta, **CACHES}
    assert args == {**expected, "private_key": None}


def test_workload_identity() -> None:
    fields = {"authenticator": "workload_identity", "workload_identity_provider": "azure"}
    fields["workload_identity_entra_resource"] = "api://snowflake"
    args = connect_args(target(**fields))
    expected = {**BASE, "authenticator": "WORKLOAD_IDENTITY", **CACHES, "private_key": None}
    expected["workload_identity_provider"] = "azure"
    expected["workload_identity_entra_resource"] = "api://snowflake"
    assert args == expected
    message = profile_error({"authenticator": "workload_identity"})
    assert "workload_identity_provider" in message


def test_connection_fields_and_query_tag() -> None:
    fields = {
        "account": "my_org-my_account",
        "user": "LOADER",
        "password": PASSWORD,
        "host": "ab.privatelink.snowflakecomputing.com",
        "port": 443,
        "proxy_host": "proxy.local",
        "proxy_port": 3128,
        "protocol": "https",
        "client_session_keep_alive": True,
        "insecure_mode": True,
        "query_tag": "dbt_prod",
        "s3_stage_vpce_dns_name": "vpce.amazonaws.com",
        "reuse_connections": False,
        "warehouse": None,
        "role": None,
    }
    args = connect_args(target(**fields))
    assert args == {
        **BASE,
        # dbt-snowflake turns underscores in the account into hyphens.
        "account": "my-org-my-account",
        "warehouse": None,
        "role": None,
        "client_session_keep_alive": True,
        "insecure_mode": True,
        # The runner's queries carry exactly QUERY_TAG, whatever the profile's query_tag.
        "session_parameters": {
            "QUERY_TAG": QUERY_TAG,
            "S3_STAGE_VPCE_DNS_NAME": "vpce.amazonaws.com",
        },
        "user": "LOADER",
        "password": PASSWORD,
        "host": "ab.privatelink.snowflakecomputing.com",
        "port": 443,
        "proxy_host": "proxy.local",
        "proxy_port": 3128,
        "protocol": "https",
        "private_key": None,
    }


# --- profile errors ------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["account", "database", "schema"])
def test_missing_required_field(field: str) -> None:
    message = profile_error({"user": "LOADER", "password": PASSWORD, field: None})
    assert f"{field} is required" in message


def test_both_key_sources(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "rsa_key.p8"
    path.write_bytes(pem(key))
    fields = {"user": "LOADER", "private_key_path": str(path), "private_key": pem(key).decode()}
    message = profile_error(fields)
    assert "both private_key and private_key_path" in message
    assert "PRIVATE KEY" not in message


def test_wrong_passphrase(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "rsa_key.p8"
    path.write_bytes(pem(key, "the-real-one"))
    fields = {"private_key_path": str(path), "private_key_passphrase": PASSPHRASE}
    message = profile_error({"user": "LOADER", **fields})
    assert message == (
        f"profile 'shop' target 'prod': private_key_passphrase does not decrypt "
        f"private_key_path {str(path)!r}"
    )


def test_wrong_passphrase_for_inline_key(key: rsa.RSAPrivateKey) -> None:
    fields = {
        "private_key": pem(key, "the-real-one").decode(),
        "private_key_passphrase": PASSPHRASE,
    }
    message = profile_error({"user": "LOADER", **fields})
    assert "private_key_passphrase does not decrypt private_key" in message
    assert "ENCRYPTED" not in message


def test_passphrase_missing_or_not_needed(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    encrypted = tmp_path / "encrypted.p8"
    encrypted.write_bytes(pem(key, PASSPHRASE))
    message = profile_error({"user": "LOADER", "private_key_path": str(encrypted)})
    assert "is encrypted; set private_key_passphrase" in message
    plain = tmp_path / "plain.p8"
    plain.write_bytes(pem(key))
    fields = {"private_key_path": str(plain), "private_key_passphrase": PASSPHRASE}
    message = profile_error({"user": "LOADER", **fields})
    assert "is not encrypted; remove private_key_passphrase" in message


def test_unreadable_key_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.p8"
    message = profile_error({"user": "LOADER", "private_key_path": str(missing)})
    assert f"cannot read private_key_path {str(missing)!r}" in message
    assert "No such file" in message


@pytest.mark.parametrize(
    "inline", ["-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----", "%%%"]
)
def test_inline_key_that_is_no_key(inline: str) -> None:
    message = profile_error({"user": "LOADER", "private_key": inline})
    assert "private_key is" in message
    assert "not a key" not in message


@pytest.mark.parametrize("authenticator", ["oauth", "jwt", "programmatic_access_token"])
def test_token_authenticator_without_token(authenticator: str) -> None:
    message = profile_error({"authenticator": authenticator})
    assert f"authenticator {authenticator} needs token" in message


def test_snowflake_jwt_without_key() -> None:
    message = profile_error({"user": "LOADER", "authenticator": "snowflake_jwt"})
    assert "private_key_path or private_key" in message


def test_unknown_authenticator() -> None:
    message = profile_error({"user": "LOADER", "authenticator": "kerberos"})
    assert "authenticator 'kerberos' is not one dbt-snowflake supports" in message


def test_user_and_password_required_for_password_auth() -> None:
    assert "user is required" in profile_error({"password": PASSWORD})
    assert "password is not set" in profile_error({"user": "LOADER"})


def test_wrong_types_never_echo_secrets() -> None:
    message = profile_error({"user": "LOADER", "password": 12345678})
    assert message.endswith("password must be text, not int; quote it in profiles.yml")
    assert "12345678" not in message
    message = profile_error({"user": "LOADER", "password": PASSWORD, "port": "443"})
    assert "port must be a whole number" in message and "as_number" in message


def test_repr_hides_secrets(key: rsa.RSAPrivateKey) -> None:
    fields = {"private_key": pem(key, PASSPHRASE).decode(), "private_key_passphrase": PASSPHRASE}
    args = connect_args(target(user="LOADER", password=PASSWORD, **fields))
    oauth = connect_args(target(authenticator="oauth", token=TOKEN))
    for shown in (repr(args), str(args), f"{args}", repr(oauth), str([oauth])):
        for secret in SECRETS:
            assert secret not in shown
        assert "PRIVATE KEY" not in shown and "\\x" not in shown
    assert "'password': '***'" in repr(args) and "'token': '***'" in repr(oauth)


# --- open_connection ----------------------------------------------------------------------


def test_open_connection_under_fakesnow() -> None:
    fakesnow = pytest.importorskip("fakesnow")
    with fakesnow.patch():
        conn = open_connection(target(user="LOADER", password=PASSWORD))
        try:
            cursor = conn.cursor()
            assert cursor.execute("select current_database()").fetchone() == ("ANALYTICS",)
            # paramstyle="qmark" reached the connection: `?` binds.
            assert cursor.execute("select ?", [42]).fetchone() == (42,)
        finally:
            conn.close()


class FlakyConnect:
    """A stand-in for snowflake.connector.connect that fails with `errors` in turn, then works."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[dict[str, Any]] = []
        self.connection = object()

    def __call__(self, **kwargs: Any) -> object:
        self.calls.append(kwargs)
        if self.errors:
            raise self.errors.pop(0)
        return self.connection


def unreachable() -> sf_errors.OperationalError:
    return sf_errors.OperationalError(
        msg="Could not connect to Snowflake backend after 3 attempt(s).Aborting",
        errno=250001,
        sqlstate="08001",
    )


def open_with(
    monkeypatch: pytest.MonkeyPatch, connect: FlakyConnect, **fields: Any
) -> tuple[Callable[[], Any], list[float]]:
    """open_connection bound to a fake connect() and a recording sleep."""
    monkeypatch.setattr(snowflake.connector, "connect", connect)
    sleeps: list[float] = []
    profile = target(user="LOADER", password=PASSWORD, **fields)
    return (lambda: open_connection(profile, sleep=sleeps.append)), sleeps


def test_connection_errors_are_retried_connect_retries_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connect = FlakyConnect(unreachable(), unreachable())
    run, sleeps = open_with(monkeypatch, connect, connect_retries=2)
    assert run() is connect.connection
    assert len(connect.calls) == 3
    # No connect_timeout: dbt-snowflake's attempt² pause, 0 then 1 second.
    assert sleeps == [0.0, 1.0]
    assert connect.calls[0] == connect_args(target(user="LOADER", password=PASSWORD))


def test_connect_timeout_is_the_pause_between_tries(monkeypatch: pytest.MonkeyPatch) -> None:
    connect = FlakyConnect(sf_errors.InterfaceError(msg="socket closed"), unreachable())
    run, sleeps = open_with(monkeypatch, connect, connect_retries=3, connect_timeout=5)
    assert run() is connect.connection
    assert sleeps == [5.0, 5.0]
    assert "login_timeout" not in connect.calls[0]


def test_retries_run_out(monkeypatch: pytest.MonkeyPatch) -> None:
    connect = FlakyConnect(unreachable(), unreachable(), unreachable())
    run, _ = open_with(monkeypatch, connect)  # connect_retries defaults to 1
    with pytest.raises(ProfileError) as info:
        run()
    assert len(connect.calls) == 2
    assert str(info.value) == (
        "profile 'shop' target 'prod': cannot connect to Snowflake account 'ab12345.eu-west-1' "
        "as user 'LOADER' after 2 attempts (OperationalError, errno 250001, sqlstate 08001): "
        "Could not connect to Snowflake backend after 3 attempt(s).Aborting; check account "
        "(and host, port, proxy_host, proxy_port if set) and that this machine can reach "
        "Snowflake"
    )


def test_connect_retries_zero_tries_once(monkeypatch: pytest.MonkeyPatch) -> None:
    connect = FlakyConnect(unreachable())
    run, sleeps = open_with(monkeypatch, connect, connect_retries=0)
    with pytest.raises(ProfileError):
        run()
    assert len(connect.calls) == 1 and sleeps == []


def test_authentication_error_is_not_retried_and_is_scrubbed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    error = sf_errors.DatabaseError(
        msg=(
            "Failed to connect to DB: ab12345.snowflakecomputing.com:443. Incorrect username "
            f"or password was specified. (password={PASSWORD}, escaped="
            f"{urllib.parse.quote(PASSWORD, safe='')})"
        ),
        errno=390100,
        sqlstate="28000",
    )
    connect = FlakyConnect(error)
    run, sleeps = open_with(monkeypatch, connect, connect_retries=5)
    with pytest.raises(ProfileError) as info:
        run()
    assert len(connect.calls) == 1 and sleeps == []
    message = str(info.value)
    assert PASSWORD not in message and urllib.parse.quote(PASSWORD, safe="") not in message
    assert "(DatabaseError, errno 390100, sqlstate 28000)" in message
    assert "password=***, escaped=***" in message
    assert message.endswith("; check user and password")
    # The connector's exception, whose args hold the password, is not kept.
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert all(PASSWORD not in str(arg) for arg in info.value.args)


def test_retry_on_database_errors_retries_authentication_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connect = FlakyConnect(sf_errors.DatabaseError(msg="JWT token is invalid.", errno=390144))
    run, _ = open_with(monkeypatch, connect, retry_on_database_errors=True)
    assert run() is connect.connection
    assert len(connect.calls) == 2


def test_final_tls_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    connect = FlakyConnect(sf_errors.NonRetryableTlsError(msg="certificate verify failed"))
    run, _ = open_with(monkeypatch, connect, connect_retries=3)
    with pytest.raises(ProfileError):
        run()
    assert len(connect.calls) == 1


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("connect_retries", -1, "connect_retries must be 0 or more"),
        ("connect_retries", "3", "connect_retries must be a whole number, not '3'; with env_var"),
        ("connect_timeout", True, "connect_timeout must be a whole number"),
    ],
)
def test_bad_retry_settings(
    monkeypatch: pytest.MonkeyPatch, field: str, value: Any, expected: str
) -> None:
    connect = FlakyConnect()
    run, _ = open_with(monkeypatch, connect, **{field: value})
    with pytest.raises(ProfileError, match=expected):
        run()
    assert connect.calls == []


def test_profile_errors_happen_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    connect = FlakyConnect()
    monkeypatch.setattr(snowflake.connector, "connect", connect)
    with pytest.raises(ProfileError, match="needs token"):
        open_connection(target(authenticator="oauth"))
    assert connect.calls == []
