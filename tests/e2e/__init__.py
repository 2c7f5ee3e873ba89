"""End-to-end tier: real dbt builds, the emulator over loopback, real PostgreSQL, fakesnow."""
