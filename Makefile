# Two commands do all the set-up on a fresh machine:
#   make run    the quickstart study on the embedded default model (CPU, a few minutes)
#   make test   the default test suite (CPU only)
# Each creates the virtual environment in .venv first if it is missing or out of date.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test bench lint venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) run_study.py studies/quickstart.toml

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not gpu and not weights" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done
