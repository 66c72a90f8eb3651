# Cloud Render for Blender: one entry point for set-up, tests, the build and the demo.
# `make test` and `make demo` create everything they need on first use.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
VENV_BPY42 := .venv-bpy42
VENV_BPY5X := .venv-bpy5x
PIP_QUIET := -q --disable-pip-version-check

.PHONY: all venv venv-compat wheels build test test-bpy42 test-fast test-gui screenshots lint demo aws-check bench clean

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

# TEST_JOBS: test files run in this many processes at once (pytest-xdist, one file per process,
# so a module's fixtures are made once). Most tests wait on machines, moto and subprocesses, so
# two processes on two cores take about half the time of one. TEST_JOBS=0: in this process only.
# STRESS=1: the same suite with every core kept busy by a bounded CPU load (dev/cpu_load.py:
# at most 30 minutes, gone with this recipe), as on an artist's machine or a shared CI runner.
TEST_JOBS ?= 2
PYTEST := $(PY) -m pytest $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)
test: venv venv-compat wheels
ifeq ($(STRESS),1)
	@echo "STRESS=1: a CPU load keeps every core busy while the suite runs"
	$(PY) dev/cpu_load.py --seconds 1800 --parent $$$$ & load=$$!; \
	$(PYTEST); rc=$$?; kill $$load; wait $$load; exit $$rc
else
	$(PYTEST)
endif

# The add-on and end-to-end tests on Blender 4.2 LTS: its bpy module ahead of the suite's 5.0.
test-bpy42: venv venv-compat wheels
	PYTHONPATH=$(abspath $(VENV_BPY42))/lib/python3.11/site-packages $(PY) -m pytest tests/addon tests/e2e \
	  --ignore=tests/addon/test_install.py  # it runs 4.2 (and 5.x) in interpreters of its own

test-fast: venv wheels
	$(PY) -m pytest -m "not slow"

# The add-on in a real Blender window (Debian's 4.3.2 in a trixie chroot under Xvfb, built once
# into ~/.cache/cloud-render-gui; needs root). test-gui: the click-through to Done; screenshots:
# every state into docs/screenshots/.
test-gui: venv wheels
	$(PY) dev/gui/run.py test

screenshots: venv wheels
	$(PY) dev/gui/run.py shots

# SCENE=still: one Cycles frame split by samples over MACHINES machines (demo-output/still/).
demo: venv wheels
ifeq ($(SCENE),still)
	$(PY) dev/demo_batch.py --still --machines $(or $(MACHINES),3)
else
	$(PY) dev/demo.py $(if $(SCENE),--scene $(SCENE))
	$(PY) dev/demo_batch.py --machines $(or $(MACHINES),3)
endif

# One tiny frame on a real AWS account, each step timed, under a hard cost cap (dev/aws_check.py):
# make aws-check ARGS="--profile NAME --yes". Without --yes it only says what it would do.
aws-check: venv wheels
	$(PY) dev/aws_check.py $(ARGS)

bench: venv wheels
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf dist demo-output build .pytest_cache .mypy_cache .ruff_cache
