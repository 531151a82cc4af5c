"""The runs of segcli's commands: checked transactions -> customers -> assignments, and the
record of each run.

Each number is computed in exactly one module (rfm, pareto, clusters, tiers); the inputs are
read and checked in :mod:`segcli.loading`; this module wires the stages together and keeps
the record of the run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from segcli import __version__
from segcli.clusters import ClusterModel, cluster_customers
from segcli.config import Config
from segcli.errors import InputDataError, RunWarning, warning_records
from segcli.loading import (
    Aggregate,
    Loader,
    Transactions,
    bucket_expr,
    check_strict,
    input_names,
    load_transactions,
    spill_failure,
)
from segcli.pareto import concentration_of, pareto_rank
from segcli.previous import departed_warning, previous_checks, shrink_guard
from segcli.results import ParetoResult, RfmResult, SegmentResult
from segcli.rfm import (
    MONEY_PLACES,
    customer_features,
    money,
    money_columns,
    money_units,
    orders,
    output_money,
    score_bins,
    score_rfm,
    with_recency,
)
from segcli.schema import OUTPUT_COLUMNS, RFM_COLUMNS, RFM_SCHEMA_VERSION, SCHEMA_VERSION
from segcli.tiers import (
    assign_tiers,
    departed_rows,
    previous_state,
    tier_decision,
    vip_groups,
    vip_limit,
    with_previous,
    with_service_terms,
)


def rfm_features(rows: pl.LazyFrame) -> pl.LazyFrame:
    """Rows -> per-customer features (the aggregation ``segment`` and ``rfm`` fuse)."""
    return customer_features(orders(rows))


def features_by_part(tx: Transactions, parts: int | None = None,
                     per_customer: Aggregate = rfm_features) -> pl.DataFrame:
    """``per_customer`` of the kept rows: from the checking pass when it ran there,
    aggregated one customer bucket at a time when the rows were spilled by bucket (large
    exports), or split into ``parts`` buckets on request."""
    if tx.aggregated is not None and parts is None:
        return tx.aggregated
    if tx.parts > 1 and parts is None:
        try:
            frames = [per_customer(tx.tx.filter(pl.col("bucket") == i)).collect() for i in range(tx.parts)]
        except pl.exceptions.PolarsError as exc:
            # segcli wrote the spill itself: a damaged one is a write the disk failed, not bad input
            raise spill_failure(exc, sum(int(s.get("bytes") or 0) for s in tx.sources)) from None
        return pl.concat(frames)
    if not parts or parts == 1:
        return per_customer(tx.tx).collect()
    bucket = bucket_expr(parts)
    return pl.concat([per_customer(tx.tx.filter(bucket == i)).collect() for i in range(parts)])


def customer_table(tx: Transactions, cfg: Config, *, keep_share: float | None = None,
                   parts: int | None = None) -> pl.DataFrame:
    """Per-customer features, scores, segment, Pareto rank and class (the heavy step)."""
    try:
        features = features_by_part(tx, parts)
    except pl.exceptions.PolarsError as exc:
        raise InputDataError(f"{', '.join(s['path'] for s in tx.sources)}: cannot parse: {exc}") from None
    lf = (
        # sorted while narrow; every later step keeps the order (a lazy sort: DataFrame.sort
        # takes twice as long, 0.27 s against 0.13 s at 10^6 customers)
        features.lazy().sort("customer_id")
        .pipe(with_recency, tx.as_of)
        .pipe(score_rfm, cfg.rfm)
        .pipe(pareto_rank, cfg.pareto, keep_share=keep_share)
        .with_columns(*money_columns(tx.scale), as_of=pl.lit(tx.as_of))
    )
    try:
        return lf.collect()
    except pl.exceptions.PolarsError as exc:
        raise InputDataError(f"{', '.join(s['path'] for s in tx.sources)}: cannot parse: {exc}") from None


def add_clusters(df: pl.DataFrame, cfg: Config) -> tuple[pl.DataFrame, ClusterModel]:
    """Cluster the purchasers; customers without a purchase get a null cluster."""
    buyers = (df["frequency"] > 0).to_numpy()
    # only the three feature columns are copied (the whole table is 1.4 GB at 10M customers)
    features = df.select("recency_days", "frequency", "monetary").filter(pl.Series(buyers))
    labels, model = cluster_customers(features, cfg.cluster)
    col = np.full(df.height, -1, dtype=np.int64)
    col[buyers] = labels
    cluster = pl.Series("cluster", col)
    return df.with_columns(pl.when(cluster >= 0).then(cluster).alias("cluster")), model


def _quiet(_stage: str) -> None:
    """The default progress callback: says nothing."""


Progress = Callable[[str], None]


def segment(inputs: list[str], cfg: Config, *, previous: pl.DataFrame | None = None,
            previous_meta: dict[str, Any] | None = None, force: bool = False,
            progress: Progress = _quiet, memory_limit: int | None = None,
            load: Loader | None = None, created_at: dt.datetime | None = None) -> SegmentResult:
    """The main job (SPEC §3-§5): transactions in, one assignment per customer out.

    Parameters
    ----------
    inputs:
        Paths, directories, globs or ``-`` (SPEC §2).
    cfg:
        The run's configuration.
    previous, previous_meta:
        The previous run's assignments and run record (``--previous``): its VIPs are kept
        within ``tiers.keep_share``, its customers absent now are written as departed.
    force:
        Go on past a previous run that is not earlier, or a shrink beyond ``guard.max_drop``.
    progress:
        Called with each stage's description as it starts.
    memory_limit:
        Memory budget in bytes (:func:`load_transactions`).
    load:
        Reads, checks and aggregates the inputs: :func:`load_transactions` (the default),
        or an engine's loader (:func:`segcli.engines.loader`).
    created_at:
        The record's ``created_at`` (:func:`created_timestamp`); ``None``: now.

    Raises
    ------
    InputDataError
        (exit 65) besides the input errors when ``previous`` is not an earlier run, the data
        shrank beyond ``guard.max_drop`` (both unless ``force``), or there are warnings under
        ``analysis.strict`` (:func:`check_strict`).
    """
    progress(f"reading and checking {input_names(inputs)}")
    tx = (load or load_transactions)(inputs, cfg, aggregate=rfm_features, memory_limit=memory_limit, strict=False)
    warnings = list(tx.warnings)
    if previous is not None:
        warnings += previous_checks(previous, previous_meta, cfg, tx.as_of, force)
    progress(f"aggregating {tx.counts['rows_used']:,} rows into customers")
    df = customer_table(tx, cfg, keep_share=cfg.tiers.keep_share if previous is not None else None)
    progress(f"clustering {df.height:,} customers")
    conc = concentration_of(df, cfg.pareto.head_share, tx.scale)
    df, model = add_clusters(df, cfg)
    departed = None
    if previous is not None:
        warnings += shrink_guard(previous, df, cfg, force)
        state = previous_state(previous)  # schema version 1 or 2
        df = with_previous(df, state)
        departed = departed_rows(state, df, tx.as_of)
        gone = departed_warning(departed)
        warnings += [gone] if gone is not None else []
    warnings = [inactive_note(w, df, cfg) if w.kind == "stale_export" else w for w in warnings]
    progress("assigning tiers and VIP groups")
    out, group_info, decision = assign(df, cfg, scale=tx.scale, as_of=tx.as_of, has_previous=previous is not None,
                                       departed=departed)
    meta = run_record(cfg, tx, model, group_info, out, previous_meta=previous_meta if previous is not None else None,
                      warnings=warnings, decision=decision, created_at=created_at)
    check_strict(warnings, cfg, inputs)
    return SegmentResult(out.drop("monetary_minor"), meta, warnings, tx.rejects, conc, cfg, previous)


def assign(df: pl.DataFrame, cfg: Config, *, scale: int, as_of: dt.date, has_previous: bool,
           departed: pl.DataFrame | None = None) -> tuple[pl.DataFrame, dict[str, Any], dict[str, Any]]:
    """Tiers, VIP groups and service terms of a customer table (with clusters and, with a
    previous run, :func:`segcli.tiers.with_previous`): the output columns (SPEC §5) and
    ``monetary_minor``, in customer-id order, the VIP group model and the tier decision
    (:func:`segcli.tiers.tier_decision`).

    ``departed`` (:func:`segcli.tiers.departed_rows`) are appended: they carry the terms of
    their tier but take no part in the limit, whose N is the customers in the data (rows
    written only to demote departed customers must not buy extra VIP seats, issue 4).
    """
    n_customers = df.height
    n_departed = departed.height if departed is not None else 0
    df = assign_tiers(df, cfg.tiers, n_customers=n_customers, has_previous=has_previous, scale=scale, as_of=as_of)
    decision = tier_decision(df, cfg.tiers, n_customers=n_customers, has_previous=has_previous, departed=n_departed)
    groups, group_info = vip_groups(df, cfg)
    df = df.with_columns(groups)
    if departed is not None and n_departed:
        df = pl.concat([df, departed], how="diagonal_relaxed")
    group_names = [str(g["vip_group"]) for g in group_info["groups"]]  # type: ignore[attr-defined]
    assigned = (with_service_terms(df.lazy(), cfg.service, group_names, cfg.tiers.labels, scale=scale,
                                   money=cfg.money)
                .pipe(output_money, scale, cfg.money).select(*OUTPUT_COLUMNS, "monetary_minor"))
    # rows are in customer-id order from customer_table on; only departed rows come after
    return (assigned.sort("customer_id") if n_departed else assigned).collect(), group_info, decision


def inactive_note(stale: RunWarning, df: pl.DataFrame, cfg: Config) -> RunWarning:
    """A stale export's warning says so when it left no customer active (hence no VIP)."""
    active = df.select((pl.col("recency_days") <= cfg.tiers.active_days).any()).item()
    if active:
        return stale
    return RunWarning(stale.kind, f"{stale.text}; every customer is inactive (no purchase within "
                      f"tiers.active_days = {cfg.tiers.active_days} days of it): no VIP this run")


