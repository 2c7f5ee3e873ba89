"""`python fakesnow_cli.py DB_PATH ARGS...`: the dbt-moengage CLI with Snowflake faked.

fakesnow patches `snowflake.connector.connect` inside this process, so the runner's own
Snowflake code (connection arguments, SQL, checkpoints, locks) runs unchanged against
DuckDB files kept in DB_PATH.
"""

import sys

import fakesnow

from dbt_moengage.cli import run

if __name__ == "__main__":
    db_path = sys.argv.pop(1)
    with fakesnow.patch(db_path=db_path):
        run()
