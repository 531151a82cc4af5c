"""Tier migrations between two assignment files: who moved up, down, arrived, departed."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from segcli.errors import InputDataError
from segcli.tiers import YUXIN, ZHIXIN

CHANGES = ("upgrade", "downgrade", "group_change", "new", "departed", "unchanged")
NEEDED = {"customer_id", "tier", "vip_group", "reason", "monetary"}
DETAIL = ("recency_days", "frequency", "rfm_segment")


@dataclass(frozen=True)
class TierDiff:
    changes: pl.DataFrame  # one row per customer in either file, with ``change``
    matrix: pl.DataFrame  # from_tier x to_tier: customers and revenue

    @property
    def moved(self) -> pl.DataFrame:
        """Rows a CRM acts on: everything but ``unchanged``."""
        return self.changes.filter(pl.col("change") != "unchanged")


def _present(df: pl.DataFrame, name: str) -> pl.DataFrame:
    missing = NEEDED - set(df.columns)
    if missing:
        raise InputDataError(f"{name}: not a segcli assignments file (missing {', '.join(sorted(missing))})")
    # a customer written as 'departed' is not in that run's data
    extra = [c for c in DETAIL if c in df.columns]
    return df.filter(pl.col("reason") != "departed").select("customer_id", "tier", "vip_group", "monetary", *extra)


def tier_diff(prev: pl.DataFrame, curr: pl.DataFrame, *, prev_name: str = "PREV", curr_name: str = "CURR") -> TierDiff:
    """Join two runs on customer id and classify each customer's move.

    ``revenue`` in the matrix is the current net revenue (the previous one for departed
    customers), so a manager sees how much business moved between tiers.
    """
    p = _present(prev, prev_name)
    c = _present(curr, curr_name)
    joined = p.join(c, on="customer_id", how="full", coalesce=True, suffix="_curr").rename(
        {"tier": "from_tier", "vip_group": "from_group", "monetary": "from_monetary",
         "tier_curr": "to_tier", "vip_group_curr": "to_group", "monetary_curr": "to_monetary"})
    change = (
        pl.when(pl.col("from_tier").is_null()).then(pl.lit("new"))
        .when(pl.col("to_tier").is_null()).then(pl.lit("departed"))
        .when((pl.col("from_tier") == YUXIN) & (pl.col("to_tier") == ZHIXIN)).then(pl.lit("upgrade"))
        .when((pl.col("from_tier") == ZHIXIN) & (pl.col("to_tier") == YUXIN)).then(pl.lit("downgrade"))
        .when(pl.col("from_group").eq_missing(pl.col("to_group")).not_()).then(pl.lit("group_change"))
        .otherwise(pl.lit("unchanged"))
    )
    keep = ["customer_id", "change", "from_tier", "to_tier", "from_group", "to_group", "from_monetary", "to_monetary"]
    keep += [f"{d}_curr" if f"{d}_curr" in joined.columns else d for d in DETAIL if d in joined.columns]
    changes = (
        joined.with_columns(change=change)
        .select(keep)
        .rename({f"{d}_curr": d for d in DETAIL if f"{d}_curr" in joined.columns})
        .sort("customer_id")
    )
    matrix = _moves(changes, "from_tier", "to_tier").sort("from_tier", "to_tier", descending=True)
    return TierDiff(changes, matrix)


def _moves(changes: pl.DataFrame, *keys: str) -> pl.DataFrame:
    """Customers and current revenue (the previous one for departed customers) per ``keys``."""
    return (
        changes.with_columns(
            pl.col("from_tier").fill_null("(new)"),
            pl.col("to_tier").fill_null("(departed)"),
            revenue=pl.coalesce("to_monetary", "from_monetary"),
        )
        .group_by(*keys)
        .agg(customers=pl.len(), revenue=pl.col("revenue").cast(pl.Decimal(38, 8)).sum().cast(pl.Float64))
    )


def change_counts(diff: TierDiff) -> pl.DataFrame:
    counts = diff.changes.group_by("change").agg(customers=pl.len())
    order = pl.DataFrame({"change": list(CHANGES)})
    return order.join(counts, on="change", how="left").with_columns(pl.col("customers").fill_null(0))


def change_lists(diff: TierDiff) -> dict[str, pl.DataFrame]:
    """The moved customers of each kind (upgrade, downgrade, group_change, new, departed),
    biggest current revenue first: the lists ``segcli diff`` prints and ``--json`` holds."""
    moved = diff.moved
    return {kind: moved.filter(pl.col("change") == kind).sort("to_monetary", "from_monetary", "customer_id",
                                                               descending=[True, True, False], nulls_last=True)
            for kind in CHANGES if kind != "unchanged"}


def tier_flows(diff: TierDiff) -> pl.DataFrame:
    """Customers and revenue moving from each (tier, VIP group) of the previous run to each of
    this one: the matrix split by VIP group (summed over the groups it is ``diff.matrix``)."""
    return _moves(diff.changes, "from_tier", "from_group", "to_tier", "to_group").sort(
        "from_tier", "from_group", "to_tier", "to_group", descending=[True, False, True, False], nulls_last=True)
