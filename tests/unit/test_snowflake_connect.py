"""warehouse.snowflake_connect: Snowflake sessions opened by dbt-snowflake itself.

For every authentication method of the Snowflake quickstart, the runner's connect call
is compared with the one dbt-snowflake's own connection manager makes for the profile
dbt's own load_profile renders: they may differ only in what the runner adds (its query
tag, `?` parameters). Failures name the profile setting to check and hold no secret."""

from __future__ import annotations

import base64
import dataclasses
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest
import snowflake.connector
import snowflake.connector.errors as sf_errors
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dbt_moengage.errors import ProfileError
from dbt_moengage.warehouse.profiles import ProfileTarget, load_profile_target
from dbt_moengage.warehouse.snowflake_connect import QUERY_TAG, open_connection

PASSWORD = "pw-7Hq2!x&y=z-do-not-leak"
PASSPHRASE = "pp-9xK4-do-not-leak"
TOKEN = "tok-3Jd8-do-not-leak"
SECRETS = (PASSWORD, PASSPHRASE, TOKEN)

BASE = {
    "type": "snowflake",
    "account": "ab12345.eu-west-1",
    "database": "ANALYTICS",
    "schema": "MARTS",
    "warehouse": "TRANSFORMING",
    "role": "TRANSFORMER",
    "connect_retries": 0,
}


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey, passphrase: str | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


class Project:
    """A dbt project and profiles.yml with one snowflake target, `shop`/`prod`."""

    def __init__(self, tmp_path: Path, **fields: Any) -> None:
        self.dir = tmp_path
        (tmp_path / "dbt_project.yml").write_text(
            yaml.safe_dump({"name": "shop", "version": "1.0", "profile": "shop"})
        )
        outputs = {"prod": {**BASE, **fields}}
        (tmp_path / "profiles.yml").write_text(
            yaml.safe_dump({"shop": {"target": "prod", "outputs": outputs}})
        )
        self.environ = {"HOME": str(tmp_path)}

    def target(self) -> ProfileTarget:
        return load_profile_target(self.dir, self.dir, environ=self.environ)

    def dbt_credentials(self) -> Any:
        """The credentials dbt's own load_profile makes of the same files."""
        from dbt.config.runtime import load_profile
        from dbt.flags import set_from_args
        from dbt_common.context import set_invocation_context

        set_invocation_context(self.environ)
        set_from_args(Namespace(PROFILES_DIR=str(self.dir), PROJECT_DIR=str(self.dir)), None)
        return load_profile(str(self.dir), {}, None, None).credentials


class Recorder:
    """A stand-in for snowflake.connector.connect: records each call's arguments."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error = error

    def __call__(self, **kwargs: Any) -> object:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return object()


def dbts_own_call(credentials: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The connect() arguments dbt-snowflake's connection manager makes of `credentials`."""
    from dbt.adapters.contracts.connection import Connection, ConnectionState, Identifier
    from dbt.adapters.snowflake.connections import SnowflakeConnectionManager

    recorder = Recorder()
    monkeypatch.setattr(snowflake.connector, "connect", recorder)
    connection = Connection(
        type=Identifier("snowflake"),
        name="dbt",
        state=ConnectionState.INIT,
        transaction_open=False,
        handle=None,
        credentials=credentials,
    )
    SnowflakeConnectionManager.open(connection)
    return recorder.calls[-1]


AUTH_METHODS: dict[str, dict[str, Any]] = {
    "password": {"user": "LOADER", "password": PASSWORD},
    "externalbrowser": {"user": "me@shop.com", "authenticator": "externalbrowser"},
    "oauth": {"authenticator": "oauth", "token": TOKEN},
    "username_password_mfa": {
        "user": "LOADER",
        "password": PASSWORD,
        "authenticator": "username_password_mfa",
    },
    "jwt": {"authenticator": "jwt", "token": TOKEN},
    "programmatic_access_token": {"authenticator": "programmatic_access_token", "token": TOKEN},
    "session_settings": {
        "user": "LOADER",
        "password": PASSWORD,
        "client_session_keep_alive": True,
        "query_tag": "dbt-nightly",
    },
}


@pytest.mark.parametrize("method", list(AUTH_METHODS))
def test_the_runner_connects_as_dbt_snowflake_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    project = Project(tmp_path, **AUTH_METHODS[method])
    target = project.target()
    assert target.credentials == project.dbt_credentials()
    theirs = dbts_own_call(project.dbt_credentials(), monkeypatch)

    recorder = Recorder()
    monkeypatch.setattr(snowflake.connector, "connect", recorder)
    open_connection(target)
    (ours,) = recorder.calls
    # The one difference: the runner's queries carry its own tag.
    assert ours.pop("session_parameters") == {"QUERY_TAG": QUERY_TAG}
    theirs.pop("session_parameters")
    assert ours == theirs


