"""Tiers (SPEC §4): who is 知心 (zhixin, VIP) and who is 遇心 (yuxin, standard), why, in
which VIP group, and with what service terms.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import numpy as np
import polars as pl

from segcli.clusters import cluster_customers
from segcli.config import GOODWILL_FIELDS, Config, GroupNameRule, ServiceConfig, ServiceTerms, TierConfig
from segcli.errors import InputDataError
from segcli.rules import COMPARISONS, parse_rule
from segcli.schema import RULE_COLUMNS

ZHIXIN, YUXIN = "zhixin", "yuxin"
ENTRY_REASONS = {"pareto": "pareto_head", "cluster": "selected_by_cluster", "rule": "selected_by_rule",
                 "threshold": "selected_by_threshold"}
ZHIXIN_REASONS = (*ENTRY_REASONS.values(), "kept_by_hysteresis", "in_grace", "min_tenure")


def share_limit(cfg: TierConfig, n_customers: int) -> int:
    """floor(max_share * N), exactly (0.2 * 10 is 2, not 1.999...)."""
    return int(Fraction(str(cfg.max_share)) * n_customers)


def vip_limit(cfg: TierConfig, n_customers: int) -> int:
    """L = min(capacity, floor(max_share * N))."""
    by_share = share_limit(cfg, n_customers)
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
                 scale: int, as_of: dt.date | None = None) -> pl.DataFrame:
    """Add ``tier``, ``reason``, the lifecycle columns (``previous_tier``, ``tier_since``,
    ``at_risk``, ``grace_until``) and ``tier_seat`` (SPEC §4); rows keep their order.

    Needs the customer table (``frequency``, ``monetary_minor``, ``recency_days``,
    ``pareto_class``, ``cluster``, ``as_of``, ...) in customer-id order (the row position
    breaks ties) and, with a previous run, the columns of :func:`with_previous` and
    ``within_keep``. ``n_customers`` is N in the VIP limit (departed customers excluded).
    ``tier_seat`` is each candidate's place in the seating order (0 = no candidate), for
    the run record; it is not an output column.
    """
    if as_of is None:
        as_of = df["as_of"][0] if df.height else dt.date.today()
    limit = vip_limit(cfg, n_customers)
    entry = entry_expr(df, cfg, limit=limit, scale=scale)
    flags = df.lazy().select(**decision_flags(cfg, entry, has_previous=has_previous, as_of=as_of)).collect()
    # incumbents take seats first when asked, and always with the lifecycle on: a VIP kept in
    # grace must not hold a seat that a still-qualifying VIP loses
    first = has_previous and (cfg.incumbents_first or cfg.lifecycle.active)
    seat = seats(flags["_candidate"].to_numpy(), df["monetary_minor"].to_numpy(),
                 df["was_vip"].to_numpy() if first else None)
    return (
        df.lazy()
        .with_columns(*flags.get_columns(), pl.Series("tier_seat", seat))
        .with_columns(reason=reason_expr(cfg, limit))
        .with_columns(tier=pl.when(pl.col("reason").is_in(ZHIXIN_REASONS)).then(pl.lit(ZHIXIN)).otherwise(pl.lit(YUXIN)))
        .with_columns(**lifecycle_columns(cfg, as_of, has_previous=has_previous))
        .drop(*flags.columns, *(PREV_STATE[1:] if has_previous else ()))
        .collect()
    )


def decision_flags(cfg: TierConfig, entry: pl.Expr, *, has_previous: bool, as_of: dt.date) -> dict[str, pl.Expr]:
    """Who qualifies (entry rule, or hysteresis for a previous VIP), who is kept by grace or
    tenure, and so who is a candidate for a seat."""
    eligible = eligible_expr(cfg)
    no = pl.lit(False)
    if not has_previous:
        qualifies = eligible & entry
        return {"_entry": entry, "_qualifies": qualifies, "_grace": no, "_tenure": no, "_candidate": qualifies}
    was_vip = pl.col("was_vip")
    qualifies = eligible & (entry | (was_vip & pl.col("within_keep")))
    lc = cfg.lifecycle
    today = pl.lit(as_of, pl.Date)
    grace = no
    if lc.grace_days:  # a lapse from the head starts (or continues) a grace, never past its end
        ends = pl.col("_prev_grace")
        grace = was_vip & eligible & ~qualifies & (ends.is_null() | (today < ends))
    tenure = no
    if lc.min_tenure_days:
        held_days = (today - pl.col("_prev_since")).dt.total_days()
        tenure = (was_vip & (pl.col("frequency") > 0) & (pl.col("monetary_minor") > 0)
                  & (held_days < lc.min_tenure_days))
    return {"_entry": entry, "_qualifies": qualifies, "_grace": grace, "_tenure": tenure,
            "_candidate": qualifies | grace | tenure}


def reason_expr(cfg: TierConfig, limit: int) -> pl.Expr:
    """The reason, first match wins (SPEC §4): the yuxin reasons, then the zhixin ones."""
    return (
        pl.when(pl.col("frequency") == 0).then(pl.lit("no_purchase"))
        .when(pl.col("monetary_minor") <= 0).then(pl.lit("non_positive_revenue"))
        .when((pl.col("recency_days") > cfg.active_days) & ~pl.col("_tenure")).then(pl.lit("inactive"))
        .when(~pl.col("_candidate")).then(pl.lit("below_head"))
        .when(pl.col("tier_seat") > limit).then(pl.lit("capacity_cut"))
        .when(pl.col("_qualifies") & pl.col("_entry")).then(pl.lit(ENTRY_REASONS[cfg.method]))
        .when(pl.col("_qualifies")).then(pl.lit("kept_by_hysteresis"))
        .when(pl.col("_grace")).then(pl.lit("in_grace"))
        .otherwise(pl.lit("min_tenure"))
    )


def lifecycle_columns(cfg: TierConfig, as_of: dt.date, *, has_previous: bool) -> dict[str, pl.Expr]:
    """``previous_tier``, ``tier_since``, ``at_risk``, ``grace_until`` of the tiered rows."""
    today = pl.lit(as_of, pl.Date)
    vip = pl.col("tier") == ZHIXIN
    # a lapse that is coming: inactive if the run were made warn_days later with no purchase
    lapsing = (pl.col("recency_days") + cfg.lifecycle.warn_days) > cfg.active_days
    at_risk = vip & (pl.col("reason").is_in(["in_grace", "min_tenure"]) | lapsing.fill_null(True))
    if not has_previous:
        return {"previous_tier": pl.lit(None, pl.String), "tier_since": today, "at_risk": at_risk,
                "grace_until": pl.lit(None, pl.Date)}
    new_end = today + pl.duration(days=cfg.lifecycle.grace_days)
    return {
        "previous_tier": pl.col("previous_tier"),
        "tier_since": since_expr(pl.col("tier"), today),
        "at_risk": at_risk,
        "grace_until": pl.when(pl.col("reason") == "in_grace").then(pl.coalesce("_prev_grace", new_end))
        .otherwise(pl.lit(None, pl.Date)),
    }


def since_expr(tier: pl.Expr, today: pl.Expr) -> pl.Expr:
    """PREV's tier_since when the tier is unchanged, else this as-of (a new customer too)."""
    same = pl.col("previous_tier").is_not_null() & (pl.col("previous_tier") == tier)
    return pl.when(same).then(pl.col("_prev_since")).otherwise(today)


