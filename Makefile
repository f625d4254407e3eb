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

# Both cores: the suite is about 4.5 minutes in one process here, under 3 in two.
test: $(STAMP)
	$(PY) -m pytest -n 2

# The gates CI runs: the linter, the type checker, then the whole suite once, on both cores,
# with coverage measured in every process it starts (pyproject.toml: patch = subprocess).
COVERAGE_FLOOR := 85
check: $(STAMP)
	$(VENV)/bin/ruff check orchestrator.py scripts tests
	$(VENV)/bin/mypy orchestrator.py
	rm -f .coverage .coverage.*
	$(VENV)/bin/coverage run -m pytest -n 2
	$(VENV)/bin/coverage combine -q
	@echo "coverage, every process of the suite (floor $(COVERAGE_FLOOR)%):"
	$(VENV)/bin/coverage report --fail-under=$(COVERAGE_FLOOR) --format=total

# The development loop: everything but the tests marked slow (long property and load runs).
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -m "not slow"

bench: $(STAMP)
	$(PY) scripts/bench.py

stress: $(STAMP)
	$(PY) scripts/stress.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .coverage .coverage.* build *.egg-info
