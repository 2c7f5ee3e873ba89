"""dbt-moengage: keep MoEngage cohorts in step with dbt models."""

__version__ = "0.1.0"
