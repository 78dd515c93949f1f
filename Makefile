# One entry point for developers and CI. `make test` is the README's test command.
SHELL := /bin/bash
# Python 3.12 is the target; on these machines it lives under pyenv and its shim may not be active.
PYTHON ?= $(shell for p in python3.12 $(HOME)/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12; do \
  "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# The image builder of images/*/Dockerfile (kept plain); `make e2e` loads the result into kind.
# Here (no Docker engine): IMAGE_BUILD=../shared/images/build (buildah; docs/images.md).
IMAGE_BUILD ?= docker build
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# The names deploy/ and the operator's workerImage default use.
WORKER_IMAGE ?= audio-extract-worker:$(VERSION)
OPERATOR_IMAGE ?= audio-extract-operator:$(VERSION)
IMAGE_ARGS = --build-arg VERSION=$(VERSION) \
  --build-arg REVISION=$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

.PHONY: venv test lint fmt crds crds-check deploy clean bench-worker bench-local bench-startup bench-aac bench-failover bench-operator bench-status-write demo e2e images test-images

$(BIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.12 not found: set PYTHON=/path/to/python3.12" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

test: venv
	$(BIN)/pytest $(PYTEST_ARGS)

# Both images, from the repository root as build context (.dockerignore keeps it small).
images:
	$(IMAGE_BUILD) -t $(WORKER_IMAGE) $(IMAGE_ARGS) -f images/worker/Dockerfile .
	$(IMAGE_BUILD) -t $(OPERATOR_IMAGE) $(IMAGE_ARGS) -f images/operator/Dockerfile .

# The image tier alone (part of `make test` too; skipped when the images are not built).
test-images: venv
	WORKER_IMAGE=$(WORKER_IMAGE) OPERATOR_IMAGE=$(OPERATOR_IMAGE) $(BIN)/pytest tests/images $(PYTEST_ARGS)

# The opt-in e2e suite on a kind cluster (needs kind and a Docker engine; docs/testing.md).
# KEEP_CLUSTER=1 keeps the cluster afterwards.
e2e: venv
	IMAGE_BUILD="$(IMAGE_BUILD)" PYTEST=$(BIN)/pytest PYTEST_ARGS="$(PYTEST_ARGS)" tests/e2e/kind.sh

# A sample video, a local HTTP server and a Batch run by `audio-extract run` (docs/local.md).
demo: venv
	$(BIN)/python demo/run_demo.py

lint: venv
	$(BIN)/ruff check operator tests bench demo tools
	$(BIN)/ruff format --check operator tests bench demo tools
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: venv
	$(BIN)/ruff format operator tests bench demo tools
	$(BIN)/ruff check --fix operator tests bench demo tools

crds: venv
	$(BIN)/audio-extract crds --write

crds-check: venv
	$(BIN)/audio-extract crds --check

# deploy/ and the chart's Argo CD snippet, rendered from charts/audio-extract-operator
# by a real Helm engine (tools/chart.py); the unit tests fail when they are stale.
deploy: venv
	$(BIN)/python -m tools.chart --write

# Benchmarks run as modules (python -m bench.NAME): run as a script from bench/, one would
# import bench/operator.py in place of the standard library's operator module and fail.
# Worker vs bare ffmpeg on a 10-minute realistic source (BENCH_ARGS=--quick: about a minute).
# BENCH_ARGS="--in-image $(WORKER_IMAGE)" runs a benchmark inside the worker image built by
# `make images` (its minimal ffmpeg on both sides): the figures of what ships.
bench-worker: venv
	$(BIN)/python -m bench.worker $(BENCH_ARGS)

# The local runner vs the same ffmpeg commands under xargs -P (BENCH_ARGS=--quick: about a minute).
bench-local: venv
	$(BIN)/python -m bench.local $(BENCH_ARGS)

# What one ffmpeg/ffprobe process costs before it does any work (prints only).
bench-startup: venv
	$(BIN)/python -m bench.startup $(BENCH_ARGS)

# AAC coders: speed and null-test SNR on speech, music and noise (docs/performance.md).
bench-aac: venv
	$(BIN)/python -m bench.aac_coder $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache demo-out

# Operator failover (Lease hand-over) on the real control plane; needs KUBEBUILDER_ASSETS or .cache/k8s.
bench-failover: venv
	$(BIN)/python -m bench.failover $(BENCH_ARGS)

# Operator at scale vs a plain 16-thread client on the real control plane (docs/performance.md);
# BENCH_ARGS=--quick for a run of a minute or two (50 jobs, 500 finished objects).
bench-operator: venv
	$(BIN)/python -m bench.operator $(BENCH_ARGS)

# One status write of a 1,000-job Batch at the API server, with and without the spec's CEL rules.
bench-status-write: venv
	$(BIN)/python -m bench.status_write $(BENCH_ARGS)
