"""Tier migrations between two assignment files: who moved up, down, arrived, departed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from segcli.config import SERVICE_FIELDS, config_from_dict
from segcli.errors import InputDataError, SegcliError
from segcli.tiers import YUXIN, ZHIXIN

# still_departed: departed in PREV already and absent now (nothing for a CRM to do, but counted)
CHANGES = ("upgrade", "downgrade", "group_change", "new", "departed", "still_departed", "unchanged")
QUIET_CHANGES = ("unchanged", "still_departed")  # not in the change file
NEEDED = {"customer_id", "tier", "vip_group", "reason", "monetary"}
DETAIL = ("recency_days", "frequency", "rfm_segment")
# What the change file says a customer now is, as the assignments file writes it (SPEC §5)
TO_FIELDS = ("reason", "tier_label", *SERVICE_FIELDS)
# The change file (diff -o FILE): who moved, then what CURR makes of them
CHANGE_FILE = ("customer_id", "from_tier", "to_tier", "from_group", "to_group", "change", *TO_FIELDS, "terms_changed")


@dataclass(frozen=True)
class TierDiff:
    changes: pl.DataFrame  # one row per customer in either file, with ``change``
    matrix: pl.DataFrame  # from_tier x to_tier: customers and revenue

    @property
    def moved(self) -> pl.DataFrame:
        """Rows a CRM acts on: everything but ``unchanged`` and ``still_departed``."""
        return self.changes.filter(~pl.col("change").is_in(QUIET_CHANGES))


def _checked(df: pl.DataFrame, name: str) -> pl.DataFrame:
    missing = NEEDED - set(df.columns)
    if missing:
        raise InputDataError(f"{name}: not a segcli assignments file (missing {', '.join(sorted(missing))})")
    return df


def _present(df: pl.DataFrame, extra: tuple[str, ...]) -> pl.DataFrame:
    """The customers in that run's data: a row written as 'departed' only demotes one."""
    keep = [c for c in (*DETAIL, *extra) if c in df.columns]
    return df.filter(pl.col("reason") != "departed").select("customer_id", "tier", "vip_group", "monetary", *keep)


def departed_terms(record: dict[str, Any]) -> dict[str, Any]:
    """Label and service terms of a departed customer (yuxin) from a run record's config,
    for when the file has no departed rows to take them from; empty without a record."""
    if "config" not in record:
        return {}
    try:
        cfg = config_from_dict(record["config"])
    except SegcliError:
        return {}
    terms = cfg.service.yuxin
    return {"tier_label": cfg.tiers.labels.get(YUXIN, YUXIN), **{f: getattr(terms, f) for f in SERVICE_FIELDS}}


def tier_diff(prev: pl.DataFrame, curr: pl.DataFrame, *, prev_name: str = "PREV", curr_name: str = "CURR",
              departed: dict[str, Any] | None = None) -> TierDiff:
    """Join two runs on customer id and classify each customer's move.

    A departed customer's row says what CURR makes of them: ``yuxin``, reason ``departed``,
    the label and terms of CURR's departed row, else those of ``departed``
    (:func:`departed_terms`). ``terms_changed`` compares the service terms of both runs.
    ``revenue`` in the matrix is the current net revenue (the previous one for departed
    customers), so a manager sees how much business moved between tiers.
    """
    prev, curr = _checked(prev, prev_name), _checked(curr, curr_name)
    p = _present(prev, SERVICE_FIELDS).rename({"tier": "from_tier", "vip_group": "from_group",
                                               "monetary": "from_monetary",
                                               **{f: f"from_{f}" for f in SERVICE_FIELDS}}, strict=False)
    c = _present(curr, TO_FIELDS).rename({"tier": "to_tier", "vip_group": "to_group", "monetary": "to_monetary"})
    joined = p.join(c, on="customer_id", how="full", coalesce=True, suffix="_curr")
    change = (
        pl.when(pl.col("from_tier").is_null()).then(pl.lit("new"))
        .when(pl.col("to_tier").is_null()).then(pl.lit("departed"))
        .when((pl.col("from_tier") == YUXIN) & (pl.col("to_tier") == ZHIXIN)).then(pl.lit("upgrade"))
        .when((pl.col("from_tier") == ZHIXIN) & (pl.col("to_tier") == YUXIN)).then(pl.lit("downgrade"))
        .when(pl.col("from_group").eq_missing(pl.col("to_group")).not_()).then(pl.lit("group_change"))
        .otherwise(pl.lit("unchanged"))
    )
    joined = _as_departed(joined.with_columns(change=change), curr, departed or {})
    keep = ["customer_id", "change", "from_tier", "to_tier", "from_group", "to_group", "from_monetary", "to_monetary",
            *TO_FIELDS, "terms_changed"]
    keep += [f"{d}_curr" if f"{d}_curr" in joined.columns else d for d in DETAIL if d in joined.columns]
    changes = pl.concat([
        joined.with_columns(terms_changed=_terms_changed(joined)).select(keep)
        .rename({f"{d}_curr": d for d in DETAIL if f"{d}_curr" in joined.columns}),
        _still_departed(prev, curr),
    ], how="diagonal_relaxed").sort("customer_id")
    return TierDiff(changes, _matrix(changes))


