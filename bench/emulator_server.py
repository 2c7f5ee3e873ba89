"""The emulator in a process of its own, so its CPU does not compete with the bench's.

Accepts the credentials in MOENGAGE_WORKSPACE_ID and MOENGAGE_API_KEY, prints its base URL
on its first line, serves until stdin closes (or SIGTERM), then writes its request log as
JSON to --log: one [arrival, status, body bytes, members] per request, arrivals in
time.monotonic() seconds (CLOCK_MONOTONIC: one clock for the whole machine).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from dbt_moengage.testing.emulator import Emulator, EmulatorConfig
from dbt_moengage.testing.emulator import server as emulator_server

# The emulator turns Nagle's algorithm off (a ~40 ms stall per answer otherwise, which
# would bound every figure taken against an unlimited emulator); checked, not assumed.
NAGLE_FIXED_HERE = not emulator_server._Handler.disable_nagle_algorithm
assert not NAGLE_FIXED_HERE, "the emulator must disable Nagle's algorithm itself"


def main() -> int:
    """Serve until told to stop, then write the request log."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate-limit", type=int, default=0, help="per minute; 0: unlimited")
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()

    config = EmulatorConfig(
        workspace_id=os.environ["MOENGAGE_WORKSPACE_ID"],
        api_key=os.environ["MOENGAGE_API_KEY"],
        rate_limit_per_min=args.rate_limit or None,
    )
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    with Emulator(config) as emulator:
        print(emulator.url, flush=True)

        # Stdin closing (the bench ended, or died) stops the server too.
        def stop_at_eof() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=stop_at_eof, daemon=True).start()
        stop.wait()
        records = emulator.requests()
    log = {
        "nagle_fixed_here": NAGLE_FIXED_HERE,
        "requests": [[r.at, r.status, r.body_bytes, r.members, r.cohort_id] for r in records],
    }
    args.log.write_text(json.dumps(log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
