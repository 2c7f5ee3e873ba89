"""`python fakesnow_dbt.py DB_PATH ARGS...`: dbt's own CLI with Snowflake faked.

dbt-snowflake opens its connections with `snowflake.connector.connect`, which fakesnow
patches inside this process, so the package's snowflake__ macros run unchanged against
DuckDB files kept in DB_PATH. The exit code is dbt's: 0 success, 1 failure, 2 error.
"""

import sys

import fakesnow
from dbt.cli.main import dbtRunner

if __name__ == "__main__":
    db_path = sys.argv.pop(1)
    with fakesnow.patch(db_path=db_path):
        result = dbtRunner().invoke(sys.argv[1:])
    sys.exit(0 if result.success else (2 if result.exception else 1))
