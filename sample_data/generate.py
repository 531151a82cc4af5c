"""Seeded, deterministic generator of synthetic retail transaction exports (one row per order line).

Model:
* Customer c has a latent loyalty a_c ~ N(0, 1). The least loyal P_ONE_TIME buy once; the rest
  place 2 + Poisson(exp(mu + S_ORDERS * a_c)) orders, mu calibrated so the expected row count
  matches ``n_transactions``.
* Item spend level is lognormal (sigma SPEND_SIGMA), positively correlated with a_c, so a
  minority of customers holds most of the net revenue.
* Each customer has a first-seen day spread over the period and an exponential active lifetime
  (churn, but >= MIN_DAYS_PER_ORDER per order); later orders fall uniformly in that window, a
  few on the day of another of the customer's orders.
* An order has 1-4 items (rows sharing order_id and order_time). ~3% of rows are returns: minus an
  item's amount, same order_id, 1-30 days later (clipped to ``end``); a few orders are fully
  refunded and a few items are free gifts (0.00).
Customers are generated in contiguous id ranges (chunks), each with its own generator spawned from
SeedSequence(seed), so any size streams with bounded memory; rows are time-sorted within a chunk.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import date
from math import exp, log
from pathlib import Path
from statistics import NormalDist

import numpy as np
import polars as pl
import pyarrow.parquet as pq

CHANNELS = ["store", "app", "web", "wechat"]
CHANNEL_P = [0.35, 0.30, 0.15, 0.20]
CATEGORIES = ["grocery", "apparel", "beauty", "home", "sports", "digital"]
CATEGORY_P = [0.30, 0.22, 0.16, 0.14, 0.10, 0.08]
CATEGORY_PRICE = np.array([0.4, 1.2, 1.0, 1.5, 1.3, 4.0])  # price multiplier per category
ITEMS_P = [0.55, 0.25, 0.12, 0.08]  # P(order has 1, 2, 3, 4 items)
HOURS_STORE = np.array([0] * 9 + [3, 5, 7, 8, 6, 5, 5, 6, 7, 8, 8, 6, 3] + [0] * 2, float)
HOURS_ONLINE = np.array([2, 1, 1, 0.5, 0.5, 0.5, 1, 2, 3, 4, 4, 5, 6, 5, 4, 4, 4, 5, 5, 6, 8, 9, 8, 5])
P_ONE_TIME, S_ORDERS = 0.45, 1.0
SPEND_SIGMA, SPEND_RHO, MEDIAN_ITEM = 1.1, 0.35, 60.0
P_RETURN_ITEM, P_FULL_REFUND, P_GIFT, P_SAME_DAY = 0.027, 0.004, 0.01, 0.015
LIFE_MEAN_DAYS, MIN_DAYS_PER_ORDER, P_BIG_TICKET = 365.0, 10, 0.003
DAY = 86_400


def _order_model(n_transactions: int, n_customers: int) -> tuple[float, float]:
    """Return (q, mu): customers with a < q buy once, others 2 + Poisson(exp(mu + S_ORDERS*a))."""
    items = float(np.dot(ITEMS_P, np.arange(1, 5)))
    target = n_transactions / n_customers / (items * (1 + P_RETURN_ITEM + P_FULL_REFUND))
    p1 = min(max(P_ONE_TIME, 2.05 - target), 0.999)
    q = NormalDist().inv_cdf(p1)
    extra = max((target - p1) / (1 - p1) - 2, 0.01)  # mean Poisson rate among repeat buyers
    # E[exp(S a) | a > q] = exp(S^2 / 2) * (1 - Phi(q - S)) / (1 - Phi(q))
    m = exp(S_ORDERS**2 / 2) * (1 - NormalDist().cdf(q - S_ORDERS)) / (1 - p1)
    return q, log(extra / m)


def _hours(rng: np.random.Generator, channel: np.ndarray) -> np.ndarray:
    u = rng.random(channel.size)
    store = np.searchsorted(np.cumsum(HOURS_STORE) / HOURS_STORE.sum(), u, side="right")
    online = np.searchsorted(np.cumsum(HOURS_ONLINE) / HOURS_ONLINE.sum(), u, side="right")
    return np.where(channel == 0, store, online)


def _prices_cents(rng: np.random.Generator, level: np.ndarray, cat: np.ndarray) -> np.ndarray:
    price = level * CATEGORY_PRICE[cat] * rng.lognormal(0.0, 0.5, cat.size)
    price = np.where(rng.random(cat.size) < P_BIG_TICKET, price * 10, price)
    yuan = np.clip(np.floor(price), 5, 19_999).astype(np.int64)
    cents = rng.choice(np.array([90, 0, 50, -1]), cat.size, p=[0.6, 0.2, 0.1, 0.1])
    return yuan * 100 + np.where(cents < 0, rng.integers(0, 100, cat.size), cents)


def _chunk(rng: np.random.Generator, n: int, q: float, mu: float, span: int) -> dict[str, np.ndarray]:
    """Rows (unsorted) for n customers numbered 0..n-1; times are seconds since `start`."""
    a = rng.standard_normal(n)
    n_orders = np.where(a < q, 1, 2 + rng.poisson(np.exp(mu + S_ORDERS * a)))
    z = SPEND_RHO * a + np.sqrt(1 - SPEND_RHO**2) * rng.standard_normal(n)
    level = MEDIAN_ITEM * np.exp(SPEND_SIGMA * z)
    min_window = MIN_DAYS_PER_ORDER * (n_orders - 1)  # frequent buyers must have been around a while
    first = np.minimum(rng.integers(0, span, n), np.maximum(span - 1 - min_window, 0))
    life = np.maximum(rng.exponential(LIFE_MEAN_DAYS, n) * np.exp(0.3 * a), min_window)
    last = np.minimum(first + life, span - 1)
    pref = rng.choice(4, n, p=CHANNEL_P)
    # orders
    cust = np.repeat(np.arange(n), n_orders)
    k = np.arange(cust.size) - np.repeat(np.cumsum(n_orders) - n_orders, n_orders)
    day = first[cust] + np.floor(rng.random(cust.size) * (last[cust] - first[cust] + 1)).astype(np.int64)
    day = np.where(k == 0, first[cust], day)
    same = np.flatnonzero((k > 0) & (rng.random(cust.size) < P_SAME_DAY))
    day[same] = day[same - 1]
    channel = np.where(rng.random(cust.size) < 0.75, pref[cust], rng.choice(4, cust.size, p=CHANNEL_P))
    ts = day * DAY + _hours(rng, channel) * 3600 + rng.integers(0, 3600, cust.size)
    n_items = rng.choice(4, cust.size, p=ITEMS_P) + 1
    refund = rng.random(cust.size) < P_FULL_REFUND
    # items
    order = np.repeat(np.arange(cust.size), n_items)
    cat = rng.choice(len(CATEGORIES), order.size, p=CATEGORY_P)
    cents = _prices_cents(rng, level[cust[order]], cat)
    last_item = np.r_[order[1:] != order[:-1], True] & (n_items[order] > 1)
    cents[last_item & ~refund[order] & (rng.random(order.size) < P_GIFT)] = 0
    # returns
    ret = np.flatnonzero((refund[order] | (rng.random(order.size) < P_RETURN_ITEM)) & (cents > 0))
    t0, end_ts = ts[order[ret]], span * DAY - 1
    ret_ts = t0 + rng.integers(DAY, 30 * DAY + 1, ret.size)
    clipped = t0 + np.floor(rng.random(ret.size) * (end_ts - t0 + 1)).astype(np.int64)
    ret_ts = np.where(ret_ts > end_ts, clipped, ret_ts)
    rows = np.concatenate([order, order[ret]])
    return {
        "order": rows, "cust": cust[rows], "order_day": day[rows], "channel": channel[rows],
        "ts": np.concatenate([ts[order], ret_ts]), "cents": np.concatenate([cents, -cents[ret]]),
        "cat": np.concatenate([cat, cat[ret]]), "order_ts": ts, "day": day,
    }


def _order_seq(c: dict[str, np.ndarray], day_counter: np.ndarray) -> np.ndarray:
    """Per-order sequence number within its day, in time order, continuing across chunks."""
    perm = np.argsort(c["order_ts"], kind="stable")
    d = c["day"][perm]
    seq = np.empty_like(perm)
    seq[perm] = day_counter[d] + np.arange(d.size) - np.searchsorted(d, d, side="left") + 1
    day_counter += np.bincount(c["day"], minlength=day_counter.size)
    return seq


def _frame(c: dict[str, np.ndarray], seq: np.ndarray, first_id: int, width: int, start: date) -> pl.DataFrame:
    perm = np.argsort(c["ts"], kind="stable")
    epoch = (np.datetime64(start, "s") - np.datetime64(0, "s")).astype(np.int64)

    def ms(seconds: np.ndarray) -> np.ndarray:
        return ((seconds + epoch) * 1000).astype("datetime64[ms]")

    raw = pl.DataFrame({
        "oday": ms(c["order_day"][perm] * DAY), "seq": seq[c["order"][perm]],
        "cid": c["cust"][perm] + first_id + 1, "order_time": ms(c["ts"][perm]), "cents": c["cents"][perm],
        "channel": pl.Series(CHANNELS).gather(c["channel"][perm]),
        "category": pl.Series(CATEGORIES).gather(c["cat"][perm]),
    })
    return raw.select(
        order_id=pl.concat_str(pl.lit("SO"), pl.col("oday").dt.strftime("%Y%m%d"), pl.lit("-"),
                               pl.col("seq").cast(pl.String).str.zfill(6)),
        customer_id=pl.lit("C") + pl.col("cid").cast(pl.String).str.zfill(width),
        order_time=pl.col("order_time"),
        amount=(pl.col("cents").cast(pl.Decimal(18, 2)) / 100).cast(pl.Decimal(12, 2)),
        currency=pl.lit("CNY"), channel=pl.col("channel"), category=pl.col("category"),
    )


def iter_chunks(n_transactions: int, n_customers: int, *, seed: int = 42, start: date, end: date,
                chunk_rows: int = 2_000_000) -> Iterator[pl.DataFrame]:
    """Yield the export as DataFrames, one per contiguous customer-id range of ~chunk_rows rows."""
    span = (end - start).days + 1
    if span < 1 or n_transactions < 1 or n_customers < 1:
        raise ValueError("need start <= end and positive sizes")
    q, mu = _order_model(n_transactions, n_customers)
    per_chunk = max(1, int(chunk_rows * n_customers / n_transactions))
    starts = range(0, n_customers, per_chunk)
    width, day_counter = max(6, len(str(n_customers))), np.zeros(span, np.int64)
    for first_id, ss in zip(starts, np.random.SeedSequence(seed).spawn(len(starts))):
        c = _chunk(np.random.default_rng(ss), min(per_chunk, n_customers - first_id), q, mu, span)
        df = _frame(c, _order_seq(c, day_counter), first_id, width, start)
        del c  # free the numpy arrays before the consumer writes this chunk
        yield df


def generate(n_transactions: int, n_customers: int, *, seed: int = 42, start: date, end: date) -> pl.DataFrame:
    """Whole export in memory (same rows as `write` with the default chunk_rows)."""
    return pl.concat(iter_chunks(n_transactions, n_customers, seed=seed, start=start, end=end))


def write(path: str | Path, n_transactions: int, n_customers: int, *, seed: int = 42, start: date,
          end: date, fmt: str = "csv", chunk_rows: int = 2_000_000) -> None:
    """Stream the export to `path` chunk by chunk (CSV appended, Parquet one row group per chunk)."""
    chunks = iter_chunks(n_transactions, n_customers, seed=seed, start=start, end=end, chunk_rows=chunk_rows)
    if fmt == "csv":
        with open(path, "wb") as f:
            for i, df in enumerate(chunks):
                df.write_csv(f, include_header=i == 0, datetime_format="%Y-%m-%d %H:%M:%S")
    elif fmt == "parquet":
        writer = None
        for table in (df.to_arrow() for df in chunks):  # drop each polars chunk once converted
            writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table.cast(writer.schema))
        if writer:
            writer.close()
    else:
        raise ValueError(f"unknown format {fmt!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--transactions", type=int, default=40_000, help="approximate number of rows")
    p.add_argument("--customers", type=int, default=6_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 1))
    p.add_argument("--end", type=date.fromisoformat, default=date(2025, 12, 31))
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--chunk-rows", type=int, default=2_000_000)
    p.add_argument("--out", type=Path, help="default: transactions.<format> next to this script")
    args = p.parse_args()
    out = args.out or Path(__file__).with_name(f"transactions.{args.format}")
    write(out, args.transactions, args.customers, seed=args.seed, start=args.start, end=args.end,
          fmt=args.format, chunk_rows=args.chunk_rows)


if __name__ == "__main__":
    main()
