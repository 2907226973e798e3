# Two set-up commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast lint fuzz bench bench-serving bench-prediction-log bench-uploads bench-servers bench-big-infer bench-generation bench-features bench-explain bench-dashboard bench-balancer compose-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# One stamp per extra, rebuilt when pyproject.toml changes.
$(VENV)/.installed-runtime: pyproject.toml client/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e . -e ./client
	touch $@

$(VENV)/.installed-test: pyproject.toml client/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]' -e ./client
	touch $@ $(VENV)/.installed-runtime

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $@

run: $(VENV)/.installed-runtime
	$(BIN)/backprop run

# Everything: the in-process tests at the same time as the tests marked live (API, worker and
# browser processes) in LIVE_WORKERS workers with --dist loadgroup, each stack's tests in one of
# them. The live half is the long pole: the in-process half runs beside it under `nice`, in
# TEST_WORKERS workers (auto: one per core, at most 3), on the CPU the live tests leave, its
# output kept in var/in-process-tests.log and shown when both are done (docs/testing.md,
# "Timing: both halves at once"). Every pytest worker imports every module it collects (about
# 15 s of CPU for all of tests/), so the live half collects tests/integration only (where every
# live test is) unless PYTEST_ARGS names paths. Each worker has databases of its own, the two
# sessions too (tests/conftest.py: the in-process tests' Redis db is not the stacks'). Exit code
# 5 (PYTEST_ARGS selected none of a half's tests) is no failure; PYTEST_ARGS="-n 0" runs each
# half in one process. `make test-fast`: the in-process tests alone.
TEST_WORKERS ?= auto
LIVE_WORKERS ?= 3
# Bytecode caches written whatever the environment says (git and Docker ignore __pycache__):
# under PYTHONDONTWRITEBYTECODE=1 (the image sets it, and so do the shells of the slower
# machine of docs/testing.md) every pytest worker rewrote the asserts of every test module it
# collected, about 4 s of CPU a worker collecting tests/, and every API, worker and `backprop`
# process of the live tests compiled the project's modules anew, about 0.2 s each.
test test-fast: export PYTHONDONTWRITEBYTECODE :=
IN_PROCESS_LOG := var/in-process-tests.log
in_process_tests = $(BIN)/python -m pytest -m "not live" -n $(1) --maxprocesses 3 $(PYTEST_ARGS)
LIVE_PATHS = $(if $(filter tests%,$(PYTEST_ARGS)),,tests/integration)
LIVE_TESTS = $(BIN)/python -m pytest $(LIVE_PATHS) -m live -n $(LIVE_WORKERS) --dist loadgroup \
	$(PYTEST_ARGS)
passed = { [ $(1) -eq 0 ] || [ $(1) -eq 5 ]; }
test: $(VENV)/.installed-test
	@mkdir -p var
	@echo "make test: the in-process half runs beside the live half, its output in $(IN_PROCESS_LOG)"
	@nice -n 10 $(call in_process_tests,$(TEST_WORKERS)) > $(IN_PROCESS_LOG) 2>&1 & \
	in_process=$$!; \
	trap 'kill $$in_process 2>/dev/null' INT TERM; \
	$(LIVE_TESTS); live=$$?; \
	wait $$in_process; in_process_status=$$?; \
	echo; echo "== the in-process half ($(IN_PROCESS_LOG)) =="; cat $(IN_PROCESS_LOG); \
	$(call passed,$$live) && $(call passed,$$in_process_status)

# Everything but the live stacks: the edit-test loop.
test-fast: $(VENV)/.installed-test
	$(call in_process_tests,$(TEST_WORKERS)) || [ $$? -eq 5 ]

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench.engine $(BENCH_ARGS)

# Needs wrk (apt-get install wrk); creates MLflow's own venv under var/ on first use.
bench-serving: $(VENV)/.installed-bench
	$(BIN)/python -m bench.serving $(BENCH_ARGS)

# A single-row predict with the prediction log on and off, interleaved (docs/benchmarks.md).
bench-prediction-log: $(VENV)/.installed-bench
	$(BIN)/python -m bench.prediction_log $(BENCH_ARGS)

# Time and the API process's peak memory per upload, CSV, Parquet and .npz (docs/benchmarks.md).
bench-uploads: $(VENV)/.installed-bench
	$(BIN)/python -m bench.uploads $(BENCH_ARGS)

# Issue 29: the request path's servers under wrk; the 10,000-row binary /v2 infer against a
# checkout (BENCH_ARGS="--before PATH"); the registry generation's staleness when pushed.
bench-servers: $(VENV)/.installed-bench
	$(BIN)/python -m bench.servers $(BENCH_ARGS)

bench-big-infer: $(VENV)/.installed-bench
	$(BIN)/python -m bench.big_infer $(BENCH_ARGS)

bench-generation: $(VENV)/.installed-bench
	$(BIN)/python -m bench.generation $(BENCH_ARGS)

# Issue 29's targets: a single-row predict with every production feature on against every
# feature off, interleaved, SQLite and PostgreSQL + Redis (and MLflow when var/mlflow-venv exists).
bench-features: $(VENV)/.installed-bench
	$(BIN)/python -m bench.features $(BENCH_ARGS)

# Explanations over HTTP (IG of a digits row, exact Shapley of an iris row) and against captum.
bench-explain: $(VENV)/.installed-bench
	$(BIN)/python -m bench.explanations $(BENCH_ARGS)

# API replicas behind HAProxy: requests/s through 1 to 3 replicas, and the warm-up's start-up
# time and first requests (docs/benchmarks.md, issue 27). Needs haproxy and wrk (apt-get).
bench-balancer: $(VENV)/.installed-bench
	$(BIN)/python -m bench.balancer $(BENCH_ARGS)

# What the dashboard downloads and how fast each page shows its data, in Debian's chromium.
bench-dashboard: $(VENV)/.installed-bench
	$(BIN)/python -m bench.dashboard $(BENCH_ARGS)

# schemathesis with every check against a live stack (API, worker, dispatcher), SQLite and then
# PostgreSQL + Redis, with AUTH=required; FUZZ_ARGS e.g. --backend embedded --max-examples 500.
fuzz: $(VENV)/.installed-test
	$(BIN)/python -m tests.fuzz.run $(FUZZ_ARGS)

# The Postman collection (docs/postman/) under newman, npm-installed under var/newman, against a
# live stack on SQLite with AUTH=required, then AUTH=off; POSTMAN_ARGS e.g. --auth off -- --verbose.
.PHONY: postman
postman: $(VENV)/.installed-test
	$(BIN)/python -m tests.postman.run $(POSTMAN_ARGS)

# docker-compose.yml built and run for real: health checks, a key, train, predict, two workers,
# a killed worker, a Redis restart, three API replicas behind the balancer losing no request
# while one is killed and one drained (tests/compose/run.sh, docs/deploy.md). As root on Debian:
# installs Docker from Debian if missing and starts dockerd; not part of `make test`.
compose-test: $(VENV)/.installed-runtime
	PYTHON=$(BIN)/python bash tests/compose/run.sh

clean:
	rm -rf $(VENV) var .pytest_cache
