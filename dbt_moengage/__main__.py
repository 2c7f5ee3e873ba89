"""`python -m dbt_moengage` runs the CLI."""

from .cli import run

run()
