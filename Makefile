# The one command surface: people and CI run the same targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit integration validate bench demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check cdcsync tests bench demo
	$(BIN)/ruff format --check cdcsync tests bench demo
	$(BIN)/hadolint Dockerfile

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

# The product's main job on embedded local servers; DEMO_EXIT_AFTER=SECONDS stops it by itself.
demo: $(STAMP)
	$(BIN)/python -m demo.run

format: $(STAMP)
	$(BIN)/ruff format cdcsync tests bench demo
	$(BIN)/ruff check --fix cdcsync tests bench demo

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis .demo