# What :func:`previous_state` carries per customer of PREV, joined by :func:`with_previous`.
PREV_STATE = ("previous_tier", "_prev_since", "_prev_grace", "_prev_departed")


def _date(df: pl.DataFrame, col: str) -> pl.Expr:
    """A date column of an assignments file: Date in Parquet and CSV, text in JSONL, or
    absent (schema version 1)."""
    if col not in df.columns:
        return pl.lit(None, pl.Date)
    if df.schema[col] == pl.String:
        return pl.col(col).str.to_date(strict=False)
    return pl.col(col).cast(pl.Date)


def previous_state(previous: pl.DataFrame) -> pl.DataFrame:
    """PREV's rows as the lifecycle reads them, from a file of schema version 1 or 2: the
    tier (``previous_tier``), its ``tier_since`` (PREV's as-of in version 1, which has no
    such column), ``grace_until`` (none in version 1), and whether the row was ``departed``.

    Raises :class:`InputDataError` when a customer appears twice (not a segcli file)."""
    repeated = previous["customer_id"].is_duplicated().sum()
    if repeated:
        raise InputDataError(f"--previous: {repeated} rows repeat a customer id: not an assignments file segcli wrote",
                             [f"e.g. {previous.filter(pl.col('customer_id').is_duplicated())['customer_id'][0]!r}"])
    return previous.select(
        pl.col("customer_id").cast(pl.String),
        previous_tier=pl.col("tier").cast(pl.String),
        _prev_since=pl.coalesce(_date(previous, "tier_since"), _date(previous, "as_of")),
        _prev_grace=pl.when(pl.col("tier") == ZHIXIN).then(_date(previous, "grace_until")),
        _prev_departed=pl.col("reason") == "departed",
    )


