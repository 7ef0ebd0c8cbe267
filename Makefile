# cronwork: `make run` runs the whole system, `make test` the whole suite. `make help` lists the rest.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements-dev.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) examples/cronwork-example-tasks/pyproject.toml | sha1sum | cut -c1-12)
TOOLS := .tools
LOCK_VENV := $(TOOLS)/lock-venv
LOCK_STAMP := $(LOCK_VENV)/.installed-$(shell cat deploy/lock-tools.txt | sha1sum | cut -c1-12)
COMPILE = $(LOCK_VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' $(LOCK_ARGS)
PYTEST_ARGS ?=
CHAOS_ARGS ?=
SOAK_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install tools lock system-deps run migrate api worker beat test test-fast lint format bench bench-full chaos soak clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(LOCK) examples/cronwork-example-tasks/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	# The example task-type plugin, which the tests install and run as a team's own package would be.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e examples/cronwork-example-tasks
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) ## Create .venv and install cronwork with the locked, hash-checked dependencies

tools: ## Install the pinned chart tools (helm, kubernetes-validate) into .tools/, checked by hash
	$(PYTHON) deploy/install_tools.py

$(LOCK_STAMP): deploy/lock-tools.txt
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r deploy/lock-tools.txt
	touch $@

lock: $(LOCK_STAMP) ## Compile the hashed lock files from pyproject.toml and deploy/*.in (LOCK_ARGS=--upgrade: newest transitive pins)
	$(COMPILE) pyproject.toml -o requirements.lock
	$(COMPILE) pyproject.toml --extra dev -o requirements-dev.lock
	$(COMPILE) deploy/chart-tools.in -o deploy/chart-tools.txt
	$(COMPILE) deploy/lock-tools.in -o deploy/lock-tools.txt

system-deps: ## Install the Debian packages the tests drive (chromium, docker-compose, promtool) when missing
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# promtool (tests/deploy/test_alerts.py checks the chart's alert rules with it) comes only in Debian's
	@# prometheus package, whose postinst starts a Prometheus server on :9090 wherever no policy-rc.d forbids it.
	@# Only the binary is wanted: a policy-rc.d (exit 101: "do not start") stands for the install when the machine
	@# has none, the service is not enabled for boots, and --no-install-recommends leaves out the node exporter.
	@if ! command -v promtool >/dev/null; then \
	  echo "installing: prometheus (for promtool; its server is not started)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' | $$SUDO tee /usr/sbin/policy-rc.d >/dev/null; \
	    $$SUDO chmod 755 /usr/sbin/policy-rc.d; \
	    trap '$$SUDO rm -f /usr/sbin/policy-rc.d' EXIT; \
	  fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  $$SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true; \
	  if [ -d /run/systemd/system ]; then $$SUDO systemctl disable --quiet prometheus.service || true; fi; \
	fi

run: $(STAMP) ## Run API, worker and beat (embedded SQLite + in-memory broker when DATABASE_URL/BROKER_URL are unset)
	DEMO_TASK_TYPES=$${DEMO_TASK_TYPES:-true} $(BIN)/cronwork run  # with the simulated demo types, to try it out

migrate: $(STAMP) ## Bring the database at DATABASE_URL to the newest schema
	$(BIN)/cronwork migrate

api: $(STAMP) ## Run the API (gunicorn) on PORT (default 8000)
	$(BIN)/cronwork api

worker: $(STAMP) ## Run the Dramatiq workers
	$(BIN)/cronwork worker

beat: $(STAMP) ## Run the periodiq beat (system crons)
	$(BIN)/cronwork beat

test: $(STAMP) system-deps tools ## The whole suite against the real PostgreSQL and RabbitMQ, browser and chart checks included (PYTEST_ARGS=tests/deploy: a part)
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## Every test that needs no service (SQLite and the in-memory broker), in about 30 s
	$(BIN)/pytest -m "not services"

lint: $(STAMP) ## ruff (lint, docstrings, format check), mypy --strict on shared/ and services/, Biome on the page's JS
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	npm ci --silent --no-audit --no-fund && npm run --silent lint:js

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) ## Firing figures against raw Dramatiq's, on the real PostgreSQL and RabbitMQ (a few minutes)
	$(BIN)/python -m bench

bench-full: $(STAMP) ## The same with a million schedules, ten million runs and longer windows (about half an hour)
	$(BIN)/python -m bench --full

chaos: $(STAMP) ## Overlapping faults under load on a throwaway PostgreSQL cluster and RabbitMQ node, then the ledger check (CHAOS_ARGS="--seed N --duration S")
	$(BIN)/python -m chaos $(CHAOS_ARGS)

soak: $(STAMP) ## A steady load (200 fires/s) for an hour: lateness, memory, database size, connections and queues over time, and their slopes (SOAK_ARGS=...)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean: ## Remove the venv, the embedded database and test output
	rm -rf $(VENV) var test-output
