# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
UNETSEG_DATA ?= ../shared/data/water-bodies
export UNETSEG_DATA

.PHONY: run test reproduce bench venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## run: the main job, on UNETSEG_DATA when it exists, else on synthetic scenes (< 10 min on 2 cores)
run: $(STAMP)
	$(PY) -m unetseg.cli reproduce --recipe quick --out runs/quick --overwrite

## test: the test suite
test: $(STAMP)
	$(PY) -m pytest -q

## reproduce: the full seed recipe on the real data (about 2 h on a 2-core AVX2 CPU)
reproduce: $(STAMP)
	$(PY) -m unetseg.cli reproduce --data $(UNETSEG_DATA) --out runs/seed --recipe seed

bench: $(STAMP)
	$(PY) bench/train_throughput.py
	$(PY) bench/predict_scene.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info bench_out
