# The one command surface: people and CI run the same targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit integration validate bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check cdcsync tests bench
	$(BIN)/ruff format --check cdcsync tests bench

typecheck: $(STAMP)
	$(BIN)/mypy cdcsync

validate: $(STAMP)
	$(BIN)/cdcsync validate mappings

# pytest exits 5 when it collected no test; that is a failure here, never a pass.
test: lint typecheck validate
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

bench: $(STAMP)
	$(BIN)/python bench/transform.py

format: $(STAMP)
	$(BIN)/ruff format cdcsync tests bench
	$(BIN)/ruff check --fix cdcsync tests bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
