# Convenience targets; the same commands work without make.
PYTHON := .venv/bin/python

.PHONY: install lint format test test-fast

install:
	bash install.sh

lint: install
	$(PYTHON) -m ruff check .

format: install
	$(PYTHON) -m ruff check --fix .

test: install
	$(PYTHON) -m pytest

# unit tests only: no slow runs and no command-line scripts started as processes (about a minute)
test-fast: install
	$(PYTHON) -m pytest -m "not slow and not e2e"
