"""Check that the DuckDB SQL baseline computes what segcli computes, customer by customer.

    bench/.venv-baselines/bin/python bench/check_duckdb_sql.py 1M 10M
    bench/.venv-baselines/bin/python bench/check_duckdb_sql.py path/to/export.parquet
    bench/.venv-baselines/bin/python bench/check_duckdb_sql.py --lifetimes 1M 10M

Runs ``segcli segment FILE -o A.parquet --quiet`` (segcli's venv, ``.venv``) and
``baselines/duckdb_sql_segment.py FILE B.parquet`` on the same Parquet export, joins the two
outputs on customer_id and compares frequency, monetary, recency_days, last_purchase,
r/f/m scores, pareto_class and tier exactly, and cum_share exactly and within 1e-12. With
``--lifetimes``: ``segcli rfm FILE --style lifetimes --freq D`` against
``baselines/duckdb_sql_lifetimes.py``, comparing frequency, recency and T exactly and
monetary_value exactly and within 1e-12 (the same customers: those with a purchase). A size
(1M, 10M, 100M) means ``bench/data/tx-SIZE.parquet`` (made by ``run.py --setup-only``).
Prints a table of mismatches per column with examples; exit 1 if any.
Run it with the baselines venv's Python (it needs duckdb).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TOLERANCE = 1e-12


@dataclass(frozen=True)
class Job:
    """One segcli command and its DuckDB SQL twin: the columns compared exactly, and the float
    column also compared within TOLERANCE."""

    segcli_args: tuple[str, ...]
    sql_script: Path
    exact: tuple[str, ...]
    approx: str


SEGMENT = Job(("segment",), BENCH / "baselines" / "duckdb_sql_segment.py",
              ("frequency", "monetary", "recency_days", "last_purchase", "r_score", "f_score", "m_score",
               "pareto_class", "tier"), "cum_share")
LIFETIMES = Job(("rfm", "--style", "lifetimes", "--freq", "D"), BENCH / "baselines" / "duckdb_sql_lifetimes.py",
                ("frequency", "recency", "T", "monetary_value"), "monetary_value")


def run(argv: list[str]) -> float:
    started = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"check: {' '.join(argv)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return time.perf_counter() - started


def q(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def compare(seg: Path, sql: Path, examples: int, job: Job) -> int:
    """Print the comparison; return the number of mismatching cells (plus unmatched customers)."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW a AS SELECT * FROM read_parquet({q(seg)})")
    con.execute(f"CREATE VIEW b AS SELECT * FROM read_parquet({q(sql)})")
    cols = ", ".join(f"a.{c} AS a_{c}, b.{c} AS b_{c}" for c in dict.fromkeys([*job.exact, job.approx]))
    con.execute(f"""CREATE TABLE j AS
        SELECT coalesce(a.customer_id, b.customer_id) AS customer_id,
               a.customer_id IS NOT NULL AS in_a, b.customer_id IS NOT NULL AS in_b, {cols}
        FROM a FULL OUTER JOIN b ON a.customer_id = b.customer_id""")
    n_a, n_b, both = con.execute("SELECT count(*) FILTER (in_a), count(*) FILTER (in_b), "
                                 "count(*) FILTER (in_a AND in_b) FROM j").fetchone()
    print(f"customers: segcli {n_a:,}, SQL {n_b:,}, in both {both:,}")
    bad = (n_a - both) + (n_b - both)
    if bad:
        ids = con.execute(f"SELECT customer_id, in_a, in_b FROM j WHERE NOT (in_a AND in_b) "
                          f"ORDER BY customer_id LIMIT {examples}").fetchall()
        print(f"  customers on one side only: {bad:,}; e.g. {ids}")
    # segcli writes its output sorted by customer id: so must the SQL (SPEC §5)
    for side, path in (("segcli", seg), ("SQL", sql)):
        unsorted = con.execute(f"""SELECT count(*) FROM (SELECT customer_id,
                                   lag(customer_id) OVER (ORDER BY file_row_number) AS prev
                                   FROM read_parquet({q(path)}, file_row_number = true))
                                   WHERE prev >= customer_id""").fetchone()[0]
        if unsorted:
            print(f"  {side} output is not in customer_id order ({unsorted:,} rows out of order)")
            bad += unsorted
    print()
    print("| column | mismatches | examples (customer_id: segcli vs SQL) |")
    print("| --- | --- | --- |")
    for c in job.exact:
        cond = f"in_a AND in_b AND a_{c} IS DISTINCT FROM b_{c}"
        n = con.execute(f"SELECT count(*) FROM j WHERE {cond}").fetchone()[0]
        ex = con.execute(f"SELECT customer_id, a_{c}, b_{c} FROM j WHERE {cond} ORDER BY customer_id "
                         f"LIMIT {examples}").fetchall() if n else []
        print(f"| {c} | {n:,} | " + "; ".join(f"{i}: {x!r} vs {y!r}" for i, x, y in ex) + " |")
        bad += n
    a, b = f"a_{job.approx}", f"b_{job.approx}"
    n_exact, n_tol, worst = con.execute(f"""SELECT count(*) FILTER ({a} IS DISTINCT FROM {b}),
            count(*) FILTER (abs({a} - {b}) > {TOLERANCE} OR ({a} IS NULL) <> ({b} IS NULL)),
            max(abs({a} - {b}))
        FROM j WHERE in_a AND in_b""").fetchone()
    print(f"| {job.approx} | {n_tol:,} beyond {TOLERANCE:g} ({n_exact:,} not bit-identical; "
          f"largest difference {worst or 0:.3g}) | |")
    bad += n_tol
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", help="sizes (1M, 10M, 100M: bench/data/tx-SIZE.parquet) or Parquet paths")
    ap.add_argument("--segcli", type=Path, default=REPO / ".venv" / "bin" / "segcli")
    ap.add_argument("--examples", type=int, default=5, help="examples per mismatching column")
    ap.add_argument("--keep", type=Path, help="keep both outputs in this folder")
    ap.add_argument("--lifetimes", action="store_true",
                    help="check duckdb_sql_lifetimes.py against segcli rfm --style lifetimes --freq D")
    args = ap.parse_args()
    job = LIFETIMES if args.lifetimes else SEGMENT
    total_bad = 0
    for item in args.inputs:
        path = BENCH / "data" / f"tx-{item}.parquet" if not item.endswith(".parquet") else Path(item)
        if not path.exists():
            sys.exit(f"check: {path} not found (python bench/run.py --setup-only --sizes {item})")
        with tempfile.TemporaryDirectory(prefix="check-duckdb-sql-") as tmp:
            out = args.keep or Path(tmp)
            out.mkdir(parents=True, exist_ok=True)
            seg, sql = out / f"{path.stem}.segcli.parquet", out / f"{path.stem}.sql.parquet"
            print(f"## {path.name}\n")
            t_seg = run([str(args.segcli), *job.segcli_args, str(path), "-o", str(seg), "--quiet"])
            t_sql = run([sys.executable, str(job.sql_script), str(path), str(sql)])
            print(f"segcli {' '.join(job.segcli_args)} {t_seg:.1f} s, SQL {t_sql:.1f} s (one run each, not a benchmark)")
            bad = compare(seg, sql, args.examples, job)
            print(f"\n{'OK: identical' if not bad else f'MISMATCH: {bad:,} differences'}\n")
            total_bad += bad
    sys.exit(1 if total_bad else 0)


if __name__ == "__main__":
    main()
