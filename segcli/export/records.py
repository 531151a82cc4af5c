"""Export records: an assignments file checked and shaped into one target's columns, and the
customers that changed against a previous run (``--changes-from``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import polars as pl

from segcli.config import SERVICE_FIELDS
from segcli.errors import InputDataError
from segcli.export.profiles import TIER_SINCE, TIER_VALUE, TIERS, Profile
from segcli.io import read_assignments
from segcli.tiers import YUXIN

DEPARTED = "departed"
# What every export reads: the tier, the policy columns and the run's date (SPEC §5).
NEEDED = ("customer_id", "tier", "tier_label", "vip_group", "reason", *SERVICE_FIELDS, "as_of")
V2_TYPES = {"previous_tier": pl.String, "tier_since": pl.Date, "at_risk": pl.Boolean, "grace_until": pl.Date}
DATE_COLUMNS = ("first_purchase", "last_purchase", "as_of", "tier_since", "grace_until")
# Run dates: every run moves them, so they never make a customer "changed" on their own.
VOLATILE = ("as_of", TIER_SINCE)
ID, REASON = "__segcli_id", "__segcli_reason"  # helper columns, dropped before writing


@dataclass(frozen=True)
class Assignments:
    """One assignments file as the export reads it."""

    path: str
    frame: pl.DataFrame
    meta: dict[str, Any]
    as_of: dt.date

    @property
    def schema_version(self) -> int:
        return int(self.meta.get("schema_version") or (2 if "tier_since" in self.frame.columns else 1))


def read_export_input(path: str) -> Assignments:
    """Read and check an assignments file: missing is exit 66, not an assignments file 65."""
    df, meta = read_assignments(path)
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise InputDataError(f"{path}: not a segcli assignments file (missing {', '.join(missing)})",
                             [f"columns in the file: {', '.join(df.columns[:20])}"])
    # JSONL holds dates as text; CSV and Parquet already as dates
    dates = [c for c in DATE_COLUMNS if c in df.columns and df.schema[c] == pl.String]
    df = df.with_columns(pl.col("customer_id").cast(pl.String), *(pl.col(c).str.to_date(strict=False) for c in dates))
    problems = []
    bad_tier = df.filter(~pl.col("tier").is_in(TIERS) | pl.col("tier").is_null())
    if bad_tier.height:
        problems.append(f"{bad_tier.height} rows with a tier other than zhixin/yuxin, e.g. "
                        f"customer {bad_tier['customer_id'][0]!r}: {bad_tier['tier'][0]!r}")
    if df["customer_id"].null_count():
        problems.append(f"{df['customer_id'].null_count()} rows without a customer_id")
    dupes = df.filter(pl.col("customer_id").is_duplicated())["customer_id"].unique().sort()
    if dupes.len():
        problems.append(f"{dupes.len()} customer ids appear more than once, e.g. {dupes[0]!r}")
    as_of = df["as_of"].max()
    if not isinstance(as_of, dt.date):
        problems.append("no as-of date in column as_of")
    if problems:
        raise InputDataError(f"{path}: not a valid assignments file", problems)
    assert isinstance(as_of, dt.date)
    return Assignments(path, df, meta, as_of)


def _source(source: str, columns: list[str], profile: Profile, as_of: dt.date) -> pl.Expr:
    if source == TIER_VALUE:
        integer = isinstance(profile.tier_values["zhixin"], int)
        return pl.col("tier").replace_strict(profile.tier_values, return_dtype=pl.Int64 if integer else pl.String)
    if source == TIER_SINCE:
        # the move-in date: the file's tier_since (schema version 2), else the run's as-of
        since = pl.col(TIER_SINCE).cast(pl.Date) if TIER_SINCE in columns else pl.lit(None, pl.Date)
        return since.fill_null(pl.lit(as_of, pl.Date))
    if source in columns:
        return pl.col(source)
    return pl.lit(None, V2_TYPES.get(source, pl.String))  # a v2 column in a version-1 file


def shape(df: pl.DataFrame, profile: Profile, as_of: dt.date) -> pl.DataFrame:
    """The target's columns (key first, then ``fields``), sorted by customer id, with the
    helper columns ``ID`` and ``REASON`` last."""
    exprs = [pl.col("customer_id").alias(profile.key)]
    exprs += [_source(src, df.columns, profile, as_of).alias(header) for header, src in profile.fields]
    return df.select(*exprs, pl.col("customer_id").alias(ID), pl.col("reason").alias(REASON)).sort(ID)


def _yuxin_template(curr: pl.DataFrame, fallback: dict[str, Any]) -> dict[str, Any]:
    """Label and service terms of the standard tier, as the current run wrote them."""
    rows = curr.filter(pl.col("tier") == YUXIN).sort("customer_id").head(1)
    if rows.height:
        return rows.select("tier_label", *SERVICE_FIELDS).row(0, named=True)
    return fallback


def _departed_rows(prev: pl.DataFrame, curr: Assignments, fallback: dict[str, Any]) -> pl.DataFrame:
    """Customers of PREV absent from the current file, written as a move to standard."""
    gone = prev.select("customer_id", pl.col("tier").alias("previous_tier")).join(
        curr.frame.select("customer_id"), on="customer_id", how="anti")
    template = _yuxin_template(curr.frame, fallback)
    rows = gone.with_columns(
        tier=pl.lit(YUXIN), vip_group=pl.lit(None, pl.String), reason=pl.lit(DEPARTED),
        as_of=pl.lit(curr.as_of, pl.Date), tier_since=pl.lit(curr.as_of, pl.Date),
        at_risk=pl.lit(None, pl.Boolean), grace_until=pl.lit(None, pl.Date),
        **{k: pl.lit(v) for k, v in template.items()},
    )
    return rows.select([c for c in curr.frame.columns if c in rows.columns])  # the current file's layout


def changed_records(curr: Assignments, prev: Assignments, profile: Profile,
                    fallback: dict[str, Any]) -> pl.DataFrame:
    """Shaped records of the customers whose exported fields changed since PREV.

    A customer is sent when a field the profile writes differs from PREV (run dates aside),
    when new (absent from PREV, or PREV's row is a departure), or when departed: in PREV but
    absent now, or present now with reason ``departed`` (a move to standard). These are the
    customers ``segcli diff PREV CURR`` lists, whenever the profile writes the tier and the
    VIP group.
    """
    prev_rows = prev.frame.filter(pl.col("reason") != DEPARTED)
    departed = _departed_rows(prev_rows, curr, fallback)
    rows = pl.concat([curr.frame, departed], how="diagonal_relaxed") if departed.height else curr.frame
    now = shape(rows, profile, curr.as_of)
    before = shape(prev_rows, profile, prev.as_of)
    compare = [profile.key] + [h for h, src in profile.fields if src not in VOLATILE]
    before = before.select(compare).cast({c: now.schema[c] for c in compare}, strict=False)
    differs = now.join(before, on=compare, how="anti", nulls_equal=True)[ID]
    known = prev_rows["customer_id"]
    keep = pl.when(pl.col(REASON) == DEPARTED).then(pl.col(ID).is_in(known.implode())).otherwise(
        pl.col(ID).is_in(differs.implode()))
    return now.filter(keep)