@pytest.mark.parametrize("where", ["file", "file-encrypted", "inline"])
def test_key_pairs_as_dbt_snowflake_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: rsa.RSAPrivateKey, where: str
) -> None:
    fields: dict[str, Any] = {"user": "LOADER"}
    if where == "inline":
        fields["private_key"] = base64.b64encode(
            key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ).decode()
    else:
        path = tmp_path / "rsa_key.p8"
        path.write_bytes(pem(key, PASSPHRASE if where == "file-encrypted" else None))
        fields["private_key_path"] = str(path)
        if where == "file-encrypted":
            fields["private_key_passphrase"] = PASSPHRASE
    project = Project(tmp_path, **fields)
    theirs = dbts_own_call(project.dbt_credentials(), monkeypatch)
    recorder = Recorder()
    monkeypatch.setattr(snowflake.connector, "connect", recorder)
    open_connection(project.target())
    (ours,) = recorder.calls
    assert ours["private_key"] == theirs["private_key"] and ours["private_key"]
    assert {k: v for k, v in ours.items() if k != "session_parameters"} == {
        k: v for k, v in theirs.items() if k != "session_parameters"
    }


def test_a_wrong_passphrase_names_the_setting_and_not_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: rsa.RSAPrivateKey
) -> None:
    path = tmp_path / "rsa_key.p8"
    path.write_bytes(pem(key, PASSPHRASE))
    project = Project(
        tmp_path, user="LOADER", private_key_path=str(path), private_key_passphrase="wrong-one"
    )
    monkeypatch.setattr(snowflake.connector, "connect", Recorder())
    with pytest.raises(ProfileError) as caught:
        open_connection(project.target())
    message = str(caught.value)
    assert message.startswith("profile 'shop' target 'prod': cannot connect to Snowflake")
    assert "private_key_passphrase" in message
    assert "wrong-one" not in message and PASSPHRASE not in message


@pytest.mark.parametrize(
    ("errno", "setting"),
    [
        (390100, "check user and password"),
        (250001, "check account"),
        (390189, "check role"),
        (394304, "check user and the private key"),
    ],
)
def test_login_failures_name_the_setting_and_hide_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, errno: int, setting: str
) -> None:
    error = sf_errors.DatabaseError(
        msg=f"Failed to connect to DB (password={PASSWORD}, token={TOKEN})", errno=errno
    )
    monkeypatch.setattr(snowflake.connector, "connect", Recorder(error))
    project = Project(tmp_path, user="LOADER", password=PASSWORD)
    with pytest.raises(ProfileError) as caught:
        open_connection(project.target())
    message = str(caught.value)
    assert f"errno {errno}" in message and setting in message
    assert "account 'ab12345.eu-west-1' as user 'LOADER'" in message
    assert PASSWORD not in message
    # Not kept as a cause either: its arguments hold the connector's text.
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_connect_retries_are_dbt_snowflakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dbt-snowflake retries what it calls retryable, connect_retries times.
    error = sf_errors.ServiceUnavailableError(msg="try later")
    recorder = Recorder(error)
    monkeypatch.setattr(snowflake.connector, "connect", recorder)
    project = Project(tmp_path, user="LOADER", password=PASSWORD, connect_retries=2)
    project_target = project.target()
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    with pytest.raises(ProfileError, match="ServiceUnavailableError"):
        open_connection(project_target)
    assert len(recorder.calls) == 3


def test_a_session_under_fakesnow_binds_question_marks(tmp_path: Path) -> None:
    fakesnow = pytest.importorskip("fakesnow")
    project = Project(tmp_path, user="LOADER", password=PASSWORD)
    with fakesnow.patch():
        conn = open_connection(project.target())
        try:
            cursor = conn.cursor()
            assert cursor.execute("select current_database()").fetchone() == ("ANALYTICS",)
            assert cursor.execute("select ?", [42]).fetchone() == (42,)
        finally:
            conn.close()


def test_the_runners_paramstyle_stays_with_its_own_connections(tmp_path: Path) -> None:
    """dbt's connections in the same process (the Python API beside `dbt seed`) keep the
    connector's module-wide pyformat: the runner's `?` style is its connections' own."""
    fakesnow = pytest.importorskip("fakesnow")
    project = Project(tmp_path, user="LOADER", password=PASSWORD)
    assert snowflake.connector.paramstyle == "pyformat"
    with fakesnow.patch():
        conn = open_connection(project.target())
        try:
            assert snowflake.connector.paramstyle == "pyformat"
            # A connection dbt opens afterwards binds pyformat, as dbt's seeds expect.
            other = snowflake.connector.connect(database="ANALYTICS", schema="PUBLIC")
            try:
                cursor = other.cursor()
                cursor.execute("select %s", [7])
                assert cursor.fetchone() == (7,)
            finally:
                other.close()
            assert conn.cursor().execute("select ?", [42]).fetchone() == (42,)
        finally:
            conn.close()


def test_the_query_tag_replaces_the_profiles_only_for_the_runner(tmp_path: Path) -> None:
    from dbt_moengage.warehouse.snowflake_connect import session_credentials

    project = Project(tmp_path, user="LOADER", password=PASSWORD, query_tag="dbt-nightly")
    target = project.target()
    assert session_credentials(target).query_tag == QUERY_TAG
    assert target.credentials.query_tag == "dbt-nightly"
    assert dataclasses.replace(target.credentials, query_tag="x") != target.credentials
