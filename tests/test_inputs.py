"""Every common export reads correctly (SPEC §2, §3 parsing rules): each case reads a real file
the test writes, in the encoding, layout and notation a real export uses."""

from __future__ import annotations

import codecs
import datetime as dt
import json
import tracemalloc
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from segcli import io
from segcli.cli import app
from segcli.config import load_config
from segcli.loading import load_transactions
from segcli.parse import ORDER_SEED

runner = CliRunner()


def run(*args: str, stdin: bytes | None = None):
    return runner.invoke(app, list(args), input=stdin)


def parsed(*inputs: Path | str, **overrides: object) -> pl.DataFrame:
    """The canonical rows segcli keeps from the inputs, in file order."""
    tx = load_transactions([str(i) for i in inputs], load_config(None, dict(overrides)))
    return tx.tx.sort("source", "line").collect()


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


ROWS = "C1,2024-03-05,100.00,O1\nC2,2024-03-06,50.50,O2\nC1,2024-03-07,20.00,O3\n"
HEADER = "customer_id,order_date,amount,order_id\n"


def assert_three_rows(df: pl.DataFrame) -> None:
    assert df["customer_id"].to_list() == ["C1", "C2", "C1"]
    assert df["amount_minor"].to_list() == [1_000_000, 505_000, 200_000]
    assert df["ts"].dt.date().to_list() == [dt.date(2024, 3, 5), dt.date(2024, 3, 6), dt.date(2024, 3, 7)]


# ----------------------------------------------------------------------------- encodings


def test_utf8_csv(tmp_path: Path) -> None:
    assert_three_rows(parsed(write(tmp_path / "tx.csv", HEADER + ROWS)))


def test_utf8_with_bom_keeps_the_first_header_name(tmp_path: Path) -> None:
    f = tmp_path / "tx.csv"
    f.write_bytes(codecs.BOM_UTF8 + (HEADER + ROWS).encode())
    assert_three_rows(parsed(f))
    result = run("validate", str(f), "--json")
    assert json.loads(result.stdout)["inputs"][0]["encoding"] == "utf-8-sig"


GB_TEXT = ("客户编号,交易日期,实付金额,订单号\n"
           "张三,2024-03-05,¥1234.50,订单1\n"
           "李四,2024-03-06,￥88.00,订单2\n"
           "王五,2024年3月7日,3456.78元,订单3\n")


