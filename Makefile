# The two commands of the README: `make demo` and `make test`. Both create .venv and install
# what they need. Override the torch requirement with e.g. `make test TORCH="torch==2.6.0"`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.neurocrane-installed
# CPU build of torch when no GPU is present (CI pins the CPU build 2.13.0, available here).
TORCH ?= torch==2.13.0
# pip's notes about index folders it skips are noise; a failing pip still fails the recipe (pipefail)
QUIET_PIP := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: install test demo lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then \
	    $(BIN)/pip install -q "torch>=2.4" 2>&1 | $(QUIET_PIP); \
	  else \
	    $(BIN)/pip install -q "$(TORCH)" 2>&1 | $(QUIET_PIP) || echo "$(TORCH) not available; trying the CPU index"; \
	    $(BIN)/python -c "import torch" 2>/dev/null || \
	      $(BIN)/pip install -q "torch>=2.4" --index-url https://download.pytorch.org/whl/cpu 2>&1 | $(QUIET_PIP); \
	  fi; \
	fi
	$(BIN)/pip install -q -e ".[dev]" 2>&1 | $(QUIET_PIP)
	$(BIN)/python -c "import neurocrane, torch; print('neurocrane', neurocrane.__version__, 'torch', torch.__version__)"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/python -m neurocrane.demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo_output
