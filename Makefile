# Every target builds its own virtualenv from the pinned requirements first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast check bench stress clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

# The test command (the README's, and CI's): the linter, the type checker, then the whole
# suite once, on both cores, with coverage measured in every process it starts (pyproject.toml:
# patch = subprocess) and held to a floor. `make check` is the same, under the name CI tools use.
COVERAGE_FLOOR := 85
test: $(STAMP)
	$(VENV)/bin/ruff check orchestrator.py scripts tests
	$(VENV)/bin/mypy orchestrator.py
	rm -f .coverage .coverage.*
	$(VENV)/bin/coverage run -m pytest -n 2
	$(VENV)/bin/coverage combine -q
	@echo "coverage, every process of the suite (floor $(COVERAGE_FLOOR)%):"
	$(VENV)/bin/coverage report --fail-under=$(COVERAGE_FLOOR) --format=total

check: test

# The development loop: everything but the tests marked slow (long property and load runs).
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -m "not slow"

bench: $(STAMP)
	$(PY) scripts/bench.py

stress: $(STAMP)
	$(PY) scripts/stress.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .coverage .coverage.* build *.egg-info
