"""Tiers (SPEC §4): who is 知心 (zhixin, VIP) and who is 遇心 (yuxin, standard), why, in
which VIP group, and with what service terms.
"""

from __future__ import annotations

import operator
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import numpy as np
import polars as pl

from segcli.clusters import ClusterModel, cluster_customers
from segcli.config import Config, GroupNameRule, ServiceConfig, ServiceTerms, TierConfig
from segcli.rules import parse_rule
from segcli.schema import RULE_COLUMNS

ZHIXIN, YUXIN = "zhixin", "yuxin"
YUXIN_REASONS = ("departed", "no_purchase", "non_positive_revenue", "inactive", "below_head", "capacity_cut")
ENTRY_REASONS = {"pareto": "pareto_head", "cluster": "selected_by_cluster", "rule": "selected_by_rule",
                 "threshold": "selected_by_threshold"}
ZHIXIN_REASONS = (*ENTRY_REASONS.values(), "kept_by_hysteresis")
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


def vip_limit(cfg: TierConfig, n_customers: int) -> int:
    """L = min(capacity, floor(max_share * N)), exactly (0.2 * 10 is 2, not 1.999...)."""
    by_share = int(Fraction(str(cfg.max_share)) * n_customers)
    return min(cfg.capacity, by_share) if cfg.capacity else by_share


def eligible_expr(cfg: TierConfig) -> pl.Expr:
    """Only a recent buyer with positive net revenue can be VIP, whatever the method."""
    return (pl.col("frequency") > 0) & (pl.col("monetary_minor") > 0) & (pl.col("recency_days") <= cfg.active_days)


def top_clusters(df: pl.DataFrame, cfg: TierConfig, limit: int) -> list[int]:
    """Clusters (0 = highest mean monetary) taken whole, best first, while their eligible
    customers fit within the VIP limit (always at least cluster 0); or the first
    ``tiers.top_clusters`` when set."""
    if cfg.top_clusters:
        return list(range(cfg.top_clusters))
    sizes = (df.filter(eligible_expr(cfg) & pl.col("cluster").is_not_null())
             .group_by("cluster").len().sort("cluster"))
    chosen: list[int] = []
    total = 0
    for cluster, size in sizes.iter_rows():
        if chosen and total + size > limit:
            break
        chosen.append(cluster)
        total += size
    return chosen or [0]


def entry_expr(df: pl.DataFrame, cfg: TierConfig, *, limit: int, scale: int) -> pl.Expr:
    """The entry rule of the configured selection method (a config switch, not code)."""
    if cfg.method == "pareto":
        return pl.col("pareto_class") == "A"
    if cfg.method == "threshold":
        threshold_minor = int((Decimal(str(cfg.threshold)) * 10**scale).to_integral_value(ROUND_HALF_EVEN))
        return pl.col("monetary_minor") >= threshold_minor
    if cfg.method == "cluster":
        return pl.col("cluster").is_in(top_clusters(df, cfg, limit)).fill_null(False)
    return parse_rule(cfg.rule, RULE_COLUMNS)


