# Tideline: `make demo` runs every model's chain end to end; `make test` runs the tests.
# Everything local lives under $(STATE) (git-ignored); `make clean` removes it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STATE ?= $(CURDIR)/.tideline

export TIDELINE_HOME := $(STATE)
export DAGSTER_HOME := $(STATE)/dagster
export PYTHONPATH := $(CURDIR)
export TIDELINE_THREADS ?= 1
export MPLBACKEND := Agg
export GIT_PYTHON_REFRESH := quiet
export MLFLOW_DISABLE_TELEMETRY := true
# Every spec in datasets/ (or TIDELINE_DATASETS) is a model. MODEL=name picks the model a
# command acts on (default: the only one, else the demo); `make demo SPEC=name` runs one.
MODEL ?= $(SPEC)
ifneq ($(MODEL),)
export TIDELINE_MODEL := $(MODEL)
endif

.PHONY: install state demo test ui bench lint clean lock reproduce serve api-key \
	promote abort rollback deploy-status drift-demo gc verify
.PHONY: chromium screenshots

# pip's output goes to $(STATE)/logs/install.log; the terminal sees it only if the install fails.
$(VENV)/.installed: requirements.lock
	@mkdir -p $(STATE)/logs
	@echo "installing the locked dependencies into $(VENV) (pip's log: $(STATE)/logs/install.log)"
	@{ $(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet --upgrade "pip>=25" \
	  && $(BIN)/pip install --quiet -r requirements.lock; } > $(STATE)/logs/install.log 2>&1 \
	  || { cat $(STATE)/logs/install.log; \
	       echo "error: installing the dependencies failed (pip's output above)" >&2; exit 1; }
	@touch $@

install: $(VENV)/.installed

state: install
	@$(BIN)/python -m cli.setup_state

demo: state
	@$(BIN)/python -m cli.demo

test: install
	$(BIN)/python -m pytest -m "not gpu" --durations=20 $(PYTEST_ARGS)

ui: state
	$(BIN)/dagster dev -w workspace.yaml

# Rebuild every stage of registered model version VERSION in an empty store and compare.
reproduce: state
	@test -n "$(VERSION)" || (echo "usage: make reproduce [MODEL=name] VERSION=n" >&2; exit 2)
	$(BIN)/python -m cli.reproduce --version $(VERSION)

# The serving service on the local deployment (http://127.0.0.1:8000/docs).
# PORT=, WORKERS=; with WORKERS>1 set TIDELINE_REDIS_URL=redis://127.0.0.1:6379/0.
serve: state
	@test -s $(STATE)/serving/api_keys.json || $(BIN)/python -m cli.deployctl api-key local
	$(BIN)/python -m cli.serve --port $${PORT:-8000} --workers $${WORKERS:-1}

# Chain metrics for Prometheus (stage seconds, cache hits, drift, gate, training cost) read
# from the Dagster instance at each scrape: http://127.0.0.1:9109/metrics (PORT= to change).
.PHONY: chain-metrics
chain-metrics: state
	$(BIN)/python -m cli.chain_metrics --port $${PORT:-9109}

api-key: install
	$(BIN)/python -m cli.deployctl api-key $${NAME:-local}

# Deployment by hand (no Dagster run, no MLflow import before the change lands).
promote abort rollback: install
	$(BIN)/python -m cli.deployctl $@

# The self-retraining loop live: daemon, UI, service, clean then drifted traffic, retrain.
drift-demo: state
	$(BIN)/python -m cli.drift_demo $(DEMO_ARGS)

# Delete artifacts nothing needs: keeps the last KEEP materializations of each asset, every
# deployed model and anything pinned. DRY_RUN=1 lists what would go.
gc: state
	$(BIN)/python -m cli.gc --keep $${KEEP:-3} $(if $(DRY_RUN),--dry-run,)

# Check the whole store: pointers lead to present, intact content; histories and heads agree.
verify: state
	$(BIN)/python -m cli.verify

# Print deployed version VERSION's audit pack (signatures, ML-BOM, lineage, card) and check
# every hash and signature from the store alone; exits non-zero naming the file that fails.
.PHONY: audit
audit: install
	@test -n "$(VERSION)" || (echo "usage: make audit [MODEL=name] VERSION=n" >&2; exit 2)
	@$(BIN)/python -m cli.audit --version $(VERSION)

# The dataset spec's JSON Schema (datasets/spec.schema.json, which editors check specs
# against) and its reference (docs/spec-reference.md), from pipelines/spec.py.
.PHONY: schema
schema: install
	$(BIN)/python -m cli.schema

# REPAIR=1 also brings head, edge bundles and MLflow aliases in line with the history.
deploy-status: install
	$(BIN)/python -m cli.deployctl status $(if $(REPAIR),--repair,)

bench: state
	$(BIN)/python -m bench.run_all

# Headless Chromium for `make screenshots` (Debian's package; only installed when missing).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y --no-install-recommends chromium; }

# PNGs of the Dagster UI (asset graph, model card, deploy gate, drift report) into OUT
# (default .tideline/screenshots); STATE_DIR=folder uses an existing state instead of a
# fresh temporary one.
screenshots: install chromium
	$(BIN)/python -m bench.screenshots --out $(or $(OUT),$(STATE)/screenshots) \
	  $(if $(STATE_DIR),--state $(STATE_DIR),)

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo

clean:
	rm -rf $(STATE)

# Refresh the lock after changing pyproject.toml (run in a fresh venv).
lock:
	rm -rf /tmp/tideline-lock && $(PYTHON) -m venv /tmp/tideline-lock
	$(PYTHON) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	  print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))' > /tmp/tideline-lock/req.txt
	/tmp/tideline-lock/bin/pip install --quiet -r /tmp/tideline-lock/req.txt
	/tmp/tideline-lock/bin/pip freeze --exclude-editable | grep -v -E "^(pip|setuptools|wheel)==" > requirements.lock
