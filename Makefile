# Remediator: every target sets up what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= examples/remediation.yml
DEBIAN_PACKAGES := prometheus prometheus-alertmanager curl jq

# The oldest kubernetes client the declared range admits (pyproject.toml, and
# SUPPORTED_CLIENTS in receiver/executors/kubernetes.py): the executor's tests run with it
# in a venv of their own as well as with the newest in the main one.
KUBE_MIN := 29.0.0
KUBE_MIN_VENV := .venv-kube-min
KUBE_MIN_STAMP := $(KUBE_MIN_VENV)/.installed-$(KUBE_MIN)
KUBE_TESTS := tests/unit/test_executors_kubernetes.py tests/integration/test_executor_kubernetes.py

.PHONY: run test test-kube-min demo bench lint system-deps browser-deps venv clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

$(KUBE_MIN_STAMP): pyproject.toml
	python3 -m venv $(KUBE_MIN_VENV)
	$(KUBE_MIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(KUBE_MIN_VENV)/bin/python -m pip install --quiet -e '.[kubernetes,postgres]' \
	  'kubernetes==$(KUBE_MIN)' "$$(grep -o 'pytest>=[0-9.]*' pyproject.toml | head -1)"
	touch $(KUBE_MIN_STAMP)

# The executor's two test files only, at the oldest client; the tests check that the
# client they run with is the one named here (REMEDIATOR_KUBERNETES_CLIENT). Its venv holds
# what they import (the kubernetes and postgres extras, pytest), not the whole test extra.
test-kube-min: $(KUBE_MIN_STAMP)
	REMEDIATOR_KUBERNETES_CLIENT=$(KUBE_MIN) $(KUBE_MIN_VENV)/bin/python -m pytest -q $(KUBE_TESTS)

# Installs Debian's Prometheus, Alertmanager, curl and jq (the README's troubleshooting
# commands, run as written by a test) and psql (loads the PostgreSQL journal fixture of
# the migration tests) when missing (needs root).
system-deps:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v jq >/dev/null || missing="$$missing jq"; \
	command -v psql >/dev/null || missing="$$missing postgresql-client"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing (run as root or install them)"; exit 1; \
	  fi; \
	fi

# Debian's Chromium for the console's browser tests (tests/browser, driven by Playwright
# by its path: no browser download), when missing (needs root). Only `make test` needs it.
browser-deps:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: chromium"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "missing Debian package: chromium (run as root or install it; the browser tests skip without it)"; \
	  fi; \
	fi

demo: venv system-deps
	$(VENV)/bin/remediator demo $(DEMO_ARGS)

run: venv
	$(VENV)/bin/remediator serve --config $(CONFIG)

lint: venv
	$(VENV)/bin/ruff check receiver tests examples bench
	$(VENV)/bin/ruff format --check receiver tests examples bench

# pytest workers, a file each at a time (module fixtures stay in one process). Most tests
# wait on real servers, sleeping commands and timers rather than compute: with two the
# suite used under half of two cores' CPU time, so three finish it sooner on two cores
# (TEST_WORKERS=2 for a machine shared with other work). Files go out in the order
# collected, not xdist's default of most tests first, which left the files of a few long
# tests (the demo's scenes, the crash tests) for the end, one worker busy and two idle.
TEST_WORKERS ?= 3
# The slowest tests and fixtures are listed after every run, so that a suite growing past
# its 20 minutes shows where from (bench/README.md, where the suite's time goes).
TEST_DURATIONS ?= 25

# The oldest client's venv and tests (test-kube-min) run beside the suite, their output
# shown after it: a minute of installing and testing that no longer delays it.
KUBE_MIN_LOG := $(KUBE_MIN_VENV).log

test: venv system-deps browser-deps lint
	@$(MAKE) --no-print-directory test-kube-min > $(KUBE_MIN_LOG) 2>&1 & kube=$$!; \
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
	  --durations=$(TEST_DURATIONS); suite=$$?; \
	wait $$kube; kube_status=$$?; \
	echo "--- test-kube-min (kubernetes $(KUBE_MIN)), exit $$kube_status:"; cat $(KUBE_MIN_LOG); \
	test $$suite = 0 && test $$kube_status = 0

# Benchmarks (not part of `make test`): ratios against a baseline measured in the same run.
# Installs Debian's wrk when missing (needs root). BENCH_ARGS="--quick" for a short run,
# "--out DIR" for where the JSON goes (default: $TMPDIR/remediator-bench). Fails (exit 1)
# when any target is missed, naming each. journal and replicas use the PostgreSQL server
# of REMEDIATOR_BENCH_POSTGRES (default the local one; replicas makes a database there).
bench: venv system-deps
	@if ! command -v wrk >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: wrk"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else \
	    echo "missing Debian package: wrk (run as root or install it)"; exit 1; \
	  fi; \
	fi
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(KUBE_MIN_VENV) .pytest_cache .ruff_cache
