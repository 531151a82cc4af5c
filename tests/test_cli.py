"""The command line as a user meets it: exit codes, stdout vs stderr, files written."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from conftest import SAMPLE, write_csv
from segcli.cli import app
from segcli.config import default_config_text, load_config
from segcli.io import read_assignments
from segcli.pipeline import OUTPUT_COLUMNS

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


COMMANDS = [["segment"], ["rfm"], ["pareto"], ["summary"], ["validate"], ["config", "init"], ["config", "show"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_has_help_with_an_example(cmd: list[str]) -> None:
    result = run(*cmd, "--help")
    assert result.exit_code == 0
    assert "Example: segcli" in result.stdout


def test_segment_writes_parquet_with_spec_columns_sorted_and_summary_on_stdout(tmp_path: Path, small_csv: Path) -> None:
    out = tmp_path / "a.parquet"
    result = run("segment", str(small_csv), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert "zhixin" in result.stdout and "yuxin" in result.stdout
    df, meta = read_assignments(str(out))
    assert tuple(df.columns) == OUTPUT_COLUMNS
    assert df["customer_id"].to_list() == sorted(df["customer_id"].to_list())
    assert meta["schema_version"] == 2 and meta["as_of"] == "2025-01-26"
    assert meta["config_hash"] == load_config(None).hash
    assert meta["inputs"][0]["rows"] == 6
    schema = pl.read_parquet_schema(out)
    assert schema["first_purchase"] == pl.Date and schema["as_of"] == pl.Date
    assert schema["frequency"] == pl.Int64 and schema["monetary"] == pl.Float64


def test_segment_without_output_is_a_preview_with_a_hint(small_csv: Path) -> None:
    result = run("segment", str(small_csv))
    assert result.exit_code == 0
    assert "preview only" in result.stderr
    assert "zhixin" in result.stdout


def test_assignments_to_stdout_move_the_summary_to_stderr(small_csv: Path) -> None:
    result = run("segment", str(small_csv), "-o", "-")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split(",") == list(OUTPUT_COLUMNS)
    assert len(lines) == 1 + 5
    assert "yuxin" in result.stderr and "cust_share" in result.stderr


def test_two_documents_on_stdout_is_a_usage_error(small_csv: Path) -> None:
    result = run("segment", str(small_csv), "-o", "-", "--json")
    assert result.exit_code == 2
    assert result.stderr.startswith("segcli: error:")


def test_json_summary_is_one_document(small_csv: Path) -> None:
    result = run("segment", str(small_csv), "--json")
    doc = json.loads(result.stdout)
    assert doc["customers"] == 5
    assert {t["tier"] for t in doc["tiers"]} == {"zhixin", "yuxin"}
    assert sum(t["customers"] for t in doc["tiers"]) == 5


def test_quiet_prints_nothing(tmp_path: Path, small_csv: Path) -> None:
    result = run("segment", str(small_csv), "-o", str(tmp_path / "a.csv"), "--quiet")
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""


def test_csv_output_has_a_meta_sidecar_and_can_be_gb18030(tmp_path: Path, small_csv: Path) -> None:
    out = tmp_path / "a.csv"
    result = run("segment", str(small_csv), "-o", str(out), "--output-encoding", "gb18030", "-q")
    assert result.exit_code == 0, result.stderr
    text = out.read_bytes().decode("gb18030")
    assert "知心" in text
    meta = json.loads((tmp_path / "a.csv.meta.json").read_text(encoding="utf-8"))
    assert meta["as_of"] == "2025-01-26"


def test_jsonl_output(tmp_path: Path, small_csv: Path) -> None:
    out = tmp_path / "a.jsonl"
    assert run("segment", str(small_csv), "-o", str(out), "-q").exit_code == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["customer_id"] for r in rows] == ["C1", "C2", "C3", "C4", "C5"]


def test_missing_input_is_exit_66(tmp_path: Path) -> None:
    result = run("segment", str(tmp_path / "nope.csv"))
    assert result.exit_code == 66
    assert result.stderr.splitlines()[0] == f"segcli: error: input file not found: {tmp_path / 'nope.csv'}"
    assert "Traceback" not in result.stderr


def test_missing_amount_column_is_a_data_error(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "x.csv", "customer_id,order_date,price_note", ["C1,2025-01-01,cheap"])
    result = run("segment", str(f))
    assert result.exit_code == 65
    assert "missing required column: amount" in result.stderr
    assert "columns in the file: customer_id, order_date, price_note" in result.stderr


def test_bad_rows_are_reported_with_file_column_count_and_lines(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "x.csv", "customer_id,order_date,amount", [
        "C1,2025-01-01,10", "C2,2025-02-30,5", "C3,2025-01-02,12.5", "C4,yesterday,1"])
    result = run("segment", str(f), "-o", str(tmp_path / "out.parquet"))
    assert result.exit_code == 65
    assert "column 'order_date': 2 of 4 rows: unparsable date" in result.stderr
    assert "line 3: order_date='2025-02-30'" in result.stderr
    assert "line 5: order_date='yesterday'" in result.stderr
    assert not (tmp_path / "out.parquet").exists()


def test_ragged_row_is_a_data_error_naming_the_line(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "x.csv", "customer_id,order_date,amount", [
        "C1,2025-01-01,10", "C2,2025-01-02,1,234.00", "C3,2025-01-03,7"])
    result = run("segment", str(f))
    assert result.exit_code == 65
    assert "ragged rows" in result.stderr
    assert "line 3: 4 fields, the header has 3" in result.stderr


def test_max_invalid_lets_bad_rows_through_to_a_rejects_file(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "x.csv", "customer_id,order_date,amount", [
        "C1,2025-01-01,10", "C2,2025-01-02,abc", "C3,2025-01-03,7"])
    out = tmp_path / "out.csv"
    result = run("segment", str(f), "-o", str(out), "--max-invalid", "1")
    assert result.exit_code == 0, result.stderr
    rejects = pl.read_csv(tmp_path / "out.csv.rejects.csv", infer_schema=False)
    assert rejects.rows() == [(str(f), "3", "C2", "2025-01-02", "abc")]
    meta = json.loads((tmp_path / "out.csv.meta.json").read_text())
    assert meta["rows"]["rows_invalid"] == 1


def test_bad_config_is_exit_78_naming_the_key(tmp_path: Path, small_csv: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[pareto]\nhead_share = 1.5\n")
    result = run("segment", str(small_csv), "-c", str(cfg))
    assert result.exit_code == 78
    assert "pareto.head_share" in result.stderr


def test_unknown_config_key_is_exit_78(tmp_path: Path, small_csv: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[tiers]\nmax_shares = 0.1\n")
    result = run("segment", str(small_csv), "-c", str(cfg))
    assert result.exit_code == 78
    assert "unknown configuration key 'tiers.max_shares'" in result.stderr


def test_segment_map_with_a_hole_is_exit_78_naming_the_cells(tmp_path: Path, small_csv: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[rfm.segments]]\nname = "top"\nr = [4, 5]\n\n[[rfm.segments]]\nname = "rest"\nr = [1, 2]\n')
    result = run("segment", str(small_csv), "-c", str(cfg))
    assert result.exit_code == 78
    assert "25 score cells match no segment: r=3 f=1" not in result.stderr  # r=3 row only
    assert "5 score cells match no segment: r=3 f=1, r=3 f=2" in result.stderr


def test_unreachable_segment_is_exit_78(tmp_path: Path, small_csv: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[rfm.segments]]\nname = "all"\n\n[[rfm.segments]]\nname = "never"\nr = [5, 5]\n')
    result = run("segment", str(small_csv), "-c", str(cfg))
    assert result.exit_code == 78
    assert "never" in result.stderr and "reaches" in result.stderr


def test_unwritable_output_is_exit_73(tmp_path: Path, small_csv: Path) -> None:
    result = run("segment", str(small_csv), "-o", str(tmp_path / "no" / "such" / "a.parquet"))
    assert result.exit_code == 73
    assert result.stderr.startswith("segcli: error: cannot write")


def test_output_equal_to_input_is_refused_and_input_untouched(tmp_path: Path, small_csv: Path) -> None:
    before = small_csv.read_bytes()
    result = run("segment", str(small_csv), "-o", str(small_csv))
    assert result.exit_code == 2
    assert "also an input" in result.stderr
    assert small_csv.read_bytes() == before


def test_failed_run_leaves_the_previous_output_intact(tmp_path: Path, small_csv: Path) -> None:
    out = tmp_path / "a.parquet"
    assert run("segment", str(small_csv), "-o", str(out), "-q").exit_code == 0
    before = out.read_bytes()
    bad = write_csv(tmp_path / "bad.csv", "customer_id,order_date,amount", ["C1,notadate,1"])
    assert run("segment", str(bad), "-o", str(out)).exit_code == 65
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_rows_after_as_of_are_dropped_with_a_warning_and_strict_fails(tmp_path: Path, small_csv: Path) -> None:
    result = run("segment", str(small_csv), "--as-of", "2025-01-20", "--json")
    assert result.exit_code == 0
    assert "2 rows dated after the as-of date 2025-01-20 dropped" in result.stderr
    assert json.loads(result.stdout)["rows"]["rows_after_as_of"] == 2
    strict = run("segment", str(small_csv), "--as-of", "2025-01-20", "--strict", "-o", str(tmp_path / "s.parquet"))
    assert strict.exit_code == 65
    assert not (tmp_path / "s.parquet").exists()


def test_bad_as_of_flag_is_a_usage_error(small_csv: Path) -> None:
    result = run("segment", str(small_csv), "--as-of", "31/01/2025")
    assert result.exit_code == 2
    assert "--as-of" in result.stderr


def test_several_currencies_is_a_data_error(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "x.csv", "customer_id,order_date,amount,currency",
                  ["C1,2025-01-01,10,CNY", "C2,2025-01-02,5,USD"])
    result = run("validate", str(f))
    assert result.exit_code == 65
    assert "more than one currency" in result.stderr and "CNY, USD" in result.stderr


@pytest.mark.parametrize(("spellings", "configured"), [
    (["CNY", " cny", "Cny "], None),  # several spellings of one code: one currency
    (["usd", "usd"], "USD"),  # one spelling, normalised before it is compared
    (["CNY", " cny", ""], "cny"),  # an empty currency is no currency
])
def test_spellings_of_one_currency_are_one_currency(tmp_path: Path, spellings: list[str],
                                                   configured: str | None) -> None:
    f = write_csv(tmp_path / "x.csv", "customer_id,order_date,amount,currency",
                  [f"C{i},2025-01-0{i + 1},10,{s}" for i, s in enumerate(spellings)])
    args = ["validate", str(f)]
    if configured:
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[input]\ncurrency = "{configured}"\n')
        args += ["-c", str(cfg)]
    result = run(*args)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(("spellings", "configured", "message"), [
    (["cny", " CNY ", "usd"], None, "more than one currency in one run: CNY, USD"),
    (["eur", "eur"], "USD", "currency EUR found, but input.currency is USD"),
    ([" Eur", "EUR "], "USD", "currency EUR found, but input.currency is USD"),
])
def test_currencies_are_compared_normalised(tmp_path: Path, spellings: list[str], configured: str | None,
                                           message: str) -> None:
    f = write_csv(tmp_path / "x.csv", "customer_id,order_date,amount,currency",
                  [f"C{i},2025-01-0{i + 1},10,{s}" for i, s in enumerate(spellings)])
    args = ["validate", str(f)]
    if configured:
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[input]\ncurrency = "{configured}"\n')
        args += ["-c", str(cfg)]
    result = run(*args)
    assert result.exit_code == 65
    assert message in result.stderr


def test_validate_reports_counts_and_writes_nothing(tmp_path: Path, small_csv: Path) -> None:
    result = run("validate", str(small_csv), "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["rows"]["rows_read"] == 6 and doc["rows"]["rows_returns"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tx.csv"]


def test_chinese_headers_are_recognised_without_config(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "zh.csv", "订单号,客户编号,交易日期,实付金额",
                  ["A1,1001,2025-01-01,100", "A2,1002.0,2025-01-03,50"])
    out = tmp_path / "o.csv"
    result = run("rfm", str(f), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert pl.read_csv(out, infer_schema=False)["customer_id"].to_list() == ["1001", "1002"]


def test_configured_column_names_are_used(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "x.csv", "who,when,how_much", ["A,2025-01-01,1", "B,2025-01-02,2"])
    cfg = tmp_path / "c.toml"
    cfg.write_text('[input.columns]\ncustomer_id = "who"\ndate = "when"\namount = "how_much"\n')
    result = run("rfm", str(f), "-c", str(cfg), "-o", str(tmp_path / "o.parquet"))
    assert result.exit_code == 0, result.stderr
    assert pl.read_parquet(tmp_path / "o.parquet")["monetary"].to_list() == [1.0, 2.0]


def test_parquet_input_and_several_inputs(tmp_path: Path, small_csv: Path) -> None:
    pq = tmp_path / "more.parquet"
    pl.DataFrame({"customer_id": ["C9"], "order_date": [dt.date(2025, 1, 2)], "amount": [42.5]}).write_parquet(pq)
    out = tmp_path / "o.parquet"
    result = run("rfm", str(small_csv), str(pq), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    df = pl.read_parquet(out)
    assert df.height == 6 and df.filter(pl.col("customer_id") == "C9")["monetary"].item() == 42.5


def test_stdin_input(small_csv: Path) -> None:
    result = runner.invoke(app, ["pareto", "-", "--json"], input=small_csv.read_text())
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["customers"] == 5


def test_summary_by_every_grouping(tmp_path: Path) -> None:
    out = tmp_path / "a.parquet"
    assert run("segment", str(SAMPLE), "-o", str(out), "-q").exit_code == 0
    for by in ("tier", "vip_group", "rfm_segment", "cluster"):
        result = run("summary", str(out), "--by", by, "--format", "csv")
        assert result.exit_code == 0, result.stderr
        table = pl.read_csv(result.stdout.encode())
        assert table.columns[0] == by
        expected = pl.read_parquet(out).filter(pl.col("vip_group").is_not_null() if by == "vip_group" else pl.lit(True))
        assert table["customers"].sum() == expected.height


def test_summary_json_equals_library_call(tmp_path: Path) -> None:
    from segcli.report import summarize, to_records

    out = tmp_path / "a.parquet"
    assert run("segment", str(SAMPLE), "-o", str(out), "-q").exit_code == 0
    result = run("summary", str(out), "--by", "rfm_segment", "--json")
    assert json.loads(result.stdout) == to_records(summarize(pl.read_parquet(out), "rfm_segment"))


def test_summary_table_lines_up_chinese_labels(tmp_path: Path, small_csv: Path, golden) -> None:
    out = tmp_path / "a.parquet"
    assert run("segment", str(small_csv), "-o", str(out), "-q").exit_code == 0
    result = run("summary", str(out), "--format", "psql")
    assert result.exit_code == 0
    golden("summary_tier_psql.txt", result.stdout)
    from wcwidth import wcswidth

    widths = {wcswidth(line) for line in result.stdout.splitlines()}
    assert len(widths) == 1, widths


def test_segment_summary_golden(small_csv: Path, golden) -> None:
    result = run("segment", str(small_csv), "--format", "github")
    golden("segment_small_github.txt", result.stdout)


def test_pareto_table_golden(small_csv: Path, golden) -> None:
    result = run("pareto", str(small_csv))
    assert result.exit_code == 0
    golden("pareto_small.txt", result.stdout)


def test_config_init_writes_the_documented_default_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    assert run("config", "init", str(path)).exit_code == 0
    assert path.read_text(encoding="utf-8") == default_config_text()
    again = run("config", "init", str(path))
    assert again.exit_code == 73


def test_config_show_round_trips_and_reads_back_from_an_output(tmp_path: Path, small_csv: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[tiers]\ncapacity = 7\n")
    shown = run("config", "show", "-c", str(cfg))
    assert shown.exit_code == 0
    assert tomllib.loads(shown.stdout)["tiers"]["capacity"] == 7
    out = tmp_path / "a.parquet"
    assert run("segment", str(small_csv), "-c", str(cfg), "-o", str(out), "-q").exit_code == 0
    recorded = run("config", "show", "--from", str(out))
    assert recorded.exit_code == 0
    assert tomllib.loads(recorded.stdout) == tomllib.loads(shown.stdout)


def test_ready_configs_all_load() -> None:
    from conftest import ROOT

    configs = sorted((ROOT / "configs").glob("*.toml"))
    assert len(configs) >= 2
    for path in configs:
        load_config(path)


def test_internal_error_is_one_line_without_traceback(monkeypatch: pytest.MonkeyPatch, small_csv: Path) -> None:
    import segcli.api as api

    def boom(*_a, **_k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(api, "segment", boom)
    result = run("segment", str(small_csv))
    assert result.exit_code == 1
    assert result.stderr.startswith("segcli: internal error: RuntimeError: kaboom")
    assert "Traceback" not in result.stderr
    debug = run("segment", str(small_csv), "--debug")
    assert "Traceback" in debug.stderr


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".html", b"<!DOCTYPE html>")])
def test_pareto_plot_files(tmp_path: Path, small_csv: Path, suffix: str, magic: bytes) -> None:
    path = tmp_path / f"p{suffix}"
    result = run("pareto", str(small_csv), "--plot", str(path))
    assert result.exit_code == 0, result.stderr
    assert path.read_bytes().startswith(magic)
    if suffix != ".png":
        first = path.read_bytes()
        assert run("pareto", str(small_csv), "--plot", str(path)).exit_code == 0
        assert path.read_bytes() == first  # same data, same chart


def test_pareto_plot_with_unknown_format_is_a_usage_error(tmp_path: Path, small_csv: Path) -> None:
    result = run("pareto", str(small_csv), "--plot", str(tmp_path / "p.pdf"))
    assert result.exit_code == 2
    assert not (tmp_path / "p.pdf").exists()


def test_a_rejects_file_from_an_earlier_run_is_removed(tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "x.csv", "customer_id,order_date,amount", ["C1,2025-01-01,10", "C2,2025-01-02,abc"])
    out = tmp_path / "out.csv"
    assert run("segment", str(bad), "-o", str(out), "--max-invalid", "1", "-q").exit_code == 0
    assert (tmp_path / "out.csv.rejects.csv").exists()
    good = write_csv(tmp_path / "y.csv", "customer_id,order_date,amount", ["C1,2025-01-01,10"])
    assert run("segment", str(good), "-o", str(out), "-q").exit_code == 0
    assert not (tmp_path / "out.csv.rejects.csv").exists()
