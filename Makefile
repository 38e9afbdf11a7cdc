# The same commands run locally and in CI (.ci/run calls `make test`).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test lint typecheck unit demo bench screenshot clean

install: $(STAMP)

# Re-install whenever the dependency list changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

test: lint typecheck unit

demo: install
	$(BIN)/mailfix demo

# The README's picture of the console: the browser test's results step (needs Debian's chromium).
screenshot: install
	MAILFIX_CONSOLE_SCREENSHOT=docs/img/console.png $(BIN)/pytest -q tests/test_browser_console.py -k story

bench: install
	$(BIN)/python bench/diagnosis.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache *.egg-info