def with_previous(df: pl.DataFrame, state: pl.DataFrame) -> pl.DataFrame:
    """Attach PREV's state (:func:`previous_state`) to the customer table and ``was_vip``
    (VIP in PREV; a row written as departed is standard); rows keep their order."""
    joined = df.join(state, on="customer_id", how="left", maintain_order="left")
    return joined.with_columns(was_vip=(pl.col("previous_tier") == ZHIXIN).fill_null(False))


def departed_rows(state: pl.DataFrame, present: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """PREV's customers absent from the data (rows PREV itself wrote as departed aside), as
    ``yuxin`` with reason ``departed``, so that a CRM upsert does not leave them VIP."""
    gone = state.filter(~pl.col("_prev_departed")).join(present.select("customer_id"), on="customer_id", how="anti")
    today = pl.lit(as_of, pl.Date)
    return gone.sort("customer_id").select(
        "customer_id", tier=pl.lit(YUXIN), reason=pl.lit("departed"), as_of=today,
        previous_tier=pl.col("previous_tier"), tier_since=since_expr(pl.lit(YUXIN), today),
        at_risk=pl.lit(False), grace_until=pl.lit(None, pl.Date),
    )


def tier_decision(df: pl.DataFrame, cfg: TierConfig, *, n_customers: int, has_previous: bool,
                  departed: int = 0) -> dict[str, object]:
    """The figures of the tier decision for the run record and the summary: the limit, the
    candidates it cut, who was kept and why, who is at risk, and what ``segcli explain``
    needs to explain a reason from the file alone (the last seated VIP's monetary, the
    smallest monetary in class A)."""
    limit = vip_limit(cfg, n_customers)
    reasons = dict(df.group_by("reason").len().sort("reason").iter_rows())
    candidates = int((df["tier_seat"] > 0).sum())
    seated = candidates - int(reasons.get("capacity_cut", 0))
    last = df.filter(pl.col("tier_seat") == seated)["monetary"] if seated else pl.Series([], dtype=pl.Float64)
    class_a = df.filter(pl.col("pareto_class") == "A")["monetary"]
    lc = cfg.lifecycle
    return {
        "method": cfg.method, "customers": n_customers, "limit": limit,
        "limit_by": ("capacity" if cfg.capacity and limit == cfg.capacity < share_limit(cfg, n_customers)
                     else "max_share"),
        "max_share": cfg.max_share, "capacity": cfg.capacity,
        "candidates": candidates, "seated": seated, "capacity_cut": int(reasons.get("capacity_cut", 0)),
        "incumbents_first": has_previous and (cfg.incumbents_first or lc.active),
        "kept_by_hysteresis": int(reasons.get("kept_by_hysteresis", 0)),
        "in_grace": int(reasons.get("in_grace", 0)), "min_tenure": int(reasons.get("min_tenure", 0)),
        "at_risk": int(df["at_risk"].sum()),
        "last_seated_monetary": float(last[0]) if last.len() else None,
        "class_a_min_monetary": float(class_a.min()) if class_a.len() else None,  # type: ignore[arg-type]
        "active_days": cfg.active_days, "keep_share": cfg.keep_share, "grace_days": lc.grace_days,
        "min_tenure_days": lc.min_tenure_days, "warn_days": lc.warn_days,
        "reasons": {**{k: int(v) for k, v in reasons.items()}, **({"departed": departed} if departed else {})},
    }


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
            if COMPARISONS[rule.op](prof[rule.metric], target):
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
                "channel": pl.String, "goodwill_limit": goodwill,
                **{name: pl.Float64 for name in GOODWILL_FIELDS}},
    )


