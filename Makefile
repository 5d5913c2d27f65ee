# Two commands for a new machine: `make run` (the whole job on embedded defaults) and `make test`.
# `make test-fast` is the inner loop while developing: lint, then every test not marked slow, browser or dataset.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test test-fast bench clean

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

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/ruff check .
	$(BIN)/pytest -q -m "not slow and not browser and not dataset"

bench: install
	$(BIN)/python benchmarks/bench_embed.py --data $${DATA:-../shared/data/caltech101/101_ObjectCategories}

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
