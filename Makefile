# One command set for people and CI. Each target installs what it needs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help demo serve test test-unit test-integration lint bench bench-gpu clean

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

# Debian packages the tests use: chromium (renders the dashboard end to end; browser downloads by
# test tools cannot work here), postgresql (a real server for the storage tests), docker-compose
# (validates docker-compose.yml; no engine runs). Installed when missing and we are root; tests
# that need a missing one skip and say why.
$(VENV)/.system: | $(STAMP)
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null 2>&1 \
	      || echo "could not install$$missing: the tests that need them will skip"; \
	  else echo "missing$$missing (not root): the tests that need them will skip"; fi; \
	fi
	@touch $@

test: $(STAMP) $(VENV)/.system  ## mypy, then the whole test suite (unit, then integration against the embedded broker)
	$(BIN)/mypy radflow kernel ingest streams model training evaluation storage
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

test-integration: $(STAMP) $(VENV)/.system
	$(BIN)/pytest tests/integration

lint: $(STAMP)  ## ruff and mypy on the packages
	$(BIN)/ruff check radflow kernel ingest streams model training evaluation storage tests bench
	$(BIN)/mypy radflow kernel ingest streams model training evaluation storage

bench: $(STAMP)  ## benchmarks: tables and ratios measured in one run
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/journal.py
	$(BIN)/python bench/score.py
	$(BIN)/python bench/effects.py
	@model=$${RADFLOW_HOME:-.radflow}/models/smollm2-135m; \
	if [ -f $$model/config.json ]; then $(BIN)/python bench/cpu_model.py --model $$model; \
	else echo "bench/cpu_model.py skipped: no $$model (run: radflow model pull smollm2-135m)"; fi

bench-gpu: $(STAMP)  ## the CUDA benchmark (drafting nf4/bf16 x batch 1/8/32, QLoRA refit); see bench/README.md
	$(BIN)/python bench/gpu.py

clean:  ## remove the virtualenv and local data
	rm -rf $(VENV) .radflow
