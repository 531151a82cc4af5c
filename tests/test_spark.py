"""``--engine spark`` gives what ``--engine polars`` gives (SPEC §8): the same assignments,
value for value, the same record (but for the engine it names), the same errors and exit
codes. One local Spark (``local[2]``) serves every test of the run; ``-m 'not spark'``
skips them. Without PySpark or Java they are skipped, or fail with SEGCLI_REQUIRE_EXTRAS=1
(as .ci/run sets).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from conftest import SAMPLE, write_csv
from report_helpers import need
from segcli.cli import app

SPARK = ["--engine", "spark", "--spark-master", "local[2]",
         "--spark-conf", "spark.sql.shuffle.partitions=4", "--spark-conf", "spark.default.parallelism=2"]
runner = CliRunner()


@pytest.fixture(scope="module")
def spark_ready() -> None:
    """PySpark and Java are there (skip, or fail under SEGCLI_REQUIRE_EXTRAS=1)."""
    need("PySpark", importlib.util.find_spec("pyspark") is not None, "pip install -e '.[spark]'  (make spark-deps)")
    need("Java", shutil.which("java") is not None or bool(os.environ.get("JAVA_HOME")),
         "apt-get install openjdk-17-jre-headless  (make spark-deps)")


def both(*args: str) -> tuple:
    """The same command on each engine."""
    polars = runner.invoke(app, list(args))
    spark = runner.invoke(app, [*args, *SPARK])
    return polars, spark


def record(path: Path) -> dict:
    meta = json.loads(pl.read_parquet_metadata(path)["segcli"])
    return meta


# ----------------------------------------------------------------------------- inputs


def returns_csv(tmp_path: Path) -> Path:
    """Returns (one netting its order, one alone), same-day orders, zero amounts, repeats,
    and no order id column: an order is a customer's timestamp."""
    rows = []
    for c in range(1, 41):
        for d in range(c % 7 + 1):
            day = dt.date(2025, 1, 1) + dt.timedelta(days=9 * d + c)
            rows.append(f"C{c:03d},{day} 10:00:00,{(c * 37 + d * 11) % 500 + 0.25:.2f}")
            if d % 3 == 1:  # another order the same day
                rows.append(f"C{c:03d},{day} 16:30:00,{(c * 13) % 90 + 1:.2f}")
    rows += ["C001,2025-01-02 10:00:00,-10.25",  # a return netting against its order
             "C002,2025-03-03 09:00:00,-40.00",  # a return alone: never a purchase
             "C003,2025-02-02 12:00:00,0.00",  # a free order counts
             "C004,2025-02-02 12:00:00,0.00",
             "C005,2025-01-06 10:00:00,35.25", "C005,2025-01-06 10:00:00,35.25",  # identical rows
             "C041,2025-05-05 08:00:00,-5.00"]  # a customer with only a return
    return write_csv(tmp_path / "returns.csv", "customer_id,order_time,amount", rows)


GB_ROWS = ["客户编号,交易日期,实付金额,订单号,备注"] + [
    f"会员{c:04d},2025/{m:02d}/{(c * m) % 27 + 1:02d},\"￥{(c * 97 * m) % 3000 + 12.5:,.2f}\",D{c}-{m},{'退货' if m == 3 else '正常'}"
    for c in range(1, 120) for m in range(1, 1 + c % 6)]


def gb18030_csv(tmp_path: Path) -> Path:
    """A Chinese export in GB18030: Chinese headers and ids, ￥ amounts with separators."""
    path = tmp_path / "导出.csv"
    path.write_bytes(("\n".join(GB_ROWS) + "\n").encode("gb18030"))
    return path


def cdnow_parquet(tmp_path: Path) -> Path:
    """CDNOW-like purchases (1997-01..1998-06, integer ids, a typed date column, float
    dollars, a first purchase in Q1 1997 and geometric repeat buying), as typed Parquet."""
    rng = np.random.default_rng(1997)
    n = 2357
    first = rng.integers(0, 90, n)
    repeats = rng.geometric(0.35, n) - 1
    ids, days, amounts = [], [], []
    for i in range(n):
        when = np.sort(np.concatenate([[first[i]], rng.integers(first[i], 546, repeats[i])]))
        ids += [i + 1] * len(when)
        days += when.tolist()
        amounts += np.round(rng.lognormal(3.2, 0.8, len(when)), 2).tolist()
    start = dt.date(1997, 1, 1)
    df = pl.DataFrame({"customer_id": ids, "date": [start + dt.timedelta(days=int(d)) for d in days],
                       "cds": rng.integers(1, 6, len(ids)), "amount": amounts})
    path = tmp_path / "cdnow.parquet"
    df.write_parquet(path)
    return path


def folder(tmp_path: Path) -> Path:
    """Three files of three kinds in one folder: each is a source of its own, on both engines."""
    inside = tmp_path / "exports"
    inside.mkdir()
    for make in (returns_csv, gb18030_csv, cdnow_parquet):
        make(inside)
    return inside


