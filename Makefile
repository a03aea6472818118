# mind — two commands on a fresh machine: `make demo` and `make test`.
# Every target first creates .venv with pip and installs the package (-e .[dev,text]) when it is
# missing or older than pyproject.toml. The notebooks name the kernel "python3", which ipykernel provides in
# every environment it is installed in (this venv, the conda env of environment.yml).
# Ordinary runs write only to runs/ (ignored by git); only `make reproduce` updates figures/ and papers/.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU wheel of torch 2.13.0; any torch in pyproject's range works elsewhere.
TORCH  ?= torch==2.13.0
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
QUIET_PIP := 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true

# No MPLBACKEND here: notebook kernels (make demo, make lab) then use the inline backend, so executed and
# open notebooks show their figures; the tests set Agg themselves (tests/conftest.py).
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# Small BLAS problems (ridge, the synthetic generator) run fastest on one thread; several OpenBLAS threads
# spin against torch and papermill kernels on a 2-core machine (measured: 0.2 s vs up to 27 s per ridge fit).
export OPENBLAS_NUM_THREADS := 1

.PHONY: help setup demo test test-fast lab reproduce bench docs lint format sync strip clean

# Times come from papers/timings.json, measured by the last `make reproduce` (python -m mindlib.notebooks --publish).
define MEASURED
import glob, json, os, sys
try:
    t = json.load(open("papers/timings.json"))
except (OSError, ValueError):
    t = {}
size = sys.argv[1]
s = sum(t.get(size, {}).values())
names = sorted(os.path.basename(p)[:-3] for p in glob.glob("notebooks/[0-9][0-9]_*.py"))
todo = [n[:2] for n in names if n not in t.get(size, {})]
more = f"; {', '.join(todo)} not yet measured" if todo else ""
print(f"{s / 60:.1f} min of notebooks measured on 2 CPU cores{more}" if s else "not yet measured")
endef
export MEASURED

help:
	@echo "make demo       build the synthetic study and run every notebook at demo size ($$($(PYTHON) -c "$$MEASURED" demo))"
	@echo "                outputs in runs/demo/ (ignored by git)"
	@echo "make test       unit tests + a smoke run of every notebook (outputs in temporary folders)"
	@echo "make lab        open JupyterLab on notebooks/ (Run All writes to runs/demo/)"
	@echo "make reproduce  full-size runs; updates the committed figures/, papers/ and README tables ($$($(PYTHON) -c "$$MEASURED" full))"
	@echo "make bench      performance benchmarks (prints tables, writes benchmarks/results/*.csv)"
	@echo "make docs       the rendered tutorial in docs/_build/<size>/html (SIZE=demo; SIZE=smoke for CI)"
	@echo "make lint       ruff + notebook pair check;  make sync  re-pair notebooks, .ipynb without outputs;  make clean"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo ">> installing mindlib into $(VENV) (first time: about a minute)"
	@$(PIP) install "$(TORCH)" $(QUIET_PIP)
	@$(PIP) install -e ".[dev,text]" $(QUIET_PIP)
	@$(BIN)/python -c "import torch, mindlib, papermill, jupytext" \
		|| (echo "installation failed: see the pip output above" && exit 1)
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
	$(BIN)/python -m mindlib.notebooks --size full --publish

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The site renders the executed notebooks of runs/$(SIZE)/ and executes the missing ones first.
SIZE ?= demo
docs: $(STAMP)
	$(BIN)/python docs/build.py --size $(SIZE)

lint: $(STAMP)
	$(BIN)/ruff check mindlib tests benchmarks notebooks docs
	$(BIN)/ruff format --check mindlib tests benchmarks docs || (echo "run 'make format' to reformat" && exit 1)
	$(BIN)/python -m mindlib.notebooks --check-pairs

format: $(STAMP)
	$(BIN)/ruff format mindlib tests benchmarks docs

sync: $(STAMP)
	$(BIN)/python -m mindlib.notebooks --sync

strip: sync

clean:
	rm -rf results studies checkpoints benchmarks/results .pytest_cache .ruff_cache .hypothesis
	find runs -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