def assign_tiers(df: pl.DataFrame, cfg: TierConfig, *, n_customers: int, has_previous: bool,
                 scale: int) -> pl.DataFrame:
    """Add ``tier`` and ``reason`` (SPEC §4); rows keep their order.

    Needs the customer table (``frequency``, ``monetary_minor``, ``recency_days``,
    ``pareto_class``, ``cluster``, ...) in customer-id order (the row position breaks
    ties) and, with a previous run, ``was_vip`` and ``within_keep``. ``n_customers`` is N
    in the VIP limit (departed customers included).
    """
    limit = vip_limit(cfg, n_customers)
    entry = entry_expr(df, cfg, limit=limit, scale=scale)
    kept = (pl.col("was_vip") & pl.col("within_keep")) if has_previous else pl.lit(False)
    candidate = eligible_expr(cfg) & (entry | kept)
    reason = (
        pl.when(pl.col("frequency") == 0).then(pl.lit("no_purchase"))
        .when(pl.col("monetary_minor") <= 0).then(pl.lit("non_positive_revenue"))
        .when(pl.col("recency_days") > cfg.active_days).then(pl.lit("inactive"))
        .when(~pl.col("_candidate")).then(pl.lit("below_head"))
        .when(pl.col("_seat") > limit).then(pl.lit("capacity_cut"))
        .when(pl.col("_entry")).then(pl.lit(ENTRY_REASONS[cfg.method]))
        .otherwise(pl.lit("kept_by_hysteresis"))
    )
    flags = df.lazy().select(_candidate=candidate, _entry=entry).collect()
    seat = seats(flags["_candidate"].to_numpy(), df["monetary_minor"].to_numpy(),
                 df["was_vip"].to_numpy() if (has_previous and cfg.incumbents_first) else None)
    return (
        df.lazy()
        .with_columns(flags.get_column("_candidate"), flags.get_column("_entry"), pl.Series("_seat", seat))
        .with_columns(reason=reason)
        .with_columns(tier=pl.when(pl.col("reason").is_in(ZHIXIN_REASONS)).then(pl.lit(ZHIXIN)).otherwise(pl.lit(YUXIN)))
        .drop("_seat", "_candidate", "_entry")
        .collect()
    )


def seats(candidate: np.ndarray, monetary_minor: np.ndarray, was_vip: np.ndarray | None) -> np.ndarray:
    """Each candidate's seat (1 = first) in the order the VIP limit cuts: incumbents first
    when ``was_vip`` is given, then by monetary descending, then by row (customer-id order),
    so the cut is deterministic; 0 for the others. Only the candidates are sorted."""
    rows = np.flatnonzero(candidate)
    keys = [rows, -monetary_minor[rows]]  # np.lexsort: the last key is the primary one
    if was_vip is not None:
        keys.append(~was_vip[rows].astype(bool))
    order = np.lexsort(keys)
    seat = np.zeros(len(candidate), dtype=np.int64)
    seat[rows[order]] = np.arange(1, len(rows) + 1)
    return seat


def name_groups(profiles: list[dict[str, float]], rules: tuple[GroupNameRule, ...], fallback: str,
                tier_medians: dict[str, float]) -> list[str]:
    """Name each group by its median profile: the first rule that holds, else ``fallback``;
    repeated names get ``_2``, ``_3`` in group order."""
    names: list[str] = []
    for prof in profiles:
        name = fallback
        for rule in rules:
            target = tier_medians[rule.metric] if rule.value == "tier_median" else float(rule.value)
            if _OPS[rule.op](prof[rule.metric], target):
                name = rule.name
                break
        count = sum(1 for n in names if n == name or n.startswith(name + "_") and n[len(name) + 1:].isdigit())
        names.append(name if count == 0 else f"{name}_{count + 1}")
    return names


GROUP_PROFILE = ("recency_days", "frequency", "monetary", "avg_order_value", "r_score", "f_score", "m_score")


def vip_groups(df: pl.DataFrame, cfg: Config) -> tuple[pl.Series, dict[str, object]]:
    """KMeans the VIP rows (k = min(cfg k, distinct rows)) and name the groups by profile.

    Returns the ``vip_group`` column aligned with ``df`` (null for standard customers) and
    the group model for the metadata.
    """
    vip_mask = (df["tier"] == ZHIXIN).to_numpy()
    vip = df.select(*GROUP_PROFILE).filter(pl.Series(vip_mask))  # only the profile columns
    info: dict[str, object] = {"k": 0, "groups": []}
    if vip.height == 0:
        return pl.Series("vip_group", [None] * df.height, dtype=pl.String), info
    labels, model = cluster_customers(vip, cfg.cluster, k_fixed=cfg.vip_groups.k)
    tier_medians = {m: float(vip[m].cast(pl.Float64).median()) for m in GROUP_PROFILE}  # type: ignore[arg-type]
    profiles = []
    for g in range(model.k):
        part = vip.filter(pl.Series(labels == g))
        profiles.append({m: float(part[m].cast(pl.Float64).median()) for m in GROUP_PROFILE})  # type: ignore[arg-type]
    names = name_groups(profiles, cfg.vip_groups.names, cfg.vip_groups.fallback, tier_medians)
    # group number per row (-1 for standard customers), then names: no Python object per row
    codes = np.full(df.height, -1, dtype=np.int64)
    codes[vip_mask] = labels
    column = pl.Series("vip_group", codes).replace_strict(dict(enumerate(names)), default=None, return_dtype=pl.String)
    info = {
        "k": model.k,
        "groups": [
            {"vip_group": names[g], "customers": int((labels == g).sum()),
             **{f"median_{m}": profiles[g][m] for m in GROUP_PROFILE}}
            for g in range(model.k)
        ],
        "tier_medians": tier_medians,
    }
    return column, info


