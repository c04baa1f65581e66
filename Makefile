# One command set for people and CI. Each target installs what it needs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help demo serve test test-unit test-integration lint bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: this version is the local CPU wheel; an unpinned "torch" pulls a CUDA build of several GB
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(STAMP)  ## embedded broker + worker + listener, replay a generated feed, ROUGE table, dashboard
	$(BIN)/radflow demo

serve: $(STAMP)  ## broker (if none configured) + listener + worker + dashboard
	$(BIN)/radflow serve

# Headless Chromium renders the dashboard in the end-to-end test (Debian package; browser
# downloads by test tools cannot work here). Installed when missing and we may; else that check skips.
$(VENV)/.chromium: | $(STAMP)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
	  echo "chromium not installed: the browser check of the dashboard will skip"
	@touch $@

test: $(STAMP) $(VENV)/.chromium  ## the whole test suite (unit, then integration against the embedded broker)
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

test-integration: $(STAMP)
	$(BIN)/pytest tests/integration

lint: $(STAMP)  ## ruff and mypy on the packages
	$(BIN)/ruff check radflow ingest streams model training storage tests bench
	$(BIN)/mypy radflow ingest streams model training storage

bench: $(STAMP)  ## benchmarks: tables and ratios measured in one run
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/score.py

clean:  ## remove the virtualenv and local data
	rm -rf $(VENV) .radflow
