"""Reading what users have (issue 9): title rows above a CSV header, pipes, old Mac line
ends, separators, whitespace-aligned text, loose header matching, hive folders, lock files,
trailing total rows, rows repeated across inputs and inputs given twice.

Every case writes a real file; numbers are checked against pandas or by hand.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

from segcli.cli import app
from segcli.config import load_config
from segcli.loading import load_transactions

runner = CliRunner()
HEADER = "customer_id,order_date,amount,order_id\n"
ROWS = "C1,2024-03-05,100.00,O1\nC2,2024-03-06,50.50,O2\nC1,2024-03-07,20.00,O3\n"


def run(*args: str, stdin: bytes | None = None):
    return runner.invoke(app, list(args), input=stdin)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def load(*inputs: Path | str, **overrides: object):
    return load_transactions([str(i) for i in inputs], load_config(None, dict(overrides)), count_identical=True)


def rows_of(*inputs: Path | str, **overrides: object) -> pl.DataFrame:
    return load(*inputs, **overrides).tx.sort("source", "line").collect()


def kinds(result) -> list[str]:
    return [w["kind"] for w in json.loads(result.stdout)["warnings"]]


# ----------------------------------------------------------------------------- title rows (item 9)

EXCEL_CSV = ("销售明细导出,,,\n"
             "导出时间：2024-03-31,,,\n"
             "客户编号,交易日期,实付金额,订单号\n"
             "张三,2024-03-05,1234.50,D1\n"
             "李四,2024-03-06,88.00,D2\n")


def test_csv_header_row_skips_title_rows_of_a_gbk_excel_export(tmp_path: Path) -> None:
    f = write(tmp_path / "导出.csv", EXCEL_CSV, "gbk")
    df = rows_of(f, **{"input.header_row": 3})
    assert df["customer_id"].to_list() == ["张三", "李四"]
    assert df["amount_minor"].to_list() == [12_345_000, 880_000]
    out = tmp_path / "o.csv"
    result = run("rfm", str(f), "--header-row", "3", "-o", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    assert sorted(pl.read_csv(out)["customer_id"].to_list()) == ["张三", "李四"]


def test_csv_title_rows_without_header_row_say_what_to_do(tmp_path: Path) -> None:
    f = write(tmp_path / "导出.csv", EXCEL_CSV, "gbk")
    result = run("validate", str(f))
    assert result.exit_code == 65
    assert "_duplicated_" not in result.stderr
    assert "--header-row N" in result.stderr


def test_csv_rows_below_title_rows_are_reported_by_their_real_line(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", "report\n\n" + HEADER + "C1,2024-03-05,1,O1\nC2,2024-03-06,lots,O2\n")
    result = run("validate", str(f), "--header-row", "3")
    assert result.exit_code == 65
    assert "line 5: amount='lots'" in result.stderr


# ----------------------------------------------------------------------------- item 12


def test_iso_timestamps_with_z_are_utc(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", "customer_id,order_date,amount\nC1,2025-03-05T12:00:00Z,1\n"
                                   "C2,2025-03-05T20:30:00.250Z,1\nC3,2025-03-05T12:00:00+08:00,1\n")
    assert rows_of(f)["ts"].to_list() == [dt.datetime(2025, 3, 5, 20), dt.datetime(2025, 3, 6, 4, 30, 0, 250_000),
                                          dt.datetime(2025, 3, 5, 12)]  # Asia/Shanghai, the default zone


def test_a_named_pipe_is_read_not_taken_for_an_empty_file(tmp_path: Path) -> None:
    fifo = tmp_path / "export.csv"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("w") as fh:
            fh.write(HEADER + ROWS)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    result = run("validate", str(fifo), "--json")
    if writer.is_alive():  # the pipe was never opened: unblock the writer
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    writer.join(timeout=10)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["rows"]["rows_read"] == 3


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash for <(...)")
def test_process_substitution_of_a_compressed_export_is_read(tmp_path: Path) -> None:
    import gzip

    gz = tmp_path / "export.csv.gz"
    gz.write_bytes(gzip.compress((HEADER + ROWS).encode()))
    cmd = f'"{sys.executable}" -m segcli validate <(zcat "{gz}") --json'
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"]["rows_read"] == 3


def test_old_mac_line_ends_are_read(tmp_path: Path) -> None:
    f = tmp_path / "mac.csv"
    f.write_bytes((HEADER + ROWS + "C3,2024-03-08,oops,O4\n").replace("\n", "\r").encode())
    df = rows_of(f, **{"analysis.max_invalid": 1})
    assert df["customer_id"].to_list() == ["C1", "C2", "C1"]
    assert df["amount_minor"].to_list() == [1_000_000, 505_000, 200_000]
    result = run("validate", str(f))
    assert result.exit_code == 65
    assert "line 5: amount='oops'" in result.stderr  # line numbers count the CRs


def test_repeated_header_names_are_an_error_naming_them_and_their_columns(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", "customer_id,order_date,amount,amount,note,,\nC1,2024-03-05,1,2,x,,\n")
    result = run("validate", str(f))
    assert result.exit_code == 65
    assert result.stderr.splitlines()[0] == (f"segcli: error: {f}: the header names a column more than once: "
                                             "'amount' (columns 3, 4)")


def test_repeated_header_names_in_a_workbook_are_an_error(tmp_path: Path) -> None:
    xlsxwriter = pytest.importorskip("xlsxwriter")
    book = tmp_path / "book.xlsx"
    wb = xlsxwriter.Workbook(str(book))
    ws = wb.add_worksheet()
    ws.write_row(0, 0, ["customer_id", "order_date", "amount", "amount"])
    ws.write_row(1, 0, ["C1", "2024-03-05", 1, 2])
    wb.close()
    result = run("validate", str(book))
    assert result.exit_code == 65
    assert "'amount' (columns 3, 4)" in result.stderr


def test_float_amounts_are_read_by_their_shortest_decimal_form(tmp_path: Path) -> None:
    f = tmp_path / "tx.parquet"
    pl.DataFrame({"customer_id": ["C1", "C2", "C3"], "order_date": ["2024-03-05"] * 3,
                  "amount": pl.Series([12.34, 123456.79, -0.1], dtype=pl.Float32)}).write_parquet(f)
    tx = load(f)
    assert tx.tx.sort("line").collect()["amount_minor"].to_list() == [123_400, 1_234_567_900, -1_000]
    assert tx.counts["amounts_rounded"] == 0 and not [w for w in tx.warnings if w.kind == "rounded"]
    g = tmp_path / "f64.parquet"
    pl.DataFrame({"customer_id": ["C1", "C2"], "order_date": ["2024-03-05"] * 2,
                  "amount": [0.1 + 0.2, 2.675]}).write_parquet(g)
    tx = load(g, **{"input.amount_scale": 2})
    # 0.30000000000000004 has more places than 2: rounded (and said); 2.675 by its repr: 2.68
    assert tx.tx.sort("line").collect()["amount_minor"].to_list() == [30, 268]
    assert tx.counts["amounts_rounded"] == 2


@pytest.mark.parametrize("kind", ["csv", "parquet-int", "parquet-float"])
def test_an_amount_too_large_for_amount_scale_names_the_value_and_a_lower_scale(tmp_path: Path, kind: str) -> None:
    big = 3_000_000_000_000_000  # 3e15: at amount_scale 4, 3e19 minor units do not fit in 64 bits
    if kind == "csv":
        f = write(tmp_path / "tx.csv", f"customer_id,order_date,amount\nC1,2024-03-05,1\nC2,2024-03-05,{big}\n")
    else:
        f = tmp_path / "tx.parquet"
        values = [1, big] if kind == "parquet-int" else [1.0, float(big)]
        pl.DataFrame({"customer_id": ["C1", "C2"], "order_date": ["2024-03-05"] * 2, "amount": values}).write_parquet(f)
    result = run("validate", str(f), "--max-invalid", "5")  # not a bad row that --max-invalid lets through
    assert result.exit_code == 65, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"segcli: error: {f}: 1 amount is too large for amount_scale = 4"
    assert "unparsable" not in result.stderr
    assert any(line.strip().startswith(f"{'line 3' if kind == 'csv' else 'row 2'}: amount='3") for line in lines)
    assert any("[input] amount_scale = 3" in line for line in lines)  # 3e15 x 10^3 fits


# ----------------------------------------------------------------------------- folders (item 16)


def test_lock_and_hidden_files_in_a_folder_are_skipped_and_named(tmp_path: Path) -> None:
    d = tmp_path / "exports"
    d.mkdir()
    write(d / "a.csv", HEADER + ROWS)
    (d / "~$book.xlsx").write_bytes(b"\x00locked by someone")
    (d / ".~lock.a.csv#").write_text("someone,host,2024")
    (d / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    result = run("validate", str(d), "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [s["path"] for s in report["inputs"]] == [str(d / "a.csv")]
    [skip] = [w["text"] for w in report["warnings"] if w["kind"] == "skipped_files"]
    assert "~$book.xlsx" in skip and ".~lock.a.csv#" in skip and ".DS_Store" not in skip
    assert run("validate", str(d), "--strict", "--allow", "skipped_files").exit_code == 0


def test_a_row_repeated_across_two_files_is_counted_and_dropped_with_dedupe(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", HEADER + "C1,2024-03-05,100.00,O1\nC2,2024-03-06,50.50,O2\nC5,2024-03-06,3,O5\n")
    b = write(tmp_path / "b.csv", HEADER + "C2,2024-03-06,50.50,O2\nC3,2024-03-07,9.00,O3\nC4,2024-03-07,1,O4\n")
    tx = load(a, b)
    assert tx.counts["rows_identical"] == 1
    assert [w.kind for w in tx.warnings] == ["identical_rows"]  # 1 of 3 rows shared: no overlap warning
    assert tx.tx.collect().height == 6
    kept = load(a, b, **{"input.dedupe": True})
    assert kept.counts["rows_identical"] == 1 and not kept.warnings
    df = kept.tx.sort("source", "line").collect()
    assert df.select("source", "customer_id").rows() == [(0, "C1"), (0, "C2"), (0, "C5"), (1, "C3"), (1, "C4")]


def test_identity_is_over_the_data_columns_whatever_their_order(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", HEADER + "C1,2024-03-05,100.00,O1\n")
    b = write(tmp_path / "b.csv", "order_id,customer_id,amount,order_date\nO1,C1,100.00,2024-03-05\n"
                                  "O9,C1,100.00,2024-03-05\n")
    assert load(a, b).counts["rows_identical"] == 1


# ----------------------------------------------------------------------------- overlapping inputs


def test_the_same_export_given_twice_warns_and_fails_under_strict(tmp_path: Path) -> None:
    f = write(tmp_path / "export.csv", HEADER + ROWS)
    out = tmp_path / "o.parquet"
    result = run("segment", str(f), str(f), "-o", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    assert "overlapping_inputs" in result.stderr and f"{f} is the same file as {f}" in result.stderr
    record = json.loads(pl.read_parquet_metadata(out)["segcli"])
    assert "overlapping_inputs" in [w["kind"] for w in record["warnings"]]
    strict = run("segment", str(f), str(f), "-o", str(tmp_path / "s.parquet"), "--strict", "--allow", "identical_rows")
    assert strict.exit_code == 65
    assert "[overlapping_inputs]" in strict.stderr and not (tmp_path / "s.parquet").exists()


def test_a_copy_of_an_export_under_another_name_is_the_same_file(tmp_path: Path) -> None:
    f = write(tmp_path / "export.csv", HEADER + ROWS)
    g = tmp_path / "export (1).csv"
    shutil.copy(f, g)
    [warning] = [w for w in load(f, g).warnings if w.kind == "overlapping_inputs"]
    assert warning.text.startswith(f"{g} is the same file as {f} (same content)")


def test_inputs_sharing_most_rows_warn_with_the_count_and_a_few_shared_rows_do_not(tmp_path: Path) -> None:
    months = [f"C{i},2024-03-{1 + i % 28:02d},{i}.00,O{i}\n" for i in range(40)]
    march = write(tmp_path / "march.csv", HEADER + "".join(months[:30]))
    pulled = write(tmp_path / "march-again.csv", HEADER + "".join(months[10:40]))  # 20 of its 30 rows shared
    [warning] = [w for w in load(march, pulled).warnings if w.kind == "overlapping_inputs"]
    assert f"{march} and {pulled} share 20 identical rows (67% of" in warning.text
    april = write(tmp_path / "april.csv", HEADER + "".join(months[:2]) + "C99,2024-04-01,1,O99\nC98,2024-04-02,1,O98\n"
                  "C97,2024-04-02,1,O97\n")  # 2 of 5 shared: 40%
    assert not [w for w in load(march, april).warnings if w.kind == "overlapping_inputs"]


# ----------------------------------------------------------------------------- separators and layouts

CDNOW_LIKE = ("customer_id  date number_of_cds  dollar_value\n"
              "   00001 19970101  1  11.77\n"
              "   00002 19970112  1  12.00\n"
              "   00002 19970112  5  77.00\n"
              "   00003 19970102  2  20.76\n"
              "   00003 19970330  2  20.76\n")


def test_whitespace_aligned_text_like_the_raw_cdnow_file_is_detected_and_read(tmp_path: Path) -> None:
    f = write(tmp_path / "CDNOW_master.txt", CDNOW_LIKE)
    df = rows_of(f)
    assert df["customer_id"].to_list() == ["00001", "00002", "00002", "00003", "00003"]
    assert df["amount_minor"].to_list() == [117_700, 120_000, 770_000, 207_600, 207_600]
    assert df["ts"].dt.date().to_list()[0] == dt.date(1997, 1, 1)
    assert rows_of(f, **{"input.separator": "whitespace"})["amount_minor"].sum() == 1_422_900


def test_whitespace_aligned_rows_with_a_missing_value_are_ragged_and_say_why(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.txt", "customer_id  order_date  amount\n  C1  20240305  1.00\n  C2  20240306\n")
    result = run("validate", str(f), "--separator", "whitespace")
    assert result.exit_code == 65
    assert "line 3: 2 fields, the header has 3" in result.stderr
    assert "columns aligned with spaces" in result.stderr


def test_cdnow_like_file_read_with_comma_says_the_header_is_one_field(tmp_path: Path) -> None:
    f = write(tmp_path / "CDNOW_master.txt", CDNOW_LIKE)
    result = run("validate", str(f), "--separator", ",")
    assert result.exit_code == 65
    assert "the header is one field holding whitespace separators" in result.stderr.splitlines()[0]
    assert "--separator whitespace" in result.stderr
    assert "missing required" not in result.stderr


def test_a_semicolon_header_read_with_comma_suggests_the_separator(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", (HEADER + ROWS).replace(",", ";"))
    result = run("validate", str(f), "--separator", ",")
    assert result.exit_code == 65
    assert result.stderr.splitlines()[0] == (f"segcli: error: {f}: the header is one field holding ';' separators: "
                                             "'customer_id;order_date;amount;order_id'")
    assert "pass --separator ';'" in result.stderr
    assert run("validate", str(f), "--separator", ";").exit_code == 0


@pytest.mark.parametrize(("sep", "flag"), [("|", None), ("|", "|"), ("\t", "tab"), (";", ";")])
def test_separators_detected_or_given(tmp_path: Path, sep: str, flag: str | None) -> None:
    f = write(tmp_path / "tx.txt", (HEADER + ROWS).replace(",", sep))
    out = tmp_path / "o.csv"
    result = run("rfm", str(f), *(["--separator", flag] if flag else []), "-o", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    assert pl.read_csv(out).sort("customer_id")["monetary"].to_list() == [120.0, 50.5]


def test_column_option_maps_headers_without_a_config_file(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", "buyer,when,paid,Order Ref\nC1,2024-03-05,10,A\nC1,2024-03-05,5,B\n")
    out = tmp_path / "o.csv"
    result = run("rfm", str(f), "--column", "customer_id=buyer", "--column", "date=when", "--column", "amount=paid",
                 "--column", "order_id=Order Ref", "-o", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    assert pl.read_csv(out).select("customer_id", "frequency", "monetary").rows() == [("C1", 2, 15.0)]
    meta = json.loads((tmp_path / "o.csv.meta.json").read_text())
    assert meta["inputs"][0]["columns"]["order_id"] == "Order Ref"


def test_a_hive_partitioned_parquet_folder_is_read_recursively(tmp_path: Path) -> None:
    root = tmp_path / "exports"
    parts = {("2025", "10"): ["C1", "C2"], ("2025", "11"): ["C1", "C3"], ("2024", "12"): ["C4"]}
    for (year, month), ids in parts.items():
        folder = root / f"year={year}" / f"month={month}"
        folder.mkdir(parents=True)
        pl.DataFrame({"customer_id": ids, "order_date": [f"{year}-{month}-05"] * len(ids),
                      "amount": [10.0] * len(ids)}).write_parquet(folder / "part-0.parquet")
    tx = load(root)
    assert len(tx.sources) == 3
    assert sorted(tx.tx.collect()["customer_id"].to_list()) == ["C1", "C1", "C2", "C3", "C4"]


# ----------------------------------------------------------------------------- header matching


def _superstore(path: Path, order_header: str = "Order ID") -> Path:
    """Superstore's layout: one row per product line; a customer may place two orders a day."""
    rows = [
        ("1", "CA-2016-152156", "11/8/2016", "CG-12520", "Claire Gute", "261.96"),
        ("2", "CA-2016-152156", "11/8/2016", "CG-12520", "Claire Gute", "731.94"),
        ("3", "CA-2016-138688", "11/8/2016", "CG-12520", "Claire Gute", "14.62"),  # a 2nd order the same day
        ("4", "US-2015-108966", "10/11/2015", "SO-20335", "Sean O'Donnell", "957.5775"),
        ("5", "US-2015-108966", "10/11/2015", "SO-20335", "Sean O'Donnell", "22.368"),
        ("6", "CA-2014-115812", "6/9/2014", "BH-11710", "Brosina Hoffman", "48.86"),
        ("7", "CA-2014-115813", "6/9/2014", "BH-11710", "Brosina Hoffman", "7.28"),
        ("8", "CA-2014-115814", "6/9/2014", "BH-11710", "Brosina Hoffman", "-7.28"),  # its own refund order
    ]
    header = f"Row ID,{order_header},Order Date,Ship Mode,Customer ID,Customer Name,Sales\n"
    body = "".join(f'{r},{o},{d},Second Class,{c},"{n}",{s}\n' for r, o, d, c, n, s in rows)
    return write(path, header + body)