@pytest.mark.parametrize("codec", ["gb18030", "gbk"])
def test_gb18030_and_gbk_are_detected_and_decoded(tmp_path: Path, codec: str) -> None:
    # GBK has no ¥ (U+00A5): a GBK export writes the full-width ￥ instead
    text = GB_TEXT.replace("¥", "￥") if codec == "gbk" else GB_TEXT
    f = write(tmp_path / "导出.csv", text, codec)
    with pytest.raises(UnicodeDecodeError):
        f.read_bytes().decode("utf-8")
    df = parsed(f)
    assert df["customer_id"].to_list() == ["张三", "李四", "王五"]
    assert df["amount_minor"].to_list() == [12_345_000, 880_000, 34_567_800]
    # order ids are kept as a hash of their decoded text
    assert df["order_key"].to_list() == pl.Series(["订单1", "订单2", "订单3"]).hash(ORDER_SEED).to_list()
    result = run("validate", str(f), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["inputs"][0]["encoding"] == "gb18030"


def test_encoding_option_overrides_detection(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", GB_TEXT, "gb18030")
    out = tmp_path / "o.csv"
    result = run("rfm", str(f), "--encoding", "gbk", "-o", str(out), "-q")  # gbk is read as its superset
    assert result.exit_code == 0, result.stderr
    assert pl.read_csv(out)["customer_id"].to_list() == ["张三", "李四", "王五"]


def test_large_gb18030_file_is_transcoded_in_bounded_memory(tmp_path: Path) -> None:
    """The UTF-8 copy is written chunk by chunk: peak Python memory stays at a few chunks
    (4 MiB of bytes each) whatever the file's size; here a 48 MiB file."""
    line = "客户{:06d},2024-03-05,￥1,234.50,订单{:06d}\n"
    block = "".join(line.format(i, i) for i in range(20_000)).replace("￥1,234.50", '"￥1,234.50"').encode("gb18030")
    f = tmp_path / "big.csv"
    with f.open("wb") as fh:
        fh.write("客户编号,交易日期,实付金额,订单号\n".encode("gb18030"))
        while fh.tell() < 48 << 20:
            fh.write(block)
    size = f.stat().st_size
    tracemalloc.start()
    try:
        src = io.open_source(str(f))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert src.encoding == "gb18030" and src.path != f
    assert src.path.stat().st_size > size  # UTF-8 spends 3 bytes where GB18030 spends 2
    # measured: about 22 MiB, for this file and for a 200 MiB one alike
    assert peak < 32 << 20 < size, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB file"
    with src.path.open(encoding="utf-8") as copy:
        assert next(copy) == "客户编号,交易日期,实付金额,订单号\n"


def test_utf16_with_bom_as_excel_saves_unicode_text(tmp_path: Path) -> None:
    f = tmp_path / "unicode.txt"
    f.write_bytes(("客户编号\t交易日期\t实付金额\n张三\t2024-03-05\t￥88.00\n").encode("utf-16"))
    df = parsed(f)
    assert df["customer_id"].to_list() == ["张三"] and df["amount_minor"].to_list() == [880_000]


def test_utf8_file_with_bad_bytes_past_the_sniffed_prefix_names_the_offset(tmp_path: Path) -> None:
    good = (HEADER + ROWS * 2000).encode()
    assert len(good) > io.SNIFF_BYTES
    f = tmp_path / "tx.csv"
    f.write_bytes(good + b"C9,2024-03-05,\xa5100,O9\n")
    result = run("validate", str(f))
    assert result.exit_code == 65
    assert result.stderr.splitlines()[0] == (f"segcli: error: {f}: bytes that are not valid UTF-8 at byte offset "
                                             f"{len(good) + 14}")
    assert "polars" not in result.stderr.lower() and "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- layouts


def test_tsv_file(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.tsv", (HEADER + ROWS).replace(",", "\t"))
    assert_three_rows(parsed(f))


def test_tab_separated_txt_and_csv_are_sniffed(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.txt", (HEADER + ROWS).replace(",", "\t"))
    assert_three_rows(parsed(f))


def test_semicolon_separated_file(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", (HEADER + ROWS).replace(",", ";"))
    assert_three_rows(parsed(f))


def test_quoted_fields_with_separators_and_line_breaks(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", 'customer_id,order_date,amount,note\n'
                                   'C1,2024-03-05,"1,234.50","gift wrap, red\nleave at door"\n'
                                   '"C2",2024-03-06,"12.00","says ""hi"""\n')
    df = parsed(f)
    assert df["customer_id"].to_list() == ["C1", "C2"]
    assert df["amount_minor"].to_list() == [12_345_000, 120_000]


def test_line_numbers_count_the_lines_of_multi_line_records(tmp_path: Path) -> None:
    """A record spanning two lines shifts every later line: the report names the real one."""
    f = write(tmp_path / "tx.csv", 'customer_id,order_date,amount,note\n'
                                   'C1,2024-03-05,10,"two\nlines"\n'
                                   'C2,2024-03-06,oops,x\n'
                                   'C3,2024-03-07,12,"three\nlines\nhere"\n'
                                   'C4,2024-03-08,bad,y\n')
    result = run("validate", str(f))
    assert result.exit_code == 65
    assert "line 4: amount='oops'" in result.stderr
    assert "line 8: amount='bad'" in result.stderr


def test_english_and_chinese_headers_without_configuration(tmp_path: Path) -> None:
    en = write(tmp_path / "en.csv", "Customer_ID,Transaction_Date,Revenue\nC1,2024-03-05,10\n")
    zh = write(tmp_path / "zh.csv", "会员号,订单日期,金额\n张三,2024-03-05,10\n")
    assert parsed(en)["customer_id"].to_list() == ["C1"]
    assert parsed(zh)["customer_id"].to_list() == ["张三"]


def test_other_headers_through_input_columns(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", "buyer,when,paid\nC1,2024-03-05,10\n")
    cfg = write(tmp_path / "c.toml", '[input.columns]\ncustomer_id = "buyer"\ndate = "when"\namount = "paid"\n')
    out = tmp_path / "o.parquet"
    result = run("rfm", str(f), "-c", str(cfg), "-o", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    assert pl.read_parquet(out)["monetary"].to_list() == [10.0]


def test_an_input_column_named_like_an_internal_one_does_not_clash(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", "line,customer_id,order_date,amount,source,blank\n1,C1,2024-03-05,10,web,\n")
    assert parsed(f)["amount_minor"].to_list() == [100_000]


def test_blank_lines_and_empty_spreadsheet_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", HEADER + "C1,2024-03-05,100.00,O1\n\n,,,\nC2,2024-03-06,50.50,O2\n\n\n")
    result = run("validate", str(f), "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert rows["rows_read"] == 2 and rows["rows_blank"] == 4 and rows["rows_invalid"] == 0


def test_customer_ids_are_text_and_spreadsheet_floats_lose_their_zero(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", "customer_id,order_date,amount\n 00123 ,2024-03-05,1\n123.0,2024-03-05,1\n"
                                   "A10.00,2024-03-05,1\n-5.00,2024-03-05,1\n")
    assert parsed(f)["customer_id"].to_list() == ["00123", "123", "A10.00", "-5"]


# ----------------------------------------------------------------------------- notations


@pytest.mark.parametrize(("text", "minor"), [
    ("1234.50", 12_345_000),
    ('"¥1,234.50"', 12_345_000),
    ("￥88.00", 880_000),
    ('"RMB 2,000"', 20_000_000),
    ("rmb 5", 50_000),
    ('"3,456.78元"', 34_567_800),
    ("(12.00)", -120_000),
    ("-12.00", -120_000),
    ("CNY 0.5", 5_000),
    ("  7  ", 70_000),
])
def test_amount_notations(tmp_path: Path, text: str, minor: int) -> None:
    f = write(tmp_path / "tx.csv", f"customer_id,order_date,amount\nC1,2024-03-05,{text}\n")
    assert parsed(f)["amount_minor"].to_list() == [minor]


def test_marked_amounts_after_plain_ones_are_still_cleaned(tmp_path: Path) -> None:
    """The parse plan comes from a sample of the first rows; later notations still parse."""
    plain = "".join(f"C{i},2024-03-05,{i}.25\n" for i in range(3000))
    f = write(tmp_path / "tx.csv", "customer_id,order_date,amount\n" + plain + 'C9,2024-03-05,"¥1,000.00"\n')
    assert parsed(f)["amount_minor"].to_list()[-1] == 10_000_000


def test_more_places_than_the_scale_are_rounded_half_even_with_a_warning(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", "customer_id,order_date,amount\nC1,2024-03-05,1.00005\nC2,2024-03-05,1.00015\n"
                                   "C3,2024-03-05,1.100000\n")
    cfg = load_config(None)
    tx = load_transactions([str(f)], cfg)
    assert tx.tx.sort("line").collect()["amount_minor"].to_list() == [10_000, 10_002, 11_000]
    assert tx.counts["amounts_rounded"] == 2
    assert [w.kind for w in tx.warnings if "rounded half-to-even" in w.text] == ["rounded"]


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-03-05", dt.datetime(2024, 3, 5)),
    ("2024/3/5", dt.datetime(2024, 3, 5)),
    ("2024/03/05", dt.datetime(2024, 3, 5)),
    ("20240305", dt.datetime(2024, 3, 5)),
    ("2024-03-05 12:00:00", dt.datetime(2024, 3, 5, 12)),
    ("2024-03-05T12:30:00.250", dt.datetime(2024, 3, 5, 12, 30, 0, 250_000)),
    ("2024-03-05 12:00", dt.datetime(2024, 3, 5, 12)),
    ("2024-03-05T04:00:00+00:00", dt.datetime(2024, 3, 5, 12)),  # converted to Asia/Shanghai
    ("2024年3月5日", dt.datetime(2024, 3, 5)),
    ("2024.03.05", dt.datetime(2024, 3, 5)),
    ("45356", dt.datetime(2024, 3, 5)),  # an Excel serial day number
])
def test_date_notations(tmp_path: Path, text: str, expected: dt.datetime) -> None:
    f = write(tmp_path / "tx.csv", f"customer_id,order_date,amount\nC1,{text},1\n")
    assert parsed(f)["ts"].to_list() == [expected]


def test_every_row_gets_the_first_format_that_parses_it_even_past_the_sample(tmp_path: Path) -> None:
    """The first rows use one layout, a later row another: both parse (the plan widens)."""
    head = "".join(f"C{i},2024-03-05 10:00:00,1\n" for i in range(3000))
    f = write(tmp_path / "tx.csv", "customer_id,order_date,amount\n" + head + "C9,2024年3月6日,1\nC8,20240307,1\n")
    ts = parsed(f)["ts"].to_list()
    assert ts[-2:] == [dt.datetime(2024, 3, 6), dt.datetime(2024, 3, 7)]


def test_configured_date_formats(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", "customer_id,order_date,amount\nC1,05/03/2024,1\n")
    df = parsed(f, **{"input.date_formats": ["%d/%m/%Y"]})
    assert df["ts"].to_list() == [dt.datetime(2024, 3, 5)]


# ----------------------------------------------------------------------------- Excel


def _workbook(path: Path, *, title_rows: int = 0) -> Path:
    xlsxwriter = pytest.importorskip("xlsxwriter")
    wb = xlsxwriter.Workbook(str(path))
    cover = wb.add_worksheet("说明")
    cover.write(0, 0, "this sheet holds no transactions")
    ws = wb.add_worksheet("订单")
    for r in range(title_rows):
        ws.write(r, 0, f"销售导出 第{r + 1}行标题")
    top = title_rows
    ws.write_row(top, 0, ["客户编号", "交易日期", "实付金额", "订单号"])
    dates = wb.add_format({"num_format": "yyyy-mm-dd"})
    ws.write(top + 1, 0, "C1")
    ws.write_datetime(top + 1, 1, dt.datetime(2024, 3, 5), dates)
    ws.write_number(top + 1, 2, 1234.5)
    ws.write(top + 1, 3, "O1")
    ws.write_number(top + 2, 0, 123)  # a numeric id
    ws.write(top + 2, 1, "2024/3/6")  # a date typed as text
    ws.write(top + 2, 2, "¥88.00")
    ws.write(top + 2, 3, "O2")
    # an empty row, then a serial day number and a return
    ws.write(top + 4, 0, "C3")
    ws.write_number(top + 4, 1, 45358)
    ws.write_number(top + 4, 2, -12)
    ws.write(top + 4, 3, "O3")
    wb.close()
    return path


def test_excel_sheet_chosen_by_name_or_position(tmp_path: Path) -> None:
    book = _workbook(tmp_path / "book.xlsx")
    for sheet in ("订单", "2"):
        df = parsed(book, **{"input.sheet": sheet})
        assert df["customer_id"].to_list() == ["C1", "123", "C3"]
        assert df["amount_minor"].to_list() == [12_345_000, 880_000, -120_000]
        assert df["ts"].dt.date().to_list() == [dt.date(2024, 3, 5), dt.date(2024, 3, 6), dt.date(2024, 3, 7)]


def test_excel_header_row_below_title_rows_from_the_command_line(tmp_path: Path) -> None:
    book = _workbook(tmp_path / "book.xlsx", title_rows=2)
    out = tmp_path / "o.csv"
    result = run("rfm", str(book), "--sheet", "订单", "--header-row", "3", "-o", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    assert pl.read_csv(out, schema_overrides={"customer_id": pl.String})["customer_id"].to_list() == ["123", "C1", "C3"]
    # without --header-row the title is taken for the header: the message says what to do
    result = run("rfm", str(book), "--sheet", "订单")
    assert result.exit_code == 65
    assert "--header-row" in result.stderr


def test_excel_rows_are_reported_by_their_spreadsheet_row_number(tmp_path: Path) -> None:
    xlsxwriter = pytest.importorskip("xlsxwriter")
    book = tmp_path / "bad.xlsx"
    wb = xlsxwriter.Workbook(str(book))
    ws = wb.add_worksheet()
    ws.write(0, 0, "report title")
    ws.write_row(1, 0, ["customer_id", "order_date", "amount"])
    ws.write_row(2, 0, ["C1", "2024-03-05", "1"])
    ws.write_row(4, 0, ["C2", "2024-03-05", "lots"])
    wb.close()
    result = run("validate", str(book), "--header-row", "2")
    assert result.exit_code == 65
    assert "row 5: amount='lots'" in result.stderr


# ----------------------------------------------------------------------------- sources


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    f = tmp_path / "tx.parquet"
    pl.DataFrame({
        "customer_id": [101, 102],
        "order_time": [dt.datetime(2024, 3, 5, 9), dt.datetime(2024, 3, 6, 10)],
        "amount": [12.5, -3.0],
    }).write_parquet(f)
    df = parsed(f)
    assert df["customer_id"].to_list() == ["101", "102"]
    assert df["amount_minor"].to_list() == [125_000, -30_000]


def test_directory_glob_and_several_inputs(tmp_path: Path) -> None:
    d = tmp_path / "exports"
    d.mkdir()
    write(d / "a.csv", HEADER + "C1,2024-03-05,1,O1\n")
    write(d / "b.tsv", (HEADER + "C2,2024-03-05,2,O2\n").replace(",", "\t"))
    pl.DataFrame({"customer_id": ["C3"], "order_date": ["2024-03-05"], "amount": ["3"]}).write_parquet(d / "c.parquet")
    write(d / ".hidden.csv", "garbage")
    write(d / "notes.md", "not an export")
    assert parsed(d)["customer_id"].to_list() == ["C1", "C2", "C3"]
    assert parsed(str(d / "*.csv"), d / "c.parquet")["customer_id"].to_list() == ["C1", "C3"]
    result = run("validate", str(d / "*.csv"), str(d / "b.tsv"), "--json")
    assert result.exit_code == 0, result.stderr
    assert [s["path"] for s in json.loads(result.stdout)["inputs"]] == [str(d / "a.csv"), str(d / "b.tsv")]


def test_stdin_dash_reads_csv_in_any_supported_encoding(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    result = run("rfm", "-", "-o", str(out), "-q", stdin=GB_TEXT.encode("gb18030"))
    assert result.exit_code == 0, result.stderr
    assert pl.read_csv(out)["customer_id"].to_list() == ["张三", "李四", "王五"]
    meta = json.loads((tmp_path / "o.csv.meta.json").read_text())
    assert meta["inputs"][0]["path"] == "<stdin>"


def test_inputs_are_never_modified(tmp_path: Path) -> None:
    f = write(tmp_path / "tx.csv", GB_TEXT, "gb18030")
    before = (f.read_bytes(), f.stat().st_mtime_ns)
    assert run("segment", str(f), "-o", str(tmp_path / "o.parquet"), "-q").exit_code == 0
    assert (f.read_bytes(), f.stat().st_mtime_ns) == before