def record_fields(cfg: Config, tx: Transactions) -> dict[str, Any]:
    """What every run record holds after its ``schema_version``: the tool, the as-of date,
    the config and its hash, the inputs and the row counts."""
    return {"tool": "segcli", "version": __version__, "as_of": tx.as_of.isoformat(), "config_hash": cfg.hash,
            "config": cfg.raw, "inputs": tx.sources, "engine": tx.engine, "rows": tx.counts}


def run_record(cfg: Config, tx: Transactions, model: ClusterModel, group_info: dict[str, Any],
               out: pl.DataFrame, *, previous_meta: dict[str, Any] | None = None,
               warnings: list[RunWarning] | None = None, decision: dict[str, Any] | None = None,
               created_at: dt.datetime | None = None) -> dict[str, Any]:
    """The run's record, embedded in Parquet metadata or written as ``OUT.meta.json``;
    ``decision`` is :func:`segcli.tiers.tier_decision` of a segment run; ``created_at``
    the time it says it was made (``None``: now).

    A tier's revenue is summed from ``monetary_minor`` when ``out`` has it: exact, then
    rounded once (from the float column, large sums would carry its rounding)."""
    units = (pl.col("monetary_minor").cast(pl.Int128), tx.scale) if "monetary_minor" in out.columns else (
        money_units(pl.col("monetary").cast(pl.Float64)), MONEY_PLACES)
    tiers = (out.lazy().select("tier", _units=units[0])
             .group_by("tier").agg(n=pl.len(), revenue=money(pl.col("_units").sum(), units[1]))
             .sort("tier").collect())
    return {
        "schema_version": SCHEMA_VERSION,
        **record_fields(cfg, tx),
        "customers": out.height,
        "tiers": {r["tier"]: {"customers": r["n"], "revenue": r["revenue"]} for r in tiers.iter_rows(named=True)},
        "model": {
            "cluster": {"k": model.k, "silhouette": model.silhouette, "silhouette_by_k": model.scores,
                        "fitted_on": model.fitted_on, "centroids": model.centroids},
            "vip_groups": group_info,
            "scores": score_bins(out, cfg.rfm.bins),  # each score's cut points
        },
        **({"decision": decision, "candidates_cut": decision["capacity_cut"]} if decision is not None else {}),
        "previous": ({"as_of": previous_meta.get("as_of"), "config_hash": previous_meta.get("config_hash"),
                      "departed": out.filter(pl.col("reason") == "departed")["customer_id"].to_list()}
                     if previous_meta is not None else None),
        "warnings": warning_records(tx.warnings if warnings is None else warnings),
        "created_at": created_timestamp(created_at),
    }


