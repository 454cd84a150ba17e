# Every target sets itself up: a virtualenv in .venv with Spean and its dev tools installed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1

## Screenshots of every page for the README (docs/screenshots): a demo server of its own, Debian's chromium.
.PHONY: screenshots
screenshots: install
	$(BIN)/python -m docs.screenshots --out docs/screenshots

.PHONY: install run serve demo test fuzz lint typecheck check bench bench-quick bench-booking bench-signalling bench-record bench-feed-write bench-channels bench-notifications clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The suite's independent FHIR validator (tests/fhir_validator): Node.js packages, pinned by its
# lock file. Only the tests need it: without npm, Spean still installs and runs.
FHIR_VALIDATOR := tests/fhir_validator
$(FHIR_VALIDATOR)/node_modules/.installed: $(FHIR_VALIDATOR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(FHIR_VALIDATOR) --no-audit --no-fund --loglevel=error && touch $@; \
	else \
		echo "npm not found: the test suite's FHIR validator needs Node.js 20.19+ and npm (apt-get install nodejs npm)"; \
	fi

install: $(BIN)/.installed $(FHIR_VALIDATOR)/node_modules/.installed

## Serve the API with the demo network (embedded PostgreSQL and Redis unless DATABASE_URL/REDIS_URL are set).
run: install
	$(BIN)/spean demo
	$(BIN)/spean serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

## The whole test suite (starts embedded PostgreSQL and Redis unless DATABASE_URL/REDIS_URL are set).
test: install
	$(BIN)/pytest

## schemathesis against a live server, four roles, all phases: at least 10,000 cases, 0 failures.
fuzz: install
	SPEAN_FUZZ_EXAMPLES=100 SPEAN_FUZZ_MAX_TIME=75 SPEAN_FUZZ_SEED= SPEAN_FUZZ_COVERAGE_ROLES=all SPEAN_FUZZ_MIN_CASES=10000 \
		$(BIN)/pytest -s tests/contract/test_fuzz.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

## Every bench, then one table: each figure beside its limit measured in the same run (bench/RESULTS.md).
bench: install
	$(BIN)/python -m bench --results bench/RESULTS.md

## Every bench with small sizes and no judgement of the figures: CI runs it so a broken bench is caught.
bench-quick: install
	$(BIN)/python -m bench --quick

bench-booking: install
	$(BIN)/python -m bench.booking

bench-signalling: install
	$(BIN)/python -m bench.signalling
bench-record: install
	$(BIN)/python -m bench.record
.PHONY: bench-mixed
## The day of a reference centre (bench/mixed): req/s and p99 per kind beside /health, 2 workers, product defaults.
bench-mixed: install
	$(BIN)/python -m bench.mixed
bench-feed-write: install
	$(BIN)/python -m bench.feed_write
bench-channels: install
	$(BIN)/python -m bench.channels
bench-notifications: install
	$(BIN)/python -m bench.notifications

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(FHIR_VALIDATOR)/node_modules
