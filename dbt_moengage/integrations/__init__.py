"""Ways to start a sync from outside the CLI: `dbt_cloud` (a webhook receiver for dbt Cloud)."""
