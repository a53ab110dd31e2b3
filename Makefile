# Lumi: `make run` starts Lumi, `make test` runs every check CI runs. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS_RUN := ml
EXTRAS_TEST := ml,dev

.PHONY: run test lint typecheck imports pytest install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install only when the dependency list changes.
ULTRALYTICS := "ultralytics>=8.3,<9"

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[$(EXTRAS_RUN)]"
	$(BIN)/pip install --quiet --no-deps $(ULTRALYTICS)
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[$(EXTRAS_TEST)]"
	$(BIN)/pip install --quiet --no-deps $(ULTRALYTICS)
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-test

run: install
	$(BIN)/lumi run

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-dev
	$(BIN)/mypy bot cogs inference storage

imports: install-dev
	$(BIN)/lint-imports

pytest: install-dev
	$(BIN)/pytest -q

test: lint typecheck imports pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
