# predq: `make demo` runs the whole system locally; `make test` runs every test tier.
# Both set themselves up: a virtualenv in .venv with the project and its dev extras.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check bench soak clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# make demo MODEL=owner/name (with REPLICATE_API_TOKEN set) runs the demo on the real API.
MODEL ?=
demo: $(STAMP)
	$(BIN)/predq demo $(if $(MODEL),--model $(MODEL))

test: $(STAMP)
	$(BIN)/python -m pytest

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m ops.bench

soak: $(STAMP)
	$(BIN)/python -m ops.soak --jobs 5000 --workers 3

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
