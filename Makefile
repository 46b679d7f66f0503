# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
BENCH_STAMP := $(VENV)/.installed-bench-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: install tools browser lint demo test test-fast chaos bench bench-memory audit screenshots clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## Run every case of the top-up flow end to end on SQLite + in-process broker + simulator.
demo: install
	COLUMNS=$${COLUMNS:-160} $(BIN)/recon demo $(DEMO_ARGS)

## promtool and the prometheus server, for the alert and dashboard tests (Debian's prometheus package;
## needs root, skipped when both are present).
tools:
	(command -v promtool && command -v prometheus) >/dev/null || (apt-get update -qq && apt-get install -y -qq prometheus)

## Debian's Chromium for the console's browser tests (Playwright drives /usr/bin/chromium; it downloads no browser).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

## ruff (rules in pyproject.toml) and mypy (strict on the modules listed there). Part of `make test`, run first.
## No `ruff format --check`: the code is not formatted by ruff, and formatting it would touch every file.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

## Lint, then the whole test suite against the real PostgreSQL and Redis (see ../shared/docs/services.md).
test: install tools browser lint
	$(BIN)/pytest -q -p no:cacheprovider

## Only the tests that need no services.
test-fast: install
	$(BIN)/pytest -q -p no:cacheprovider tests/unit

## 10,000 orders through web, two workers and the scheduler (own Redis and database) while workers are killed,
## Redis restarts and database connections are cut; prints a table, fails if a credit is lost or doubled (ops/chaos).
chaos: install
	$(BIN)/python -m ops.chaos --orders 10000

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $(BENCH_STAMP)

## Benchmarks against Postgres + Redis (see bench/__main__.py); each figure is a ratio against a baseline
## measured in the same run. Writes bench/results/latest.{json,md} and bench/RESULTS.md. BENCH_ARGS=--quick for a short run.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## The memory goal's full run: 200,000 checks in one worker process (~35 min on one core, beyond make bench's
## 20 minutes). Writes bench/results/memory-checks-full.json, which make bench then reports and charts.
bench-memory: $(BENCH_STAMP)
	$(BIN)/python -m bench.memory full

## Known vulnerabilities in the pinned dependencies. pip-audit needs PyPI's per-release JSON API or OSV:
## neither answers from this workplace's machines (PyPI gives 404, api.osv.dev does not resolve), so it is not in CI.
audit: install
	$(BIN)/pip install --quiet --disable-pip-version-check pip-audit==2.10.1
	$(BIN)/pip-audit --strict --skip-editable

## The console's main pages on the demo's data, as docs/console-*.png (shown in the README).
screenshots: install browser
	$(BIN)/python -m tests.console.screenshots

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis recon-demo.db*