def _purchases_by_pandas(path: Path, order_col: str) -> dict[str, int]:
    """Purchases per customer (SPEC §3): orders whose net amount is positive."""
    df = pd.read_csv(path, dtype=str)
    df["Sales"] = df["Sales"].astype(float)
    net = df.groupby(["Customer ID", order_col])["Sales"].sum()
    return {k: int(v) for k, v in (net > 0).groupby(level=0).sum().items()}


def test_superstore_headers_are_recognised_and_its_order_id_used(tmp_path: Path) -> None:
    f = _superstore(tmp_path / "superstore.csv")
    out = tmp_path / "o.csv"
    fmt = tmp_path / "c.toml"
    fmt.write_text('[input]\ndate_formats = ["%m/%d/%Y"]\n')
    result = run("rfm", str(f), "-c", str(fmt), "-o", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    got = dict(pl.read_csv(out).select("customer_id", "frequency").rows())
    assert got == _purchases_by_pandas(f, "Order ID") == {"BH-11710": 2, "CG-12520": 2, "SO-20335": 1}
    columns = json.loads((tmp_path / "o.csv.meta.json").read_text())["inputs"][0]["columns"]
    assert columns == {"customer_id": "Customer ID", "date": "Order Date", "amount": "Sales", "order_id": "Order ID"}


def test_an_unrecognised_order_id_header_is_named_in_a_hint(tmp_path: Path) -> None:
    f = _superstore(tmp_path / "superstore.csv", order_header="Order Ref")
    fmt = tmp_path / "c.toml"
    fmt.write_text('[input]\ndate_formats = ["%m/%d/%Y"]\n')
    out = tmp_path / "o.csv"
    result = run("rfm", str(f), "-c", str(fmt), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert ("[unmapped_column] " f"{f}: 'Order Ref' looks like an order id: map it with --column order_id='Order Ref'"
            in result.stderr)
    # without the order id, Claire's two orders of one day are one purchase
    assert dict(pl.read_csv(out).select("customer_id", "frequency").rows())["CG-12520"] == 1
    result = run("rfm", str(f), "-c", str(fmt), "--column", "order_id=Order Ref", "-o", str(out))
    assert result.exit_code == 0 and "unmapped_column" not in result.stderr
    assert dict(pl.read_csv(out).select("customer_id", "frequency").rows()) == _purchases_by_pandas(f, "Order Ref")


@pytest.mark.parametrize("header", ["OrderNumber", "Order No", "订单编号", "order-id"])
def test_order_id_headers_match_ignoring_case_spaces_underscores_and_dashes(tmp_path: Path, header: str) -> None:
    f = write(tmp_path / "tx.csv", f"Customer-ID,ORDER DATE,Amount,{header},Currency Code\n"
                                   "C1,2024-03-05,1,A,CNY\nC1,2024-03-05,2,B,CNY\n")
    tx = load(f)
    assert tx.sources[0]["columns"] == {"customer_id": "Customer-ID", "date": "ORDER DATE", "amount": "Amount",
                                        "order_id": header, "currency": "Currency Code"}
    assert not [w for w in tx.warnings if w.kind == "unmapped_column"]


def test_an_unrecognised_currency_header_is_named_in_a_hint(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", "customer_id,order_date,amount,Txn Currency\nC1,2024-03-05,1,USD\n")
    [hint] = [w.text for w in load(f).warnings if w.kind == "unmapped_column"]
    assert "'Txn Currency' looks like a currency: map it with --column currency='Txn Currency'" in hint


# ----------------------------------------------------------------------------- total rows


@pytest.mark.parametrize("marker", ["合计", "总计", "小计", "Total", " GRAND TOTAL ", "合计："])
def test_a_trailing_total_row_is_dropped_and_counted(tmp_path: Path, marker: str) -> None:
    f = write(tmp_path / "tx.csv", HEADER + ROWS + f"{marker},,170.50,\n\n")
    result = run("validate", str(f), "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"]["rows_total"] == 1 and report["rows"]["rows_invalid"] == 0
    [text] = [w["text"] for w in report["warnings"] if w["kind"] == "total_row"]
    assert text.startswith(f"{f}: line 5 is a total row")
    assert run("validate", str(f), "--strict", "--allow", "total_row").exit_code == 0


def test_a_total_row_with_a_date_adds_nothing_to_revenue(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", HEADER + ROWS + "合计,2024-03-31,170.50,\n")
    tx = load(f)
    df = tx.tx.collect()
    assert sorted(df["customer_id"].unique().to_list()) == ["C1", "C2"]
    assert df["amount_minor"].sum() == 1_705_000 and tx.counts["rows_used"] == 3


def test_a_total_marker_that_is_not_last_stays_a_row(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", HEADER + "Total,2024-03-04,5,O0\n" + ROWS)
    tx = load(f)
    assert tx.counts["rows_total"] == 0
    assert "Total" in tx.tx.collect()["customer_id"].to_list()
    g = write(tmp_path / "g.csv", HEADER + "小计,,120.00,\n" + ROWS + "合计,,170.50,\n")
    result = run("validate", str(g))
    assert result.exit_code == 65  # the subtotal in the middle is a bad row, as before
    assert "line 2: order_date=''" in result.stderr and "line 6" not in result.stderr


def test_a_finance_workbook_total_row_is_dropped(tmp_path: Path) -> None:
    xlsxwriter = pytest.importorskip("xlsxwriter")
    book = tmp_path / "财务.xlsx"
    wb = xlsxwriter.Workbook(str(book))
    ws = wb.add_worksheet()
    ws.write_row(0, 0, ["客户编号", "交易日期", "实付金额"])
    ws.write_row(1, 0, ["张三", "2024-03-05", 100])
    ws.write_row(2, 0, ["李四", "2024-03-06", 50])
    ws.write_row(3, 0, ["合计", None, 150])
    wb.close()
    tx = load(book)
    assert tx.counts["rows_total"] == 1 and tx.counts["rows_used"] == 2
    [text] = [w.text for w in tx.warnings if w.kind == "total_row"]
    assert text.startswith(f"{book}: row 4 is a total row (customer id '合计', amount '150')")
