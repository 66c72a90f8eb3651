# Cloud Render for Blender: one entry point for set-up, tests, the build and the demo.
# `make test` and `make demo` create everything they need on first use.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
VENV_BPY42 := .venv-bpy42
VENV_BPY5X := .venv-bpy5x
PIP_QUIET := -q --disable-pip-version-check

.PHONY: all venv venv-compat wheels build test test-fast lint demo bench clean

all: build

$(VENV)/.stamp: dev/requirements.txt
	rm -rf $(VENV)
	"$$(dev/find_python.sh 3.11)" -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) -r dev/requirements.txt
	touch $@

$(VENV_BPY42)/.stamp: dev/requirements-bpy42.txt
	rm -rf $(VENV_BPY42)
	"$$(dev/find_python.sh 3.11)" -m venv $(VENV_BPY42)
	$(VENV_BPY42)/bin/python -m pip install $(PIP_QUIET) -r dev/requirements-bpy42.txt
	touch $@

$(VENV_BPY5X)/.stamp: dev/requirements-bpy5x.txt
	rm -rf $(VENV_BPY5X)
	"$$(dev/find_python.sh 3.13)" -m venv $(VENV_BPY5X)
	$(VENV_BPY5X)/bin/python -m pip install $(PIP_QUIET) -r dev/requirements-bpy5x.txt
	touch $@

venv: $(VENV)/.stamp
venv-compat: $(VENV_BPY42)/.stamp $(VENV_BPY5X)/.stamp

vendor/.stamp: dev/vendor.lock dev/fetch_wheels.py | $(VENV)/.stamp
	$(PY) dev/fetch_wheels.py
	touch $@

wheels: vendor/.stamp

build: venv wheels
	$(PY) dev/build.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	dev/typecheck.sh

test: venv venv-compat wheels
	$(PY) -m pytest

test-fast: venv wheels
	$(PY) -m pytest -m "not slow"

demo: venv wheels
	$(PY) dev/demo.py

bench: venv wheels
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf dist demo-output build .pytest_cache .mypy_cache .ruff_cache
