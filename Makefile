# Two commands for a new machine: `make run` (the whole job on embedded defaults) and `make test`.
# `make test` runs the whole suite twice: on the SQLite catalogue, then on PostgreSQL (a throw-away cluster the
# tests start themselves; skipped with the reason when PostgreSQL is not installed, an error in CI). The second
# pass skips, with their reason, the tests that never reach the catalogue and the browser tests of how pages
# render (tests/conftest.py).
# `make test-fast` is the inner loop while developing: lint and type check (mypy, scripts/typecheck.py), then every
# test not marked slow, browser or dataset (SQLite only). Both run the tests on one pytest-xdist worker per core
# (PYTEST_WORKERS=0: all in one process); a module's tests stay on one worker (--dist loadfile), so a module-scoped
# fixture is built once. Each worker has its own PostgreSQL cluster, temp folders and free ports.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= auto
XDIST := -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: install run test test-fast typecheck bench clean

$(BIN)/imgsearch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/imgsearch

# The whole job: ingest Caltech-101 (or the folder in DATA=...), train, print the results, then serve the app.
run: install
	$(BIN)/imgsearch train $(if $(DATA),--data $(DATA))
	$(BIN)/imgsearch app

# Both passes always run (a failure on SQLite still shows the PostgreSQL results); the target fails if either did.
# Each lists its 30 slowest tests, so a CI log shows where the suite's time goes.
test: install
	$(BIN)/ruff check .
	$(BIN)/python scripts/typecheck.py
	@status=0; \
	echo "== test suite on SQLite =="; \
	IMGSEARCH_TEST_DATABASE=sqlite $(BIN)/pytest -q $(XDIST) --durations=30 || status=1; \
	echo "== test suite on PostgreSQL =="; \
	IMGSEARCH_TEST_DATABASE=postgresql $(BIN)/pytest -q $(XDIST) --durations=30 || status=1; \
	exit $$status

test-fast: install
	$(BIN)/ruff check .
	$(BIN)/python scripts/typecheck.py
	IMGSEARCH_TEST_DATABASE=sqlite $(BIN)/pytest -q $(XDIST) -m "not slow and not browser and not dataset"

# mypy over the package (settings: [tool.mypy] in pyproject.toml); fails on any error.
typecheck: install
	$(BIN)/python scripts/typecheck.py

bench: install
	$(BIN)/python benchmarks/bench_embed.py --data $${DATA:-../shared/data/caltech101/101_ObjectCategories}

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .mypy_cache .typecheck
