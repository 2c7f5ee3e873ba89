"""Start bqemulator (a BigQuery emulator: REST and gRPC over DuckDB) offline.

Run by the emulator's own venv (`make` builds .venv-bqemulator), not the project's:
    .venv-bqemulator/bin/python dbt_moengage/testing/bigquery/launch.py start --rest-port P ...

At start bqemulator loads DuckDB's spatial extension, which DuckDB downloads, so it fails
on a machine that reaches only the package registries. Spatial serves GEOGRAPHY alone,
which nothing here uses: the loader is replaced with a no-op before the CLI runs.
"""

import sys

from bqemulator.cli import main
from bqemulator.storage.engine import DuckDBEngine


def _no_spatial(self: object, *args: object, **kwargs: object) -> None:
    """GEOGRAPHY is unused; DuckDB's spatial extension would be downloaded."""


DuckDBEngine._load_spatial = _no_spatial

if __name__ == "__main__":
    sys.exit(main())
