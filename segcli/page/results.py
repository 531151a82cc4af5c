"""What a report shows, gathered from the functions behind ``summary``, ``pareto`` and ``diff``.

Nothing here computes a figure of its own: the tables are :func:`segcli.report.summarize`,
the concentration is the run's :class:`~segcli.pareto.Concentration` (what ``pareto --json``
prints), the migrations are :func:`segcli.diff.tier_diff`. The few extra views a chart needs
(curve points, the R x F grid, the flows between groups) are counted from the assignments and
named as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from segcli.config import Config, segment_of
from segcli.diff import TierDiff, change_lists, tier_diff, tier_flows
from segcli.pareto import Concentration
from segcli.plot import curve_points
from segcli.report import summarize
from segcli.results import SegmentResult
from segcli.tiers import YUXIN, ZHIXIN, vip_limit

SUMMARY_BY = ("tier", "vip_group", "cluster", "rfm_segment", "reason")
LIST_ROWS = 20  # rows of each customer list on the page (upgrades, downgrades, at-risk VIPs)
AT_RISK_COLUMNS = ("customer_id", "vip_group", "reason", "monetary", "recency_days", "last_purchase", "grace_until")


@dataclass(frozen=True)
class Migration:
    """``diff PREV CURR`` of the previous run against this one."""

    previous: str
    diff: TierDiff
    lists: dict[str, pl.DataFrame]  # change kind -> its customers, in the CLI's order
    flows: pl.DataFrame  # (from_tier, from_group) -> (to_tier, to_group): customers, revenue


@dataclass(frozen=True)
class ReportResults:
    """Everything a report page shows; the page builders only lay it out."""

    as_of: str
    inputs: list[str]
    config_hash: str
    version: str
    labels: dict[str, str]  # tier -> its label (知心, 遇心)
    head_share: float
    vip_limit: int  # L = min(capacity, floor(max_share * N)), as the tiers compute it
    concentration: Concentration
    summaries: dict[str, pl.DataFrame]  # by -> summarize(assignments, by)
    curve: tuple[list[float], list[float]]  # (share of customers, cumulative share of revenue)
    vip_end: tuple[int, float] | None  # the last VIP in Pareto order: (position, cum_share)
    rfm_grid: pl.DataFrame  # r_score, f_score, customers, segment
    bins: int
    cut: tuple[int, str]  # candidates cut by the limit, and where the number comes from
    migration: Migration | None
    at_risk: pl.DataFrame | None  # VIPs with at_risk (schema v2), None when the column is absent


def build_results(seg: SegmentResult, *, inputs: list[str], previous_name: str = "PREV") -> ReportResults:
    """Gather a report from a segmentation run.

    Parameters
    ----------
    seg:
        The result of :func:`segcli.segment` on the inputs: the assignments, the config the
        run used (head share, VIP limit, segment map, tier labels) and, when it had one, the
        previous run's assignments, for the migrations.
    inputs:
        The inputs as the page names them.
    previous_name:
        How the page names the previous run.
    """
    df, cfg, previous = seg.assignments, seg.config, seg.previous
    present = df.filter(pl.col("cum_share").is_not_null())  # rows written as 'departed' are not in the data
    migration = None
    if previous is not None:
        d = tier_diff(previous, df, prev_name=previous_name, curr_name="this run")
        migration = Migration(previous_name, d, change_lists(d), tier_flows(d))
    return ReportResults(
        as_of=str(seg.record["as_of"]), inputs=list(inputs), config_hash=str(seg.record["config_hash"]),
        version=str(seg.record["version"]),
        labels={t: cfg.tiers.labels.get(t, t) for t in (ZHIXIN, YUXIN)},
        head_share=cfg.pareto.head_share,
        vip_limit=vip_limit(cfg.tiers, seg.concentration.customers),
        concentration=seg.concentration,
        summaries={by: summarize(df, by) for by in SUMMARY_BY},
        curve=curve_points(present["cum_share"].to_numpy()),
        vip_end=vip_end(present),
        rfm_grid=rfm_grid(present, cfg),
        bins=cfg.rfm.bins,
        cut=candidates_cut(seg.record, df),
        migration=migration,
        at_risk=at_risk_vips(df),
    )


def vip_end(present: pl.DataFrame) -> tuple[int, float] | None:
    """Where the 知心 tier ends on the concentration curve: the position (1 = biggest) and
    cumulative share of the VIP with the least revenue; None without VIPs."""
    vip = present.filter(pl.col("tier") == ZHIXIN)["cum_share"]
    if vip.len() == 0:
        return None
    last = float(vip.max())  # type: ignore[arg-type]
    position = int(np.searchsorted(np.sort(present["cum_share"].to_numpy()), last, side="left")) + 1
    return position, last


def rfm_grid(present: pl.DataFrame, cfg: Config) -> pl.DataFrame:
    """Customers per (r_score, f_score) cell, every cell of the grid, with the segment the
    config's map gives the cell (several names joined by ``/`` where m_score decides)."""
    bins = cfg.rfm.bins
    scores = list(range(1, bins + 1))
    names = {(r, f): "/".join(dict.fromkeys(segment_of(cfg.rfm.segments, r, f, m) for m in scores))
             for r in scores for f in scores}
    cells = pl.DataFrame({"r_score": [r for r in scores for _ in scores], "f_score": scores * bins},
                         schema={"r_score": pl.Int64, "f_score": pl.Int64})
    counts = present.group_by("r_score", "f_score").agg(customers=pl.len())
    return (cells.join(counts, on=["r_score", "f_score"], how="left")
            .with_columns(pl.col("customers").fill_null(0).cast(pl.Int64),
                          segment=pl.Series([names[(r, f)] for r in scores for f in scores]))
            .sort("r_score", "f_score", descending=[True, False]))