INPUTS = {"sample": lambda tmp: SAMPLE, "returns": returns_csv, "gb18030": gb18030_csv, "cdnow": cdnow_parquet,
          "folder": folder}


# ----------------------------------------------------------------------------- equality


@pytest.mark.spark
@pytest.mark.parametrize("name", list(INPUTS))
def test_segment_writes_the_same_assignments_on_spark_and_polars(spark_ready: None, tmp_path: Path, name: str) -> None:
    data = INPUTS[name](tmp_path)
    out = {engine: tmp_path / f"{engine}.parquet" for engine in ("polars", "spark")}
    polars = runner.invoke(app, ["segment", str(data), "-o", str(out["polars"]), "-q"])
    spark = runner.invoke(app, ["segment", str(data), "-o", str(out["spark"]), "-q", *SPARK])
    assert polars.exit_code == 0, polars.stderr
    assert spark.exit_code == 0, spark.stderr
    a, b = pl.read_parquet(out["polars"]), pl.read_parquet(out["spark"])
    assert a.height > 30
    # every column, value for value, dtypes and nulls included
    assert a.equals(b), a.join(b, on="customer_id", suffix="_spark").head()
    ra, rb = record(out["polars"]), record(out["spark"])
    assert (ra.pop("engine"), rb.pop("engine")["name"]) == ({"name": "polars"}, "spark")
    assert ra == rb  # inputs, row counts, warnings, model, config: all equal


@pytest.mark.spark
def test_csv_on_standard_input_gives_the_same_rows(spark_ready: None, tmp_path: Path) -> None:
    data = ("\n".join(GB_ROWS) + "\n").encode("gb18030")
    out = {engine: tmp_path / f"{engine}.csv" for engine in ("polars", "spark")}
    assert runner.invoke(app, ["rfm", "-", "-o", str(out["polars"]), "-q"], input=data).exit_code == 0
    result = runner.invoke(app, ["rfm", "-", "-o", str(out["spark"]), "-q", *SPARK], input=data)
    assert result.exit_code == 0, result.stderr
    assert out["polars"].read_bytes() == out["spark"].read_bytes()


