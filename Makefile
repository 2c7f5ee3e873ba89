# Everything runs from the project's own virtualenv, made on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DEMO_PORT ?= 8765
export MOENGAGE_WORKSPACE_ID ?= DEMO_WORKSPACE
export MOENGAGE_API_KEY ?= demo-api-key-not-secret

.PHONY: setup demo test test-unit test-lowest check bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints-dev.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

check: $(STAMP)
	$(BIN)/ruff check dbt_moengage tests bench
	$(BIN)/ruff format --check dbt_moengage tests bench
	$(BIN)/mypy

# Everything, as CI runs it: the unit tier (tests/unit) and the end-to-end tier (tests/e2e:
# real dbt builds, the emulator over loopback, a real PostgreSQL server, fakesnow).
test: check
	$(BIN)/pytest -q

# The inner loop: the unit tier alone, a few minutes.
test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# The unit tier on the lowest versions pyproject.toml allows (scripts/lowest_bounds.py), in a
# venv of its own: the floors must really have the APIs the code uses.
LOWEST := .venv-lowest
test-lowest:
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(PYTHON) scripts/lowest_bounds.py duckdb snowflake postgres webhook report > $(LOWEST)/lowest.txt
	$(LOWEST)/bin/python -m pip install --quiet -c $(LOWEST)/lowest.txt -c constraints-dev.txt \
		-e '.[duckdb,snowflake,postgres,webhook,report]' pytest pytest-timeout hypothesis
	$(LOWEST)/bin/python -m pip list --format=freeze | grep -iE '^(dbt-|duckdb|snowflake-connector|tenacity|requests|urllib3|click|rich|orjson|pyyaml|starlette|uvicorn|cryptography|plotly)'
	MOENGAGE_TEST_LOWEST=1 $(LOWEST)/bin/pytest -q -p no:cacheprovider tests/unit

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(LOWEST) integration_tests/target integration_tests/dbt_packages integration_tests/logs
