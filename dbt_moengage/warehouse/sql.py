"""The SQL on a cohort's model that every engine shares, and the builders of what varies.

An engine's statement table (`Engine.SQL`) is MODEL_SQL and the state's statements
(state/sql.py), plus its own dialect: how it reads a uid's exact text, how it trims the
uid rule's whitespace (dbt_moengage/uids.py), how it counts rows that match a condition,
and its anti-joins. The builders here turn those pieces into the snapshot, model uid and
stats statements, so the uid rule is written once.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

# What each distinct value of a model's uid column is in the snapshot (see Engine.snapshot).
VALID, NULL_UID, BLANK_UID, PADDED_UID = "valid", "null", "blank", "padded"

# Statements on the model alone, the same on every engine.
MODEL_SQL: dict[str, str] = {
    # Postgres requires the subquery's alias (`m`).
    "count_model": "select count(*) from ({model_uids}) m",
    # The uids to send, from the snapshot while there is one, within max_uid_length.
    "cohort_uids": "{model_uids}",
    # The valid uids longer than a limit (distinct, their rows, one of them), from the
    # snapshot or, without one, from the same grouping of the model.
    "long_uids": f"""
        select count(*), coalesce(sum(n), 0), min(uid) from {{audience}} a
        where kind = '{VALID}' and length(uid) > ?""",
    "create_schema": "create schema if not exists {schema}",
    # The snapshot's rows are the column's distinct values, each with its row count `n`.
    "snapshot_stats": f"""
        select coalesce(sum(n), 0),
            coalesce(sum(case when kind = '{NULL_UID}' then n else 0 end), 0),
            coalesce(sum(case when kind = '{BLANK_UID}' then n else 0 end), 0),
            coalesce(sum(case when kind = '{PADDED_UID}' then n else 0 end), 0)
        from {{snapshot}}""",
    "drop_snapshot": "drop table if exists {snapshot}",
}

# The anti-joins as outer joins, for engines that plan them better than NOT EXISTS
# (Snowflake, BigQuery).
OUTER_ANTI_JOINS: dict[str, str] = {
    "add_delta": """
        select m.uid from ({model_uids}) m
        left join ({state_uids}) s on m.uid = s.uid where s.uid is null""",
    "remove_delta": """
        select s.uid from ({state_uids}) s
        left join ({model_uids}) m on s.uid = m.uid where m.uid is null""",
}


def stats_sql(count_if: str, blank: str, padded: str) -> str:
    """The model's `stats` statement: its rows, null uids, and the rows the conditions
    `blank` and `padded` hold for, each counted with the engine's `count_if` (`{}` is the
    condition)."""
    return f"""
        select count(*), count(*) - count({{col}}),
            {count_if.format(blank)},
            {count_if.format(padded)}
        from {{relation}}"""


def trimmed_uid_sql(text: str, trimmed: str, count_if: str) -> dict[str, str]:
    """The model's uids, its stats and its snapshot for an engine whose exact text of a uid
    is `text`, whose trim of the uid rule's whitespace is `trimmed` (`{col}` the column) and
    whose conditional count is `count_if` (see stats_sql): a uid is sent when not null, not
    empty, and equal to its trim (dbt_moengage/uids.py)."""
    valid = f"{{col}} is not null and {text} <> '' and {trimmed} = {text}"
    kind = f"""case when {{col}} is null then '{NULL_UID}' when {trimmed} = '' then '{BLANK_UID}'
    when {trimmed} <> {text} then '{PADDED_UID}' else '{VALID}' end"""
    return {
        **snapshot_sql(text, kind),
        "model_uids": f"select distinct {text} as uid from {{relation}} where {valid}",
        "stats": stats_sql(
            count_if,
            f"{{col}} is not null and {trimmed} = ''",
            f"{trimmed} <> '' and {trimmed} <> {text}",
        ),
    }


def snapshot_sql(text: str, kind: str) -> dict[str, str]:
    """An engine's snapshot statements, from its exact text of a uid (`{col}` is the column)
    and its `kind` expression (a CASE giving VALID, NULL_UID, BLANK_UID or PADDED_UID).

    `create_snapshot` is the select the engine wraps in its own CREATE: one read of the
    model, grouped by the exact text of each value. `snapshot_uids` stands in for the
    model's uids in every other statement while the snapshot exists.
    """
    exact_uid = text.replace("{col}", "uid")
    return {
        "create_snapshot": (
            f"select uid, n, {kind.replace('{col}', 'uid')} as kind from ("
            f"select {text} as uid, count(*) as n from {{relation}} group by 1) r"
        ),
        "snapshot_uids": f"select {exact_uid} as uid from {{snapshot}} where kind = '{VALID}'",
    }


def uids_json(batch: Sequence[str]) -> str:
    """A request's uids as one bound parameter: a JSON array every engine's SQL unpacks
    (DuckDB parses it faster than it converts a list of Python strings)."""
    return orjson.dumps(list(batch)).decode()


def quote_identifier(name: str, quote: str = '"') -> str:
    """Quote an identifier for SQL, doubling any quote inside it."""
    return quote + name.replace(quote, quote * 2) + quote
