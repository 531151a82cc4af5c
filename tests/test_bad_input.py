"""Bad input (SPEC §6): a clear one-line error, the documented exit code, details that name
the file, the column, the counts and the first offending rows, and nothing written.

Every case writes a real file, runs ``segcli segment IN -o OUT`` and ``segcli validate IN``,
and checks that neither the output, nor its sidecars, nor a temporary file exists after it.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from segcli.cli import app

runner = CliRunner()
H = "customer_id,order_date,amount,order_id\n"


def run(*args: str):
    return runner.invoke(app, list(args))


def leftovers(folder: Path) -> list[str]:
    """Anything a failed run must not leave: outputs, sidecars, rejects, temporary files."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(("out", ".out")) or "segcli-tmp" in p.name)


@dataclass
class Case:
    name: str
    make: Callable[[Path], Path]  # writes the input into a folder, returns its path
    code: int
    first: str  # the message after "segcli: error: {path}: " (or after "segcli: error: ")
    details: list[str] = field(default_factory=list)
    named: bool = True  # the first line starts with the file's path
    exact: bool = True  # else ``first`` is how the line starts (the rest is the engine's own words)


def text(name: str, body: str | bytes, encoding: str = "utf-8") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(body if isinstance(body, bytes) else body.encode(encoding))
        return path
    return make


LATE_BAD_UTF8 = (H + "".join(f"C{i},2024-03-05,{i},O{i}\n" for i in range(5000))).encode() + b"C\xff9,2024-03-05,1,O9\n"
LATE_BAD_OFFSET = LATE_BAD_UTF8.index(b"\xff")
EARLY_BAD_UTF8 = ("customer_id,order_date,amount\n" + "".join(f"客户{i},2024-03-05,1\n" for i in range(20))).encode()
EARLY_BAD_OFFSET = EARLY_BAD_UTF8.index(b"\n", 180) + 1  # the start of a line, past a few Chinese names
EARLY_BAD_UTF8 = EARLY_BAD_UTF8[:EARLY_BAD_OFFSET] + b"\xff" + EARLY_BAD_UTF8[EARLY_BAD_OFFSET:]


