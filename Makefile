# Quick start:  make demo   (set up + run the main job on the built-in sample)
#               make test   (set up + run the test suite)
SHELL := /bin/sh
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.facegraph-installed
# The model mirror beside the checkout (studios without internet, CI). Override with FACEGRAPH_MODEL_MIRROR=...
MIRROR_DEFAULT := $(abspath ../shared/models)
export FACEGRAPH_MODEL_MIRROR ?= $(if $(wildcard $(MIRROR_DEFAULT)),$(MIRROR_DEFAULT),)
PYTEST_ARGS ?=

.PHONY: setup demo test test-all bench clean
setup: $(STAMP)

$(STAMP): pyproject.toml install/setup.sh
	sh install/setup.sh
	touch $(STAMP)

demo: setup
	$(BIN)/facegraph demo --out out/demo

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: setup
	$(BIN)/python -m pytest -m "not gpu" $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m bench.run $(or $(BENCH),all)

clean:
	rm -rf out .pytest_cache
