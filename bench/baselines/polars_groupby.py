"""Bare per-customer group-by with Polars (segcli's venv): the same aggregates as DuckDB's.

--engine streaming (Polars 2.x's default for collect()) or in-memory.
"""
import argparse

import polars as pl

ap = argparse.ArgumentParser()
ap.add_argument("path")
ap.add_argument("--engine", choices=["streaming", "in-memory"], default="streaming")
args = ap.parse_args()

out = (
    pl.scan_parquet(args.path)
    .group_by("customer_id")
    .agg(
        frequency=pl.col("order_id").n_unique(),
        last_purchase=pl.col("order_time").max().dt.date(),
        monetary=pl.col("amount").sum(),
    )
    .collect(engine=args.engine)
)
print(f"rows={out.height}")
