# Everything runs from the project's own virtualenv, made on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DEMO_PORT ?= 8765
export MOENGAGE_WORKSPACE_ID ?= DEMO_WORKSPACE
export MOENGAGE_API_KEY ?= demo-api-key-not-secret

.PHONY: setup demo test test-unit test-lowest check bench clean bq-emulator

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints-dev.txt -e '.[dev]'
	touch $(STAMP)

# The BigQuery emulator (bqemulator, REST and gRPC over DuckDB) in a venv of its own: it needs
# DuckDB 1.5 (its UDFs fail on 1.4; on 2.0 its CODE_POINTS_TO_STRING uses a lambda syntax
# DuckDB dropped). dbt_moengage/testing/bigquery/ starts it.
BQ_VENV := .venv-bqemulator
BQ_STAMP := $(BQ_VENV)/.installed
export BQEMULATOR_PYTHON ?= $(CURDIR)/$(BQ_VENV)/bin/python

bq-emulator: $(BQ_STAMP)

$(BQ_STAMP): constraints-dev.txt
	$(PYTHON) -m venv $(BQ_VENV)
	$(BQ_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BQ_VENV)/bin/python -m pip install --quiet -c constraints-dev.txt bqemulator 'duckdb>=1.5,<2' numpy
	touch $(BQ_STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

check: $(STAMP)
	$(BIN)/ruff check dbt_moengage tests bench
	$(BIN)/ruff format --check dbt_moengage tests bench
	$(BIN)/mypy

# Every test, as CI runs them: the unit tier (tests/unit) and the end-to-end tier (tests/e2e:
# real dbt builds, the emulator over loopback, a real PostgreSQL server, fakesnow), in
# TEST_WORKERS processes (pytest-xdist), each test module whole in one of them, so a module's
# dbt build is made once. The two venvs are made side by side on a fresh clone. Lint and
# types are `make check`, which CI runs too.
TEST_WORKERS ?= 3
test:
	$(MAKE) --no-print-directory -j2 $(STAMP) $(BQ_STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

# The inner loop: the unit tier alone, under a minute.
test-unit: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS) tests/unit

# The unit tier on the lowest versions pyproject.toml allows (scripts/lowest_bounds.py), in a
# venv of its own: the floors must really have the APIs the code uses.
LOWEST := .venv-lowest
test-lowest:
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(PYTHON) scripts/lowest_bounds.py duckdb snowflake postgres bigquery webhook report > $(LOWEST)/lowest.txt
	$(LOWEST)/bin/python -m pip install --quiet -c $(LOWEST)/lowest.txt -c constraints-dev.txt \
		-e '.[duckdb,snowflake,postgres,bigquery,webhook,report]' pytest pytest-timeout hypothesis
	$(LOWEST)/bin/python -m pip list --format=freeze | grep -iE '^(dbt-|duckdb|snowflake-connector|google-cloud-bigquery|tenacity|requests|urllib3|click|rich|orjson|pyyaml|starlette|uvicorn|cryptography|plotly)'
	MOENGAGE_TEST_LOWEST=1 $(LOWEST)/bin/pytest -q -p no:cacheprovider tests/unit

bench: $(STAMP) $(BQ_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(LOWEST) $(BQ_VENV) integration_tests/target integration_tests/dbt_packages integration_tests/logs
