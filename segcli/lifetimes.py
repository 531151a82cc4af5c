"""The summary CLV libraries fit on (lifetimes, pymc-marketing): frequency, recency, T,
monetary_value per customer, with periods of a day or a Monday-start week (SPEC §3)."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import polars as pl

from segcli.config import Config
from segcli.errors import warning_records
from segcli.loading import Loader, Transactions, load_transactions
from segcli.pipeline import created_timestamp, features_by_part, record_fields
from segcli.results import LifetimesResult
from segcli.rfm import money, purchase_rule

SCHEMA_VERSION = 1  # of the lifetimes file: customer_id, frequency, recency, T, monetary_value

EPOCH_MONDAY = dt.date(1970, 1, 5)  # a Monday: week numbers count from it


def period_expr(date: pl.Expr, freq: str) -> pl.Expr:
    """Whole periods since a fixed Monday: days, or Monday-start weeks."""
    days = (date - pl.lit(EPOCH_MONDAY)).dt.total_days()
    return days if freq == "D" else days.floordiv(7)


ORDER = ["customer_id", "order_key", "order_ts"]  # an order, as in :func:`segcli.rfm.orders`


def lifetimes_periods(tx: pl.LazyFrame, freq: str) -> pl.LazyFrame:
    """The heavy part, which needs no as-of date: per customer, the counted periods, the
    first and last, and the value in minor units in all of them and in the first.

    Orders are those of :func:`segcli.rfm.orders`. An order with a non-negative row is
    dated by its earliest one and all its rows net into that period; a return-only order
    belongs to no purchase, so each of its returns falls into the period it is dated in
    (a return without an order id on a purchase day nets into that day, as in lifetimes).

    One group-by of the rows into orders gives each order's net, smallest row and date (a
    window finding each row's order date cost twice as much). Alongside, the negative rows
    (3% of an export) are summed per order and period, and of these the sums of return-only
    orders are kept (a semi-join of the rows themselves against those orders held up the pass
    over the rows: more than twice the cost). Every aggregation is a plain sum, min or max
    of a column prepared before it, which Polars does fastest.
    """
    if freq not in ("D", "W"):
        raise ValueError(f"freq must be D or W, not {freq!r}")
    amount = pl.col("amount_minor")
    rows = tx.select("customer_id", "order_key", order_ts=pl.when(pl.col("order_key").is_null()).then(pl.col("ts")),
                     day=pl.col("ts").dt.date(), amount_minor=amount).filter(pl.col("day").is_not_null())
    orders = (
        rows.with_columns(purchase_day=pl.when(amount >= 0).then(pl.col("day")))
        .group_by(ORDER)
        .agg(net_minor=amount.sum(), min_minor=amount.min(), order_day=pl.col("purchase_day").min())
    )
    dated = orders.filter(pl.col("order_day").is_not_null()).select(
        "customer_id", "net_minor", "min_minor", period=period_expr(pl.col("order_day"), freq))
    returns = (rows.filter(amount < 0).group_by(*ORDER, period_expr(pl.col("day"), freq).alias("period"))
               .agg(net_minor=amount.sum(), min_minor=amount.min()))
    # nulls_equal: order_ts is null for every order with an order id
    return_only = (returns.join(orders.filter(pl.col("order_day").is_null()).select(ORDER), on=ORDER, how="semi",
                                nulls_equal=True)
                   .select("customer_id", "net_minor", "min_minor", "period"))
    # an order is one row here (a return-only one: one row a period, never a purchase), so this is
    # the purchase rule of segcli.rfm.orders
    purchase = purchase_rule(pl.col("net_minor"), pl.col("min_minor"))
    counted = (
        pl.concat([dated, return_only])
        .select("customer_id", "period", "net_minor", purchase=purchase)
        .group_by("customer_id", "period")
        .agg(value_minor=pl.col("net_minor").sum(), bought=pl.col("purchase").max())
        .filter(pl.col("bought"))
    )
    return counted.group_by("customer_id").agg(
        periods=pl.len(),
        first=pl.col("period").min(),
        last=pl.col("period").max(),
        total_minor=pl.col("value_minor").sum(),
        first_value_minor=pl.col("value_minor").min_by("period"),
    )


def lifetimes_finish(periods: pl.LazyFrame, *, as_of: dt.date, freq: str, scale: int) -> pl.LazyFrame:
    """:func:`lifetimes_periods` -> the summary columns, in customer-id order."""
    as_of_period = (as_of - EPOCH_MONDAY).days if freq == "D" else (as_of - EPOCH_MONDAY).days // 7
    return (
        periods.select(
            "customer_id",
            frequency=(pl.col("periods") - 1).cast(pl.Int64),
            recency=(pl.col("last") - pl.col("first")).cast(pl.Int64),
            T=(pl.lit(as_of_period) - pl.col("first")).cast(pl.Int64),
            monetary_value=pl.when(pl.col("periods") > 1)
            .then(money(pl.col("total_minor") - pl.col("first_value_minor"), scale) / (pl.col("periods") - 1))
            .otherwise(0.0),
        )
        .sort("customer_id")
    )


def lifetimes_record(cfg: Config, tx: Transactions, freq: str, created_at: dt.datetime | None = None,
                     ) -> dict[str, Any]:
    """The run record of a lifetimes file: the fields every segcli output records (so that
    ``config show --from`` and ``summary --record`` read it), plus the style and period."""
    return {"schema_version": SCHEMA_VERSION, **record_fields(cfg, tx), "style": "lifetimes", "freq": freq,
            "warnings": warning_records(tx.warnings), "created_at": created_timestamp(created_at)}


def lifetimes_table(inputs: list[str], cfg: Config, *, freq: str = "D", memory_limit: int | None = None,
                    load: Loader | None = None, created_at: dt.datetime | None = None) -> LifetimesResult:
    """``segcli rfm --style lifetimes``: the summary of every customer with a purchase.

    A period counts when it holds a purchase (an order dated in it, SPEC §3); its value is
    the net sum of the orders dated in it, so an order's later line items and returns net
    into the period of the order instead of falling into an uncounted one, plus the returns
    that belong to no purchase and are dated in it. ``frequency`` = counted periods - 1;
    ``recency`` / ``T`` = periods from the first counted period to the last / to as-of;
    ``monetary_value`` = mean value of the counted periods after the first (0 if none).

    The periods are counted in the pass that checks the rows when it can (no as-of date is
    needed for them, :func:`lifetimes_periods`), then finished with it (:func:`lifetimes_finish`).
    ``created_at``: the time the record says it was made (``None``: now).

    Raises :class:`InputDataError` on bad input and on warnings under ``analysis.strict``."""
    periods = functools.partial(lifetimes_periods, freq=freq)
    tx = (load or load_transactions)(inputs, cfg, aggregate=periods, memory_limit=memory_limit)  # strict there
    table = lifetimes_finish(features_by_part(tx, per_customer=periods).lazy(), as_of=tx.as_of, freq=freq,
                             scale=tx.scale).collect()
    return LifetimesResult(table, lifetimes_record(cfg, tx, freq, created_at), tx.warnings, tx.rejects, freq)
