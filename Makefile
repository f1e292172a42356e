# `make demo` runs the default pipeline, `make test` the test suite; both create .venv if missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: env demo test bench clean

env: $(BIN)/vidbench

$(BIN)/vidbench: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

# The workflow's rules call the `vidbench` command: put the environment's bin/ first on PATH.
demo: env
	PATH="$(CURDIR)/$(BIN):$$PATH" snakemake --cores $(CORES)

test: env
	PATH="$(CURDIR)/$(BIN):$$PATH" pytest

bench: env
	PATH="$(CURDIR)/$(BIN):$$PATH" python benchmarks/pipeline_time.py

clean:
	rm -rf results data
