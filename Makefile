# `make test` builds .venv from nothing (CPU torch unless one is there) and runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/ensure_torch.py
	$(PYTHON) -m venv $(VENV)
	$(PY) scripts/ensure_torch.py
	$(PY) -m pip install -q -e '.[test]'
	touch $@

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

# The main job: a character LSTM on the stdlib's source, then a sample primed with "def ".
demo: setup
	$(PY) -m rnnkit train configs/charlm-stdlib.yaml run.overwrite=true
	$(PY) -m rnnkit sample runs/charlm-stdlib --prime "def " --length 500 --temperature 0.8 --seed 123

bench: setup
	$(PY) benchmarks/speed.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
