# Everything runs from the project's own virtualenv, made on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DEMO_PORT ?= 8765
export MOENGAGE_WORKSPACE_ID ?= DEMO_WORKSPACE
export MOENGAGE_API_KEY ?= demo-api-key-not-secret

.PHONY: setup demo test check bench clean

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

test: check
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) integration_tests/target integration_tests/dbt_packages integration_tests/logs
