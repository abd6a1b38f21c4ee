# The two set-up commands of the README: `make dev` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
REQUIREMENTS := requirements.txt runtime/requirements.txt requirements-dev.txt constraints.txt

.PHONY: test lint typecheck unit dev bench bench-quick soak audit clean

$(STAMP): $(REQUIREMENTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest

test: lint typecheck unit

dev: $(STAMP)
	$(PY) -m local

bench: $(STAMP)
	$(PY) -m benchmarks

bench-quick: $(STAMP)
	$(PY) -m benchmarks --quick

soak: $(STAMP)
	$(VENV)/bin/pytest -m soak -p no:cacheprovider tests/reliability

audit: $(STAMP)
	$(PY) -m tools.audit

clean:
	rm -rf $(VENV) .build .mypy_cache .ruff_cache .pytest_cache
