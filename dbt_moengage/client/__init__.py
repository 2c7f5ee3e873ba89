"""Stage 5: the MoEngage client. All HTTP policy lives here: auth, pacing, retries.

The HTTP edge is exact: redirects are never followed, only a 2xx carrying MoEngage's
`{"status": "success"}` counts as accepted, and every exception requests can raise is mapped
to a typed error in one place (`request_error`), so retrying is decided by type. The retry
policy itself is `retry.py`, which the notifications and the dbt Cloud artifacts client
share, with its table of statuses worth another attempt (`retry.answer_error`). Of an answer
only the first BODY_READ bytes are ever read (`read_start`), and what an error quotes of it
goes through `redact_secret`, which masks the key in any form a server may echo it.

    sender.py     MoEngageClient and its Tally: the session, requests in flight, retries
    answer.py     an answer: its start read, and what it means (accepted or the typed error)
    failures.py   a request without an answer: requests' exceptions to typed errors, a table
"""

from __future__ import annotations

from ..errors import MoEngageSyncError
from .answer import BODY_READ, Answer, check_answer, read_start
from .failures import CONNECT_TIMEOUT, request_error
from .sender import ANNOUNCED_WAIT_SECONDS, MoEngageClient, Tally, WaitHook

__all__ = [
    "ANNOUNCED_WAIT_SECONDS",
    "BODY_READ",
    "CONNECT_TIMEOUT",
    "Answer",
    "MoEngageClient",
    "MoEngageSyncError",
    "Tally",
    "WaitHook",
    "check_answer",
    "read_start",
    "request_error",
]
