"""packing: uids into request bodies that follow the contract and fill the size limit."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dbt_moengage.errors import CohortError
from dbt_moengage.packing import ADD, REMOVE, Body, BodyPacker

NAME = ".High Value Users"
COHORT_ID = "high_value_users"
DESCRIPTION = "Built by dbt model high_value_users"


def packer(max_bytes: int = 128_000, action: str = ADD, **overrides: str) -> BodyPacker:
    """A packer for the high_value_users cohort."""
    fields = {
        "partner": "dbt-moengage",
        "cohort_name": NAME,
        "cohort_id": COHORT_ID,
        "description": DESCRIPTION,
        **overrides,
    }
    return BodyPacker(action=action, max_bytes=max_bytes, **fields)


def pack(uids: Sequence[str], max_bytes: int = 128_000, batch: int = 1000) -> list[Body]:
    """Pack `uids`, streamed in batches of `batch`."""
    batches = [uids[i : i + batch] for i in range(0, len(uids), batch)]
    return list(packer(max_bytes).pack(batches))


def member(uid: str) -> bytes:
    """The encoded member object as the contract defines it."""
    return json.dumps({"uid": uid}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def check_bodies(bodies: list[Body], uids: Sequence[str], max_bytes: int) -> None:
    """Valid JSON within the limit, the exact contract shape, every uid once and in order."""
    seen: list[str] = []
    for body in bodies:
        assert len(body.payload) <= max_bytes
        decoded = json.loads(body.payload)
        members = decoded["parameters"]["members"]
        assert members, "no empty bodies"
        assert all(list(m) == ["uid"] for m in members)
        assert [m["uid"] for m in members] == body.uids
        seen.extend(body.uids)
    assert seen == list(uids)


def check_near_full(bodies: list[Body], max_bytes: int) -> None:
    """Every body but the last was closed because the next member would not fit."""
    for body, following in itertools.pairwise(bodies):
        next_member = member(following.uids[0])
        assert len(body.payload) + 1 + len(next_member) > max_bytes


def test_body_matches_the_contract_exactly() -> None:
    (body,) = pack(["u-1", "u-2"])
    decoded: dict[str, Any] = json.loads(body.payload)
    assert decoded == {
        "action": "add_members",
        "partner": "dbt-moengage",
        "parameters": {
            "cohort_name": NAME,
            "cohort_id": COHORT_ID,
            "cohort_description": DESCRIPTION,
            "members": [{"uid": "u-1"}, {"uid": "u-2"}],
        },
    }
    assert list(decoded) == ["action", "partner", "parameters"]
    assert list(decoded["parameters"]) == [
        "cohort_name",
        "cohort_id",
        "cohort_description",
        "members",
    ]
    assert body.uids == ["u-1", "u-2"]


def test_body_is_compact_utf8_json() -> None:
    (body,) = pack(["u-1"])
    assert body.payload == (
        b'{"action":"add_members","partner":"dbt-moengage","parameters":'
        b'{"cohort_name":".High Value Users","cohort_id":"high_value_users",'
        b'"cohort_description":"Built by dbt model high_value_users",'
        b'"members":[{"uid":"u-1"}]}}'
    )


def test_remove_action() -> None:
    (body,) = list(packer(action=REMOVE).pack([["u-1"]]))
    assert json.loads(body.payload)["action"] == "remove_members"


def test_header_fields_with_quotes_and_non_ascii_are_escaped() -> None:
    cohort = packer(
        cohort_name='.Ünïcödé "quoted" 🎉',
        cohort_id="id\\with\\backslashes",
        description="line1\nline2\t\x00",
        partner="acme «dbt»",
    )
    (body,) = list(cohort.pack([["u"]]))
    params = json.loads(body.payload)["parameters"]
    assert params["cohort_name"] == '.Ünïcödé "quoted" 🎉'
    assert params["cohort_id"] == "id\\with\\backslashes"
    assert params["cohort_description"] == "line1\nline2\t\x00"
    assert json.loads(body.payload)["partner"] == "acme «dbt»"


def test_no_uids_no_bodies() -> None:
    assert pack([]) == []
    assert list(packer().pack([[], [], []])) == []


def test_batches_do_not_shape_the_bodies() -> None:
    uids = [f"user-{i:06d}" for i in range(5000)]
    by_one = pack(uids, max_bytes=4000, batch=1)
    by_many = pack(uids, max_bytes=4000, batch=777)
    all_at_once = pack(uids, max_bytes=4000, batch=len(uids))
    assert [b.payload for b in by_one] == [b.payload for b in by_many]
    assert [b.payload for b in by_one] == [b.payload for b in all_at_once]


def test_bodies_are_full_within_the_limit_and_lose_nothing() -> None:
    uids = [f"u-{i}" for i in range(20_000)]
    bodies = pack(uids, max_bytes=5000)
    assert len(bodies) > 10
    check_bodies(bodies, uids, 5000)
    check_near_full(bodies, 5000)


@pytest.mark.parametrize(
    "uid",
    [
        'with "quotes"',
        "back\\slash\\",
        "ctrl \x00 \x01 \x1f \x7f \n\r\t\b\f",
        "naïve Ünïcödé 用户",
        "emoji 🎉👩‍👩‍👧 \U0010ffff",
        "\u2028\u2029",
        " spaced ",
        "</script>",
        "",
    ],
)
def test_awkward_uids_round_trip(uid: str) -> None:
    uids = [f"{uid}-{i}" for i in range(300)] + [uid]
    bodies = pack(uids, max_bytes=1000, batch=7)
    check_bodies(bodies, uids, 1000)
    check_near_full(bodies, 1000)


def test_size_is_counted_on_encoded_bytes() -> None:
    # Four bytes of UTF-8 each: a character count would overfill the body four times over.
    uids = ["🎉" * 50 + str(i) for i in range(200)]
    bodies = pack(uids, max_bytes=2000)
    check_bodies(bodies, uids, 2000)
    check_near_full(bodies, 2000)


def test_control_characters_are_counted_after_escaping() -> None:
    uids = ["\x01" * 40 + str(i) for i in range(200)]
    bodies = pack(uids, max_bytes=2000)
    check_bodies(bodies, uids, 2000)
    check_near_full(bodies, 2000)


def test_a_uid_that_exactly_fills_the_room_fits() -> None:
    cohort = packer(max_bytes=1000)
    overhead = len(member(""))
    uid = "x" * (cohort.room - overhead)
    bodies = list(cohort.pack([[uid, "next"]]))
    assert [b.uids for b in bodies] == [[uid], ["next"]]
    assert len(bodies[0].payload) == 1000


def test_a_uid_too_big_for_one_body_is_left_out_and_counted() -> None:
    cohort = packer(max_bytes=1000)
    uid = "x" * (cohort.room - len(member("")) + 1)
    bodies = list(cohort.pack([["small", uid, "after"]]))
    assert [b.uids for b in bodies] == [["small", "after"]]
    assert cohort.too_long == 1
    assert cohort.too_long_example == (len(member(uid)), uid[:40])


def test_a_uid_too_big_only_once_escaped() -> None:
    cohort = packer(max_bytes=1000)
    # Fewer characters than the room, but each control character takes six bytes escaped.
    uid = "\x02" * (cohort.room // 3)
    assert [b.uids for b in cohort.pack([["é", uid, "z"]])] == [["é", "z"]]
    assert cohort.too_long == 1


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(CohortError, match="not valid Unicode"):
        list(packer().pack([["ok", "bad \ud800"]]))


def test_header_too_big_for_the_limit() -> None:
    with pytest.raises(CohortError) as info:
        packer(max_bytes=300, description="d" * 250)
    assert "shorten the description" in str(info.value)
    assert COHORT_ID in str(info.value)


def test_bodies_stream_before_the_input_ends() -> None:
    def batches() -> Iterable[list[str]]:
        yield [f"u-{i}" for i in range(1000)]
        raise AssertionError("read past the first full body")

    first = next(iter(packer(max_bytes=2000).pack(batches())))
    assert first.uids[0] == "u-0"


def test_default_limit_fills_bodies_with_200k_uuids() -> None:
    rng = random.Random(20240601)
    uids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(200_000)]
    bodies = pack(uids, batch=10_000)
    check_bodies(bodies, uids, 128_000)
    check_near_full(bodies, 128_000)
    mean = sum(len(b.payload) for b in bodies) / len(bodies)
    assert mean / 128_000 >= 0.99
    assert all(len(b.payload) > 127_900 for b in bodies[:-1])


uid_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(uids=st.lists(uid_text, max_size=200), max_bytes=st.integers(300, 5000))
# A uid too long for a body of its own, escaped: left out, not a failed cohort (found by
# hypothesis after uids too long stopped failing their cohort).
@example(uids=["0" * 13 + '"' + "\x1f" * 9 + "\x07\u0800" + "\U00010000" * 3], max_bytes=300)
def test_property_valid_bodies_within_limit_and_lossless(uids: list[str], max_bytes: int) -> None:
    cohort = packer(max_bytes)
    # A uid too long for a body of its own is left out and counted; the others go, in order.
    fits = [u for u in uids if len(member(u)) <= cohort.room]
    bodies = list(cohort.pack([uids]))
    assert cohort.too_long == len(uids) - len(fits)
    check_bodies(bodies, fits, max_bytes)
    check_near_full(bodies, max_bytes)
    assert [m["uid"] for b in bodies for m in json.loads(b.payload)["parameters"]["members"]] == (
        fits
    )


@settings(max_examples=100, deadline=None)
@given(
    uids=st.lists(st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=8)),
    sizes=st.lists(st.integers(0, 20), min_size=1, max_size=10),
)
def test_property_batching_never_changes_the_bodies(uids: list[str], sizes: list[int]) -> None:
    batches: list[list[str]] = []
    rest = list(uids)
    for size in sizes * (len(uids) + 1):
        if not rest:
            break
        batches.append(rest[:size])
        rest = rest[size:]
    batches.append(rest)
    split = [b.payload for b in packer(600).pack(batches)]
    whole = [b.payload for b in packer(600).pack([uids])]
    assert split == whole


def reference_pack(uids: Sequence[str], max_bytes: int) -> list[bytes]:
    """The contract, member by member: a body closes when the next member would not fit."""
    cohort = packer(max_bytes)
    bodies: list[bytes] = []
    members: list[bytes] = []
    for uid in uids:
        piece = member(uid)
        if members and len(cohort.prefix + b",".join([*members, piece]) + cohort.suffix) > (
            max_bytes
        ):
            bodies.append(cohort.prefix + b",".join(members) + cohort.suffix)
            members = []
        members.append(piece)
    if members:
        bodies.append(cohort.prefix + b",".join(members) + cohort.suffix)
    return bodies


# Mostly plain ASCII (packed a run at a time), with characters that need escaping or take
# several bytes mixed in (packed uid by uid), so a body often spans both kinds of batch.
plain_uid = st.text(alphabet="abc-019 ~\x7f", max_size=30)
awkward_uid = st.text(alphabet=[*"ab1 ", '"', "\\", "\x01", "é", "🎉"], min_size=1, max_size=30)
mixed_uid = st.one_of(plain_uid, plain_uid, plain_uid, awkward_uid)


@settings(max_examples=200, deadline=None)
@given(
    uids=st.lists(mixed_uid, max_size=300),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    max_bytes=st.integers(300, 1500),
)
def test_property_same_bodies_as_member_by_member(
    uids: list[str], sizes: list[int], max_bytes: int
) -> None:
    batches: list[list[str]] = []
    rest = list(uids)
    for size in itertools.cycle(sizes):
        if not rest:
            break
        batches.append(rest[:size])
        rest = rest[size:]
    bodies = list(packer(max_bytes).pack(batches))
    assert [b.payload for b in bodies] == reference_pack(uids, max_bytes)
    check_bodies(bodies, uids, max_bytes)


def test_plain_batch_after_an_escaped_one_shares_the_body() -> None:
    bodies = list(packer().pack([['q"1', "é2"], ["plain-3", "plain-4"], ["\\5"]]))
    assert len(bodies) == 1
    assert [m["uid"] for m in json.loads(bodies[0].payload)["parameters"]["members"]] == [
        'q"1',
        "é2",
        "plain-3",
        "plain-4",
        "\\5",
    ]


def test_plain_uids_too_big_are_left_out_between_full_bodies() -> None:
    cohort = packer(max_bytes=1000)
    big = "x" * (cohort.room - len(member("")) + 1)
    small = [f"u-{i:04d}" for i in range(200)]
    bodies = list(cohort.pack([[*small[:100], big, big + "y", *small[100:]]]))
    assert [uid for body in bodies for uid in body.uids] == small
    assert all(len(body.payload) <= 1000 for body in bodies)
    assert cohort.too_long == 2
    assert cohort.too_long_example == (len(member(big)), big[:40])


# Re-sends share the bodies of the adds.


def test_resends_fill_the_room_the_adds_leave() -> None:
    new = [f"new-{i:03d}" for i in range(30)]
    again = [f"old-{i:03d}" for i in range(300)]
    bodies = list(packer(2_000).pack([new[:10], new[10:]], resend=[again[:100], again[100:]]))
    check_bodies(bodies, [*new, *again], 2_000)
    check_near_full(bodies, 2_000)
    assert [u for b in bodies for u in b.new_uids] == new
    assert [u for b in bodies for u in b.resent_uids] == again
    # The first body holds the 30 new uids and re-sends after them.
    assert bodies[0].new_uids == new and 0 < bodies[0].resent < len(bodies[0].uids)
    assert all(b.new_uids == [] for b in bodies[1:])
    assert all(b.resent == len(b.uids) for b in bodies[1:])


def test_only_resends() -> None:
    bodies = list(packer().pack([], resend=[["a", 'b"'], ["c"]]))
    assert [(b.uids, b.resent) for b in bodies] == [(["a", 'b"', "c"], 3)]


@settings(max_examples=100, deadline=None)
@given(
    new=st.lists(mixed_uid, max_size=100),
    again=st.lists(mixed_uid, max_size=100),
    max_bytes=st.integers(300, 1500),
)
def test_property_resends_pack_as_one_stream(
    new: list[str], again: list[str], max_bytes: int
) -> None:
    bodies = list(packer(max_bytes).pack([new], resend=[again]))
    assert [b.payload for b in bodies] == reference_pack([*new, *again], max_bytes)
    assert [u for b in bodies for u in b.new_uids] == new
    assert [u for b in bodies for u in b.resent_uids] == again
