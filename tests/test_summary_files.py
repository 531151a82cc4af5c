"""``segcli summary -o FILE`` writes by extension (SPEC §2) and ``summary --record FILE``
prints the run record of any output segcli writes (SPEC §5). Values are checked against
sums computed here from the assignments file, read with pyarrow."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import SAMPLE
from segcli.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def assignments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("summary") / "assignments.parquet"
    result = run("segment", str(SAMPLE), "-o", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    return out


def by_tier(path: Path) -> dict[str, dict[str, float]]:
    """Customers, revenue and shares per tier, summed here row by row."""
    rows = pq.read_table(path, columns=["tier", "monetary"]).to_pylist()
    count: dict[str, int] = defaultdict(int)
    revenue: dict[str, float] = defaultdict(float)
    for r in rows:
        count[r["tier"]] += 1
        revenue[r["tier"]] += r["monetary"]
    total = sum(revenue.values())
    return {t: {"customers": count[t], "customer_share": count[t] / len(rows), "revenue": revenue[t],
                "revenue_share": revenue[t] / total} for t in count}


def check_values(table: pl.DataFrame, expected: dict[str, dict[str, float]]) -> None:
    assert sorted(table["tier"].to_list()) == sorted(expected)
    for row in table.iter_rows(named=True):
        want = expected[row["tier"]]
        assert row["customers"] == want["customers"]
        assert row["customer_share"] == pytest.approx(want["customer_share"], abs=1e-12)
        assert row["revenue"] == pytest.approx(want["revenue"], abs=0.005)
        assert row["revenue_share"] == pytest.approx(want["revenue_share"], abs=1e-9)


def test_summary_xlsx_is_a_real_workbook_with_the_numbers(tmp_path: Path, assignments: Path) -> None:
    out = tmp_path / "summary.xlsx"
    result = run("summary", str(assignments), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes()[:4] == b"PK\x03\x04"  # a zip container, not text
    table = pl.read_excel(out)  # fastexcel
    assert table.columns[:4] == ["tier", "label", "customers", "customer_share"]
    check_values(table, by_tier(assignments))
    assert table.filter(pl.col("tier") == "zhixin")["label"].item() == "知心"


def test_summary_csv_is_csv_with_the_numbers(tmp_path: Path, assignments: Path) -> None:
    out = tmp_path / "summary.csv"
    result = run("summary", str(assignments), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    check_values(pl.read_csv(out), by_tier(assignments))


def test_summary_json_and_markdown_and_other_names(tmp_path: Path, assignments: Path) -> None:
    expected = by_tier(assignments)
    assert run("summary", str(assignments), "-o", str(tmp_path / "s.json")).exit_code == 0
    check_values(pl.DataFrame(json.loads((tmp_path / "s.json").read_text())), expected)

    assert run("summary", str(assignments), "-o", str(tmp_path / "s.md")).exit_code == 0
    md = (tmp_path / "s.md").read_text().splitlines()
    assert md[0].startswith("| tier ") and set(md[1]) <= {"|", "-", ":"}
    assert f"| {expected['zhixin']['customers']:,} " in md[2] or f"| {expected['yuxin']['customers']:,} " in md[2]

    # any other name: the table text, in --format
    assert run("summary", str(assignments), "-o", str(tmp_path / "s.txt"), "--format", "psql").exit_code == 0
    assert (tmp_path / "s.txt").read_text() == run("summary", str(assignments), "--format", "psql").stdout


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("command,name", [
    (["segment"], "out.parquet"), (["segment"], "out.csv"), (["segment"], "out.jsonl"),
    (["rfm", "--style", "lifetimes"], "clv.parquet"), (["rfm", "--style", "lifetimes"], "clv.csv"),
])
def test_summary_record_prints_the_run_record_of_any_output(tmp_path: Path, command: list[str], name: str) -> None:
    out = tmp_path / name
    assert run(*command, str(SAMPLE), "-o", str(out), "-q").exit_code == 0
    result = run("summary", str(out), "--record")
    assert result.exit_code == 0, result.stderr
    printed = json.loads(result.stdout)
    if out.suffix == ".parquet":
        stored = json.loads(pq.read_metadata(out).metadata[b"segcli"])
    else:
        stored = json.loads((tmp_path / f"{name}.meta.json").read_text())
        assert stored["output"] == {"file": name, "bytes": out.stat().st_size, "sha256": _sha256(out)}
    assert printed == stored and printed["as_of"] == "2025-12-31"
    assert result.stdout == json.dumps(stored, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def test_the_readme_ways_to_read_the_record(assignments: Path) -> None:
    """README: pyarrow (and so pandas' engine) and Polars see the record."""
    record = json.loads(pq.read_metadata(assignments).metadata[b"segcli"])
    assert json.loads(pq.read_schema(assignments).metadata[b"segcli"]) == record
    assert json.loads(pq.read_table(assignments).schema.metadata[b"segcli"]) == record
    assert json.loads(pl.read_parquet_metadata(assignments)["segcli"]) == record
    duckdb = pytest.importorskip("duckdb")  # not a dependency: checked where it is installed
    sql = f"SELECT decode(value) AS record FROM parquet_kv_metadata('{assignments}') WHERE key = 'segcli'"
    assert json.loads(duckdb.sql(sql).fetchall()[0][0]) == record


def test_the_record_names_the_rejects_file(tmp_path: Path) -> None:
    export = tmp_path / "tx.csv"
    export.write_text("customer_id,order_date,amount\nC1,2025-01-10,500\nC2,2025-01-11,oops\nC3,2025-01-12,30\n")
    out = tmp_path / "out.parquet"
    assert run("segment", str(export), "-o", str(out), "--max-invalid", "1", "-q").exit_code == 0
    rejects = tmp_path / "out.parquet.rejects.csv"
    record = json.loads(run("summary", str(out), "--record").stdout)
    assert record["rejects"] == {"file": rejects.name, "rows": 1, "bytes": rejects.stat().st_size,
                                 "sha256": _sha256(rejects)}


def test_summary_record_of_a_file_without_one_is_exit_65(tmp_path: Path) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_text("customer_id,tier\nC1,zhixin\n")
    result = run("summary", str(plain), "--record")
    assert result.exit_code == 65
    assert result.stderr.splitlines()[0] == (f"segcli: error: {plain}: no segcli run record (Parquet metadata key "
                                             "'segcli' or plain.csv.meta.json beside it)")
