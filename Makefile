# charrnn — every user-facing entry point. `make smoke` and `make test` do all the set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= quick
ABLATION ?= smoke
PORT ?= 5000
RESULTS_DIR := $(or $(CHARRNN_RESULTS_DIR),results)

.PHONY: install smoke test bench grid ablations report ui clean

install: $(STAMP)

# Rebuilt when missing or when pyproject.toml changes (stale).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

smoke: $(STAMP)
	$(BIN)/charrnn smoke

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/charrnn bench --profile $(PROFILE)

grid: $(STAMP)
	$(BIN)/charrnn grid ablations/$(ABLATION).yaml --profile $(PROFILE)

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(RESULTS_DIR)/mlflow.db \
		--default-artifact-root $(RESULTS_DIR)/mlartifacts --host 127.0.0.1 --port $(PORT)

clean:
	find results reports -mindepth 1 ! -name README.md -exec rm -rf {} +
