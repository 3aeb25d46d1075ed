# medbadge: the two commands a new user needs are `make demo` and `make test`.
# Each creates its own virtual environment and installs what it needs.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: test lint typecheck unit bench demo check-arm64 system-deps clean

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

# The badge on Debian bookworm arm64 under qemu (root; minutes; not part of `make test`).
check-arm64: $(STAMP) system-deps
	@scripts/ensure-arm64-deps
	$(BIN)/python -m demo.arm64

system-deps:
	@scripts/ensure-system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