def goodwill_expr(scale: int) -> pl.Expr:
    """The goodwill limit of each row: the fixed ``goodwill_limit``, or where the row's terms
    set ``goodwill_share`` that share of the customer's own avg_order_value, rounded to
    ``scale`` places, within ``goodwill_min``..``goodwill_max`` (0 = no maximum); the minimum
    without a purchase."""
    share = pl.col("goodwill_share")
    upper = pl.when(pl.col("goodwill_max") > 0).then(pl.col("goodwill_max")).otherwise(pl.lit(float("inf")))
    fitted = (share * pl.col("avg_order_value")).round(scale).clip(pl.col("goodwill_min"), upper)
    fixed = pl.col("goodwill_limit").cast(pl.Float64)
    return pl.when(share > 0).then(fitted.fill_null(pl.col("goodwill_min"))).otherwise(fixed)


def with_service_terms(lf: pl.LazyFrame, service: ServiceConfig, groups: list[str], labels: dict[str, str], *,
                       scale: int | None = None, money: str = "float") -> pl.LazyFrame:
    """Attach ``tier_label`` and the service terms of each row's tier and VIP group
    (``scale``, ``money``: the goodwill limit's places and type, see :func:`service_table`;
    fitted to the customer where a ``goodwill_share`` is set: :func:`goodwill_expr`).

    Each row's line of :func:`service_table` is found as a number (0 standard, 1 VIP
    without a group, 2 + the group's index) and every term is gathered by it: no join of
    the customer table, which at 10^7 customers would copy it whole.
    """
    terms = service_table(service, groups, scale=scale, money=money)
    group_line = {g: i + 2 for i, g in enumerate(groups)}
    line = (pl.when(pl.col("tier") == YUXIN).then(0)
            .when(pl.col("vip_group").is_null()).then(1)
            .otherwise(pl.col("vip_group").replace_strict(group_line, default=1, return_dtype=pl.Int64)))
    fitted = bool((terms["goodwill_share"] > 0).any())  # fixed goodwill everywhere: the plan stays as it was
    term_columns = [c for c in terms.columns if c not in ("tier", "vip_group") and (fitted or c not in GOODWILL_FIELDS)]
    out = lf.with_columns(_line=line).with_columns(
        *(pl.lit(terms[c]).gather(pl.col("_line")).alias(c) for c in term_columns),
        tier_label=pl.when(pl.col("tier") == YUXIN).then(pl.lit(labels.get(YUXIN, YUXIN)))
        .when(pl.col("tier") == ZHIXIN).then(pl.lit(labels.get(ZHIXIN, ZHIXIN)))
        .otherwise(pl.col("tier")),
    ).drop("_line")
    if not fitted:
        return out
    places = 2 if scale is None else scale
    goodwill = goodwill_expr(places)
    if money == "decimal":
        goodwill = goodwill.cast(pl.Decimal(38, places))
    return out.with_columns(goodwill_limit=goodwill).drop(*GOODWILL_FIELDS)