def workbook(name: str, sheets: dict[str, list[list[object]]]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        xlsxwriter = pytest.importorskip("xlsxwriter")
        wb = xlsxwriter.Workbook(str(folder / name))
        for sheet, rows in sheets.items():
            ws = wb.add_worksheet(sheet)
            for r, row in enumerate(rows):
                ws.write_row(r, 0, row)
        wb.close()
        return folder / name
    return make


CASES = [
    Case("missing required column", text("x.csv", "customer_id,order_date,price_note\nC1,2024-03-05,cheap\n"), 65,
         "missing required column: amount",
         ["columns in the file: customer_id, order_date, price_note",
          "amount: name it in [input.columns] or use one of: amount, revenue"]),
    Case("missing configured column", text("x.csv", "customer_id,order_date,amount\nC1,2024-03-05,1\n"), 65,
         "column 'paid' (configured as input.columns.amount) is not in the file",
         ["columns in the file: customer_id, order_date, amount"]),
    Case("unparsable dates", text("x.csv", H + "C1,2024-03-05,10,O1\nC2,2024-02-30,5,O2\nC3,yesterday,5,O3\nC4,,5,O4\n"),
         65, "3 of 4 rows are invalid",
         ["column 'order_date': 3 of 4 rows: unparsable date", "line 3: order_date='2024-02-30'",
          "line 4: order_date='yesterday'", "line 5: order_date=''"]),
    Case("unparsable amounts", text("x.csv", H + "C1,2024-03-05,10,O1\nC2,2024-03-05,ten,O2\nC3,2024-03-05,1.2.3,O3\n"),
         65, "2 of 3 rows are invalid",
         ["column 'amount': 2 of 3 rows: unparsable amount", "line 3: amount='ten'", "line 4: amount='1.2.3'"]),
    Case("null or empty customer ids", text("x.csv", H + "C1,2024-03-05,10,O1\n,2024-03-05,5,O2\n   ,2024-03-05,5,O3\n"),
         65, "2 of 3 rows are invalid",
         ["column 'customer_id': 2 of 3 rows: null or empty customer id", "line 3: customer_id=''",
          "line 4: customer_id='   '"]),
    Case("several rules at once", text("x.csv", H + "C1,2024-13-01,x,O1\n,2024-03-05,5,O2\nC3,2024-03-05,1,O3\n"),
         65, "2 of 3 rows are invalid",
         ["column 'customer_id': 1 of 3 rows: null or empty customer id", "column 'order_date': 1 of 3 rows: "
          "unparsable date", "column 'amount': 1 of 3 rows: unparsable amount", "line 2: order_date='2024-13-01'",
          "line 2: amount='x'", "line 3: customer_id=''"]),
    Case("empty file", text("x.csv", ""), 65, "the file is empty (no header, no rows)"),
    Case("only blank lines", text("x.csv", "\n\n\n"), 65, "the file is empty (no header, no rows)"),
    Case("header-only file", text("x.csv", H), 65, "the file has a header but no rows"),
    Case("header and blank lines", text("x.csv", H + "\n\n"), 65, "the file has a header but no rows"),
    Case("header-only parquet", lambda d: (pl.DataFrame(schema={"customer_id": pl.String, "order_date": pl.Date,
                                                                "amount": pl.Float64}).write_parquet(d / "x.parquet"),
                                           d / "x.parquet")[1], 65, "no rows"),
    Case("undecodable bytes in a UTF-8 file, past the sniffed prefix", text("x.csv", LATE_BAD_UTF8), 65,
         f"bytes that are not valid UTF-8 at byte offset {LATE_BAD_OFFSET}",
         ["bytes there: b',O4999\\nC\\xff9,2024-'", "pass --encoding gb18030"]),
    Case("a damaged byte in a UTF-8 file is not taken for GB18030", text("x.csv", EARLY_BAD_UTF8), 65,
         f"bytes that are not valid UTF-8 at byte offset {EARLY_BAD_OFFSET}", ["the file is damaged there, or not UTF-8"]),
    Case("undecodable bytes in a GB18030 file",
         text("x.csv", "客户编号,交易日期,实付金额\n张三,2024-03-05,1\n".encode("gb18030") + b"\x81\x20,2024-03-05,1\n"), 65,
         "bytes that are not valid gb18030 at byte offset 45", ["save the file as UTF-8, or name its encoding"]),
    Case("ragged row with an unquoted separator", text("x.csv", H + "C1,2024-03-05,10,O1\nC2,2024-03-05,1,234.00,O2\n"),
         65, "ragged rows: 1 row has another number of fields than the header (4)",
         ["line 3: 5 fields, the header has 4: 'C2,2024-03-05,1,234.00,O2'", "quote the fields"]),
    Case("ragged row cut short (a truncated export)", text("x.csv", H + "C1,2024-03-05,10,O1\nC2,2024-03-05,12.5"), 65,
         "ragged rows: 1 row has another number of fields than the header (4)",
         ["line 3: 3 fields, the header has 4: 'C2,2024-03-05,12.5'"]),
    Case("ragged rows after a multi-line record",
         text("x.csv", H + 'C1,2024-03-05,10,"a\nb"\nC2,2024-03-05,1,2,O2\nC3,2024-03-05,1,2,O3\n'), 65,
         "ragged rows: 2 rows have another number of fields than the header (4)",
         ["line 4: 5 fields", "line 5: 5 fields"]),
    Case("a quoted field never closed (a truncated export)",
         text("x.csv", H + 'C1,2024-03-05,10,O1\nC2,2024-03-05,"1,2'), 65,
         "misplaced quotes: a quoted field is never closed (it runs to the end of the file)",
         ["line 3: a quoted field is never closed", "must be quoted whole, inner quotes doubled"]),
    Case("a quote inside an unquoted field", text("x.csv", H + 'C1,2024-03-05,10,O1\nC2,2024-03-05,5,12" screen\n'), 65,
         "misplaced quotes: a quote inside a field that does not start with one",
         ["line 3: a quote inside a field that does not start with one: 'C2,2024-03-05,5,12\" screen'"]),
    Case("text after a closing quote", text("x.csv", H + 'C1,2024-03-05,"10"0,O1\n'), 65,
         "misplaced quotes: text after the closing quote of a field", ["line 2: text after the closing quote"]),
    Case("a file cut inside a character", text("x.csv", (H + "客户1,2024-03-05,1,O1\n客").encode()[:-1]), 65,
         f"the file ends inside a multi-byte character (byte offset {len((H + '客户1,2024-03-05,1,O1').encode()) + 1})", ["the file looks cut short"]),
    Case("a workbook named .csv", text("x.csv", b"PK\x03\x04\x14\x00\x06\x00 rest of a zip"), 65,
         "this is a zip archive (an Excel workbook?), not CSV text", ["give an Excel workbook its .xlsx name"]),
    Case("binary data", text("x.csv", b"customer_id,order_date,amount\nC1,\x00\x00\x01,1\n"), 65,
         "binary data (a NUL byte at byte offset 33), not CSV text"),
    Case("several currencies", text("x.csv", "customer_id,order_date,amount,currency\nC1,2024-03-05,10,CNY\n"
                                             "C2,2024-03-05,5,usd\n"), 65,
         "more than one currency in one run: CNY, USD", ["segment each currency separately"]),
    Case("missing input", lambda d: d / "nope.csv", 66, "input file not found: {path}", named=False),
    Case("glob matching nothing", lambda d: d / "*.csv", 66, "no input file matches {path}", named=False),
    Case("folder without exports", lambda d: (d / "sub").mkdir() or d / "sub", 66,
         "directory {path} holds no CSV, Parquet or Excel files", named=False),
    Case("corrupt workbook", text("x.xlsx", b"PK\x03\x04 not a zip"), 66, "cannot read: calamine error", exact=False),
    Case("corrupt parquet", text("x.parquet", b"PAR1 garbage"), 65, "cannot read: parquet", exact=False),
    Case("sheet that does not exist", workbook("x.xlsx", {"orders": [["customer_id", "order_date", "amount"]]}), 66,
         "no sheet 'sales'", ["sheets in the workbook: orders"]),
    Case("workbook with a title row above the header",
         workbook("x.xlsx", {"orders": [["Sales 2024"], ["customer_id", "order_date", "amount"], ["C1", "2024-03-05", 1]]}),
         65, "missing required columns: customer_id, date, amount", ["--header-row N"]),
]
EXTRA_ARGS = {"sheet that does not exist": ["--sheet", "sales"],
              "missing configured column": ["-c", "CONFIG"]}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("command", ["segment", "validate"])
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path: Path, case: Case, command: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = case.make(data)
    args = [a if a != "CONFIG" else str(_config(tmp_path)) for a in EXTRA_ARGS.get(case.name, [])]
    out = tmp_path / "out.parquet"
    result = run(command, str(path), *args, *(["-o", str(out)] if command == "segment" else []))
    assert result.exit_code == case.code, result.stderr
    first, *details = result.stderr.splitlines()
    expected = case.first.format(path=path)
    expected = f"segcli: error: {path}: {expected}" if case.named else f"segcli: error: {expected}"
    assert first == expected if case.exact else first.startswith(expected)
    for detail in case.details:
        assert any(detail in line for line in details), f"{detail!r} not in {details}"
    assert all(line.startswith("  ") for line in details)
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert leftovers(tmp_path) == []


def _config(folder: Path) -> Path:
    cfg = folder / "c.toml"
    cfg.write_text('[input.columns]\namount = "paid"\n')
    return cfg


# ----------------------------------------------------------------------------- warnings and flags


def test_identical_rows_are_counted_in_a_warning_and_kept(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text(H + "C1,2024-03-05,10,O1\nC1,2024-03-05,10,O1\nC1,2024-03-05,10,O1\nC2,2024-03-05,5,O2\n")
    out = tmp_path / "out.csv"
    result = run("rfm", str(f), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert ("segcli: warning: [identical_rows] 2 rows are identical to an earlier row in every column: kept (line-item exports "
            "repeat legitimately); set [input] dedupe = true to drop them") in result.stderr.splitlines()
    df = pl.read_csv(out)
    assert df.filter(pl.col("customer_id") == "C1")["monetary"].item() == 30.0
    meta = json.loads((tmp_path / "out.csv.meta.json").read_text())
    assert meta["rows"]["rows_identical"] == 2 and meta["rows"]["rows_used"] == 4


def test_identical_rows_are_dropped_only_with_dedupe(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text(H + "C1,2024-03-05,10,O1\nC2,2024-03-05,oops,O2\nC1,2024-03-05,10,O1\nC2,2024-03-05,oops,O2\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[input]\ndedupe = true\n")
    out = tmp_path / "out.csv"
    result = run("rfm", str(f), "-c", str(cfg), "-o", str(out), "--max-invalid", "1")
    assert result.exit_code == 0, result.stderr
    # dedupe = true is a decision, not a warning: counted in the record, nothing on stderr about it
    assert result.stderr.splitlines() == [
        "segcli: warning: [invalid_rows] 1 invalid row skipped (within --max-invalid 1); written to the rejects file"]
    assert pl.read_csv(out)["monetary"].to_list() == [10.0]
    # the rejected row keeps the line number of its first occurrence
    assert pl.read_csv(tmp_path / "out.csv.rejects.csv", infer_schema=False)["line"].to_list() == ["3"]
    meta = json.loads((tmp_path / "out.csv.meta.json").read_text())
    assert meta["rows"]["rows_identical"] == 2 and meta["rows"]["rows_used"] == 1


def test_identical_rows_are_always_counted_by_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above REPEAT_COUNT_MAX_ROWS only validate (and dedupe) pay for the count."""
    import segcli.loading

    monkeypatch.setattr(segcli.loading, "REPEAT_COUNT_MAX_ROWS", 0)
    f = tmp_path / "x.csv"
    f.write_text(H + "C1,2024-03-05,10,O1\nC1,2024-03-05,10,O1\n")
    result = run("validate", str(f), "--json")
    assert json.loads(result.stdout)["rows"]["rows_identical"] == 1
    result = run("rfm", str(f), "-o", str(tmp_path / "out.csv"))
    assert result.exit_code == 0 and "identical" not in result.stderr
    assert json.loads((tmp_path / "out.csv.meta.json").read_text())["rows"]["rows_identical"] is None


def test_rows_after_the_as_of_date_are_dropped_counted_and_fail_under_strict(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text(H + "C1,2024-03-05,10,O1\nC2,2024-03-20,5,O2\nC2,2024-04-05,5,O3\n")
    out = tmp_path / "out.parquet"
    result = run("segment", str(f), "--as-of", "2024-03-10", "-o", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    from segcli.io import read_assignments

    df, meta = read_assignments(str(out))
    assert df["customer_id"].to_list() == ["C1"]
    assert meta["rows"]["rows_after_as_of"] == 2
    result = run("segment", str(f), "--as-of", "2024-03-10")
    assert "segcli: warning: [after_as_of] 2 rows dated after the as-of date 2024-03-10 dropped" \
        in result.stderr.splitlines()
    out.unlink()
    result = run("segment", str(f), "--as-of", "2024-03-10", "--strict", "-o", str(out))
    assert result.exit_code == 65
    assert result.stderr.splitlines()[0] == f"segcli: error: {f}: 1 warning under --strict: nothing written"
    assert result.stderr.splitlines()[1:] == ["  [after_as_of] 2 rows dated after the as-of date 2024-03-10 dropped",
                                              "  to let this through: --allow after_as_of"]
    assert leftovers(tmp_path) == []
    # the named kind lets the monthly job through: an export pulled after month end
    result = run("segment", str(f), "--as-of", "2024-03-10", "--strict", "--allow", "after_as_of", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert read_assignments(str(out))[1]["warnings"] == [
        {"kind": "after_as_of", "text": "2 rows dated after the as-of date 2024-03-10 dropped"}]
    assert run("segment", str(f), "--strict", "--allow", "no_such_kind").exit_code == 2


def test_customers_with_non_positive_revenue_are_kept_flagged_and_never_vip(tmp_path: Path) -> None:
    rows = [f"C{i:02d},2024-03-05,{1000 * (i + 1)},O{i}" for i in range(10)]
    rows += [
        "N1,2024-03-01,50,P1", "N1,2024-03-02,-80,P2",  # bought, then returned more: net -30
        "N2,2024-03-03,0,P3",  # a free order: a purchase worth nothing
        "N3,2024-03-04,-20,P4",  # only a return
        "N4,2024-03-04,90000,P5", "N4,2024-03-05,-90000,P5",  # a big order fully refunded
    ]
    f = tmp_path / "x.csv"
    f.write_text(H + "\n".join(rows) + "\n")
    out = tmp_path / "out.parquet"
    result = run("segment", str(f), "-o", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    df = pl.read_parquet(out)
    assert df.height == 14
    flagged = {r["customer_id"]: (r["tier"], r["reason"], r["monetary"]) for r in df.iter_rows(named=True)
               if r["customer_id"].startswith("N")}
    assert flagged == {
        "N1": ("yuxin", "non_positive_revenue", -30.0),
        "N2": ("yuxin", "non_positive_revenue", 0.0),
        "N3": ("yuxin", "no_purchase", -20.0),
        "N4": ("yuxin", "no_purchase", 0.0),
    }
    assert df.filter(pl.col("tier") == "zhixin")["monetary"].min() > 0


def test_max_invalid_writes_rejects_with_real_line_numbers_and_counts_them(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text(H + 'C1,2024-03-05,10,"two\nlines"\nC2,2024-03-05,abc,O2\nC3,someday,7,O3\nC4,2024-03-06,7,O4\n')
    out = tmp_path / "out.parquet"
    assert run("segment", str(f), "-o", str(out), "--max-invalid", "1").exit_code == 65
    assert leftovers(tmp_path) == []
    result = run("segment", str(f), "-o", str(out), "--max-invalid", "0.5")
    assert result.exit_code == 0, result.stderr
    assert f"segcli: rejected rows written to {out}.rejects.csv" in result.stderr
    rejects = pl.read_csv(f"{out}.rejects.csv", infer_schema=False)
    assert rejects.rows() == [(str(f), "4", "C2", "2024-03-05", "abc"), (str(f), "5", "C3", "someday", "7")]
    from segcli.io import read_assignments

    df, meta = read_assignments(str(out))
    assert df["customer_id"].to_list() == ["C1", "C4"]
    assert meta["rows"]["rows_invalid"] == 2 and meta["inputs"][0]["rows_invalid"] == 2


def test_failed_run_keeps_the_previous_output_byte_for_byte(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(H + "C1,2024-03-05,10,O1\n")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(codecs.BOM_UTF8 + (H + "C1,2024-03-05,ten,O1\n").encode())
    out = tmp_path / "out.csv"
    assert run("segment", str(good), "-o", str(out), "-q").exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("out")}
    assert run("segment", str(bad), "-o", str(out), "-q").exit_code == 65
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("out")} == before
    assert not list(tmp_path.glob(".*segcli-tmp*"))


def test_output_over_an_input_is_refused_and_the_input_untouched(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text(H + "C1,2024-03-05,10,O1\n")
    before = f.read_bytes()
    result = run("rfm", str(f), "-o", str(f))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"segcli: error: output {f} is also an input: refusing to overwrite an input"
    assert f.read_bytes() == before


def test_output_over_an_input_found_through_a_folder_or_glob_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text(H + "C1,2024-03-05,10,O1\n")
    for inputs in ([str(tmp_path)], [str(tmp_path / "*.csv")]):
        result = run("rfm", *inputs, "-o", str(f))
        assert result.exit_code == 2
        assert "is one of the inputs (through a folder or glob)" in result.stderr.splitlines()[0]
    assert f.read_text() == H + "C1,2024-03-05,10,O1\n"


def test_output_in_a_missing_folder_is_exit_73(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text(H + "C1,2024-03-05,10,O1\n")
    result = run("segment", str(f), "-o", str(tmp_path / "nope" / "out.parquet"))
    assert result.exit_code == 73
    assert result.stderr.startswith(f"segcli: error: cannot write {tmp_path / 'nope' / 'out.parquet'}: folder ")
