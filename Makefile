# Two commands set up everything on a fresh machine with Python 3.11+:
#   make run    the LiteLLM proxy with solaris_hooks on an embedded Postgres (port $PORT, default 4000)
#   make test   the test suite against real parts (Postgres, LiteLLM proxy, fake provider)
#   make bench  what our hooks cost the proxy, and how fast the ledger runs (docs/benchmarks.md)
#   make soak   minutes of mixed load with Postgres outages and a kill -9 (docs/reliability.md)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run lint check test bench soak lock clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "solaris-hooks needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt pip setuptools wheel
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[embedded,lint,test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/solaris run

# ruff (lint and format), the layer contracts (import-linter) and mypy: zero findings.
lint: install
	$(BIN)/ruff check solaris_hooks tests bench
	$(BIN)/ruff format --check solaris_hooks tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

# The fast loop: lint and the unit tests (no processes, no database).
check: lint
	$(BIN)/python -m pytest -q tests/unit

test: lint
	$(BIN)/python -m pytest

# Several minutes: proxy overhead, ledger and reports figures; rewrites docs/benchmarks.md.
bench: install
	$(BIN)/python -m bench.run

# Five minutes of load on two proxies while Postgres stops every minute and one proxy is
# killed; checks the ledger, mail and logs after. Not in `make test`: too long.
# SOAK_ARGS=--quick: one minute; SOAK_ARGS="--minutes 30": longer.
soak: install
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# Refresh the pinned versions after changing dependency ranges in pyproject.toml.
lock: install
	$(BIN)/python -m pip freeze --all --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) test-artifacts build *.egg-info