def candidates_cut(meta: dict[str, Any], df: pl.DataFrame) -> tuple[int, str]:
    """Candidates the VIP limit cut: ``candidates_cut`` of the run record when it has one,
    else the rows whose reason is ``capacity_cut`` (the tiers' own verdict per customer)."""
    recorded = meta.get("candidates_cut")
    if isinstance(recorded, int):
        return recorded, "run record"
    return int((df["reason"] == "capacity_cut").sum()), "reason = capacity_cut"


def at_risk_vips(df: pl.DataFrame) -> pl.DataFrame | None:
    """VIPs flagged ``at_risk`` (schema v2 lifecycle), biggest first; None before v2."""
    if "at_risk" not in df.columns:
        return None
    cols = [c for c in AT_RISK_COLUMNS if c in df.columns]
    return (df.filter((pl.col("tier") == ZHIXIN) & pl.col("at_risk").fill_null(False))
            .sort("monetary", "customer_id", descending=[True, False]).select(cols))


def matrix_cells(matrix: pl.DataFrame) -> tuple[list[str], list[str], dict[tuple[str, str], tuple[int, float]]]:
    """The rows (from tiers), columns (to tiers) and cells (customers, revenue) of a diff
    matrix, in reading order: 知心, 遇心, then new / departed."""
    froms = [t for t in (ZHIXIN, YUXIN, "(new)") if t in matrix["from_tier"].to_list()]
    tos = [t for t in (ZHIXIN, YUXIN, "(departed)") if t in matrix["to_tier"].to_list()]
    cells = {(a, b): (n, rev)
             for a, b, n, rev in matrix.select("from_tier", "to_tier", "customers", "revenue").iter_rows()}
    return froms, tos, cells


@dataclass(frozen=True)
class HeadlineFigure:
    """One headline figure: its raw value, the text shown, and the label (a text key)."""

    name: str
    value: int | float
    shown: str
    label: str
    note: str = ""
    values: dict[str, Any] | None = None  # for the label and note texts


def headline(r: ReportResults) -> list[HeadlineFigure]:
    """Customers, revenue, head share, Gini, VIP count and revenue share, the limit and its cut:
    each as ``pareto --json`` or ``summary --json`` (tier) gives it."""
    c = r.concentration
    need, need_share = c.need(r.head_share)
    tiers = {row["tier"]: row for row in r.summaries["tier"].iter_rows(named=True)}
    vip = tiers.get(ZHIXIN, {"customers": 0, "customer_share": 0.0, "revenue_share": 0.0})
    cut, source = r.cut
    v = {"head": r.head_share, "share": need_share, "need": need, "source": source}
    return [
        HeadlineFigure("customers", c.customers, f"{c.customers:,}", "customers"),
        HeadlineFigure("total_revenue", c.total_revenue, f"{c.total_revenue:,.2f}", "revenue_clipped"),
        HeadlineFigure("head_customer_share", need_share, f"{need_share:.1%}", "head", "head_value", v),
        HeadlineFigure("gini", c.gini, f"{c.gini:.4f}", "gini"),
        HeadlineFigure("vip_customers", vip["customers"], f"{vip['customers']:,}", "vip_customers", "of_customers",
                       {"share": vip["customer_share"]}),
        HeadlineFigure("vip_revenue_share", vip["revenue_share"], f"{vip['revenue_share']:.1%}", "vip_revenue"),
        HeadlineFigure("vip_limit", r.vip_limit, f"{r.vip_limit:,}", "vip_limit"),
        HeadlineFigure("candidates_cut", cut, f"{cut:,}", "cut", "cut_source", v),
    ]
