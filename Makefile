# The two set-up commands of the README: `make dev` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
REQUIREMENTS := requirements.txt runtime/requirements.txt requirements-dev.txt constraints.txt
# The browser client: npm ci from the committed lockfile, then tsc into web/dist (gitignored).
WEB_STAMP := web/node_modules/.installed-stamp
WEB_BUILD := web/dist/rag-websocket.js
WEB_SOURCES := $(wildcard web/src/*.ts web/src/page/*.ts) web/tsconfig.json
# Debian's Chromium, which the browser tests drive (Playwright never downloads a browser here).
CHROMIUM := /usr/bin/chromium

.PHONY: test lint typecheck unit web web-test browser-test dev bench bench-quick soak audit clean

$(STAMP): $(REQUIREMENTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

$(WEB_BUILD): $(WEB_STAMP) $(WEB_SOURCES)
	cd web && npm run --silent build
	touch $(WEB_BUILD)

web: $(WEB_BUILD)

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium package for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "the browser tests need Chromium: install Debian's chromium package" \
			"(sudo apt-get install chromium), then run make test again" >&2; \
		exit 1; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP) $(WEB_BUILD) $(CHROMIUM)
	$(VENV)/bin/pytest

# The browser client's own tests against a fake socket (Node's test runner).
web-test: $(WEB_BUILD)
	cd web && node --test test/

# The browser tests alone: the client from Node and the page in Chromium, on the local stack.
browser-test: $(STAMP) $(WEB_BUILD) $(CHROMIUM)
	$(VENV)/bin/pytest tests/web

test: lint typecheck web-test unit

# The build is make's install step: `make dev` starts the stack only, it never builds.
dev: $(STAMP) $(WEB_BUILD)
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
	rm -rf $(VENV) .build .mypy_cache .ruff_cache .pytest_cache .artifacts web/node_modules web/dist
