# `make demo` runs the default pipeline, `make test` the test suite; both create .venv if missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
# extra pip options for building .venv, e.g. --extra-index-url https://download.pytorch.org/whl/cpu (CPU torch)
PIP_ARGS ?=

.PHONY: env demo test bench mutation clean

env: $(BIN)/vidbench

$(BIN)/vidbench: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q $(PIP_ARGS) -c constraints.txt -e '.[test]'
	touch $@

# The workflow's rules run `python -m vidbench`: put the environment's bin/ first on PATH.
demo: env
	PATH="$(CURDIR)/$(BIN):$$PATH" snakemake --cores $(CORES)

test: env
	PATH="$(CURDIR)/$(BIN):$$PATH" pytest

bench: env
	PATH="$(CURDIR)/$(BIN):$$PATH" python benchmarks/pipeline_time.py

# slow (hours on 2 cores): mutation testing of the result-bearing modules, not part of `make test` or CI
mutation: env
	$(BIN)/pip install -q $(PIP_ARGS) -c constraints.txt -e '.[test,mutation]'
	benchmarks/mutation.sh

clean:
	rm -rf results data
