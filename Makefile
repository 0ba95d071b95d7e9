# The two commands: `make run` and `make test`. Both create/refresh .venv themselves.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install console lint format contracts bench faults clean-state rules-lint rules-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The web console (console/, docs/console.md): Node.js comes from the dev extras (.venv/bin/node,
# npm); `npm ci` runs again only when the lock file changes, the build only when a source does.
NPM := PATH="$(CURDIR)/$(BIN):$$PATH" "$(CURDIR)/$(BIN)/npm"
CONSOLE_MODULES := console/node_modules/.installed-stamp
CONSOLE_SOURCES := $(shell find console/src -type f) console/index.html console/vite.config.ts \
	console/tsconfig.json
CONSOLE_BUILT := services/console/dist/index.html

$(CONSOLE_MODULES): console/package.json console/package-lock.json | $(STAMP)
	cd console && $(NPM) ci --no-audit --no-fund
	@touch $@

$(CONSOLE_BUILT): $(CONSOLE_MODULES) $(CONSOLE_SOURCES)
	cd console && $(NPM) run build

## Build the web console (type-check, then vite build into services/console/dist).
console: $(CONSOLE_BUILT)

## Start NATS, Redis, the services and the web console with rules/ and demo data; Ctrl-C stops all.
run: install console
	$(BIN)/goalwatch up

## Lint, type-check and run every test, integration tests against real servers included.
test: install console
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
bench: install console
	$(BIN)/goalwatch bench --transport nats
	$(BIN)/goalwatch bench --transport http

## Inject every fault into a stream of alerts and count what arrives (see docs/reliability.md).
faults: install console
	$(BIN)/goalwatch faults

## Forget everything `make run` stored (NATS streams, Redis data).
clean-state:
	rm -rf .goalwatch
