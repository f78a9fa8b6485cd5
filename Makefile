# Two commands do all the set-up on a fresh machine:
#   make run    create .venv, install, and run the daemon (serve) on example-repo until Ctrl-C
#   make test   make sure of PostgreSQL and sshd (.ci/services), create .venv, install, then
#               lint, type-check and run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test services lint types pytest schemas bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/reconciler validate example-repo
	$(BIN)/reconciler serve example-repo --state .reconciler/state.sqlite

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/ruff format --check reconciler tests bench
	$(BIN)/lint-imports --no-cache

types: $(STAMP)
	$(BIN)/mypy

# the local services the tests use: started or installed when possible, else one line and stop
services:
	@.ci/services

pytest: services $(STAMP)
	$(BIN)/pytest -q

test: services lint types pytest

schemas: $(STAMP)
	$(BIN)/python -m reconciler.model.schemas schemas

clean:
	rm -rf $(VENV)
