"""Stage 4: pack a stream of uids into request bodies that fill MoEngage's size limit."""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate

import orjson

from .errors import CohortError

ADD = "add_members"
REMOVE = "remove_members"


@dataclass(frozen=True)
class Body:
    """One request body, ready to send, and the uids it carries.

    The last `resent` uids are members MoEngage accepted before, sent again; the others
    are new to the cohort.
    """

    payload: bytes
    uids: list[str]
    resent: int = 0

    @property
    def new_uids(self) -> list[str]:
        """The uids new to the cohort."""
        return self.uids[: len(self.uids) - self.resent]

    @property
    def resent_uids(self) -> list[str]:
        """The uids sent again."""
        return self.uids[len(self.uids) - self.resent :]


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
        # uids too long for a body of their own, left out of every body: how many, and the
        # first (its encoded size and its start), for the report.
        self.too_long = 0
        self.too_long_example: tuple[int, str] | None = None
        self.room = max_bytes - len(self.prefix) - len(self.suffix)
        if self.room < 32:
            raise CohortError(
                f"cohort '{cohort_id}': name, id and description take {max_bytes - self.room} "
                f"of the {max_bytes} bytes a request may hold; shorten the description"
            )

    def pack(
        self, batches: Iterable[Sequence[str]], resend: Iterable[Sequence[str]] = ()
    ) -> Iterator[Body]:
        """Yield full bodies as the uids stream in, then the last partial one. A uid too
        long for a body of its own is left out and counted (`too_long`).

        `resend` batches follow `batches` in the same bodies, so re-sends fill the room
        the new uids leave; each body counts the re-sent uids it carries.
        """
        # A member costs its encoded bytes plus one comma; the last one needs no comma.
        capacity = self.room + 1
        parts: list[bytes] = []  # runs of encoded members, each comma-joined
        uids: list[str] = []
        used = 0
        # How many of `uids` came from the resend batches (always the last ones).
        resent = 0
        tagged = itertools.chain(
            ((False, batch) for batch in batches), ((True, batch) for batch in resend)
        )
        for again, batch in tagged:
            if not batch:
                continue
            if not _plain(batch):
                # Quotes, backslashes, control or non-ASCII characters: encode uid by uid.
                for uid in batch:
                    piece = _member(uid)
                    if len(piece) > self.room:
                        self._leave_out(len(piece), uid)
                        continue
                    if used + len(piece) + 1 > capacity:
                        yield self._body(parts, uids, resent)
                        parts, uids, used, resent = [], [], 0, 0
                    parts.append(piece)
                    uids.append(uid)
                    resent += again
                    used += len(piece) + 1
                continue
            # Plain ASCII: a member is `{"uid":"` + uid + `"}`, its size known without
            # encoding it, so a body's share of the batch is found by bisection and encoded
            # in one join.
            ends = list(accumulate(map(len, batch), initial=0))

            def reach(end: int, ends: list[int] = ends) -> int:
                """Bytes of the batch's first `end` members, a comma after each."""
                return ends[end] + _PLAIN_COST * end

            start, count = 0, len(batch)
            positions = range(count + 1)
            while start < count:
                # The last `stop` whose members from `start` on still fit in this body.
                limit = reach(start) + capacity - used
                stop = bisect_right(positions, limit, start + 1, key=reach) - 1
                if stop == start:
                    if reach(start + 1) - reach(start) > capacity:
                        # Too long for a body of its own: the body being filled goes on.
                        self._leave_out(len(batch[start]) + _PLAIN_COST - 1, batch[start])
                        start += 1
                        continue
                    yield self._body(parts, uids, resent)
                    parts, uids, used, resent = [], [], 0, 0
                    continue
                run = batch[start:stop]
                parts.append(('{"uid":"' + '"},{"uid":"'.join(run) + '"}').encode())
                uids.extend(run)
                if again:
                    resent += len(run)
                used += reach(stop) - reach(start)
                start = stop
        if parts:
            yield self._body(parts, uids, resent)

    def _body(self, parts: list[bytes], uids: list[str], resent: int) -> Body:
        return Body(self.prefix + b",".join(parts) + self.suffix, uids, resent)

    def _leave_out(self, size: int, uid: str) -> None:
        """A uid that cannot fit in any request: counted, never sent, the rest packed on."""
        self.too_long += 1
        if self.too_long_example is None:
            self.too_long_example = (size, uid[:40])


# `{"uid":"` + `"}` around a plain uid, and the comma after it.
_PLAIN_COST = 11


def _plain(batch: Sequence[str]) -> bool:
    """Whether orjson would encode every uid as its own ASCII characters, escaping none."""
    try:
        joined = "".join(batch)
    except TypeError:
        return False
    # isascii() is a flag lookup; an escape (quote, backslash, control) makes the text longer.
    return joined.isascii() and len(orjson.dumps(joined)) == len(joined) + 2


def _member(uid: str) -> bytes:
    try:
        return b'{"uid":' + orjson.dumps(uid) + b"}"
    except orjson.JSONEncodeError:
        raise CohortError(f"uid {uid[:40]!r} is not valid Unicode text") from None
