# Each target does its own idempotent set-up: Debian packages (when root), the virtualenv,
# and Kafka's jars from Maven Central (cached under $(AGENTFLUX_HOME), default ~/.cache/agentflux).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# a change of the dependencies or of the native decoder's source reinstalls (and rebuilds it)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml native/Cargo.toml native/Cargo.lock native/src/*.rs | sha1sum | cut -c1-12)
# rustup's cargo, where rustup puts it, for the native decoder
export PATH := $(HOME)/.cargo/bin:$(PATH)
EVENTS ?= 50000

.PHONY: setup system venv jars jaeger demo test test-unit bench up down notebooks clean

setup: system venv jars jaeger

system:
	@bash deploy/setup-system.sh

venv: $(STAMP)

$(STAMP): pyproject.toml native/Cargo.toml native/Cargo.lock $(wildcard native/src/*.rs)
	@command -v cargo >/dev/null || { echo "make: cargo not found: the worker's native decoder (native/) is Rust; install Rust 1.78 or newer (https://rustup.rs) and run make again" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	@touch $(STAMP)
	@echo "agentflux is installed in $(VENV)/bin: 'source $(VENV)/bin/activate' puts it on your shell's PATH (or type $(VENV)/bin/agentflux)"

jars: venv
	@$(PY) -c "from agentflux.config import Settings; from agentflux.localkafka import ensure_jars; print('kafka jars:', ensure_jars(Settings.from_env().state_dir))"

# Jaeger v2 (the OTLP tracing backend of the tests and `agentflux demo --otlp`), built once with Go
# through the Go module proxy into the cache directory beside Kafka's jars
jaeger: venv
	@$(PY) -c "from agentflux.config import Settings; from agentflux.localjaeger import ensure_jaeger; print('jaeger:', ensure_jaeger(Settings.from_env().state_dir))"

demo: setup
	$(VENV)/bin/agentflux demo --events $(EVENTS)
	@command -v agentflux >/dev/null || echo "tip: 'source $(VENV)/bin/activate' puts agentflux on this shell's PATH"

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

test-unit: venv
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

bench: setup
	$(VENV)/bin/agentflux bench pipeline --json

# JupyterLab and pandas for notebooks/ (then: .venv/bin/jupyter lab notebooks/)
notebooks: venv
	$(PY) -m pip install -q --disable-pip-version-check -e '.[notebooks]'
	@echo "open them with: $(VENV)/bin/jupyter lab notebooks/  (history: AGENTFLUX_HISTORY, default agentflux-demo-history from make demo)"

up: setup
	$(VENV)/bin/agentflux up

down: venv
	$(VENV)/bin/agentflux down

clean:
	rm -rf $(VENV) *.egg-info build dist
