# One command per job (run from the repository root):
#   make demo   -- create .venv if absent, install simledger (editable), run the demo
#   make test   -- create .venv if absent, install simledger[dev] (editable), run pytest
# Needs only python3 (>= 3.11) with pip and venv; PostgreSQL tests use the server at
# POSTGRES_HOST:POSTGRES_PORT (default 127.0.0.1:5432) or start a throwaway cluster.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: demo test venv chromium

venv: $(PY)

$(PY):
	$(PYTHON) -m venv $(VENV)

demo: $(PY)
	$(PIP_INSTALL) -e .
	$(PY) -m simledger.runners.demo

# -n auto: one test process per core, as many as PostgreSQL's connections allow
# (tests/conftest.py); --dist loadfile keeps a file's tests, and the servers and browsers
# its module fixtures start, in one process.
# -P: do not put the current directory (the repo root) on sys.path, so only the
# installed `simledger.*` names are importable, never bare `domain`, `adapters`, ...
test: $(PY) chromium
	$(PIP_INSTALL) -e '.[dev]'
	$(PY) -P -m pytest -n auto --dist loadfile $(PYTEST_ARGS)

# The web console's browser tests (tests/runners/test_console_browser.py) drive Debian's
# chromium through Playwright (whose own browser download cannot run here): installed when
# absent and apt-get is there. If it cannot be had, those tests fail under CI (never skip).
chromium:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
			>/dev/null) || echo "could not install chromium: the browser tests will say so"; \
	fi
