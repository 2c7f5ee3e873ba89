"""Open a Snowflake connection from a dbt-snowflake profile target, the way dbt-snowflake does.

Mirrors dbt-snowflake 1.12 (github.com/dbt-labs/dbt-adapters, `dbt-snowflake/src/dbt/adapters/
snowflake/`): `connections.py` (`SnowflakeCredentials`, its `__post_init__` and `auth_args()`,
`SnowflakeConnectionManager.open()`), `auth.py` (private keys), and dbt-adapters'
`BaseConnectionManager.retry_connection` for `connect_retries` / `connect_timeout`. Each
branch says which part it mirrors; where this module differs, the comment says why.

Secrets (password, private key and its passphrase, tokens, OAuth client secret) never reach
a message or a repr: connector errors are scrubbed and raised without their cause.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import requests
import snowflake.connector
import snowflake.connector.errors as sf_errors
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from ..errors import ProfileError
from .profiles import ProfileTarget

QUERY_TAG = "dbt-moengage"
APPLICATION = "dbt-moengage"

# Authenticators dbt-snowflake hands the connector (lower case; the connector upper-cases
# them), plus its own `jwt` alias. An https:// URL is a native Okta endpoint, passed through.
AUTHENTICATORS = (
    "snowflake",
    "externalbrowser",
    "snowflake_jwt",
    "username_password_mfa",
    "oauth",
    "jwt",
    "programmatic_access_token",
    "workload_identity",
)
# SnowflakeCredentials.__post_init__: `user` may be left out only for these.
_USERLESS = ("oauth", "jwt", "programmatic_access_token", "workload_identity")
# Authenticators that log in with `password` unless a private key is set (the connector then
# switches to key pair whatever the authenticator says).
_PASSWORD_AUTH = (None, "snowflake", "username_password_mfa", "okta")
_TOKEN_AUTH = ("oauth", "jwt", "programmatic_access_token")
# connections.py ACCEPTED_WORKLOAD_IDENTITY_PROVIDERS.
_WORKLOAD_IDENTITY_PROVIDERS = ("OIDC", "AZURE", "GCP", "AWS")
_TOKEN_REQUEST_URL = "https://{}.snowflakecomputing.com/oauth/token-request"

_SECRET_FIELDS = (
    "password",
    "private_key",
    "private_key_passphrase",
    "token",
    "oauth_client_secret",
)
_SECRET_ARGS = frozenset({"password", "token", "private_key"})

# SnowflakeConnectionManager.open() retries these by default.
_DBT_RETRYABLE: tuple[type[BaseException], ...] = (
    sf_errors.InternalError,
    sf_errors.InternalServerError,
    sf_errors.ServiceUnavailableError,
    sf_errors.GatewayTimeoutError,
    sf_errors.RequestTimeoutError,
    sf_errors.BadGatewayError,
    sf_errors.OtherHTTPRetryableError,
    sf_errors.BindUploadError,
)
# Beyond dbt: the connector raises OperationalError when it cannot reach Snowflake (after its
# own login_timeout retries) and InterfaceError for a broken client-side link; an
# authentication failure is a plain DatabaseError and is never retried by default.
_RETRYABLE = (*_DBT_RETRYABLE, sf_errors.OperationalError, sf_errors.InterfaceError)
# OperationalErrors the connector itself calls final: a TLS failure, a revoked certificate.
_NEVER_RETRIED = (sf_errors.NonRetryableTlsError, sf_errors.RevocationCheckError)

_NETWORK_HINT = (
    "account (and host, port, proxy_host, proxy_port if set) and that this machine can "
    "reach Snowflake"
)
_KEY_HINT = "user and the private key: its public key must be the user's RSA_PUBLIC_KEY"
# Snowflake login error codes (snowflake-connector-python network.py names most of them).
_HINTS = {
    250001: _NETWORK_HINT,
    390100: "user and password",
    390144: _KEY_HINT,
    **dict.fromkeys(range(394300, 394307), _KEY_HINT),
    390189: "role: it must exist and be granted to user",
    390201: "warehouse, database and role: they must exist and role must be allowed to use them",
    390303: "token: Snowflake says the OAuth access token is invalid",
    390318: "token: the OAuth access token has expired; get a new one",
}
_DEFAULT_HINT = "account, user, role, warehouse and the credentials (password, key or token)"


class ConnectArgs(dict[str, Any]):
    """snowflake.connector.connect keyword arguments whose repr hides the secrets."""

    def __repr__(self) -> str:
        return repr({k: "***" if k in _SECRET_ARGS and v else v for k, v in self.items()})


def connect_args(target: ProfileTarget) -> dict[str, Any]:
    """snowflake.connector.connect keyword arguments for a dbt-snowflake profile target.

    Fields map as SnowflakeConnectionManager.open() and SnowflakeCredentials.auth_args()
    map them, except: `application` is "dbt-moengage", `paramstyle` is "qmark" (the runner
    binds with `?`), and the session's QUERY_TAG is always exactly "dbt-moengage": the
    profile's `query_tag` is for dbt's own queries, and the runner's queries carry one fixed
    tag so they can be found in QUERY_HISTORY. `reuse_connections` is dbt's connection pool
    setting, not a connector one, so it is not passed.
    """
    p = _Profile(target)
    if target.type != "snowflake":
        raise ProfileError(f"{p.where}: type is {target.type!r}, not 'snowflake'")
    # SnowflakeCredentials.__post_init__: underscores become hyphens to form a valid URL.
    account = p.required("account").replace("_", "-")
    session_parameters = {"QUERY_TAG": QUERY_TAG}
    # open(): s3_stage_vpce_dns_name is a session parameter.
    if vpce := p.text("s3_stage_vpce_dns_name"):
        session_parameters["S3_STAGE_VPCE_DNS_NAME"] = vpce
    # open(): the connect() call, keyword for keyword.
    args = ConnectArgs(
        account=account,
        database=p.required("database"),
        schema=p.required("schema"),
        warehouse=p.text("warehouse"),
        role=p.text("role"),
        autocommit=True,
        client_session_keep_alive=p.flag("client_session_keep_alive"),
        application=APPLICATION,
        platform_detection_timeout_seconds=p.number("platform_detection_timeout_seconds", 0.0),
        session_parameters=session_parameters,
        # open(): "cert lock can cause deadlock without timeout" (connector issue 2213).
        ocsp_root_certs_dict_lock_timeout=10,
        paramstyle="qmark",
    )
    # dbt always passes insecure_mode (default False); the connector warns that the
    # parameter is deprecated whenever it is given, so it is passed only when it changes
    # something.
    if p.flag("insecure_mode"):
        args["insecure_mode"] = True
    args.update(_auth_args(p, account))
    return args


def open_connection(target: ProfileTarget, *, sleep: Callable[[float], None] = time.sleep) -> Any:
    """Connect, retrying connection errors connect_retries times; errors name the setting to fix."""
    p = _Profile(target)
    # SnowflakeCredentials: connect_retries defaults to 1 (one retry after the first try).
    retries = p.integer("connect_retries", None)
    retries = 1 if retries is None else retries
    # dbt-snowflake uses connect_timeout as the pause between tries, not as a login
    # timeout; without it the pause is attempt² seconds (0, 1, 4, ...), as in open().
    pause = p.integer("connect_timeout", None)
    for name, value in (("connect_retries", retries), ("connect_timeout", pause)):
        if value is not None and value < 0:
            raise ProfileError(f"{p.where}: {name} must be 0 or more")
    retryable = _retryable(p)
    args = connect_args(target)
    secrets = [*p.secrets(), *(str(args[k]) for k in ("password", "token") if args.get(k))]
    attempts = 0

    def connect() -> Any:
        nonlocal attempts
        attempts += 1
        # Through the module attribute, so fakesnow.patch() and test doubles take effect.
        return snowflake.connector.connect(**args)

    def wait(state: RetryCallState) -> float:
        return float(pause) if pause is not None else float((state.attempt_number - 1) ** 2)

    retrying = Retrying(
        retry=retry_if_exception(retryable),
        stop=stop_after_attempt(retries + 1),
        wait=wait,
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(connect)
    except Exception as exc:
        failure = _connect_failure(p, args, exc, attempts, secrets)
    # Raised outside the handler so the connector's exception (its args may hold a
    # secret) is neither the cause nor the context.
    raise failure


def _auth_args(p: _Profile, account: str) -> dict[str, Any]:
    """SnowflakeCredentials.auth_args(): the optional authentication keywords, in its order."""
    authenticator = p.text("authenticator")
    kind = _authenticator_kind(p, authenticator)
    result: dict[str, Any] = {}
    if user := p.text("user"):
        result["user"] = user
    elif kind not in _USERLESS:
        raise ProfileError(
            f"{p.where}: user is required (only {', '.join(_USERLESS)} authenticate without "
            "one); set user"
        )
    password = p.text("password")
    if password:
        result["password"] = password
    for name in ("host", "port", "proxy_host", "proxy_port", "protocol"):
        value = p.integer(name, None) if name.endswith("port") else p.text(name)
        if value:
            result[name] = value
    private_key = _private_key(p)
    if authenticator:
        result["authenticator"] = authenticator
        token = p.text("token")
        if kind in _TOKEN_AUTH and not token:
            raise ProfileError(f"{p.where}: authenticator {authenticator} needs token; set token")
        if kind == "oauth":
            result["token"] = _oauth_token(p, account, token or "")
        elif kind == "jwt":
            # auth_args(): `jwt` is a token given as is, sent with authenticator 'oauth'.
            result["token"] = token
            result["authenticator"] = "oauth"
        elif kind == "programmatic_access_token":
            result["token"] = token
        elif kind == "workload_identity":
            result.update(_workload_identity(p, token))
        # auth_args() sets these for every explicit authenticator: the ID token cache
        # (externalbrowser) and the MFA token cache (username_password_mfa) on Linux.
        result["client_store_temporary_credential"] = True
        result["client_request_mfa_token"] = True
    if kind == "snowflake_jwt" and private_key is None:
        raise ProfileError(
            f"{p.where}: authenticator snowflake_jwt needs a key; set private_key_path or "
            "private_key"
        )
    if kind in _PASSWORD_AUTH and private_key is None and not password:
        raise ProfileError(
            f"{p.where}: password is not set; set password, or private_key_path / private_key "
            "for key pair authentication, or an authenticator"
        )
    # auth_args() always passes private_key: DER bytes, or None.
    result["private_key"] = private_key
    return result


def _authenticator_kind(p: _Profile, authenticator: str | None) -> str | None:
    """The authenticator in lower case, 'okta' for an Okta URL; unknown ones are refused."""
    if not authenticator:
        return None
    kind = authenticator.lower()
    if kind in AUTHENTICATORS:
        return kind
    # The connector takes any https:// authenticator as a native Okta URL.
    if kind.startswith("https://"):
        return "okta"
    raise ProfileError(
        f"{p.where}: authenticator {authenticator!r} is not one dbt-snowflake supports; use "
        f"one of {', '.join(AUTHENTICATORS)} or an https:// Okta URL"
    )


def _oauth_token(p: _Profile, account: str, token: str) -> str:
    """auth_args(): `token` is the access token, or a refresh token with a client id/secret."""
    client_id = p.text("oauth_client_id")
    client_secret = p.text("oauth_client_secret")
    # With only one of the two, dbt-snowflake warns and uses `token` as an access token.
    if not (client_id and client_secret):
        return token
    # _get_access_token(): exchange the refresh token at the account's token endpoint.
    url = _TOKEN_REQUEST_URL.format(account)
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
    try:
        response = requests.post(
            url,
            headers={
                "Authorization": f"Basic {basic}",
                "Content-type": "application/x-www-form-urlencoded;charset=utf-8",
            },
            data={
                "grant_type": "refresh_token",
                "refresh_token": token,
                "redirect_uri": "http://localhost:9999",
            },
            timeout=60,
        )
    except requests.RequestException as exc:
        problem = f"cannot reach {url} ({type(exc).__name__}); check account and the network"
    else:
        problem = ""
    if problem:
        # Outside the handler: the request exception holds the refresh token and secret.
        raise ProfileError(f"{p.where}: exchanging the OAuth refresh token failed: {problem}")
    try:
        body = response.json()
    except ValueError:
        body = None
    access = body.get("access_token") if isinstance(body, dict) else None
    if isinstance(access, str) and access:
        return access
    error = body.get("error") if isinstance(body, dict) else None
    detail = f" ({_scrub(str(error), p.secrets())})" if isinstance(error, str) else ""
    raise ProfileError(
        f"{p.where}: {url} answered HTTP {response.status_code} without an access token"
        f"{detail}: the refresh token in token may have expired (authorize again and update "
        "it), or check oauth_client_id and oauth_client_secret"
    )


def _workload_identity(p: _Profile, token: str | None) -> dict[str, Any]:
    """auth_args(): workload identity federation keywords, validated as dbt-snowflake does."""
    provider = p.text("workload_identity_provider")
    if not provider or provider.upper() not in _WORKLOAD_IDENTITY_PROVIDERS:
        raise ProfileError(
            f"{p.where}: authenticator workload_identity needs workload_identity_provider, one "
            f"of {', '.join(_WORKLOAD_IDENTITY_PROVIDERS)}"
        )
    result: dict[str, Any] = {
        "authenticator": "WORKLOAD_IDENTITY",
        "workload_identity_provider": provider,
    }
    if token:
        result["token"] = token
    if entra := p.text("workload_identity_entra_resource"):
        if provider.upper() != "AZURE":
            raise ProfileError(
                f"{p.where}: workload_identity_entra_resource is only for "
                "workload_identity_provider AZURE; remove it"
            )
        result["workload_identity_entra_resource"] = entra
    return result


def _private_key(p: _Profile) -> bytes | None:
    """_get_private_key(): the key from private_key or private_key_path as DER PKCS#8 bytes."""
    inline = p.text("private_key")
    path = p.text("private_key_path")
    passphrase = p.text("private_key_passphrase")
    if inline and path:
        raise ProfileError(
            f"{p.where}: both private_key and private_key_path are set; keep only one"
        )
    if inline:
        # auth.private_key_from_string(): PEM text when it starts with '-', else base64 DER.
        text = inline.strip()
        if text.startswith("-"):
            return _load_key(p, text.encode(), True, passphrase, "private_key")
        try:
            der = base64.b64decode(text)
        except (binascii.Error, ValueError):
            der = b""
        if not der:
            raise ProfileError(
                f"{p.where}: private_key is neither PEM text nor base64 DER; paste the key "
                "file's contents, or use private_key_path"
            )
        return _load_key(p, der, False, passphrase, "private_key")
    if path:
        key_file = Path(path).expanduser()
        try:
            data = key_file.read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ProfileError(
                f"{p.where}: cannot read private_key_path {str(key_file)!r} ({reason}); point "
                "it at the private key file"
            ) from None
        # auth.private_key_from_file() reads PEM only; a DER file is read too.
        source = f"private_key_path {str(key_file)!r}"
        return _load_key(p, data, b"-----BEGIN" in data, passphrase, source)
    return None


