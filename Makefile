# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: install tools demo test test-fast clean

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
	COLUMNS=$${COLUMNS:-160} $(BIN)/recon demo

## promtool, for the alerting-rule tests (Debian's prometheus package; needs root, skipped when present).
tools:
	command -v promtool >/dev/null || (apt-get update -qq && apt-get install -y -qq prometheus)

## The whole test suite against the real PostgreSQL and Redis (see ../shared/docs/services.md).
test: install tools
	$(BIN)/pytest -q -p no:cacheprovider

## Only the tests that need no services.
test-fast: install
	$(BIN)/pytest -q -p no:cacheprovider tests/unit

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis recon-demo.db*
