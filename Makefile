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

# the decision benchmarks read a feature cache that takes most of an hour to make (docs/decisions.md)
FEATURE_CACHE := benchmarks/_cache/decisions-full
NEEDS_CACHE := benchmarks/bench_decisions.py benchmarks/bench_decision_ceiling.py

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do \
	  case " $(NEEDS_CACHE) " in *" $$f "*) if [ ! -d $(FEATURE_CACHE) ]; then \
	    echo "== $$f: skipped, it reads the feature cache $(FEATURE_CACHE): make it with"; \
	    echo "   python benchmarks/decisions_features.py --grid full --num-images 12500 --cache $(FEATURE_CACHE)"; \
	    continue; fi;; esac; \
	  echo "== $$f"; $(PY) $$f || exit 1; done
