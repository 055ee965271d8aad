# charrnn — every user-facing entry point. `make smoke` and `make test` do all the set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= quick
ABLATION ?= smoke
# Where grid runs train: ray (default; one run per CPU on CPU, one per GPU on GPU) | local (in-process, one at a time)
EXECUTOR ?= ray
PORT ?= 5000
# mlflow server worker processes (`make server`); 1 = one writer process for the sqlite store
SERVER_WORKERS ?= 1
RESULTS_DIR := $(or $(CHARRNN_RESULTS_DIR),results)

.PHONY: install smoke test test-all bench grid ablations report ui clean gpu-check lint server findings suite-times claims-history docs screenshots

install: $(STAMP)

# Rebuilt when missing or when pyproject.toml changes (stale).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "make install: building .venv (torch, MLflow, Ray: a few minutes on first use; pip shows its progress)"
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[dev,ray]'
	touch $(STAMP)

# The main job: the smoke grid (8 tiny CPU runs, about a minute on 2 cores) into MLflow, then its HTML report.
# The report is rendered even when a run failed; the target still fails in that case.
smoke: $(STAMP)
	$(BIN)/charrnn grid ablations/smoke.yaml --profile quick; status=$$?; \
		$(BIN)/charrnn report smoke && exit $$status

# The fast suite (tests marked `slow` left out: end-to-end grids, subprocesses, Ray, Chromium).
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"; status=$$?; \
		if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$status

# Every test, the slow ones included (what CI runs: .ci/run).
test-all: $(STAMP)
	$(BIN)/python -m pytest -q; status=$$?; \
		if [ $$status -eq 5 ]; then echo "make test-all: pytest collected no tests" >&2; fi; exit $$status

# ruff (rules and line length in pyproject.toml); .ci/run runs it before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .

# Kernel timing suite (charrnn/bench/timed): PROFILE=quick (CPU, a few shapes, ~14 min on 2 cores) | sweep_hidden
# (tokens/s against H, <= 10 min on 2 cores) | gpu (H512 B64 T100) | full (the GPU grid);
# K='pytest -k expression' times a part. JSON in results/benchmarks/, run in MLflow `kernels`.
# The runs-per-hour benchmarks (README): make bench PROFILE=quick K='lstm_auto_vs_fused or seed_batched or mingru_auto'
bench: $(STAMP)
	$(BIN)/charrnn bench --profile $(PROFILE) $(if $(K),-k '$(K)')

grid: $(STAMP)
	$(BIN)/charrnn grid ablations/$(ABLATION).yaml --profile $(PROFILE) --executor $(EXECUTOR)

# Every claim grid (all ablations/*.yaml but smoke) that defines PROFILE (PROFILE=converged: the grids
# with a converged profile), resumable, in one `charrnn grid` process on one Ray (started once), then the
# suite's provenance.json (commit, machine, torch and MLflow versions) and every report + the index.
CLAIM_GRIDS := $(filter-out ablations/smoke.yaml,$(sort $(wildcard ablations/*.yaml)))
ablations: $(STAMP)
	$(BIN)/charrnn grid $$($(BIN)/python -m charrnn.grid.spec $(PROFILE) $(CLAIM_GRIDS)) \
		--profile $(PROFILE) --executor $(EXECUTOR); status=$$?; \
		$(BIN)/python -m charrnn.provenance && $(BIN)/charrnn report && exit $$status

report: $(STAMP)
	$(BIN)/charrnn report

# docs/findings.md, rewritten from the committed suite's verdicts.csv
findings: $(STAMP)
	$(BIN)/python -m charrnn.report.findings reports/examples/verdicts.csv docs/findings.md \
		--converged reports/examples/converged/verdicts.csv

# results/examples/quick-suite-times.txt (after its # header), rewritten from the committed suite's runs
suite-times: $(STAMP)
	$(BIN)/python -m charrnn.grid.suite_times results/examples/quick.csv --out results/examples/quick-suite-times.txt

# docs/claims-history.md: every claim any committed suite judged, verdict per suite version; appends the
# current verdicts.csv to results/examples/claims-history.csv when it is a new suite
claims-history: $(STAMP)
	$(BIN)/python -m charrnn.report.claims_history results/examples/claims-history.csv \
		reports/examples/verdicts.csv docs/claims-history.md
	$(BIN)/python -m charrnn.report.claims_history results/examples/claims-history.csv \
		reports/examples/converged/verdicts.csv docs/claims-history.md --profile converged

# Every generated part of docs/: the findings, the claims history, the config-key table (from TrainConfig) and
# the per-grid claims list (from ablations/*.yaml)
docs: findings claims-history
	$(BIN)/python -m charrnn.report.config_keys docs/grids-and-config.md
	$(BIN)/python -m charrnn.report.claims_list docs/claims-and-verdicts.md

# docs/img/report-*.png: the committed example pages in headless Chromium at 1280 px (as the browser tests see them)
screenshots: $(STAMP)
	$(BIN)/python tests/report_browser.py reports/examples docs/img

# MLflow 3.x opens experiments on its GenAI views (traces) unless the sidebar's "Model training"
# switch is on; `--app-name charrnn` (charrnn.tracking.ui.create_ui_app) presets that switch in the
# browser, so http://127.0.0.1:$(PORT) opens on the runs tables. The printed addresses open each
# experiment's runs table whatever the switch says.
ui: $(STAMP)
	@CHARRNN_RESULTS_DIR=$(RESULTS_DIR) $(BIN)/python -c 'from charrnn.tracking.ui import ui_links; \
		print("runs tables (or switch the UI to Model training):", *ui_links("http://127.0.0.1:$(PORT)"), sep="\n  ")' \
		2>/dev/null || true
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(RESULTS_DIR)/mlflow.db \
		--default-artifact-root $(RESULTS_DIR)/mlartifacts --host 127.0.0.1 --port $(PORT) --app-name charrnn

clean:
	find results reports -mindepth 1 -maxdepth 1 ! -name README.md ! -name examples -exec rm -rf {} +

# The GPU proof in one command (<= 10 min, no network): CUDA-only equivalence tests (TF32 off), the
# bench's gpu profile (fp32, bf16), the hidden sweep, every grid's `gpu` profile packed 8 runs per GPU,
# the reports and the kernels page, all under results/gpu/<host>-<date>/. Runs with plain python3 (no
# venv build first): without CUDA it exits 2 at once. Needs .whl/ (tools/gpu_wheels.sh) where python3
# lacks mlflow. GPU_CHECK_ARGS=--cpu-dry-run checks every stage's plumbing on CPU with tiny sizes
# (<= 3 min; CI runs it with PYTHON=.venv/bin/python).
gpu-check:
	$(PYTHON) -m charrnn.bench.gpu_check $(GPU_CHECK_ARGS)

# A tracking server for many machines (docs/scaling-out.md): the sqlite store in results/ (or
# CHARRNN_RESULTS_DIR) as backend, artifacts proxied into results/mlartifacts. On 127.0.0.1 only;
# point clients at it with MLFLOW_TRACKING_URI=http://127.0.0.1:$(PORT).
SERVER_DIR := $(abspath $(RESULTS_DIR))
server: $(STAMP)
	mkdir -p $(SERVER_DIR)/mlartifacts
	$(BIN)/mlflow server --backend-store-uri sqlite:///$(SERVER_DIR)/mlflow.db \
		--artifacts-destination $(SERVER_DIR)/mlartifacts --serve-artifacts \
		--host 127.0.0.1 --port $(PORT) --workers $(SERVER_WORKERS) --app-name charrnn
