# medverse: `make demo` and `make test` set everything up from nothing, then run.
# Both are idempotent: a second run only re-installs what changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .make
DEMO_OUT ?= out/demo
# Extra pytest arguments (paths, -k, -x ...), given to both test passes.
PYTEST_ARGS ?=
# A marker expression that narrows both passes, e.g. MARKS='not slow' for a quick local run.
MARKS ?=

.PHONY: demo test lint setup bench clean

setup: $(STAMPS)/system $(STAMPS)/venv $(STAMPS)/tools

$(STAMPS)/system: scripts/system-packages.txt scripts/setup-system.sh
	@mkdir -p $(STAMPS)
	@bash scripts/setup-system.sh
	@touch $@

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

$(STAMPS)/tools: tools/package.json $(STAMPS)/system
	@mkdir -p $(STAMPS)
	@cd tools && npm install --silent --no-audit --no-fund >/dev/null
	@touch $@

demo: setup
	@$(VENV)/bin/medverse demo --out $(DEMO_OUT)

# Lint first: a lint failure fails the target before the (long) test run starts.
lint: setup
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy

# Two passes. First everything but the `latency` tests, in parallel (pytest-xdist, a worker per
# core). Then the `latency` tests, which assert on milliseconds of wall-clock time, one at a time
# with the machine to themselves (xdist_group with --dist loadgroup would keep them off each other,
# not off the other worker's renders; and on pytest 9.2 loadgroup does not group at all:
# pytest-xdist#1386). Both passes run; the target fails if either does (5, nothing selected, is not
# a failure: MARKS or PYTEST_ARGS may leave one pass empty).
test: lint
	@status=0; \
	$(PY) -m pytest -n auto -m "not latency$(if $(MARKS), and ($(MARKS)))" $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] || status=$$rc; }; \
	$(PY) -m pytest -m "latency$(if $(MARKS), and ($(MARKS)))" $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] || status=$$rc; }; \
	exit $$status

clean:
	rm -rf $(STAMPS) $(VENV) tools/node_modules out
