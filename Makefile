# mind — two commands on a fresh machine: `make demo` and `make test`.
# Every target first creates .venv with pip and installs the package (-e .[dev,text]) when it is
# missing or older than pyproject.toml, and registers the venv's Jupyter kernel.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU wheel of torch 2.13.0; any torch in pyproject's range works elsewhere.
TORCH  ?= torch==2.13.0
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
QUIET_PIP := 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true

export MPLBACKEND := Agg
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# Small BLAS problems (ridge, the synthetic generator) run fastest on one thread; several OpenBLAS threads
# spin against torch and papermill kernels on a 2-core machine (measured: 0.2 s vs up to 27 s per ridge fit).
export OPENBLAS_NUM_THREADS := 1

.PHONY: help setup demo test test-fast lab reproduce bench docs lint format sync clean

help:
	@echo "make demo       build the synthetic study and run every notebook at demo size (~12 min, 2 CPU cores)"
	@echo "make test       unit tests + a smoke run of every notebook (~3 min, 2 CPU cores)"
	@echo "make lab        open JupyterLab on notebooks/"
	@echo "make reproduce  full-size runs: all tables and figures"
	@echo "make bench      performance benchmarks (prints tables, writes benchmarks/results/*.csv)"
	@echo "make docs       the rendered tutorial in docs/_build/<size>/html (SIZE=demo; SIZE=smoke for CI)"
	@echo "make lint       ruff + notebook pair check;  make sync  re-pair notebooks;  make clean"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo ">> installing mindlib into $(VENV) (first time: about a minute)"
	@$(PIP) install "$(TORCH)" $(QUIET_PIP)
	@$(PIP) install -e ".[dev,text]" $(QUIET_PIP)
	@$(BIN)/python -c "import torch, mindlib, papermill, jupytext" \
		|| (echo "installation failed: see the pip output above" && exit 1)
	@$(BIN)/python -m ipykernel install --sys-prefix --name mind --display-name "Python (mind)" > /dev/null
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m mindlib.notebooks --size demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

reproduce: $(STAMP)
	$(BIN)/python -m mindlib.notebooks --size full

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The site renders the executed notebooks of runs/$(SIZE)/ and executes the missing ones first.
SIZE ?= demo
docs: $(STAMP)
	$(BIN)/python docs/build.py --size $(SIZE)

lint: $(STAMP)
	$(BIN)/ruff check mindlib tests benchmarks notebooks
	$(BIN)/python -m mindlib.notebooks --check-pairs

format: $(STAMP)
	$(BIN)/ruff format mindlib tests benchmarks

sync: $(STAMP)
	$(BIN)/jupytext --sync notebooks/*.py

clean:
	rm -rf runs results studies checkpoints benchmarks/results .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