def service_table(service: ServiceConfig, groups: list[str], *, scale: int | None = None,
                  money: str = "float") -> pl.DataFrame:
    """One row per (tier, vip_group) with its terms; the join key for every customer.

    With ``scale`` the goodwill limit is money like the other money columns: rounded
    half-to-even to ``scale`` places from its decimal text, a float or, with
    ``money="decimal"``, a ``Decimal(38, scale)`` (SPEC §5)."""
    rows: list[tuple[str, str | None, ServiceTerms]] = [(YUXIN, None, service.yuxin), (ZHIXIN, None, service.zhixin)]
    rows += [(ZHIXIN, g, service.for_group(g)) for g in groups]
    goodwill: pl.DataType | type[pl.DataType] = pl.Float64
    records = [{"tier": tier, "vip_group": group, **terms.__dict__} for tier, group, terms in rows]
    if scale is not None:
        quantum = Decimal(1).scaleb(-scale)
        for r in records:
            exact = Decimal(repr(r["goodwill_limit"])).quantize(quantum, ROUND_HALF_EVEN)
            r["goodwill_limit"] = exact if money == "decimal" else float(exact)
        goodwill = pl.Decimal(38, scale) if money == "decimal" else pl.Float64
    return pl.DataFrame(
        records,
        schema={"tier": pl.String, "vip_group": pl.String, "service_level": pl.String,
                "first_response_minutes": pl.Int64, "resolution_hours": pl.Int64, "update_interval_hours": pl.Int64,
                "channel": pl.String, "goodwill_limit": goodwill},
    )


def with_service_terms(lf: pl.LazyFrame, service: ServiceConfig, groups: list[str], labels: dict[str, str], *,
                       scale: int | None = None, money: str = "float") -> pl.LazyFrame:
    """Attach ``tier_label`` and the service terms of each row's tier and VIP group
    (``scale``, ``money``: the goodwill limit's places and type, see :func:`service_table`).

    Each row's line of :func:`service_table` is found as a number (0 standard, 1 VIP
    without a group, 2 + the group's index) and every term is gathered by it: no join of
    the customer table, which at 10^7 customers would copy it whole.
    """
    terms = service_table(service, groups, scale=scale, money=money)
    group_line = {g: i + 2 for i, g in enumerate(groups)}
    line = (pl.when(pl.col("tier") == YUXIN).then(0)
            .when(pl.col("vip_group").is_null()).then(1)
            .otherwise(pl.col("vip_group").replace_strict(group_line, default=1, return_dtype=pl.Int64)))
    term_columns = [c for c in terms.columns if c not in ("tier", "vip_group")]
    return lf.with_columns(_line=line).with_columns(
        *(pl.lit(terms[c]).gather(pl.col("_line")).alias(c) for c in term_columns),
        tier_label=pl.when(pl.col("tier") == YUXIN).then(pl.lit(labels.get(YUXIN, YUXIN)))
        .when(pl.col("tier") == ZHIXIN).then(pl.lit(labels.get(ZHIXIN, ZHIXIN)))
        .otherwise(pl.col("tier")),
    ).drop("_line")
