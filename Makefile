# The whole set-up is `make demo` and `make test`: each creates .venv and installs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pytest-xdist: one worker per core (both of CI's two), idle workers steal queued tests so the slow ones
# do not end the run on one core; ZOO_TEST_WORKERS=0 runs in one process
ZOO_TEST_WORKERS ?= auto

.PHONY: demo test test-quick fuzz lint format docs install clean

install: $(STAMP)

# Re-install only when the package metadata changes; the install is editable, so code edits need none.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=23"
	$(PY) -m pip install -q -e '.[test,docs]' 'ruff==0.17.6'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m zoo.report.demo

test: $(STAMP)
	$(PY) -m pytest -q -n $(ZOO_TEST_WORKERS) --dist worksteal

# the edit loop: every test but the slow (training, exporting, installing) and end-to-end ones; `make test` is the gate
test-quick: $(STAMP)
	$(PY) -m pytest -q -n $(ZOO_TEST_WORKERS) --dist worksteal -m "not slow and not e2e"

# the fuzz suite's nightly mode: random cases, 20x CI's (tests/cli/test_fuzz.py; CI runs it as part of make test)
fuzz: $(STAMP)
	ZOO_FUZZ=nightly $(PY) -m pytest -q -n $(ZOO_TEST_WORKERS) --dist worksteal tests/cli/test_fuzz.py

# ruff's lint rules and formatter, configured in pyproject.toml; CI runs this before the tests
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# the documentation site (mkdocs.yml; the home page is README.md): --strict fails on a broken link or anchor and
# on a page left out of the nav; CI runs this after the lint
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs outputs exports/* .pytest_cache site
