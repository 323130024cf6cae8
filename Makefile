# The README's two commands: `make book` and `make test`. Both set up .venv from the lock first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROFILE ?= default

.PHONY: book test lint format lock bench clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name ctrip --display-name "Python (ctrip)"
	touch $(STAMP)

# Generate the synthetic cohort, run every notebook of the profile, build the book (_build/html).
book: $(STAMP)
	$(BIN)/ctrip run --profile $(PROFILE) --book

# Lint, then the whole test suite (including the smoke profile end to end).
test: $(STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check ctrip tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format ctrip tests benchmarks
	$(BIN)/ruff check --fix .

# Re-pin the lock from the current environment (torch stays at 2.13.0).
lock: $(STAMP)
	{ head -n 2 requirements.lock; $(BIN)/pip freeze --exclude-editable \
	  | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/' | grep -v '^ctrip'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_loader.py

clean:
	rm -rf _build results cohorts book/executed book/_vendor
