"""Stage 4: pack a stream of uids into request bodies that fill MoEngage's size limit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import orjson

from .errors import CohortError

ADD = "add_members"
REMOVE = "remove_members"


@dataclass(frozen=True)
class Body:
    """One request body, ready to send, and the uids it carries."""

    payload: bytes
    uids: list[str]


class BodyPacker:
    """Builds bodies for one cohort and action, each as close to `max_bytes` as it can."""

    def __init__(
        self,
        *,
        action: str,
        partner: str,
        cohort_name: str,
        cohort_id: str,
        description: str,
        max_bytes: int,
    ) -> None:
        self.prefix = (
            b'{"action":'
            + orjson.dumps(action)
            + b',"partner":'
            + orjson.dumps(partner)
            + b',"parameters":{"cohort_name":'
            + orjson.dumps(cohort_name)
            + b',"cohort_id":'
            + orjson.dumps(cohort_id)
            + b',"cohort_description":'
            + orjson.dumps(description)
            + b',"members":['
        )
        self.suffix = b"]}}"
        self.max_bytes = max_bytes
        self.room = max_bytes - len(self.prefix) - len(self.suffix)
        if self.room < 32:
            raise CohortError(
                f"cohort '{cohort_id}': name, id and description take {max_bytes - self.room} "
                f"of the {max_bytes} bytes a request may hold; shorten the description"
            )

    def pack(self, batches: Iterable[Sequence[str]]) -> Iterator[Body]:
        """Yield full bodies as the uids stream in, then the last partial one."""
        pieces: list[bytes] = []
        uids: list[str] = []
        used = 0
        room = self.room
        for batch in batches:
            for uid in batch:
                piece = _member(uid)
                if len(piece) > room:
                    raise CohortError(
                        f"a uid of {len(piece)} encoded bytes cannot fit in one request "
                        f"of at most {self.max_bytes} bytes (uid starts {uid[:40]!r})"
                    )
                cost = len(piece) + (1 if pieces else 0)
                if used + cost > room:
                    yield self._body(pieces, uids)
                    pieces, uids, used = [], [], 0
                    cost = len(piece)
                pieces.append(piece)
                uids.append(uid)
                used += cost
        if pieces:
            yield self._body(pieces, uids)

    def _body(self, pieces: list[bytes], uids: list[str]) -> Body:
        return Body(self.prefix + b",".join(pieces) + self.suffix, uids)


def _member(uid: str) -> bytes:
    try:
        return b'{"uid":' + orjson.dumps(uid) + b"}"
    except orjson.JSONEncodeError:
        raise CohortError(f"uid {uid[:40]!r} is not valid Unicode text") from None
