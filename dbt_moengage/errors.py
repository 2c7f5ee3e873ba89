"""Every error dbt-moengage raises, split by what the caller should do about it.

    MoEngageSyncError                 base; `str(e)` is safe to print (never holds a secret)
    ├── ConfigError                   the run cannot start: exit 2
    │   ├── ManifestError             target/manifest.json missing, unreadable, unsupported
    │   ├── ProfileError              dbt profile not found or not renderable
    │   ├── SettingsError             MoEngage credentials / settings missing or invalid
    │   ├── ArtifactError             a dbt Cloud run's artifacts cannot be fetched (webhook)
    │   │   └── ArtifactsUnavailable  dbt Cloud kept failing transiently (also a
    │   │                             TransientError: the receiver tries the run again later)
    │   ├── ExposureFileError         the exposures YAML file cannot be read or safely updated
    │   └── StateVersionError         the sync state was written by a newer dbt-moengage
    ├── CohortError                   one cohort cannot sync; the others go on: exit 1
    │   ├── CohortSpecError           bad `meta.moengage` config (model, field, value)
    │   │   └── UnsettledConflict     a shared cohort_id or name only the sync state settles
    │   ├── WarehouseError            the model's relation or column cannot be read
    │   │   └── RelationMissing       the model's relation is not in the warehouse read
    │   ├── LockTimeout               another run holds the cohort (or the DuckDB file)
    │   ├── LockLost                  the cohort's lock was taken over mid-run: stop it
    │   └── RequestRejected           MoEngage refused a request as is (400/413/415/...),
    │                                 or a 2xx whose body is not {"status": "success"}
    ├── TransientError                worth retrying: 429, 5xx, dropped connection, timeout,
    │   │                             a body cut short or not decodable
    │   └── RateLimited               429, carries the server's Retry-After when it gave one
    ├── StreamStopped                 a body left unsent: another of its stream failed first
    ├── WorkspaceFatal                stop every cohort of the workspace (401/403): exit 1
    │   └── DestinationError          the destination cannot be reached as set: a redirect,
    │                                 a host that does not resolve, TLS, a bad URL or header
    ├── Interrupted                   SIGINT/SIGTERM: start nothing new, finish what is in
    │                                 flight, report: exit 130/143
    └── NotificationFailed            the post to MOENGAGE_NOTIFY_URL failed: a warning,
                                      never a failed sync (the next run posts again)

Retrying is decided by these types, never by matching message text: `is_transient`, below,
is the one place that says which errors are worth another attempt (retry.py asks it).
The emulator's `BadRequest` (dbt_moengage/testing/) is the test double's own, not the runner's.
"""

from __future__ import annotations


class MoEngageSyncError(Exception):
    """Base of every dbt-moengage error; its message never contains a secret."""


class ConfigError(MoEngageSyncError):
    """The run cannot start (exit code 2)."""


class ManifestError(ConfigError):
    """dbt's manifest is missing, unreadable or of an unsupported version."""


class ProfileError(ConfigError):
    """The dbt profile cannot be found or rendered."""


class SettingsError(ConfigError):
    """MoEngage settings (credentials, data center, base URL) are missing or invalid."""


class ArtifactError(ConfigError):
    """A dbt Cloud run's artifacts cannot be fetched, so its sync cannot start."""


class ExposureFileError(ConfigError):
    """The exposures YAML file (`dbt-moengage exposures`) cannot be read or safely updated."""


class CohortError(MoEngageSyncError):
    """One cohort cannot be synced; the run goes on with the others."""


class CohortSpecError(CohortError):
    """A model's `meta.moengage` config is invalid."""

    def __init__(self, model: str, field: str, value: object, problem: str, fix: str = "") -> None:
        self.model = model
        self.field = field
        self.value = value
        self.problem = problem
        # Fields outside meta.moengage (e.g. config.materialized) are given in full.
        if field.startswith("config."):
            where = field
        else:
            where = f"meta.moengage.{field}" if field else "meta.moengage"
        message = f"model '{model}': {where} = {value!r}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class UnsettledConflict(CohortSpecError):
    """A cohort_id or cohort_name shared by cohorts, judged without the sync state, which
    says which of them is live (it keeps syncing) and which are refused."""


class StateVersionError(ConfigError):
    """The sync state was written by a newer dbt-moengage than this one."""


class WarehouseError(CohortError):
    """The warehouse cannot give a cohort's uids (relation missing, bad column, ...)."""


class RelationMissing(WarehouseError):
    """The model's relation does not exist in the warehouse the run reads (or the role
    cannot see it)."""


class LockTimeout(CohortError):
    """Another run holds the cohort's lock for longer than we may wait."""


class LockLost(CohortError):
    """The cohort's lock is no longer this run's (its heartbeat stopped, another took it)."""


class RequestRejected(CohortError):
    """MoEngage rejected or did not accept a request; retrying it unchanged cannot help."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"MoEngage rejected the request with HTTP {status}: {detail}")


class TransientError(MoEngageSyncError):
    """A failure worth retrying after a pause."""


class RateLimited(TransientError):
    """HTTP 429; `retry_after` is the server's hint in seconds, when it gave one."""

    def __init__(self, detail: str, retry_after: float | None) -> None:
        self.retry_after = retry_after
        super().__init__(detail)


class ArtifactsUnavailable(ArtifactError, TransientError):
    """dbt Cloud kept answering a run's artifact requests with transient failures (429, 5xx,
    404 before they are published, dropped connections): the run may be tried again later."""


class StreamStopped(MoEngageSyncError):
    """A body left unsent because another body of the same stream failed first."""


class WorkspaceFatal(MoEngageSyncError):
    """The workspace refuses every request (bad credentials); stop sending to it."""


class DestinationError(WorkspaceFatal):
    """The destination's URL or headers cannot work (redirect, DNS, TLS); stop sending to it."""


class Interrupted(MoEngageSyncError):
    """The run was asked to stop (SIGINT or SIGTERM): no new request or cohort starts."""


class NotificationFailed(MoEngageSyncError):
    """The notification receiver refused the post or could not be reached; its message
    shows the receiver as scheme://host only (the URL holds its secret)."""


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed: the one place transient vs fatal is decided."""
    return isinstance(exc, TransientError)
