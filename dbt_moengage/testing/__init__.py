"""Test doubles for dbt-moengage, kept apart from the pipeline stages.

`dbt_moengage.testing.emulator`: MoEngage's Cohort Sync API on a local port, strict about
the contract, with faults to inject. The demo, the tests and the benchmark use it.
`dbt_moengage.testing.bigquery`: a BigQuery emulator (bqemulator, in a venv of its own)
started on a local port, for the BigQuery tests and the benchmark.
"""
