"""Issue 11's alternative, measured: the per-customer aggregation written once in narwhals and
run by Spark SQL, against segcli's own Polars aggregation run per partition by mapInArrow.

Both start from the same canonical rows (customer_id, order_key, ts, amount_minor: what
segcli's parse gives), written to Parquet first, so that only the aggregation is compared;
one Spark session (local[2]) runs both, after a warm-up. The narwhals version is checked
against segcli's features on Polars. Needs ``pip install narwhals`` besides segcli[spark].

    python bench/spark_narwhals.py bench/data/tx-1M.parquet [--repeat 2]
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import narwhals as nw
import polars as pl

from segcli.config import load_config
from segcli.engines import EngineSettings
from segcli.engines.spark import _Aggregate, aggregate_partition, session
from segcli.loading import load_transactions
from segcli.pipeline import rfm_features

KEYS = ("customer_id", "order_key", "ts", "amount_minor")


def nw_features(rows: nw.LazyFrame) -> nw.LazyFrame:
    """segcli.rfm.orders + customer_features, in narwhals (SPEC §3's order and purchase rules)."""
    amount = nw.col("amount_minor")
    per_row = rows.select(
        "customer_id", "order_key",
        order_ts=nw.when(nw.col("order_key").is_null()).then(nw.col("ts")),
        amount_minor=amount,
        pos_minor=nw.when(amount > 0).then(amount).otherwise(nw.lit(0)),
        nonneg_date=nw.when(amount >= 0).then(nw.col("ts").dt.date()),
    )
    orders = per_row.group_by("customer_id", "order_key", "order_ts").agg(
        nw.col("amount_minor").sum().alias("net_minor"), nw.col("pos_minor").sum().alias("gross_minor"),
        nw.col("amount_minor").min().alias("min_minor"), nw.col("nonneg_date").min().alias("date"),
    ).with_columns(
        returns_minor=nw.col("gross_minor") - nw.col("net_minor"),
        purchase=(nw.col("net_minor") > 0) | ((nw.col("net_minor") == 0) & (nw.col("min_minor") >= 0)),
    )
    return orders.with_columns(
        purchase_date=nw.when(nw.col("purchase")).then(nw.col("date")),
        bought=nw.when(nw.col("purchase")).then(nw.lit(1)).otherwise(nw.lit(0)),
    ).group_by("customer_id").agg(
        nw.col("bought").sum().cast(nw.Int64).alias("frequency"),
        nw.col("purchase_date").min().alias("first_purchase"), nw.col("purchase_date").max().alias("last_purchase"),
        nw.col("net_minor").sum().alias("monetary_minor"), nw.col("gross_minor").sum().alias("gross_minor"),
        nw.col("returns_minor").sum().alias("returns_minor"),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    cfg = load_config(None)
    tmp = Path(tempfile.mkdtemp())
    canon = tmp / "canonical.parquet"
    tx = load_transactions([args.input], cfg)
    # Spark has no unsigned 64-bit integers: the order hash travels with the same bits, signed
    tx.tx.select(*KEYS).with_columns(pl.col("order_key").reinterpret(signed=True)).sink_parquet(canon)
    expected = rfm_features(pl.scan_parquet(canon).with_columns(pl.col("order_key").reinterpret(signed=False))
                            ).collect().sort("customer_id")
    rows = pl.scan_parquet(canon).select(pl.len()).collect().item()

    started = time.monotonic()
    spark = session(EngineSettings("spark", "local[2]", (("spark.driver.memory", "2g"),)))
    print(f"rows {rows:,}, customers {expected.height:,}; Spark session {time.monotonic() - started:.1f} s",
          flush=True)
    src = spark.read.parquet(str(canon))

    def narwhals_spark() -> pl.DataFrame:
        out = nw.from_native(src).pipe(nw_features).collect("polars").to_native()
        return out

    def mapinarrow_spark() -> pl.DataFrame:
        import io

        import pyarrow as pa
        from pyspark.sql import functions as F

        prepared = src.withColumns({"source": F.lit(0).cast("int"), "blank": F.lit(False), "currency": F.lit(None)
                                    .cast("string"), "amount_rounded": F.lit(False), "tail_null": F.lit(False)})
        agg = _Aggregate(False, False, False, rfm_features, pl.lit(True))
        blobs = prepared.repartition("customer_id").mapInArrow(functools.partial(aggregate_partition, agg),
                                                                "kind STRING, data BINARY").toArrow()
        frames = [pl.read_ipc(io.BytesIO(b)) for b in blobs.column("data").to_pylist()]
        assert isinstance(blobs, pa.Table)
        return pl.concat(frames)

    def polars_local() -> pl.DataFrame:
        return rfm_features(pl.scan_parquet(canon).with_columns(pl.col("order_key").reinterpret(signed=False))
                            ).collect()

    for name, run in (("polars (embedded, for scale)", polars_local), ("narwhals -> Spark SQL", narwhals_spark),
                      ("segcli Polars in mapInArrow", mapinarrow_spark)):
        times = []
        for _ in range(args.repeat + 1):  # the first is a warm-up
            t = time.monotonic()
            got = run()
            times.append(time.monotonic() - t)
        got = got.sort("customer_id").select(expected.columns)
        same = got.cast(dict(expected.schema)).equals(expected)  # narwhals sums come back as Spark's types
        print(f"{name}: {min(times[1:]):.1f} s (best of {args.repeat} after a warm-up); "
              f"equals segcli's features: {same}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
