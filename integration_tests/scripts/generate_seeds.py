"""Write the integration-test seeds: a small, deterministic app with users, orders and events.

    python integration_tests/scripts/generate_seeds.py          # rewrites integration_tests/seeds/
    python integration_tests/scripts/generate_seeds.py --check  # exit 1 if the CSVs are stale

Only the standard library is used and every random choice comes from one fixed seed, so the
output is byte-for-byte the same on every machine and Python >= 3.10. The CSVs are committed;
rerun this script (and commit its output) only when the data itself should change.

Seeds written:
    users.csv        3000 users: UUID user_id, email, country, signup_date, plan, customer_number
    orders.csv       12000 orders between 2025-01-01 and 2026-06-30
    events.csv       15000 app events over the same window
    app_signups.csv  200 signups whose user_ref is deliberately messy (NULL, '', whitespace,
                     duplicates, non-ASCII, quotes and backslashes); `quality_note` says which.

A CSV cannot tell an empty string from NULL once DuckDB's COPY (dbt-duckdb's fast seed
loader) reads it: both an empty field and a quoted "" load as NULL. So the empty-string rows
are written as a quoted "" with quality_note = 'empty_ref', and a post-hook on the seed in
integration_tests/dbt_project.yml turns exactly those rows back into ''.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

RANDOM_SEED = 20250101
SEEDS_DIR = Path(__file__).resolve().parent.parent / "seeds"

N_USERS = 3000
N_ORDERS = 12000
N_EVENTS = 15000
N_SIGNUPS = 200

WINDOW_START = datetime(2025, 1, 1)
WINDOW_END = datetime(2026, 6, 30, 23, 59, 59)

FIRST_NAMES = [
    "ana", "ben", "chloe", "david", "elena", "farah", "george", "hana", "ivan", "julia",
    "kenji", "lina", "mateo", "nora", "omar", "priya", "quentin", "rosa", "sam", "tara",
    "umar", "vera", "wei", "ximena", "yusuf", "zoe", "arjun", "bianca", "carlos", "dina",
]  # fmt: skip
LAST_NAMES = [
    "silva", "kumar", "nguyen", "smith", "garcia", "mueller", "rossi", "kowalski", "tanaka",
    "okafor", "haddad", "johansson", "dubois", "ivanova", "chen", "patel", "lopez", "kim",
    "novak", "olsen", "mensah", "sato", "fischer", "costa", "reyes", "ali", "walker", "park",
]  # fmt: skip
EMAIL_DOMAINS = ["example.com", "example.org", "example.net"]
# country code -> weight
COUNTRIES = {
    "IN": 30, "US": 18, "ID": 10, "BR": 8, "GB": 6, "DE": 6, "AE": 5, "SG": 4, "MX": 4,
    "FR": 3, "NG": 3, "JP": 3,
}  # fmt: skip
PLANS = {"free": 62, "pro": 28, "enterprise": 10}
# mean order amount per plan: enough for a few hundred users to pass 500 lifetime
PLAN_ORDER_MEAN = {"free": 38.0, "pro": 95.0, "enterprise": 240.0}
# how much more often than a free user each plan orders and uses the app
PLAN_ACTIVITY = {"free": 1.0, "pro": 2.0, "enterprise": 3.0}
EVENT_NAMES = {
    "app_open": 40, "product_viewed": 25, "search": 12, "add_to_cart": 9,
    "push_clicked": 6, "checkout_started": 5, "order_completed": 3,
}  # fmt: skip
SIGNUP_SOURCES = {"ios": 45, "android": 40, "web": 15}

# uids an app might really send: accents, CJK, emoji, quotes and backslashes
SPECIAL_REFS = [
    "usér-çafé-0001",
    "用户-000042",
    "пользователь-17",
    "emoji-🚀-user",
    'legacy"quoted"ref',
    "legacy\\backslash\\ref",
    'mixed\\"both"\\ref',
    "o'brien-ref",
]


def weighted(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def make_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def random_ts(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randint(0, span))


def fmt_ts(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S")


def build_users(rng: random.Random) -> list[dict[str, object]]:
    customer_numbers = rng.sample(range(100_000, 1_000_000), N_USERS)
    signup_start = date(2022, 1, 1)
    signup_days = (date(2026, 3, 31) - signup_start).days
    users = []
    for i in range(N_USERS):
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        users.append(
            {
                "user_id": make_uuid(rng),
                "email": f"{first}.{last}.{i + 1:04d}@{rng.choice(EMAIL_DOMAINS)}",
                "country": weighted(rng, COUNTRIES),
                "signup_date": (signup_start + timedelta(days=rng.randint(0, signup_days))),
                "plan": weighted(rng, PLANS),
                "customer_number": customer_numbers[i],
            }
        )
    return users


def active_from(user: dict[str, object]) -> datetime:
    signup = user["signup_date"]
    assert isinstance(signup, date)
    return max(WINDOW_START, datetime(signup.year, signup.month, signup.day))


def build_orders(rng: random.Random, users: list[dict[str, object]]) -> list[dict[str, object]]:
    # about a quarter of users never order
    buyers = [u for u in users if rng.random() < 0.75]
    weights = [PLAN_ACTIVITY[str(u["plan"])] * rng.uniform(0.2, 1.8) for u in buyers]
    orders = []
    for user in rng.choices(buyers, weights=weights, k=N_ORDERS):
        mean = PLAN_ORDER_MEAN[str(user["plan"])]
        amount = round(max(1.0, rng.lognormvariate(0, 0.6) * mean * 0.84), 2)
        orders.append(
            {
                "user_id": user["user_id"],
                "amount": f"{amount:.2f}",
                "ordered_at": random_ts(rng, active_from(user), WINDOW_END),
            }
        )
    orders.sort(key=lambda o: (o["ordered_at"], o["user_id"]))
    for n, order in enumerate(orders, start=1):
        order["order_id"] = f"ord_{n:06d}"
        order["ordered_at"] = fmt_ts(order["ordered_at"])  # type: ignore[arg-type]
    return [{k: o[k] for k in ("order_id", "user_id", "amount", "ordered_at")} for o in orders]


def build_events(rng: random.Random, users: list[dict[str, object]]) -> list[dict[str, object]]:
    weights = [PLAN_ACTIVITY[str(u["plan"])] * rng.uniform(0.1, 2.0) for u in users]
    events = []
    for user in rng.choices(users, weights=weights, k=N_EVENTS):
        events.append(
            {
                "user_id": user["user_id"],
                "event_name": weighted(rng, EVENT_NAMES),
                "occurred_at": random_ts(rng, active_from(user), WINDOW_END),
            }
        )
    events.sort(key=lambda e: (e["occurred_at"], e["user_id"], e["event_name"]))
    for event in events:
        event["occurred_at"] = fmt_ts(event["occurred_at"])  # type: ignore[arg-type]
    return events


def build_app_signups(
    rng: random.Random, users: list[dict[str, object]]
) -> list[dict[str, object]]:
    """200 signups: mostly clean UUID refs, plus a fixed number of each kind of mess."""
    kinds = (
        ["null_ref"] * 12
        + ["empty_ref"] * 8
        + ["blank_ref"] * 7
        + ["duplicate_ref"] * 15
        + ["special_chars"] * len(SPECIAL_REFS)
    )
    kinds += ["ok"] * (N_SIGNUPS - len(kinds))
    rng.shuffle(kinds)
    # a duplicate repeats one of the clean refs (which may come before or after it)
    clean_refs = [str(u["user_id"]) for u in rng.sample(users, kinds.count("ok"))]
    clean_iter = iter(clean_refs)

    blanks = [" ", "   ", "\t", " \t ", "  "]
    specials = iter(SPECIAL_REFS)
    signed_up = random_ts(rng, datetime(2026, 3, 1), datetime(2026, 3, 2))
    rows: list[dict[str, object]] = []
    for n, kind in enumerate(kinds, start=1):
        ref: str | None
        if kind == "ok":
            ref = next(clean_iter)
        elif kind == "null_ref":
            ref = None
        elif kind == "empty_ref":
            ref = ""
        elif kind == "blank_ref":
            ref = rng.choice(blanks)
        elif kind == "duplicate_ref":
            ref = rng.choice(clean_refs)
        else:
            ref = next(specials)
        signed_up += timedelta(minutes=rng.randint(5, 900))
        rows.append(
            {
                "signup_id": n,
                "user_ref": ref,
                "signup_source": weighted(rng, SIGNUP_SOURCES),
                "signed_up_at": fmt_ts(signed_up),
                "quality_note": kind,
            }
        )
    return rows


def to_csv(rows: list[dict[str, object]]) -> str:
    """RFC 4180 CSV with '\\n' line ends; None is an empty field, '' a quoted empty field."""
    out = io.StringIO()
    columns = list(rows[0])
    out.write(",".join(columns) + "\n")
    for row in rows:
        cells = []
        for column in columns:
            value = row[column]
            if value is None:
                cells.append("")
                continue
            text = str(value)
            needs_quotes = text == "" or text != text.strip() or any(c in text for c in ',"\n\r')
            cells.append('"' + text.replace('"', '""') + '"' if needs_quotes else text)
        out.write(",".join(cells) + "\n")
    return out.getvalue()


def build_all() -> dict[str, str]:
    rng = random.Random(RANDOM_SEED)
    users = build_users(rng)
    orders = build_orders(rng, users)
    events = build_events(rng, users)
    signups = build_app_signups(rng, users)
    return {
        "users.csv": to_csv(users),
        "orders.csv": to_csv(orders),
        "events.csv": to_csv(events),
        "app_signups.csv": to_csv(signups),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the CSVs on disk differ")
    parser.add_argument("--out", type=Path, default=SEEDS_DIR, help="folder to write to")
    args = parser.parse_args(argv)

    files = build_all()
    if args.check:
        stale = [
            name
            for name, text in files.items()
            if not (args.out / name).exists()
            or (args.out / name).read_text(encoding="utf-8") != text
        ]
        for name in stale:
            print(f"stale: {args.out / name}", file=sys.stderr)
        return 1 if stale else 0

    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        with open(args.out / name, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        print(f"wrote {args.out / name} ({text.count(chr(10)) - 1} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
