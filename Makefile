# Two commands do all the set-up: `make demo` and `make test`. Both create and reuse .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast typecheck schema sample bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(BIN)/segcli segment sample_data/transactions.csv -c configs/default.toml -o out/assignments.parquet
	$(BIN)/segcli summary out/assignments.parquet --by vip_group

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

typecheck: $(STAMP)
	$(BIN)/python -m mypy --version >/dev/null 2>&1 || $(BIN)/pip install --quiet 'mypy>=1.10'
	$(BIN)/python -m mypy segcli --ignore-missing-imports

# The JSON Schema of a config file that editors use (segcli/config.schema.json), regenerated from segcli/config.py
schema: $(STAMP)
	$(BIN)/segcli config schema -o segcli/config.schema.json

sample: $(STAMP)
	$(BIN)/python sample_data/generate.py --out sample_data/transactions.csv

clean:
	rm -rf $(VENV) out .pytest_cache