@pytest.mark.spark
def test_a_window_without_as_of_and_dedupe_give_the_same_assignments(spark_ready: None, tmp_path: Path) -> None:
    """The window ends at the latest date, known only after the checking pass: Spark then
    aggregates in a second pass; dedupe drops identical rows in the shuffled partitions."""
    data = returns_csv(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[input]\ndedupe = true\n", encoding="utf-8")
    out = {engine: tmp_path / f"{engine}.parquet" for engine in ("polars", "spark")}
    args = ["segment", str(data), "--window-days", "120", "-c", str(cfg), "-q"]
    polars = runner.invoke(app, [*args, "-o", str(out["polars"])])
    spark = runner.invoke(app, [*args, "-o", str(out["spark"]), *SPARK])
    assert polars.exit_code == 0 and spark.exit_code == 0, polars.stderr + spark.stderr
    assert pl.read_parquet(out["polars"]).equals(pl.read_parquet(out["spark"]))
    ra, rb = record(out["polars"]), record(out["spark"])
    assert ra["rows"] == rb["rows"] and ra["rows"]["rows_identical"] == 1 and ra["rows"]["rows_outside_window"] > 0


@pytest.mark.spark
def test_rfm_lifetimes_pareto_and_validate_agree(spark_ready: None, tmp_path: Path) -> None:
    out = {engine: tmp_path / f"{engine}.parquet" for engine in ("polars", "spark")}
    args = ["rfm", str(SAMPLE), "--style", "lifetimes", "--freq", "W", "-q"]
    assert runner.invoke(app, [*args, "-o", str(out["polars"])]).exit_code == 0
    assert runner.invoke(app, [*args, "-o", str(out["spark"]), *SPARK]).exit_code == 0
    assert pl.read_parquet(out["polars"]).equals(pl.read_parquet(out["spark"]))
    polars, spark = both("pareto", str(SAMPLE), "--json")
    assert spark.exit_code == 0, spark.stderr
    assert json.loads(polars.stdout) == json.loads(spark.stdout)
    polars, spark = both("validate", str(SAMPLE), "--json")
    a, b = json.loads(polars.stdout), json.loads(spark.stdout)
    assert a["engine"]["name"] == "polars" and b["engine"]["name"] == "spark"
    assert a["rows"] == b["rows"] and a["warnings"] == b["warnings"] and a["inputs"] == b["inputs"]


@pytest.mark.spark
def test_a_table_in_sparks_catalog_is_an_input(spark_ready: None, tmp_path: Path) -> None:
    from segcli.engines import engine_settings
    from segcli.engines.spark import session

    data = cdnow_parquet(tmp_path)
    spark = session(engine_settings("spark", master="local[2]", conf=SPARK[5::2]))
    spark.read.parquet(str(data)).createOrReplaceTempView("cdnow_purchases")
    out = {engine: tmp_path / f"{engine}.parquet" for engine in ("polars", "spark")}
    assert runner.invoke(app, ["segment", str(data), "-o", str(out["polars"]), "-q"]).exit_code == 0
    result = runner.invoke(app, ["segment", "cdnow_purchases", "-o", str(out["spark"]), "-q", *SPARK])
    assert result.exit_code == 0, result.stderr
    assert pl.read_parquet(out["polars"]).equals(pl.read_parquet(out["spark"]))
    assert record(out["spark"])["inputs"][0]["path"] == "cdnow_purchases"
    # rows that come from no file are named by their table in error examples
    spark.createDataFrame([("C1", "2025-01-01", "10"), ("C2", "soon", "5")],
                          "customer_id string, order_date string, amount string").createOrReplaceTempView("in_memory")
    result = runner.invoke(app, ["validate", "in_memory", *SPARK])
    assert result.exit_code == 65
    assert "in_memory: order_date='soon'" in [line.strip() for line in result.stderr.splitlines()]


# ----------------------------------------------------------------------------- errors


BAD = {
    "bad dates": ("customer_id,order_date,amount\n" + "".join(f"C{i},2025-02-{i:02d},10\n" for i in range(1, 21))
                  + "C21,31/02/2025,10\nC22,not a date,10\n"),
    "missing column": "customer_id,amount\nC1,10\n",
    "several currencies": "customer_id,order_date,amount,currency\nC1,2025-01-01,10,CNY\nC2,2025-01-02,5,USD\n",
    "ragged rows": "customer_id,order_date,amount\nC1,2025-01-01,10\nC2,2025-01-02,5,7\nC3,2025-01-03\n",
}


@pytest.mark.spark
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gives_the_same_error_and_exit_code(spark_ready: None, tmp_path: Path, case: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD[case], encoding="utf-8")
    polars, spark = both("segment", str(path), "-q")
    assert polars.exit_code == spark.exit_code == 65
    # the same first line: what is wrong, and how many rows
    assert polars.stderr.splitlines()[0] == spark.stderr.splitlines()[0], spark.stderr
    if case == "bad dates":
        assert "2 of 22 rows are invalid" in spark.stderr
        assert "column 'order_date': 2 of 22 rows: unparsable date" in spark.stderr
        assert f"{path}: order_date='31/02/2025'" in spark.stderr  # the file and the raw value
        assert "line numbers are not available on Spark" in spark.stderr
    if case == "ragged rows":  # a local file is read again for them: line numbers too
        assert polars.stderr == spark.stderr


@pytest.mark.spark
def test_max_invalid_writes_the_rejects_with_file_names(spark_ready: None, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD["bad dates"], encoding="utf-8")
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["rfm", str(path), "--max-invalid", "2", "-o", str(out), "-q", *SPARK])
    assert result.exit_code == 0, result.stderr
    rejects = pl.read_csv(f"{out}.rejects.csv")
    assert sorted(rejects["date"].to_list()) == ["31/02/2025", "not a date"]
    assert set(rejects["file"]) == {str(path)}


def test_a_missing_local_input_is_exit_66_before_spark_starts(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.csv"), *SPARK])
    assert result.exit_code == 66, result.stderr


# ----------------------------------------------------------------------------- selection errors


def _cli(args: list[str], *, env: dict[str, str] | None = None, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"import sys\n{prelude}\nfrom segcli.__main__ import main\nsys.argv = ['segcli', *{args!r}]\nmain()\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env or dict(os.environ),
                          check=False, timeout=300)


def test_missing_pyspark_is_exit_78_naming_the_extra() -> None:
    result = _cli(["validate", str(SAMPLE), "--engine", "spark"], prelude="sys.modules['pyspark'] = None")
    assert result.returncode == 78, result.stderr
    assert result.stderr.splitlines()[0] == (
        "segcli: error: --engine spark needs PySpark (pyspark is not installed): pip install 'segcli[spark]'")


def test_missing_java_is_exit_78() -> None:
    pytest.importorskip("pyspark")
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)  # this Python, no java
    result = _cli(["validate", str(SAMPLE), "--engine", "spark"], env=env)
    assert result.returncode == 78, result.stderr
    assert "needs Java 17 or later" in result.stderr.splitlines()[0]


def test_an_unreachable_master_is_exit_78_at_once() -> None:
    pytest.importorskip("pyspark")
    result = _cli(["validate", str(SAMPLE), "--engine", "spark", "--spark-master", "spark://127.0.0.1:9"])
    assert result.returncode == 78, result.stderr
    assert result.stderr.splitlines() == ["segcli: error: Spark master spark://127.0.0.1:9 is unreachable",
                                          "  check the address, or run locally with --spark-master 'local[*]'"]


def test_spark_conf_must_be_key_value() -> None:
    result = runner.invoke(app, ["validate", str(SAMPLE), "--engine", "spark", "--spark-conf", "nokey"])
    assert result.exit_code == 2
    assert "expected KEY=VALUE" in result.stderr
