# medverse: `make demo` and `make test` set everything up from nothing, then run.
# Both are idempotent: a second run only re-installs what changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .make
DEMO_OUT ?= out/demo
PYTEST_ARGS ?=

.PHONY: demo test setup bench clean

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

test: setup
	@$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(STAMPS) $(VENV) tools/node_modules out
