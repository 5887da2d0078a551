# `make test` builds .venv from nothing (CPU torch unless one is there) and runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test test-fast bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/ensure_torch.py
	$(PYTHON) -m venv $(VENV)
	$(PY) scripts/ensure_torch.py
	$(PY) -m pip install -q -e '.[test]'
	touch $@

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) benchmarks/speed.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
