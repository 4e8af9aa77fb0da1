# stepbench: `make bench` runs the default suite on the embedded miniature world; `make test` runs the tests.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
SUITE   ?= suites/mini.yaml
DB      ?= results/bench.duckdb
STAMP   := $(VENV)/.stepbench-installed

.PHONY: setup browser test test-browser test-slow mutants bench report perf lint mini-weights check-mini-weights clean

setup: $(STAMP)

# torch/torchvision first (pinned builds), then the project with its extras; re-runs only when pyproject changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[hf,test,ray]'
	touch $(STAMP)

# Debian's chromium for tests/test_browser.py, installed when missing (as root, through apt-get). It never fails:
# where it cannot be installed the browser test is skipped and says why.
browser:
	@if [ -n "$$STEPBENCH_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || \
	    command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for tests/test_browser.py"; export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1; } \
	  || echo "note: apt-get could not install chromium: tests/test_browser.py will be skipped"; \
	else echo "note: no chromium, and no root shell with apt-get to install it: tests/test_browser.py will be skipped"; \
	fi

test: setup browser
	$(BIN)/python -m pytest -m "not slow"

# the report in headless Chromium alone (also part of `make test`): sort, filter, expand, no console errors
test-browser: setup browser
	$(BIN)/python -m pytest tests/test_browser.py -rs

test-slow: setup
	$(BIN)/python -m pytest -m slow

# one-line bugs planted one at a time in a temp copy: each must make a test fail (tests/mutants.py)
mutants: setup
	$(BIN)/python tests/mutants.py

bench: setup
	$(BIN)/bench run $(SUITE) --db $(DB)
	$(BIN)/bench report --db $(DB) --suite $(SUITE)

report: setup
	$(BIN)/bench report --db $(DB) --suite $(SUITE)

# Ratios against the floor, the usual workflow, store size and scale; GPU when present. Table: results/perf/summary.md.
perf: setup
	mkdir -p results/perf
	$(BIN)/python -m pytest benchmarks -o addopts="" -p no:cacheprovider -q -s --benchmark-only \
		--benchmark-json=results/perf/perf.json

lint: setup
	$(BIN)/python -m pip install -q ruff
	$(BIN)/ruff check bench tests

# Two independent single-threaded chains (metric nets; generators) on two cores; each is a pure function of its seeds.
mini-weights: setup
	$(BIN)/python -m mini_training classifier clip pick --threads 1 & metrics=$$!; \
	$(BIN)/python -m mini_training sit meanflow distill --threads 1 && wait $$metrics

# Retrain every part in a scratch copy exactly as mini-weights does and compare with the shipped files bit for bit
# (mini_training/check.py; about 40 minutes on 2 cores): exit 1 naming each entry that differs.
check-mini-weights: setup
	$(BIN)/python -m mini_training.check

clean:
	rm -rf results reports
