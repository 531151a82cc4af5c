"""Commands, options and what they print (issue 9): rules, usage errors, --json types,
lifetimes records and periods, diff kinds and help texts."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from conftest import write_csv
from segcli.cli import app

runner = CliRunner()
H = "customer_id,order_date,amount,order_id"


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def config(tmp_path: Path, text: str, name: str = "cfg.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- tier rules (item 6)


def test_rule_operators_inside_quoted_values_are_left_as_written(tmp_path: Path) -> None:
    # "A and B" is what "A&&B" became when && was replaced everywhere in the rule text
    src = write_csv(tmp_path / "tx.csv", H, ["A&&B,2025-03-01,10.00,O1", "A and B,2025-03-01,20.00,O2",
                                             "X||Y,2025-03-01,30.00,O3", "X or Y,2025-03-01,40.00,O4",
                                             "Z,2025-03-01,50.00,O5"])
    cfg = config(tmp_path, "[tiers]\nmethod = \"rule\"\nmax_share = 1.0\n"
                           "rule = 'customer_id == \"A&&B\" || customer_id == \"X||Y\" || (monetary > 45 && frequency >= 1)'\n")
    out = tmp_path / "out.csv"
    result = run("segment", src, "-c", cfg, "-o", out, "-q")
    assert result.exit_code == 0, result.stderr
    df = pl.read_csv(out)
    assert sorted(df.filter(pl.col("tier") == "zhixin")["customer_id"]) == ["A&&B", "X||Y", "Z"]


# --------------------------------------------------------------------------- lifetimes run record (item 5)


def test_lifetimes_file_has_a_full_run_record_that_config_show_reads(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "tx.csv", H, ["A,2025-03-01,10.00,O1", "A,2025-03-05,20.00,O2",
                                             "B,2025-03-02,5.00,O3"])
    cfg = config(tmp_path, "[analysis]\nmax_staleness_days = 40\n")
    for name in ("lt.parquet", "lt.csv"):
        out = tmp_path / name
        result = run("rfm", src, "--style", "lifetimes", "--freq", "W", "-c", cfg, "-o", out, "-q")
        assert result.exit_code == 0, result.stderr
        meta = (json.loads(pl.read_parquet_metadata(out)["segcli"]) if name.endswith(".parquet")
                else json.loads((tmp_path / "lt.csv.meta.json").read_text(encoding="utf-8")))
        assert {"schema_version", "tool", "version", "as_of", "config_hash", "config", "inputs", "rows",
                "warnings", "created_at", "style", "freq"} <= set(meta), sorted(meta)
        assert (meta["tool"], meta["style"], meta["freq"], meta["as_of"]) == ("segcli", "lifetimes", "W", "2025-03-05")
        assert meta["created_at"] == "2026-01-01T00:00:00+00:00"  # SOURCE_DATE_EPOCH (conftest)
        shown = run("config", "show", "--from", out, "--json")
        assert shown.exit_code == 0, shown.stderr
        assert json.loads(shown.stdout)["analysis"]["max_staleness_days"] == 40
        assert json.loads(shown.stdout) == meta["config"]
