# Quick start: `make demo` serves the panel with demo data; `make test` runs the whole suite.
# Both install what they need first (system packages, .venv/, front-end assets).

VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
ASSET_STAMP := node_modules/.corral-assets-built
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup demo serve test lint typecheck pytest system-deps test-system-deps assets bench clean

setup: system-deps $(PY_STAMP) $(ASSET_STAMP)

system-deps:
	@scripts/install-system-deps.sh

test-system-deps:
	@scripts/install-system-deps.sh --test

$(PY_STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(ASSET_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	npm run --silent build
	touch $@

assets: $(ASSET_STAMP)

demo: setup
	$(BIN)/corral demo --host $(HOST) --port $(PORT)

test: setup test-system-deps lint typecheck pytest

lint:
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck:
	$(BIN)/mypy src

pytest:
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/idle_memory.py
	$(BIN)/python bench/load_sessions.py

clean:
	rm -rf $(VENV) node_modules src/corral/web/static/vendor .pytest_cache .mypy_cache .ruff_cache
