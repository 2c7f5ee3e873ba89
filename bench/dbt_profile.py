"""What connecting the way dbt connects adds to every run: importing dbt and rendering the
bench project's profile with it (dbt_moengage.warehouse.profiles), timed in a process of
its own from before the import to the rendered credentials. The bare client has none of
this; the overhead figure reports it beside the ratio. Prints its seconds as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> int:
    """Import dbt, render the profile, print the seconds it took."""
    project = Path(sys.argv[1])
    started = time.perf_counter()
    from dbt_moengage.warehouse.profiles import load_profile_target

    target = load_profile_target(project, project)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "adapter": target.type}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
