# Two commands for a newcomer: `make demo` and `make test`. Each builds or refreshes .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "guidebot needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

# `make demo PORT=9000`: guidebot on 9000, its simulated WeCom on 9001.
PORT ?= 8080

demo: $(STAMP)
	$(BIN)/guidebot demo --port $(PORT)

# One pytest worker per core and one more (pytest-xdist): each has its own PostgreSQL databases,
# SQLite files and port range. With one a core the cores stood idle a fifth of the time while
# workers waited on PostgreSQL, the servers they start and the browser; the extra worker fills
# those waits (on 2 cores: 283-289 s became 255 s). More than one extra only added contention.
# The few tests marked `serial` hold an answer to a sub-second bound in real time (the callback
# ack under a sign-in flood, the inbox writer's waits): they run afterwards in one process,
# with the cores to themselves, so a busy neighbour on another core cannot make them flaky.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
# The serial run collects only the files that mark a test so (tests/conftest.py refuses a serial
# test in a file this would miss): collecting all of them took half as long as their tests.
SERIAL_FILES = $(shell grep -rl --include='test_*.py' 'mark.serial' tests)

# Bytecode is cached for the tests even where the environment says not to: the suite starts
# about a hundred Python processes (the command line, servers, benchmarks), and each would
# compile guidebot from source again, as each worker would every test module it rewrites.
test: export PYTHONDONTWRITEBYTECODE :=
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not serial"
	$(BIN)/python -m pytest -m serial $(SERIAL_FILES)

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Each benchmark prints its figures and, last, the line its goal is read from: bench.welcome
# the share of welcomes inside their 20 s at WeCom's ceiling, the others a ratio= against a
# baseline from the same run.
bench: $(STAMP)
	$(BIN)/python -m bench.welcome
	$(BIN)/python -m bench.add_path
	$(BIN)/python -m bench.callbacks
	$(BIN)/python -m bench.sop
	$(BIN)/python -m bench.metrics

clean:
	rm -rf $(VENV) .pytest_cache guidebot-demo.db*
