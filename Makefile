# Two commands do all the set-up: `make demo` and `make test`. Both create and reuse .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck schema sample bench clean report-deps spark-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(BIN)/segcli segment sample_data/transactions.csv -c configs/default.toml -o out/assignments.parquet
	$(BIN)/segcli summary out/assignments.parquet --by vip_group

test: lint
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# segcli report's extras and its browser tests' needs: Debian's Chromium and a CJK font
# (apt-get only when missing), then segcli[report,browser] into .venv. CI runs it (.ci/run).
report-deps: $(STAMP)
	@if [ ! -x /usr/bin/chromium ] || ! fc-list :lang=zh 2>/dev/null | grep -q .; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei; \
	fi
	$(BIN)/pip install --quiet -e '.[test,report,browser]'

# --engine spark's extra and its tests' needs: Java 17 (apt-get only when missing), then
# segcli[spark] into .venv. PySpark is an sdist (~3 min to build); pip keeps the built wheel
# in its cache, so a re-run installs in seconds. CI runs it (.ci/run).
spark-deps: $(STAMP)
	@if ! command -v java >/dev/null 2>&1 && [ -z "$${JAVA_HOME:-}" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	fi
	$(BIN)/pip install --quiet -e '.[test,spark]'

# ruff and mypy come with the test extra (pyproject.toml); make test runs this first
lint: $(STAMP)
	$(BIN)/ruff check segcli tests bench
	$(BIN)/python -m mypy segcli

typecheck: lint

# The JSON Schema of a config file that editors use (segcli/config.schema.json), regenerated from segcli/config.py
schema: $(STAMP)
	$(BIN)/segcli config schema -o segcli/config.schema.json

sample: $(STAMP)
	$(BIN)/python sample_data/generate.py --out sample_data/transactions.csv

clean:
	rm -rf $(VENV) out .pytest_cache
