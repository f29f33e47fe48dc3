# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
UNETSEG_DATA ?= ../shared/data/water-bodies
export UNETSEG_DATA

.PHONY: run test test-fast reproduce bench venv clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## run: the main job, on UNETSEG_DATA when it exists, else on synthetic scenes (< 10 min on 2 cores); then the
## shipped water model on a real Sentinel-2 scene (or a synthetic sample), and where its picture is
run: $(STAMP)
	$(PY) -m unetseg.cli reproduce --recipe quick --out runs/quick --overwrite
	$(PY) -m unetseg.cli demo --out runs/demo

## browser: Debian's chromium + chromedriver for the web page's end-to-end test (installed if root with apt-get)
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "note: chromium and chromedriver are missing (apt-get install chromium chromium-driver); the browser test will be skipped"; fi

## test: the test suite (its screenshot goes to test-artifacts/)
test: $(STAMP) browser
	$(PY) -m pytest -q

## test-fast: the edit-test loop: everything but the tests marked slow or needing the real data (under 2 min)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not realdata"

## reproduce: the full seed recipe on the real data (about 2 h on a 2-core AVX2 CPU)
reproduce: $(STAMP)
	$(PY) -m unetseg.cli reproduce --data $(UNETSEG_DATA) --out runs/seed --recipe seed

bench: $(STAMP)
	$(PY) bench/train_throughput.py
	$(PY) bench/predict_scene.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info bench_out
