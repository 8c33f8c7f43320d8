# Two commands on a fresh machine:  `make run`  and  `make test`.
# Each does all of its own installing (Debian packages with apt-get, Python into .venv).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck unit integration bench install system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

run: install
	$(BIN)/falcon up

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

integration: install system-deps
	$(BIN)/pytest tests/integration tests/e2e

# Two phases: the tests that wait on processes run 4 at a time (one module per xdist worker, so
# a module's servers start once); the `serial` ones (e2e, slow, timing-sensitive) then run alone.
# Exit code 5 (no test selected) is not a failure of a phase.
PYTEST_PARALLEL ?= -n 4 --dist loadscope

test: install system-deps lint typecheck
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "not serial" --durations=15 || [ $$? -eq 5 ]
	$(BIN)/pytest -m serial --durations=15 || [ $$? -eq 5 ]

bench: install system-deps
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .falcon .pytest_cache .mypy_cache .ruff_cache
