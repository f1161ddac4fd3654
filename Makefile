# Two commands set up everything on a fresh machine with Python 3.11+:
#   make run    the LiteLLM proxy with solaris_hooks on an embedded Postgres (port $PORT, default 4000)
#   make test   the test suite against real parts (Postgres, LiteLLM proxy, fake provider)
#   make bench  what our hooks cost the proxy, and how fast the ledger runs (docs/benchmarks.md)
#   make soak   minutes of mixed load with Postgres outages and a kill -9 (docs/reliability.md)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two installs: what `make run` needs (the package and its embedded Postgres), and what
# the checks need on top (linters, test tools). Each is redone when the dependencies change.
RUN_STAMP := $(VENV)/.installed-run-stamp
DEV_STAMP := $(VENV)/.installed-dev-stamp

.PHONY: install run lint check test compat bench profile soak lock clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "solaris-hooks needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt pip setuptools wheel

$(RUN_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[embedded]'
	touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[embedded,lint,test]'
	touch $(DEV_STAMP)

install: $(DEV_STAMP)

# The runtime and the embedded Postgres only, no lint or test tool (tests/deploy/test_make_run.py);
# `solaris run` prints how to call the CLI on the same database.
run: $(RUN_STAMP)
	$(BIN)/solaris run

# ruff (lint and format), the layer contracts (import-linter) and mypy: zero findings.
lint: $(DEV_STAMP)
	$(BIN)/ruff check solaris_hooks tests bench
	$(BIN)/ruff format --check solaris_hooks tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

# The fast loop: lint and the unit tests (no processes, no database). The fuzzing plugins
# only the e2e tests need stay off: they take longer to load than the unit tests run.
check: lint
	$(BIN)/python -m pytest -q -p no:schemathesis -p no:hypothesispytest -p no:anyio tests/unit

# LibreChat's own client code for tests/e2e/test_librechat_client.py: @librechat/agents and
# Node 24 (the `node` package) from the npm registry, exactly as its lock file pins them.
# Install scripts run only where package.json's allowScripts says so (Node's own); the
# variables opt out of any install telemetry an npm without allowScripts would run.
LIBRECHAT_CLIENT := tests/librechat_client
LIBRECHAT_STAMP := $(LIBRECHAT_CLIENT)/node_modules/.installed

$(LIBRECHAT_STAMP): $(LIBRECHAT_CLIENT)/package.json $(LIBRECHAT_CLIENT)/package-lock.json
	cd $(LIBRECHAT_CLIENT) && DO_NOT_TRACK=1 REOVA_ANALYTICS=false npm ci --no-audit --no-fund --loglevel=error
	touch $(LIBRECHAT_STAMP)

test: lint $(LIBRECHAT_STAMP)
	$(BIN)/python -m pytest

# The test suite against another LiteLLM, in a virtualenv of its own (.venv-compat/<version>):
# constraints.txt pins the rest, except LiteLLM's own packages and the pins pip names in a
# conflict, which the output lists (scripts/compat.py). Narrow it with COMPAT_PYTEST_ARGS, e.g.
#   make compat LITELLM_VERSION=1.110.2 COMPAT_PYTEST_ARGS="tests/e2e/test_rate_limits_redis.py"
compat: $(LIBRECHAT_STAMP)
	$(PYTHON) scripts/compat.py "$(LITELLM_VERSION)"

# Several minutes: proxy overhead, ledger and reports figures; rewrites docs/benchmarks.md.
bench: $(DEV_STAMP)
	$(BIN)/python -m bench.run

# Where a proxy's CPU goes per call, ours against a no-op callback's (py-spy, about a minute);
# PROFILE_ARGS=--stream for streamed calls.
profile: $(DEV_STAMP)
	$(BIN)/python -m pip install -q "py-spy>=0.3,<1"
	$(BIN)/python -m bench.profile_proxy $(PROFILE_ARGS)

# Five minutes of load on two proxies while Postgres stops every minute and one proxy is
# killed; checks the ledger, mail and logs after. Not in `make test`: too long.
# SOAK_ARGS=--quick: one minute; SOAK_ARGS="--minutes 30": longer.
soak: $(DEV_STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# Refresh the pinned versions after changing dependency ranges in pyproject.toml.
lock: $(DEV_STAMP)
	$(BIN)/python -m pip freeze --all --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) test-artifacts build *.egg-info
