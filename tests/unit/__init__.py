"""Unit tier: in-process, fast; `make test-unit` runs it alone."""
