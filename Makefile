# Everything a fresh machine needs: `make test`, `make demo`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test test-fast lint demo bench schemas clean

# axe-core (npm) for the browser tests' accessibility checks, where npm is to be had.
$(STAMP): pyproject.toml tests/axe/package-lock.json
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	if command -v npm >/dev/null 2>&1; then npm ci --silent --no-audit --no-fund --prefix tests/axe; fi
	touch $(STAMP)

install: $(STAMP)

# Three processes, each taking whole test modules (their fixtures are built once a module):
# on two cores, a third overlaps the tests that wait on brokers and workers starting
# (787 tests: 5:43 here, from 6:21 with two). TEST_WORKERS=1 runs the suite in one.
TEST_WORKERS ?= 3

# The project byte-compiled before the tests: where PYTHONDONTWRITEBYTECODE is set (as on
# the machine this project is built on), each of the hundreds of command processes the
# tests start compiled its modules again (0.2 s of each `sharing-audit --help` there).
BYTECODE := $(PY) -m compileall -q pipeline agents schemas

test: $(STAMP)
	$(BYTECODE)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The unit tests and the fast integration tests: under a minute, for every change. The
# properties without a count of their own try 20 examples each here, 100 in make test.
test-fast: $(STAMP)
	$(BYTECODE)
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile --hypothesis-profile=fast

lint: $(STAMP)
	$(VENV)/bin/ruff check pipeline schemas agents tests bench
	$(VENV)/bin/ruff format --check pipeline schemas agents tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

schemas: $(STAMP)
	$(VENV)/bin/sharing-audit schemas export schemas/json

bench: $(STAMP)
	$(PY) bench/check.py
	$(PY) bench/ledger.py
	$(PY) bench/pipeline.py
	$(PY) bench/queries.py
	$(PY) bench/api.py
	$(PY) bench/transparency.py
	$(PY) bench/files.py
	$(PY) bench/witnessing.py
	$(PY) bench/receipts.py

demo: $(STAMP)
	$(VENV)/bin/sharing-audit demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache test-artifacts demo-output tests/axe/node_modules
