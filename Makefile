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

# Everything, in one pytest session of SUITE_WORKERS pytest-xdist workers with --dist loadgroup:
# each live stack's tests (API, worker and browser processes) are one group, which one worker
# runs; the groups go out first, largest first, and the in-process tests fill the time the
# live tests spend waiting on their processes (docs/testing.md, "Timing"). At most 3 workers:
# tests/conftest.py has Redis dbs for 3. Each worker has databases of its own. Exit code 5
# (PYTEST_ARGS selected no test) is no failure; PYTEST_ARGS="-n 0" runs it in one process.
SUITE_WORKERS ?= 3
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(SUITE_WORKERS) --dist loadgroup $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Everything but the live stacks, the edit-test loop: TEST_WORKERS workers (auto: one per core,
# at most 3).
TEST_WORKERS ?= auto
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not live" -n $(TEST_WORKERS) --maxprocesses 3 $(PYTEST_ARGS) \
		|| [ $$? -eq 5 ]

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
