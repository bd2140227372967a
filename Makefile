# EnclaveNet: two commands on a fresh machine, `make demo` and `make test`.
# Both build on `make install`, which creates and reuses .venv and installs what is needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ANVIL := node_modules/.bin/anvil

.PHONY: install postgres chromium demo test test-unit test-integration lint typecheck bench clean

install: $(STAMP) $(ANVIL) postgres chromium

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "EnclaveNet needs Python 3.11+"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

# The anvil L1 node (integration tests, `--l1 anvil`) and the unmodified clients the gateway tests drive
# (foundry cast, ethers, viem), pinned in package.json / package-lock.json.
$(ANVIL): package.json package-lock.json
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)
	# `npm install` honours package-lock.json (it stays unchanged); `npm ci` is refused by npm 11
	# because the lock lists only this platform's anvil binary package, not the other platforms'.
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

# PostgreSQL server binaries: the DAP tests and benchmark start a throwaway server with
# initdb/pg_ctl (src/enclavenet/dap/pgserver.py). Idempotent: nothing to do when present.
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql)

# Debian's chromium and its chromedriver: the explorer's real-browser test drives them with
# selenium (tests/integration/test_explorer_browser.py); nothing is downloaded at run time.
chromium:
	@(command -v chromium >/dev/null && command -v chromedriver >/dev/null) || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

demo: install
	$(PY) -m enclavenet.cli demo

test: install
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m mypy src/enclavenet/crypto src/enclavenet/enclave src/enclavenet/tee
	$(PY) -m pytest -q tests

test-unit: install
	$(PY) -m pytest -q -m "not integration" tests/unit

test-integration: install
	$(PY) -m pytest -q tests/integration

lint: install
	$(PY) -m ruff check src tests benchmarks examples

typecheck: install
	$(PY) -m mypy src/enclavenet/crypto src/enclavenet/enclave src/enclavenet/tee

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
