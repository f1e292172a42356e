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

demo: env
	$(BIN)/snakemake --cores $(CORES)

test: env
	$(BIN)/pytest

bench: env
	$(BIN)/python benchmarks/pipeline_time.py

clean:
	rm -rf results data
