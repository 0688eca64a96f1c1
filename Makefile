# quantlab — the two commands: `make demo` (whole chain on the embedded data) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export QUANTLAB_WAREHOUSE ?= $(CURDIR)/.quantlab/warehouse.duckdb
export QUANTLAB_PROJECT_DIR := $(CURDIR)

.PHONY: install demo test test-e2e ui bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/quantlab demo

test: install
	$(PY) -m pytest

# the end-to-end tests (dagster CLI + daemon, dagster dev + GraphQL, chromium, PostgreSQL): CI runs them too
test-e2e: install
	$(PY) -m pytest -m slow

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -w workspace.yaml

bench: install
	$(PY) benchmarks/run.py --symbols 500 --years 20

lint: install
	$(VENV)/bin/ruff check quantlab tests benchmarks

clean:
	rm -rf $(VENV) .dagster_home .quantlab artifacts
