# The two commands: `make run` and `make test`. Both create/refresh .venv themselves.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install lint format contracts bench faults clean-state rules-lint rules-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Start NATS, Redis and the four services with rules/ and demo data; Ctrl-C stops all.
run: install
	$(BIN)/goalwatch up

## Lint, type-check and run every test, integration tests against real servers included.
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy goalwatch services
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy goalwatch services

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Check the rule files in rules/ (or RULES=...) and list every problem as file:line:col.
rules-lint: install
	$(BIN)/goalwatch rules lint $(RULES)

## Run the rule tests in rules/tests/ against the rules in rules/.
rules-test: install
	$(BIN)/goalwatch rules test

## Regenerate contracts/ (JSON Schema, AsyncAPI, the services' OpenAPI) from the code.
contracts: install
	$(BIN)/goalwatch contracts write

## Measure the pipeline on its own servers next to the JetStream ceiling (see docs/benchmarks.md).
bench: install
	$(BIN)/goalwatch bench --transport nats
	$(BIN)/goalwatch bench --transport http

## Inject every fault into a stream of alerts and count what arrives (see docs/reliability.md).
faults: install
	$(BIN)/goalwatch faults

## Forget everything `make run` stored (NATS streams, Redis data).
clean-state:
	rm -rf .goalwatch
