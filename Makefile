# Two commands on a fresh machine: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= gateway.yaml

.PHONY: run test deps lint bench bench-peers clean

$(BIN)/python:
	@echo "creating $(VENV) (first run only)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# First-party plugins: separately installable distributions under plugins/.
PLUGINS := $(wildcard plugins/*/pyproject.toml)
# Tiny plugins the tests install, to exercise real entry-point discovery.
TEST_PLUGINS := tests/plugins/tiny/pyproject.toml

# What `make run` needs: the gateway with the redis extra (examples/configs use server.state:
# redis://) and its first-party plugins, nothing only tests use.
# Re-install whenever any package metadata changes.
$(VENV)/.installed: pyproject.toml $(PLUGINS) | $(BIN)/python
	@echo "installing bodhi-gateway (first run only, ~1 min)"
	$(BIN)/pip install --quiet -e '.[redis]' $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $@

# On top, for the tests (and the benchmarks): the test extra, the opt-in granian engine (its
# tests run too) and the tiny plugins.
$(VENV)/.installed-test: $(VENV)/.installed $(TEST_PLUGINS)
	@echo "installing the test dependencies (first run only)"
	$(BIN)/pip install --quiet -e '.[test,granian]' -e tests/plugins/tiny
	touch $@

# What the tests need besides Python packages, Debian's packages: redis-server (the Redis tests
# start their own on a free loopback port) and chromium (the /dashboard browser test runs it
# headless). Each installed only when missing.
deps:
	command -v redis-server >/dev/null || (apt-get update && apt-get install -y redis-server)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

run: $(VENV)/.installed
	$(BIN)/gateway serve --config $(CONFIG)

# The whole suite on every core (pytest-xdist: two workers per core, since many tests wait on
# timeouts, reloads and servers: on 2 cores, 4 workers 122 s, 3 workers 127 s), with line coverage of gateway/ checked against the
# floor in pyproject.toml; `make deps` first only when redis-server or chromium is missing. Bytecode is
# written even where the environment says not to (PYTHONDONTWRITEBYTECODE=1 on some machines):
# else every worker and every `gateway serve` the tests start compiles each module again
# (collection 17 -> 9 s of CPU per worker).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) * 2 )))
test: $(VENV)/.installed-test
	@(command -v redis-server && command -v chromium) >/dev/null || $(MAKE) --no-print-directory deps
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --cov=gateway --cov-report=

# The linters (the lint extra: ruff and mypy), on top of the gateway, with the optional
# extras (redis, semantic, granian, otel) so that mypy sees the types of the modules using them.
$(VENV)/.installed-lint: $(VENV)/.installed
	@echo "installing the linters (first run only)"
	$(BIN)/pip install --quiet -e '.[lint,redis,semantic,granian,otel]'
	touch $@

# The shipped configs validate; ruff finds nothing; mypy passes (strict where pyproject.toml says).
lint: $(VENV)/.installed-lint
	$(BIN)/gateway validate gateway.yaml examples/configs/*.yaml
	$(BIN)/ruff check gateway plugins tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/embed_batch.py

# `make bench` plus LiteLLM's proxy and Portkey's gateway, installed once under bench/.peers/.
bench-peers: $(VENV)/.installed-test
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	command -v npm >/dev/null || (apt-get update && apt-get install -y nodejs npm) \
		|| echo "bench-peers: could not install node and npm; Portkey will be left out"
	$(BIN)/python bench/run.py --peers $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .gateway .pytest_cache .coverage
