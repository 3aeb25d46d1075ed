# medbadge: the two commands a new user needs are `make demo` and `make test`.
# Each creates its own virtual environment and installs what it needs.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: test lint typecheck unit bench demo system-deps clean

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy --strict
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict

unit: $(STAMP) system-deps
	$(BIN)/pytest -m "not slow"

bench: $(STAMP) system-deps
	$(BIN)/python -m bench all

demo: $(STAMP) system-deps
	$(BIN)/python -m demo --keep-running

system-deps:
	@scripts/ensure-system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
