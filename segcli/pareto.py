"""Revenue concentration: cumulative share, ABC classes, head sizes, top shares, Gini.

Comparisons against a share ("has the head reached 80%?") are done in exact integer
arithmetic on minor units, so a customer exactly on the line is classed the same on any
machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import polars as pl

from segcli.config import ParetoConfig

HEAD_SHARES = (0.50, 0.80, 0.90, 0.95)
TOP_SHARES = (0.01, 0.05, 0.10, 0.20, 0.50)


def _frac(share: float) -> Fraction:
    return Fraction(str(share))


def in_head(cum_before: pl.Expr, total: pl.Expr, share: float) -> pl.Expr:
    """THE head rule, for the classes and the head sizes alike: a customer is inside the
    smallest prefix whose cumulative revenue reaches ``share`` of the total (the one
    crossing the line included) when the revenue before them is below ``share · total``.

    Exact: Int128 products of minor units (< 2^63) and the share's fraction cannot wrap.
    """
    f = _frac(share)
    return (total > 0) & (cum_before.cast(pl.Int128) * f.denominator < total.cast(pl.Int128) * f.numerator)


def before_line(share: float) -> pl.Expr:
    """:func:`in_head` on the ``cum_before`` and ``total`` columns."""
    return in_head(pl.col("cum_before"), pl.col("total"), share)


def pareto_rank(lf: pl.LazyFrame, cfg: ParetoConfig, *, keep_share: float | None = None) -> pl.LazyFrame:
    """Add ``pareto_rank`` (1 = biggest), ``cum_share`` and ``pareto_class`` (A/B/C).

    Every customer takes part with monetary clipped at 0, sorted by it descending and by
    customer id for ties: ``lf`` must be in customer-id order, so that the row position
    breaks ties (sorting on an integer, not on the id text). With ``keep_share`` also
    ``within_keep``: inside the wider head that lets a previous VIP stay (hysteresis).
    """
    x = pl.col("monetary_minor").clip(lower_bound=0)
    # Positions in the Pareto order come from an argsort of two columns; the cumulative sum
    # runs over the gathered column and is gathered back, so the (wide) frame keeps its
    # customer-id order and is never sorted.
    order = pl.col("_order")
    return (
        lf.with_columns(x=x)
        # a stable sort keeps customer-id order among equal values: no second key to compare
        .with_columns(_order=pl.arg_sort_by("x", descending=True, maintain_order=True))
        .with_columns(_pos=order.arg_sort())
        .with_columns(cum=pl.col("x").gather(order).cum_sum().gather(pl.col("_pos")),
                      total=pl.col("x").sum(), pareto_rank=(pl.col("_pos") + 1).cast(pl.Int64))
        .with_columns(cum_before=pl.col("cum") - pl.col("x"))
        .with_columns(
            # exact decimal division, then one rounding to float: a float division by the
            # broadcast total is done as a multiplication by its reciprocal, and Polars does
            # that differently by thread count (1-ulp differences between runs); this way
            # the last customer's share is exactly 1.0 too
            cum_share=pl.when(pl.col("total") == 0).then(0.0).otherwise(
                (pl.col("cum").cast(pl.Decimal(38, 18)) / pl.col("total").cast(pl.Decimal(38, 0))).cast(pl.Float64)),
            pareto_class=pl.when(before_line(cfg.head_share)).then(pl.lit("A"))
            .when(before_line(cfg.b_share)).then(pl.lit("B"))
            .otherwise(pl.lit("C")),
            within_keep=before_line(keep_share) if keep_share is not None else pl.lit(None, pl.Boolean),
        )
        .drop("x", "cum", "cum_before", "total", "_order", "_pos")
    )


@dataclass(frozen=True)
class Concentration:
    customers: int
    total_revenue: float
    head: dict[float, tuple[int, float]]  # revenue share -> (customers needed, share of customers)
    top: dict[float, tuple[int, float]]  # top customer share -> (customers, share of revenue)
    gini: float
    abc: dict[str, tuple[int, float]]  # class -> (customers, share of revenue)

    def need(self, share: float) -> tuple[int, float]:
        """(customers, share of customers) in the head reaching ``share`` of revenue (the
        rule of :func:`in_head`); ``(0, 0.0)`` for a share whose head was not computed."""
        return self.head.get(share, (0, 0.0))


def concentration_of(customers: pl.DataFrame, head_share: float, scale: int) -> Concentration:
    """:func:`concentration` of a customer table (``monetary_minor``, ``pareto_class`` and
    ``pareto_rank`` of :func:`pareto_rank`), the configured ``head_share`` among the heads."""
    return concentration(customers["monetary_minor"].to_numpy(), customers["pareto_class"].to_numpy(), scale,
                         head_shares=HEAD_SHARES + (head_share,), rank=customers["pareto_rank"].to_numpy())


def concentration(x_minor: np.ndarray, classes: list[str] | np.ndarray, scale: int,
                  head_shares: tuple[float, ...] = HEAD_SHARES, *, rank: np.ndarray | None = None) -> Concentration:
    """Concentration figures from per-customer revenue (minor units, any order, clipped here).

    Parameters
    ----------
    x_minor:
        Net revenue per customer in minor units (int64).
    classes:
        The customers' ``pareto_class`` aligned with ``x_minor``.
    scale:
        Decimal places of the minor unit.
    rank:
        The customers' ``pareto_rank`` (1 = biggest) when known: the descending order is
        then placed by it instead of sorted again.
    """
    raw = np.clip(np.asarray(x_minor, dtype=np.int64), 0, None)
    if rank is None:
        x = np.sort(raw)[::-1]  # descending
    else:
        x = np.empty_like(raw)
        x[np.asarray(rank, dtype=np.int64) - 1] = raw
    n = len(x)
    total = int(x.sum(dtype=np.int64))
    cum = np.cumsum(x, dtype=np.int64)
    head: dict[float, tuple[int, float]] = {}
    top: dict[float, tuple[int, float]] = {}
    shares = sorted(set(head_shares))
    # the customers in each head, by the very rule that gives the classes
    before = pl.DataFrame({"cum_before": cum - x})
    needed = before.select(in_head(pl.col("cum_before"), pl.lit(total, pl.Int64), s).sum().alias(str(i))
                           for i, s in enumerate(shares)).row(0) if n else (0,) * len(shares)
    for share, need in zip(shares, needed):
        head[share] = (int(need), need / n if n else 0.0)
    for share in TOP_SHARES:
        k = math.ceil(_frac(share) * n)
        top[share] = (k, (int(cum[k - 1]) / total) if (k and total) else 0.0)
    asc = x[::-1].astype(np.float64)
    i = np.arange(1, n + 1, dtype=np.float64)
    gini = float(((2 * i - n - 1) * asc).sum() / (n * asc.sum())) if n and total else 0.0
    cls = np.asarray(classes)
    abc = {}
    for c in ("A", "B", "C"):
        mask = cls == c
        abc[c] = (int(mask.sum()), (int(raw[mask].sum(dtype=np.int64)) / total) if total else 0.0)
    return Concentration(n, total / 10**scale, head, top, gini, abc)
