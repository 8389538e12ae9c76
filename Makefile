# Convenience targets; the same commands work without make.
PYTHON := .venv/bin/python

.PHONY: install test test-fast

install:
	bash install.sh

test: install
	$(PYTHON) -m pytest

test-fast: install
	$(PYTHON) -m pytest -m "not slow"
