"""PostgreSQL in and out, measured (issue 12): reading N transactions from a table against
the same rows from Parquet, and writing the per-customer assignments to a table.

    .venv/bin/python bench/postgres_io.py --data /tmp/tx10m.parquet   # made by sample_data/generate.py

Starts a throwaway PostgreSQL (tests/pg_server.py, durable settings: fsync on), loads the
file into a typed table (timestamp, numeric(12, 2)), then times, each ``--repeat`` times
(median), with the load average of the machine printed beside every figure:

* read: the driver's Arrow batches spooled to Parquet (segcli's PostgreSQL source) against
  Polars reading the Parquet file, both to completion;
* ``segcli segment`` end to end from the table and from the file (-o Parquet);
* write: the assignments to a table (first write: create; again: same shape, DELETE + COPY
  in one transaction; --mode append) against the Parquet writer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import polars as pl  # noqa: E402

from pg_server import start_server  # noqa: E402


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}/{fifteen:.1f} on {os.cpu_count()} cores"


def timed(fn, repeat: int) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), load()


def segcli(*args: str) -> None:
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "segcli"), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"segcli {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="transactions Parquet file (sample_data/generate.py --format parquet)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", default="/tmp/segcli-pg-bench")
    args = ap.parse_args()
    import adbc_driver_postgresql.dbapi as dbapi

    from segcli.io import open_source
    from segcli.postgres import command_line_inputs, write_postgres

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = pl.read_parquet(args.data).with_columns(pl.col("order_time").dt.cast_time_unit("us"))
    rows = data.height
    print(f"{rows:,} rows from {args.data}; {load()}", flush=True)
    server = start_server({"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
                           "shared_buffers": "512MB", "max_wal_size": "4GB"})
    try:
        uri = server.uri()
        start = time.perf_counter()
        with dbapi.connect(uri) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE orders (order_id text, customer_id text, order_time timestamp, "
                        "amount numeric(12, 2), currency text, channel text, category text)")
            cur.adbc_ingest("orders", data.to_arrow(), mode="append")
            conn.commit()
            cur.execute("SELECT pg_size_pretty(pg_total_relation_size('orders'))")
            size = cur.fetchone()[0]
        print(f"load into PostgreSQL (COPY, one transaction): {time.perf_counter() - start:.1f} s, table {size}; "
              f"{load()}", flush=True)
        del data
        source = command_line_inputs([uri], table="orders", query=None)[0]

        def read_pg() -> None:
            src = open_source(source)
            assert pl.scan_parquet(src.path).select(pl.len()).collect().item() == rows
            src.path.unlink()

        def read_parquet() -> None:
            assert pl.read_parquet(args.data).height == rows

        for name, fn in (("read from PostgreSQL (Arrow batches -> Parquet spool)", read_pg),
                         ("read the Parquet file (Polars, all columns)", read_parquet),
                         ("segcli segment from the table", lambda: segcli("segment", uri, "--table", "orders", "-q",
                                                                          "-o", str(work / "from_pg.parquet"))),
                         ("segcli segment from the Parquet file", lambda: segcli("segment", args.data, "-q",
                                                                                 "-o", str(work / "from_file.parquet")))):
            seconds, when = timed(fn, args.repeat)
            print(f"{name}: {seconds:.1f} s (median of {args.repeat}); {when}", flush=True)

        assignments = pl.read_parquet(work / "from_file.parquet")
        assert pl.read_parquet(work / "from_pg.parquet").equals(assignments), "PostgreSQL and file runs differ"
        meta = {"as_of": str(assignments["as_of"][0])}
        target = uri + "#public.assignments"
        start = time.perf_counter()
        write_postgres(assignments, target, meta=meta)
        print(f"write {assignments.height:,} assignments to a new table: {time.perf_counter() - start:.1f} s; "
              f"{load()}", flush=True)
        for name, fn in (("write them again (same shape: DELETE + COPY, one transaction)",
                          lambda: write_postgres(assignments, target, meta=meta)),
                         ("write them with --mode append (the as-of rows replaced)",
                          lambda: write_postgres(assignments, uri + "#public.history", meta=meta, mode="append")),
                         ("write them as Parquet (segcli's writer)",
                          lambda: __import__("segcli.io", fromlist=["write_table"]).write_table(
                              assignments, str(work / "out.parquet"), meta=meta))):
            seconds, when = timed(fn, args.repeat)
            print(f"{name}: {seconds:.1f} s (median of {args.repeat}); {when}", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
