"""PostgreSQL in and out (SPEC §8, issue 12), against a real server started for the session.

The server (tests/pg_server.py) runs on 127.0.0.1 at a free port with password logins, so a
wrong password really fails. Without the server binaries or the postgres extra these tests
skip, unless SEGCLI_REQUIRE_EXTRAS=1 (CI), where they fail.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from conftest import ROOT, SAMPLE
from pg_server import PASSWORD, PgServer, pg_fixture
from segcli.cli import app
from segcli.errors import OutputError
from segcli.io import open_source, read_assignments
from segcli.postgres import command_line_inputs, mask, scrub, write_postgres

pytestmark = pytest.mark.postgres
pg = pytest.fixture(scope="session")(pg_fixture)
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def connect(pg: PgServer, **kwargs):  # type: ignore[no-untyped-def]
    import adbc_driver_postgresql.dbapi as dbapi

    return dbapi.connect(pg.uri(), **kwargs)


def load(pg: PgServer, table: str, df: pl.DataFrame, ddl: str) -> None:
    """Create ``table`` with the column types of ``ddl`` and bulk-load ``df`` into it."""
    with connect(pg) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        cur.execute(f"CREATE TABLE {table} ({ddl})")
        schema, name = table.split(".") if "." in table else (None, table)
        cur.adbc_ingest(name, df.to_arrow(), mode="append", db_schema_name=schema)
        conn.commit()


def query(pg: PgServer, sql: str) -> pl.DataFrame:
    with connect(pg) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return pl.from_arrow(cur.fetch_arrow_table())  # type: ignore[return-value]


def sample_typed() -> pl.DataFrame:
    """The sample export with real types: timestamp, numeric amounts."""
    return pl.read_csv(SAMPLE, infer_schema=False).with_columns(
        pl.col("order_time").str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us"),
        pl.col("amount").cast(pl.Decimal(12, 2)),
    )


SAMPLE_DDL = ("order_id text, customer_id text, order_time timestamp, amount numeric(12, 2), currency text, "
              "channel text, category text")


@pytest.fixture(scope="session")
def orders(pg: PgServer) -> str:
    load(pg, "public.orders", sample_typed(), SAMPLE_DDL)
    return "public.orders"


@pytest.fixture(scope="session")
def file_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, dict]:
    out = tmp_path_factory.mktemp("file") / "file.parquet"
    result = run("segment", str(SAMPLE), "-o", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    return read_assignments(str(out))


# --------------------------------------------------------------------------- reading


def test_segment_from_a_table_gives_the_assignments_of_the_file_run(pg: PgServer, orders: str, file_run, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("segcli.postgres.BATCH_BYTES", 64 << 10)  # many batches, as a large table sends
    out = tmp_path / "db.parquet"
    result = run("segment", pg.uri(), "--table", orders, "-o", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    db, meta = read_assignments(str(out))
    expected, expected_meta = file_run
    assert_frame_equal(db, expected)  # every column, every value, same types
    assert meta["rows"] == expected_meta["rows"]
    assert meta["inputs"][0]["path"] == f"postgresql://segcli_test:***@127.0.0.1:{pg.port}/shop#public.orders"
    assert meta["inputs"][0]["format"] == "postgres" and meta["inputs"][0]["rows"] == expected_meta["inputs"][0]["rows"]
    assert PASSWORD not in json.dumps(meta)
    import pyarrow.parquet as pq

    spool = open_source(command_line_inputs([pg.uri()], table=orders, query=None)[0]).path
    assert pq.ParquetFile(spool).metadata.num_row_groups > 10  # the batches really were many


def test_written_table_holds_the_same_assignments_with_sql_types_and_a_key(pg: PgServer, orders: str, file_run) -> None:
    result = run("segment", pg.uri(), "--table", orders, "-o", pg.uri() + "#crm.assignments", "-q")
    assert result.exit_code == 73 and 'schema "crm" does not exist' in result.stderr  # not made for the user
    with connect(pg, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA IF NOT EXISTS crm")
    result = run("segment", pg.uri(), "--table", orders, "-o", pg.uri() + "#crm.assignments", "-q")
    assert result.exit_code == 0, result.stderr
    expected, expected_meta = file_run
    db = query(pg, "SELECT * FROM crm.assignments ORDER BY customer_id COLLATE \"C\"")
    assert_frame_equal(db, expected, check_dtypes=False)
    assert db.schema == expected.schema  # SQL types map back to the file's types
    types = dict(query(pg, "SELECT column_name, data_type FROM information_schema.columns "
                           "WHERE table_schema = 'crm' AND table_name = 'assignments'").iter_rows())
    assert {types[c] for c in ("customer_id", "tier", "vip_group")} == {"text"}
    assert types["frequency"] == "bigint" and types["monetary"] == "double precision"
    assert types["last_purchase"] == "date" and types["as_of"] == "date"
    key = query(pg, "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                    "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'crm.assignments'::regclass AND i.indisprimary")
    assert key["attname"].to_list() == ["customer_id"]
    runs = query(pg, "SELECT as_of, mode, rows, record::text AS record FROM crm.assignments_runs")
    assert runs.height == 1 and runs["mode"][0] == "replace" and runs["rows"][0] == expected.height
    record = json.loads(runs["record"][0])
    assert record["as_of"] == expected_meta["as_of"] == str(runs["as_of"][0])
    assert record["inputs"][0]["path"].startswith("postgresql://segcli_test:***@") and PASSWORD not in runs["record"][0]


def test_query_with_a_join_and_a_filter(pg: PgServer, orders: str, tmp_path: Path) -> None:
    customers = pl.read_csv(SAMPLE, infer_schema=False).select("customer_id").unique().sort("customer_id")
    customers = customers.with_columns(region=pl.when(pl.int_range(pl.len()) % 3 == 0).then(pl.lit("north"))
                                       .otherwise(pl.lit("south")))
    load(pg, "public.customers", customers, "customer_id text PRIMARY KEY, region text")
    sql = ("SELECT o.customer_id, o.order_id, o.order_time, o.amount FROM orders o "
           "JOIN customers c ON c.customer_id = o.customer_id WHERE c.region = 'north' AND o.channel <> 'store'")
    out = tmp_path / "north.parquet"
    result = run("segment", pg.uri(), "--query", sql, "-o", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    # the same rows chosen independently, in Polars, from the CSV
    north = set(customers.filter(pl.col("region") == "north")["customer_id"])
    rows = pl.read_csv(SAMPLE, infer_schema=False).filter(pl.col("customer_id").is_in(north)
                                                          & (pl.col("channel") != "store"))
    rows.select("customer_id", "order_id", "order_time", "amount").write_csv(tmp_path / "north.csv")
    expected_out = tmp_path / "expected.parquet"
    assert run("segment", str(tmp_path / "north.csv"), "-o", str(expected_out), "-q").exit_code == 0
    db, meta = read_assignments(str(out))
    assert_frame_equal(db, read_assignments(str(expected_out))[0])
    assert set(db["customer_id"]) <= north and meta["rows"]["rows_read"] == rows.height
    assert meta["inputs"][0]["path"].endswith("#query=" + " ".join(sql.split()))


def test_typed_columns_are_read_as_types_not_text(pg: PgServer, tmp_path: Path) -> None:
    """bigint ids, timestamptz and numeric arrive typed: the spool holds Int64, a UTC
    timestamp and an exact decimal, and the run equals the same typed data from Parquet."""
    df = pl.DataFrame({
        "customer_id": [10_000_000_001, 10_000_000_001, 10_000_000_002, 10_000_000_003],
        "order_time": [dt.datetime(2024, 1, 31, 20, 0, tzinfo=dt.UTC),  # 2024-02-01 04:00 in Shanghai
                       dt.datetime(2024, 1, 10, 9, 0, tzinfo=dt.UTC),
                       dt.datetime(2024, 1, 15, 3, 0, tzinfo=dt.UTC),
                       dt.datetime(2024, 1, 20, 23, 59, tzinfo=dt.UTC)],
        "amount": ["1234567890.1234", "0.0001", "-5.5000", "99.9900"],
        "order_id": [1, 2, 3, 4],
    }).with_columns(pl.col("amount").cast(pl.Decimal(18, 4)), pl.col("order_time").dt.cast_time_unit("us"))
    load(pg, "typed", df, "customer_id bigint, order_time timestamptz, amount numeric(18, 4), order_id bigint")
    uri = command_line_inputs([pg.uri()], table="typed", query=None)[0]
    src = open_source(uri)
    spooled = pl.read_parquet_schema(src.path)
    assert spooled["customer_id"] == pl.Int64 and spooled["order_id"] == pl.Int64
    assert spooled["order_time"] == pl.Datetime("us", "UTC")
    assert spooled["amount"] == pl.Decimal(18, 4)
    assert pl.read_parquet(src.path)["amount"].to_list() == df["amount"].to_list()  # exact, not via float

    parquet = tmp_path / "typed.parquet"
    df.write_parquet(parquet)
    out_db, out_file = tmp_path / "db.parquet", tmp_path / "file.parquet"
    assert run("rfm", pg.uri(), "--table", "typed", "-o", str(out_db), "-q").exit_code == 0
    assert run("rfm", str(parquet), "-o", str(out_file), "-q").exit_code == 0
    db = read_assignments(str(out_db))[0]
    assert_frame_equal(db, read_assignments(str(out_file))[0])
    first = db.filter(pl.col("customer_id") == "10000000001").row(0, named=True)
    assert first["last_purchase"] == dt.date(2024, 2, 1)  # converted to input.timezone before the date
    assert first["monetary"] == 1234567890.1235 or first["monetary"] == pytest.approx(1234567890.1235)


def test_uuid_customer_ids_are_read_as_the_text_postgresql_prints(pg: PgServer, tmp_path: Path) -> None:
    with connect(pg, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS by_uuid")
        cur.execute("CREATE TABLE by_uuid AS SELECT gen_random_uuid() AS customer_id, DATE '2024-01-01' + i AS order_date, "
                    "(i * 1.25)::numeric(10, 2) AS amount FROM generate_series(1, 50) AS i")
    out = tmp_path / "rfm.csv"
    assert run("rfm", pg.uri(), "--table", "by_uuid", "-o", str(out), "-q").exit_code == 0
    ids = pl.read_csv(out, schema_overrides={"customer_id": pl.String})["customer_id"].sort().to_list()
    assert ids == sorted(query(pg, "SELECT customer_id::text AS id FROM by_uuid")["id"].to_list())


def test_known_as_of_and_window_are_pushed_into_the_query(pg: PgServer, tmp_path: Path) -> None:
    """Only the rows inside the window travel; the rows left on the server are counted as
    the file run counts them, and the assignments are the same."""
    shanghai = dt.timezone(dt.timedelta(hours=8))
    days = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(365)]
    stamps = [dt.datetime(d.year, d.month, d.day, 12, tzinfo=shanghai) for d in days]
    # the edges in local time: 23:30 on the as-of date is kept, 00:30 the day after is not
    stamps += [dt.datetime(2025, 9, 30, 23, 30, tzinfo=shanghai), dt.datetime(2025, 10, 1, 0, 30, tzinfo=shanghai),
               dt.datetime(2025, 7, 2, 23, 59, tzinfo=shanghai), dt.datetime(2025, 7, 3, 0, 0, tzinfo=shanghai)]
    n = len(stamps)
    df = pl.DataFrame({
        "customer_id": [f"C{i % 7}" for i in range(n)],
        "order_time": [s.astimezone(dt.UTC) for s in stamps],
        "amount": [float(10 + i % 13) for i in range(n)],
    }).with_columns(pl.col("order_time").dt.cast_time_unit("us"), pl.col("amount").cast(pl.Decimal(10, 2)))
    df = pl.concat([df, pl.DataFrame({"customer_id": ["C1"], "order_time": [None], "amount": [1.0]},
                                     schema=df.schema)])  # a null date: sent, and reported as invalid
    load(pg, "dated", df, "customer_id text, order_time timestamptz, amount numeric(10, 2)")
    parquet = tmp_path / "dated.parquet"
    df.write_parquet(parquet)
    opts = ["--as-of", "2025-09-30", "--window-days", "90", "--max-invalid", "1", "-q"]
    out_db, out_file = tmp_path / "db.parquet", tmp_path / "file.parquet"
    assert run("segment", pg.uri(), "--table", "dated", "-o", str(out_db), *opts).exit_code == 0
    assert run("segment", str(parquet), "-o", str(out_file), *opts).exit_code == 0
    db, meta = read_assignments(str(out_db))
    expected, expected_meta = read_assignments(str(out_file))
    assert_frame_equal(db, expected)
    window = [s for s in stamps if dt.date(2025, 7, 3) <= s.date() <= dt.date(2025, 9, 30)]
    assert meta["inputs"][0]["rows"] == len(window) + 1 < n  # what was transferred: the window and the null date
    for key in ("rows_read", "rows_after_as_of", "rows_outside_window", "rows_used", "rows_invalid"):
        assert meta["rows"][key] == expected_meta["rows"][key], key
    assert {w["kind"] for w in meta["warnings"]} == {w["kind"] for w in expected_meta["warnings"]}


def test_empty_table_is_a_data_error(pg: PgServer) -> None:
    load(pg, "empty_orders", sample_typed().head(0), SAMPLE_DDL)
    result = run("validate", pg.uri(), "--table", "empty_orders")
    assert result.exit_code == 65
    assert "#empty_orders: no rows" in result.stderr


def test_a_missing_column_names_the_table_and_its_columns(pg: PgServer) -> None:
    load(pg, "no_amount", pl.DataFrame({"customer_id": ["a"], "order_date": [dt.date(2024, 1, 1)]}),
         "customer_id text, order_date date")
    result = run("validate", pg.uri(), "--table", "no_amount")
    assert result.exit_code == 65
    assert "#no_amount: missing required column: amount" in result.stderr


def test_bad_rows_are_reported_with_their_row_numbers_in_query_order(pg: PgServer) -> None:
    df = pl.DataFrame({"n": [1, 2, 3, 4], "customer_id": ["a", None, "c", "d"],
                       "order_date": ["2024-01-01", "2024-01-02", "not a date", "2024-01-04"], "amount": ["1", "2", "3", "4"]})
    load(pg, "bad_rows", df, "n bigint, customer_id text, order_date text, amount text")
    result = run("validate", pg.uri(), "--query", "SELECT customer_id, order_date, amount FROM bad_rows ORDER BY n -- load order")
    assert result.exit_code == 65
    assert "row 2: customer_id=''" in result.stderr and "row 3: order_date='not a date'" in result.stderr


# --------------------------------------------------------------------------- writing


def frame(n: int, *, as_of: dt.date = dt.date(2025, 12, 31), offset: int = 0) -> pl.DataFrame:
    return pl.DataFrame({"customer_id": [f"C{i + offset:08d}" for i in range(n)],
                         "tier": ["zhixin" if i % 5 == 0 else "yuxin" for i in range(n)],
                         "monetary": [float(i) for i in range(n)],
                         "as_of": [as_of] * n})


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_a_concurrent_reader_sees_only_complete_tables(pg: PgServer, mode: str) -> None:
    n = 20_000
    table = f"swap_{mode}"
    write_postgres(frame(n), pg.uri() + f"#public.{table}", meta={"as_of": "2025-12-31"}, mode=mode)
    seen: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        with connect(pg, autocommit=True) as conn, conn.cursor() as cur:
            while not stop.is_set():
                try:
                    cur.execute(f"SELECT count(*), count(DISTINCT customer_id) FROM public.{table} "
                                "WHERE as_of = '2025-12-31'")
                    total, distinct = cur.fetchone()
                    seen.append(total if total == distinct else -1)
                except Exception as exc:  # noqa: BLE001 - any error is a failure of the swap
                    errors.append(str(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(6):
            write_postgres(frame(n), pg.uri() + f"#public.{table}", meta={"as_of": "2025-12-31"}, mode=mode)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors[:3]
    assert len(seen) >= 6 and set(seen) == {n}
    leftovers = query(pg, f"SELECT relname FROM pg_class WHERE relname LIKE '{table}%segcli%'")
    assert leftovers.height == 0


@pytest.mark.slow
@pytest.mark.parametrize("old", ["same shape", "another shape"])
def test_a_load_killed_midway_leaves_the_old_table(pg: PgServer, old: str) -> None:
    """SIGKILL while the COPY runs: into the table itself (same shape) or into the staging
    table beside it (another shape): the old table is left as it was, nothing else."""
    table = "killed_" + old.split()[0]
    target = f"{pg.uri()}#public.{table}"
    write_postgres(frame(1000) if old == "same shape" else frame(1000).drop("tier"), target, meta={"as_of": "2025-12-31"})
    before = query(pg, f"SELECT * FROM public.{table} ORDER BY customer_id")
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from test_postgres import frame; "
            "from segcli.postgres import write_postgres; "
            "write_postgres(frame(3_000_000), sys.argv[1], meta={'as_of': '2025-12-31'})")
    app_name = f"segcli-kill-{table}"
    proc = subprocess.Popen([sys.executable, "-c", code, target, str(ROOT / "tests")], stderr=subprocess.PIPE,
                            env={**os.environ, "PGAPPNAME": app_name})  # libpq names the writer's session
    deadline = time.monotonic() + 240
    try:
        while True:  # kill it while its COPY runs
            active = query(pg, "SELECT count(*) AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                               f"AND application_name = '{app_name}' AND state = 'active' AND query ILIKE 'COPY %FROM STDIN%'")
            if active["n"][0]:
                break
            assert proc.poll() is None, f"the writer ended before its COPY was seen: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, "no COPY seen"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 60
    while query(pg, f"SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = '{app_name}'")["n"][0]:
        assert time.monotonic() < deadline, "the killed writer's session is still there"
        time.sleep(0.1)  # the server rolls back once it notices the client is gone
    assert_frame_equal(query(pg, f"SELECT * FROM public.{table} ORDER BY customer_id"), before)
    assert query(pg, f"SELECT count(*) AS n FROM pg_class WHERE relname LIKE '{table}%segcli%'")["n"][0] == 0
    assert query(pg, f"SELECT count(*) AS n FROM public.{table}_runs")["n"][0] == 1


def test_a_duplicate_key_fails_the_load_and_leaves_the_old_rows(pg: PgServer) -> None:
    target = pg.uri() + "#public.dupes"
    write_postgres(frame(100), target, meta={"as_of": "2025-12-31"}, mode="append")
    before = query(pg, "SELECT * FROM public.dupes ORDER BY customer_id")
    forged = pl.concat([frame(100), frame(1, offset=7)])  # C00000007 twice
    for mode in ("append", "replace"):
        with pytest.raises(OutputError) as err:
            write_postgres(forged, target, meta={"as_of": "2025-12-31"}, mode=mode)
        assert err.value.exit_code == 73 and "duplicate key" in err.value.message, err.value.message
        assert "C00000007" in " ".join(err.value.details)
        assert PASSWORD not in err.value.message + " ".join(err.value.details)
        assert_frame_equal(query(pg, "SELECT * FROM public.dupes ORDER BY customer_id"), before)
    assert query(pg, "SELECT count(*) AS n FROM public.dupes_runs")["n"][0] == 1


def test_append_keeps_every_as_of_and_replaces_a_rerun(pg: PgServer, orders: str, tmp_path: Path) -> None:
    target = pg.uri() + "#public.history"
    sizes = {}
    for as_of in ("2025-06-30", "2025-12-31", "2025-12-31"):  # the last one again: replaced, not doubled
        result = run("segment", pg.uri(), "--table", orders, "--as-of", as_of, "-o", target, "--mode", "append", "-q")
        assert result.exit_code == 0, result.stderr
        out = tmp_path / f"{as_of}.parquet"
        assert run("segment", str(SAMPLE), "--as-of", as_of, "-o", str(out), "-q").exit_code == 0
        sizes[as_of] = read_assignments(str(out))[0]
    counts = query(pg, "SELECT as_of, count(*) AS n FROM public.history GROUP BY as_of ORDER BY as_of")
    assert counts.rows() == [(dt.date(2025, 6, 30), sizes["2025-06-30"].height),
                             (dt.date(2025, 12, 31), sizes["2025-12-31"].height)]
    june = query(pg, "SELECT * FROM public.history WHERE as_of = '2025-06-30' ORDER BY customer_id COLLATE \"C\"")
    assert_frame_equal(june, sizes["2025-06-30"], check_dtypes=False)
    runs = query(pg, "SELECT as_of, mode FROM public.history_runs ORDER BY created_at, as_of")
    assert runs.height == 3 and set(runs["mode"]) == {"append"}
    # a table of another shape is not appended to
    result = run("rfm", pg.uri(), "--table", orders, "-o", target, "--mode", "append", "-q")
    assert result.exit_code == 73 and "columns differ" in result.stderr


def test_lifetimes_summary_appends_with_the_as_of_date_added(pg: PgServer, orders: str, tmp_path: Path) -> None:
    target = pg.uri() + "#public.clv"
    for as_of in ("2025-06-30", "2025-12-31"):
        result = run("rfm", pg.uri(), "--table", orders, "--style", "lifetimes", "--as-of", as_of, "-o", target,
                     "--mode", "append", "-q")
        assert result.exit_code == 0, result.stderr
    out = tmp_path / "clv.parquet"
    assert run("rfm", str(SAMPLE), "--style", "lifetimes", "-o", str(out), "-q").exit_code == 0
    expected = read_assignments(str(out))[0]
    db = query(pg, "SELECT * FROM public.clv WHERE as_of = '2025-12-31' ORDER BY customer_id COLLATE \"C\"")
    assert db.columns == ["as_of", *expected.columns]
    assert_frame_equal(db.drop("as_of"), expected, check_dtypes=False)
    assert query(pg, "SELECT count(DISTINCT as_of) AS n FROM public.clv")["n"][0] == 2


def test_replacing_keeps_the_grants_of_the_old_table(pg: PgServer) -> None:
    target = pg.uri() + "#public.granted"
    write_postgres(frame(10), target, meta={"as_of": "2025-12-31"})
    with connect(pg, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_reader') THEN "
                    "CREATE ROLE crm_reader LOGIN PASSWORD 'reader-pw'; END IF; END $$")
        cur.execute("GRANT SELECT ON public.granted TO crm_reader")
    write_postgres(frame(12), target, meta={"as_of": "2025-12-31"})
    import adbc_driver_postgresql.dbapi as dbapi

    reader = f"postgresql://crm_reader:reader-pw@127.0.0.1:{pg.port}/shop"
    with dbapi.connect(reader) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM public.granted")
        assert cur.fetchone()[0] == 12


def test_rejected_rows_go_to_a_rejects_table_beside_the_output(pg: PgServer, orders: str) -> None:
    df = pl.DataFrame({"customer_id": ["a", "b", "c"], "order_date": ["2024-01-01", "bad", "2024-01-03"],
                       "amount": ["1", "2", "3"]})
    load(pg, "few_bad", df, "customer_id text, order_date text, amount text")
    target = pg.uri() + "#public.with_rejects"
    result = run("segment", pg.uri(), "--table", "few_bad", "--max-invalid", "1", "-o", target, "-q")
    assert result.exit_code == 0, result.stderr
    rejects = query(pg, "SELECT * FROM public.with_rejects_rejects")
    assert rejects["line"].to_list() == [2] and rejects["date"].to_list() == ["bad"]
    assert run("segment", pg.uri(), "--table", orders, "-o", target, "-q").exit_code == 0
    assert query(pg, "SELECT to_regclass('public.with_rejects_rejects') IS NULL AS gone")["gone"][0]


# --------------------------------------------------------------------------- credentials and failures


def test_password_from_pgpassword(pg: PgServer, orders: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    result = run("pareto", pg.uri(password=False), "--table", orders)
    assert result.exit_code == 0, result.stderr


def test_password_from_a_pgpass_file(pg: PgServer, orders: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{pg.port}:shop:{pg.user}:{PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    result = run("pareto", pg.uri(password=False), "--table", orders)
    assert result.exit_code == 0, result.stderr
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    result = run("pareto", pg.uri(password=False), "--table", orders)
    assert result.exit_code == 66 and "cannot connect" in result.stderr and "~/.pgpass" in result.stderr


FAILURES = [
    # (what, arguments after the command, exit code, what stderr says)
    ("bad password on the source", lambda pg: [pg.uri().replace(PASSWORD, "wrong-" + PASSWORD), "--table", "orders"],
     66, "password authentication failed"),
    ("unreachable port on the source", lambda pg: [pg.uri(port=1), "--table", "orders"], 66, "Connection refused"),
    ("missing table", lambda pg: [pg.uri(), "--table", "sales.nowhere"], 66, 'relation "sales.nowhere" does not exist'),
    ("query error", lambda pg: [pg.uri(), "--query", "SELEC customer_id FROM orders"], 66, "syntax error"),
    ("bad password on the sink", lambda pg: [str(SAMPLE), "-o", pg.uri().replace(PASSWORD, "wrong-" + PASSWORD) + "#public.t"],
     73, "password authentication failed"),
    ("unreachable port on the sink", lambda pg: [str(SAMPLE), "-o", pg.uri(port=1) + "#public.t"], 73, "Connection refused"),
]


@pytest.mark.parametrize("what,args,code,says", FAILURES, ids=[f[0] for f in FAILURES])
def test_failures_exit_with_the_documented_code_and_never_show_the_password(pg: PgServer, orders: str, what, args, code,
                                                                            says, tmp_path: Path) -> None:
    result = run("segment", *args(pg), "--debug")
    assert result.exit_code == code, (what, result.exit_code, result.stderr)
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("segcli: error:")]
    assert len(errors) == 1 and ("segcli: error: postgresql://segcli_test:***@127.0.0.1:" in errors[0]
                                 or "segcli: error: cannot read postgresql://segcli_test:***@127.0.0.1:" in errors[0])
    assert says in result.stderr and "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def test_the_password_is_in_no_output_of_a_successful_run(pg: PgServer, orders: str, tmp_path: Path) -> None:
    out = tmp_path / "a.csv"
    result = run("segment", pg.uri(), "--table", orders, "-o", str(out), "--json", "--debug")
    assert result.exit_code == 0, result.stderr
    texts = [result.stdout, result.stderr, out.read_text(), Path(f"{out}.meta.json").read_text()]
    assert all(PASSWORD not in t for t in texts)
    assert json.loads(Path(f"{out}.meta.json").read_text())["inputs"][0]["path"].startswith(
        "postgresql://segcli_test:***@127.0.0.1:")


def test_missing_extra_is_a_configuration_error_naming_the_install(tmp_path: Path) -> None:
    fake = tmp_path / "adbc_driver_postgresql"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "segcli", "segment", "postgresql://u:pw@127.0.0.1:1/db",
                           "--table", "orders"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 78, done.stderr
    assert "pip install 'segcli[postgres]'" in done.stderr and ":pw@" not in done.stderr


# --------------------------------------------------------------------------- no server needed


def test_mask_hides_passwords_in_the_authority_and_in_parameters() -> None:
    assert mask("postgresql://ann:p%40ss@db:5432/shop#s.t") == "postgresql://ann:***@db:5432/shop#s.t"
    assert mask("postgresql://ann@db/shop?password=x&sslmode=require") == \
        "postgresql://ann@db/shop?password=***&sslmode=require"
    assert mask("postgres://db/shop") == "postgres://db/shop"
    assert scrub('bad URI "postgresql://u:hunter2@[bad"', "postgresql://u:hunter2@[bad") == 'bad URI "postgresql://u:***@[bad"'


@pytest.mark.parametrize("args,says", [
    (["segment", "x.csv", "--table", "orders"], "--table needs a postgresql:// input"),
    (["segment", "postgresql://u@h/db", "--table", "a", "--query", "SELECT 1"], "choose one"),
    (["segment", "postgresql://u@h/db"], "--table schema.table or --query"),
    (["segment", "postgresql://u@h/db", "--table", "a b"], "not a table name"),
    (["segment", str(SAMPLE), "-o", "out.parquet", "--mode", "append"], "--mode append needs a postgresql://"),
    (["segment", str(SAMPLE), "-o", "postgresql://u:pw@h/db"], "name the table to write"),
])
def test_usage_errors(args: list[str], says: str) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.stderr
    assert says in result.stderr and ":pw@" not in result.stderr


# --------------------------------------------------------------------------- CRM hand-off to a table


def test_export_generic_writes_the_records_to_a_table_and_the_manifest_as_its_run(pg: PgServer, file_run,
                                                                                  tmp_path: Path) -> None:
    """``export --profile generic -o postgresql://...#schema.table`` (SPEC §8, §9): the same
    records the generic CSV carries, keyed by customer_id, the manifest in ``<table>_runs``."""
    src = tmp_path / "a.parquet"
    result = run("segment", str(SAMPLE), "-o", str(src), "-q")
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "generic"
    assert run("export", str(src), "--profile", "generic", "-o", str(folder), "-q").exit_code == 0
    csv = pl.concat([pl.read_csv(p, infer_schema=False) for p in sorted(folder.glob("*.csv"))])
    with connect(pg, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA IF NOT EXISTS crm")
    result = run("export", str(src), "--profile", "generic", "-o", pg.uri() + "#crm.handoff", "--json")
    assert result.exit_code == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    db = query(pg, 'SELECT * FROM crm.handoff ORDER BY customer_id COLLATE "C"')
    assert db.height == csv.height == file_run[0].height
    assert db.columns == csv.columns  # the generic CSV's header, key first
    as_text = db.select(pl.all().cast(pl.String))
    assert as_text["customer_id"].to_list() == csv["customer_id"].to_list()
    assert as_text["tier"].to_list() == csv["tier"].to_list()
    runs = query(pg, "SELECT rows, record::text AS record FROM crm.handoff_runs")
    assert runs["rows"].to_list() == [db.height]
    assert json.loads(runs["record"][0])["profile"]["name"] == "generic"
    # another profile imports files, not tables
    bad = run("export", str(src), "--profile", "zendesk", "-o", pg.uri() + "#crm.handoff")
    assert bad.exit_code == 2 and "only --profile generic" in bad.stderr