def _as_departed(joined: pl.DataFrame, curr: pl.DataFrame, fallback: dict[str, Any]) -> pl.DataFrame:
    """Departed rows get what CURR wrote for them (tier yuxin, reason departed, label and
    terms), so that the change file and the assignments file agree."""
    gone = pl.col("change") == "departed"
    written = [f for f in TO_FIELDS if f in curr.columns and f != "reason"]
    rows = curr.filter(pl.col("reason") == "departed").select("customer_id", *written)
    joined = joined.join(rows.rename({f: f"{f}_gone" for f in written}), on="customer_id", how="left")
    for f in TO_FIELDS:
        if f not in joined.columns:
            joined = joined.with_columns(pl.lit(None).alias(f))

    def now(f: str) -> pl.Expr:  # CURR's departed row, else the recorded config
        value = pl.lit(fallback.get(f))
        return pl.coalesce(pl.col(f"{f}_gone"), value) if f in written else value

    return joined.with_columns(
        to_tier=pl.when(gone).then(pl.lit(YUXIN)).otherwise(pl.col("to_tier")),
        reason=pl.when(gone).then(pl.lit("departed")).otherwise(pl.col("reason")),
        **{f: pl.when(gone).then(now(f)).otherwise(pl.col(f)) for f in TO_FIELDS if f != "reason"},
    )


def _terms_changed(joined: pl.DataFrame) -> pl.Expr:
    """Whether any service term differs between the runs; true for a new customer, null
    when PREV has no terms to compare."""
    if not all(f"from_{f}" in joined.columns for f in SERVICE_FIELDS):
        return pl.when(pl.col("change") == "new").then(True).otherwise(None)
    same = pl.all_horizontal([pl.col(f"from_{f}").eq_missing(pl.col(f)) for f in SERVICE_FIELDS])
    return pl.when(pl.col("change") == "new").then(True).otherwise(~same)


def _still_departed(prev: pl.DataFrame, curr: pl.DataFrame) -> pl.DataFrame:
    """Departed in PREV already and still not in CURR's data."""
    present = _present(curr, ()).select("customer_id")
    return (prev.filter(pl.col("reason") == "departed").select("customer_id", from_tier="tier")
            .join(present, on="customer_id", how="anti")
            .with_columns(change=pl.lit("still_departed"), from_monetary=pl.lit(None, dtype=pl.Float64)))


def _matrix(changes: pl.DataFrame) -> pl.DataFrame:
    """from_tier x to_tier of the customers in either run's data (customers already gone
    in both are counted among the changes, not here)."""
    return _moves(changes, "from_tier", "to_tier").sort("from_tier", "to_tier", descending=True)


def _moves(changes: pl.DataFrame, *keys: str) -> pl.DataFrame:
    """Customers and current revenue (the previous one for departed customers) per ``keys``."""
    return (
        changes.filter(pl.col("change") != "still_departed").with_columns(
            pl.col("from_tier").fill_null("(new)"),
            to_tier=pl.when(pl.col("change") == "departed").then(pl.lit("(departed)")).otherwise(pl.col("to_tier")),
            revenue=pl.coalesce("to_monetary", "from_monetary"),
        )
        .group_by(*keys)
        .agg(customers=pl.len(), revenue=pl.col("revenue").cast(pl.Decimal(38, 8)).sum().cast(pl.Float64))
    )


def change_counts(diff: TierDiff) -> pl.DataFrame:
    """Customers per kind of change, and how many of them get other service terms."""
    counts = diff.changes.group_by("change").agg(customers=pl.len(),
                                                 terms_changed=pl.col("terms_changed").fill_null(False).sum())
    order = pl.DataFrame({"change": list(CHANGES)})
    return order.join(counts, on="change", how="left").with_columns(pl.col("customers", "terms_changed").fill_null(0))


def change_lists(diff: TierDiff) -> dict[str, pl.DataFrame]:
    """The moved customers of each kind (upgrade, downgrade, group_change, new, departed),
    biggest current revenue first: the lists ``segcli diff`` prints and ``--json`` holds."""
    moved = diff.moved
    return {kind: moved.filter(pl.col("change") == kind).sort("to_monetary", "from_monetary", "customer_id",
                                                               descending=[True, True, False], nulls_last=True)
            for kind in CHANGES if kind not in QUIET_CHANGES}


def tier_flows(diff: TierDiff) -> pl.DataFrame:
    """Customers and revenue moving from each (tier, VIP group) of the previous run to each of
    this one: the matrix split by VIP group (summed over the groups it is ``diff.matrix``)."""
    return _moves(diff.changes, "from_tier", "from_group", "to_tier", "to_group").sort(
        "from_tier", "from_group", "to_tier", "to_group", descending=[True, False, True, False], nulls_last=True)


def change_count_map(diff: TierDiff) -> dict[str, dict[str, int]]:
    """``counts`` (customers per change) and ``terms_changed`` (how many of them get other
    service terms), as ``diff --json`` and the report give them."""
    counts = change_counts(diff)
    return {"counts": dict(counts.select("change", "customers").iter_rows()),
            "terms_changed": dict(counts.select("change", "terms_changed").iter_rows())}


def change_table(diff: TierDiff, *, tier_changes_only: bool = False) -> pl.DataFrame:
    """The change file (``diff -o FILE``): the moved customers, with what CURR makes of them.

    With ``tier_changes_only`` a VIP-group change whose service terms stay the same is left
    out: it asks nothing of a CRM."""
    moved = diff.moved
    if tier_changes_only:
        moved = moved.filter(~((pl.col("change") == "group_change") & pl.col("terms_changed").eq_missing(False)))
    return moved.select(CHANGE_FILE)

