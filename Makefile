# The README's two commands: `make book` and `make test`. Both set up .venv from the lock first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROFILE ?= default

.PHONY: book test test-e2e lint format lock bench clean check-book

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name ctrip --display-name "Python (ctrip)"
	touch $(STAMP)

# MathJax for the offline book: one pinned, integrity-checked npm package, fetched at set-up only.
MATHJAX := book/_vendor/mathjax/VERSION
$(MATHJAX): $(STAMP) ctrip/pipeline/mathjax.py
	$(BIN)/python -m ctrip.pipeline.mathjax --dest book/_vendor
	touch $@

# Generate the synthetic cohort, run every notebook of the profile, build the book (_build/html).
book: $(STAMP) $(MATHJAX)
	$(BIN)/ctrip run --profile $(PROFILE) --book

# Load every page of the built book in headless Chromium (installed from the distribution's
# packages when missing): fails on console errors, missing images, broken links, external requests.
HTML ?= $(if $(filter default,$(PROFILE)),_build/html,_build/$(PROFILE)/_build/html)
check-book: $(STAMP)
	$(BIN)/python scripts/check_book_in_browser.py $(HTML)

# Lint, then every test but the end-to-end ones (a few minutes): the developer's loop.
test: $(STAMP) $(MATHJAX) lint
	$(BIN)/python -m pytest -m "not slow"

# The end-to-end tests (marked slow): whole smoke plans through papermill, the executors, the
# two-process training, imported cohorts, the cross-CPU checks (about a quarter of an hour on two
# cores). CI runs them after `make test`.
test-e2e: $(STAMP) $(MATHJAX)
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check ctrip tests benchmarks scripts book/_ext

format: $(STAMP)
	$(BIN)/ruff format ctrip tests benchmarks scripts book/_ext
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