def _load_key(p: _Profile, data: bytes, is_pem: bool, passphrase: str | None, source: str) -> bytes:
    """auth._load_private_key() then snowflake_private_key(): DER PKCS#8, unencrypted."""
    # auth.py: an empty passphrase means none.
    password = passphrase.encode() if passphrase else None
    loader = serialization.load_pem_private_key if is_pem else serialization.load_der_private_key
    key: PrivateKeyTypes | None
    try:
        key = loader(data, password=password)
    except TypeError:
        # cryptography: a passphrase for a plain key, or none for an encrypted one.
        if password:
            raise ProfileError(
                f"{p.where}: private_key_passphrase is set but {source} is not encrypted; "
                "remove private_key_passphrase"
            ) from None
        raise ProfileError(
            f"{p.where}: {source} is encrypted; set private_key_passphrase"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # auth.py: keys cryptography>=45 refuses (PBES1, PKCS#12 PBE, single DES) are loaded
        # through pyOpenSSL, which still reads them.
        key = _openssl_key(data, is_pem, password)
    if key is None:
        if password and _is_encrypted(loader, data):
            raise ProfileError(f"{p.where}: private_key_passphrase does not decrypt {source}")
        raise ProfileError(
            f"{p.where}: {source} is not a private key cryptography can read (PEM or DER, "
            "PKCS#8 or PKCS#1)"
        )
    return key.private_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _is_encrypted(loader: Callable[..., Any], data: bytes) -> bool:
    """Whether cryptography reads `data` as an encrypted key (it asks for a passphrase)."""
    try:
        loader(data, password=None)
    except TypeError:
        return True
    except (ValueError, UnsupportedAlgorithm):
        return False
    return False


def _openssl_key(data: bytes, is_pem: bool, password: bytes | None) -> PrivateKeyTypes | None:
    """auth._load_private_key()'s pyOpenSSL fallback; None when it cannot read the key either."""
    try:
        from OpenSSL import crypto
    except ImportError:
        return None
    if is_pem:
        start, end = data.find(b"-----BEGIN"), data.rfind(b"KEY-----")
        pem = data[start : end + len(b"KEY-----")] if 0 <= start < end else data
    else:
        # pyOpenSSL cannot load encrypted DER, so it is wrapped in PEM headers.
        body = base64.encodebytes(data)
        pem = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + body
        pem += b"-----END ENCRYPTED PRIVATE KEY-----\n"
    try:
        # An empty passphrase stops OpenSSL from prompting on the terminal.
        loaded = crypto.load_privatekey(crypto.FILETYPE_PEM, pem, password or b"")
        key = loaded.to_cryptography_key()
    except Exception:
        return None
    # Snowflake key pair authentication takes RSA keys only.
    return key if isinstance(key, rsa.RSAPrivateKey) else None


def _retryable(p: _Profile) -> Callable[[BaseException], bool]:
    """Which connect() errors are retried; open()'s retry_all and retry_on_database_errors."""
    if p.flag("retry_all"):
        return lambda exc: isinstance(exc, sf_errors.Error)
    extra = (sf_errors.DatabaseError,) if p.flag("retry_on_database_errors") else ()

    def retryable(exc: BaseException) -> bool:
        if isinstance(exc, extra):
            return True
        return isinstance(exc, _RETRYABLE) and not isinstance(exc, _NEVER_RETRIED)

    return retryable


def _connect_failure(
    p: _Profile, args: dict[str, Any], exc: Exception, attempts: int, secrets: list[str]
) -> ProfileError:
    """A ProfileError for a failed connect(): errno, sqlstate, scrubbed text, what to check."""
    errno = getattr(exc, "errno", None)
    sqlstate = getattr(exc, "sqlstate", None)
    # raw_msg is the text without the connector's "errno (sqlstate): " prefix.
    raw = getattr(exc, "raw_msg", None) if isinstance(exc, sf_errors.Error) else None
    text = _scrub(str(raw or exc), secrets).strip() or "no message"
    codes = [type(exc).__name__]
    if isinstance(errno, int) and errno >= 0:
        codes.append(f"errno {errno}")
    if sqlstate and sqlstate != "n/a":
        codes.append(f"sqlstate {sqlstate}")
    if isinstance(errno, int) and errno in _HINTS:
        hint = _HINTS[errno]
    elif isinstance(exc, sf_errors.OperationalError | sf_errors.InterfaceError):
        hint = _NETWORK_HINT
    else:
        hint = _DEFAULT_HINT
    who = f" as user '{args['user']}'" if args.get("user") else ""
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return ProfileError(
        f"{p.where}: cannot connect to Snowflake account '{args['account']}'{who}{tries} "
        f"({', '.join(codes)}): {text}; check {hint}"
    )


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret, as given or URL/JSON-escaped, replaced by '***'."""
    forms: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        forms.update(
            (
                secret,
                urllib.parse.quote(secret, safe=""),
                urllib.parse.quote_plus(secret),
                json.dumps(secret)[1:-1],
            )
        )
        # A PEM key may come back a line at a time.
        forms.update(line.strip() for line in secret.splitlines() if len(line.strip()) >= 16)
    for form in sorted(forms, key=len, reverse=True):
        if form:
            text = text.replace(form, "***")
    return text


class _Profile:
    """Typed reads of a target's fields; errors name the profile, target and field."""

    def __init__(self, target: ProfileTarget) -> None:
        self.fields = target.fields
        self.where = f"profile '{target.profile_name}' target '{target.target_name}'"

    def text(self, name: str) -> str | None:
        """A text field; None when absent or empty (dbt-snowflake tests them for truth)."""
        value = self.fields.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            # Never echo the value: this may be the password.
            raise ProfileError(
                f"{self.where}: {name} must be text, not {type(value).__name__}; quote it "
                "in profiles.yml"
            )
        return value

    def required(self, name: str) -> str:
        """A text field the target must have."""
        value = self.text(name)
        if value is None:
            raise ProfileError(f"{self.where}: {name} is required for Snowflake; set {name}")
        return value

    def integer(self, name: str, default: int | None) -> int | None:
        """A whole-number field (dbt validates these as integers)."""
        value = self.fields.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProfileError(
                f"{self.where}: {name} must be a whole number, not {value!r}; with env_var, "
                "add `| as_number`"
            )
        return value

    def number(self, name: str, default: float) -> float:
        """A number field."""
        value = self.fields.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProfileError(
                f"{self.where}: {name} must be a number, not {value!r}; with env_var, add "
                "`| as_number`"
            )
        return float(value)

    def flag(self, name: str) -> bool:
        """A true/false field, false when absent."""
        value = self.fields.get(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise ProfileError(
                f"{self.where}: {name} must be true or false, not {value!r}; with env_var, "
                "add `| as_bool`"
            )
        return value

    def secrets(self) -> list[str]:
        """The target's secret values, to scrub from any text shown to the user."""
        return [v for k in _SECRET_FIELDS if isinstance(v := self.fields.get(k), str) and v]