def created_timestamp(now: dt.datetime | None = None) -> str:
    """A record's ``created_at``: ``now`` (the caller's clock: :func:`segcli.api.record_time`
    reads ``SOURCE_DATE_EPOCH`` for reproducible builds), else the current UTC time."""
    return (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")


def rfm_table(inputs: list[str], cfg: Config, *, progress: Progress = _quiet,
              memory_limit: int | None = None, load: Loader | None = None,
              created_at: dt.datetime | None = None) -> RfmResult:
    """``segcli rfm``: features, scores, segment, cluster and Pareto columns; no tiers
    (``created_at``: as in :func:`segment`).

    Raises :class:`InputDataError` on bad input and on warnings under ``analysis.strict``."""
    progress(f"reading and checking {input_names(inputs)}")
    tx = (load or load_transactions)(inputs, cfg, aggregate=rfm_features, memory_limit=memory_limit)  # strict there
    progress(f"aggregating {tx.counts['rows_used']:,} rows into customers")
    table = customer_table(tx, cfg)
    progress(f"clustering {table.height:,} customers")
    df, model = add_clusters(table, cfg)
    out = df.lazy().pipe(output_money, tx.scale, cfg.money).select(RFM_COLUMNS).collect()
    meta = run_record(cfg, tx, model, {}, out.with_columns(tier=pl.lit("all")), created_at=created_at)
    meta.pop("tiers", None)
    meta["schema_version"] = RFM_SCHEMA_VERSION
    return RfmResult(out, meta, tx.warnings, tx.rejects)


PARETO_COLUMNS = ("customer_id", "monetary", "pareto_rank", "cum_share", "pareto_class")


def pareto_table(inputs: list[str], cfg: Config, *, memory_limit: int | None = None,
                 load: Loader | None = None) -> ParetoResult:
    """``segcli pareto``: every customer's place in the Pareto order and the concentration
    figures; the record says what was read.

    Raises :class:`InputDataError` on bad input and on warnings under ``analysis.strict``."""
    # the aggregation runs in the checking pass (on Spark, where the rows are); strict checked there
    tx = (load or load_transactions)(inputs, cfg, aggregate=rfm_features, memory_limit=memory_limit)
    table = customer_table(tx, cfg)
    conc = concentration_of(table, cfg.pareto.head_share, tx.scale)
    record = {**record_fields(cfg, tx), "warnings": warning_records(tx.warnings)}
    return ParetoResult(table.select(PARETO_COLUMNS), conc, vip_limit(cfg.tiers, conc.customers), record,
                        tx.warnings, tx.rejects)
