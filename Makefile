# `make train` and `make test` work on a fresh machine: they create .venv on first use.
# torch is pinned through constraints.txt (a local CPU build here); pyproject.toml keeps a range.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: train generate test test-all lint clean

$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	@echo "installing TinyGPT, torch and the other dependencies into $(VENV) (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	# compat: the checkout goes on sys.path, so a clone in a folder named tinygpt cannot shadow the package
	$(PIP_INSTALL) --config-settings editable_mode=compat -e '.[dev,bnb,wandb,sweeps,report,hf,parquet]'
	touch $@
	@echo "installed into $(VENV)"

train: $(VENV)/.installed
	$(PY) -m tinygpt.train $(ARGS)

# sample from a run, e.g. make generate ARGS='run=runs/2026-12-02/10-54-54 "prompt=Hello, world!"'
generate: $(VENV)/.installed
	$(PY) -m tinygpt.generate $(ARGS)

# the suite without the tests marked slow (DDP, compilation, kill-and-resume, launchers): what CI runs
test: $(VENV)/.installed
	$(PY) -m pytest -m "not slow" $(ARGS)

# every test, the slow ones too (about 10 minutes on 2 cores)
test-all: $(VENV)/.installed
	$(PY) -m pytest $(ARGS)

# ruff (style, complexity <= 15) and no function over 60 lines (tools/check_function_length.py)
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(PY) tools/check_function_length.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
