"""The segmentation pipeline: inputs -> checked transactions -> customers -> assignments.

Each number is computed in exactly one module (rfm, pareto, clusters, tiers); this module
only wires them together and keeps the record of the run.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from segcli import __version__
from segcli.clusters import ClusterModel, cluster_customers, preload
from segcli.config import Config
from segcli.errors import InputDataError, UsageError
from segcli.io import Source, expand_inputs, open_source, ragged_lines, read_columns, scan_source
from segcli.parse import RULES, canonical, invalid_expr, resolve_columns
from segcli.pareto import HEAD_SHARES, Concentration, concentration, pareto_rank
from segcli.schema import OUTPUT_COLUMNS, RFM_COLUMNS
from segcli.rfm import customer_features, exact_sum, money, orders, score_rfm
from segcli.tiers import YUXIN, ZHIXIN, assign_tiers, vip_groups, with_service_terms

SCHEMA_VERSION = 1
EXAMPLES = 5


@dataclass
class Transactions:
    """Checked transactions, ready for analysis, and what was found on the way."""

    tx: pl.LazyFrame  # canonical rows kept: valid, dated on or before as_of, inside the window
    as_of: dt.date
    scale: int
    sources: list[dict[str, Any]]
    counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    rejects: pl.DataFrame | None = None


def _polars_error(exc: Exception, sources: list[Source]) -> InputDataError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = ", ".join(s.name for s in sources)
    hint: list[str] = []
    if "more fields" in text or "ragged" in text.lower():
        bad = [(s, ragged_lines(s)) for s in sources if s.kind == "csv"]
        bad = [(s, lines) for s, lines in bad if lines]
        if bad:
            where = ", ".join(s.name for s, _ in bad)
            hint = [f"{s.name}: {line}" for s, lines in bad for line in lines]
        text = "ragged rows: a row has more fields than the header"
        hint.append("fix the row, or quote the field that holds the extra separator")
    elif "utf-8" in text.lower() or "utf8" in text.lower():
        hint = ["if the file is GBK/GB18030, pass --encoding gb18030"]
    return InputDataError(f"{where}: cannot parse: {text}", hint)


def _allowed_invalid(max_invalid: float, rows: int) -> int:
    """``max_invalid`` is a row count, or a share of the rows when below 1."""
    if 0 < max_invalid < 1:
        return math.floor(max_invalid * rows)
    return int(max_invalid)


def load_transactions(inputs: list[str], cfg: Config) -> Transactions:
    """Read every input, check every row, fix the as-of date and apply window and drops.

    Raises :class:`InputDataError` (exit 65) on bad rows beyond ``max_invalid``, several
    currencies, or no usable rows; :class:`InputMissingError` (66) on missing inputs.
    """
    files = expand_inputs(inputs)
    sources: list[Source] = []
    frames: list[pl.LazyFrame] = []
    colmaps = []
    for i, name in enumerate(files):
        src = open_source(name, cfg.input.encoding)
        raw = scan_source(src)
        names = read_columns(src, raw)
        cols = resolve_columns(names, cfg.input.columns.__dict__, src.name)
        schema = raw.collect_schema()
        if cfg.input.dedupe:
            raw = raw.unique(maintain_order=True)
        frames.append(canonical(raw, schema, cols, cfg.input, i, src.first_line))
        sources.append(src)
        colmaps.append(cols)
    canon = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    valid = ~invalid_expr()

    per_source = canon.group_by("source").agg(
        rows=pl.len(),
        **{f"bad_{i}": pred.sum() for i, (_, _, pred) in enumerate(RULES)},
        invalid=invalid_expr().sum(),
        rounded=(pl.col("amount_rounded") & valid).sum(),
    )
    per_day = canon.filter(valid).group_by(pl.col("ts").dt.date().alias("date")).agg(
        rows=pl.len(),
        returns=(pl.col("amount_minor") < 0).sum(),
        zeros=(pl.col("amount_minor") == 0).sum(),
    )
    currencies = canon.filter(valid).select(pl.col("currency").drop_nulls().unique().sort().head(10))
    try:
        src_stats, days, cur = pl.collect_all([per_source, per_day, currencies])
    except pl.exceptions.PolarsError as exc:
        raise _polars_error(exc, sources) from None

    src_stats = src_stats.sort("source")
    total_rows = int(src_stats["rows"].sum())
    invalid_rows = int(src_stats["invalid"].sum())
    for s in sources:
        if s.kind == "csv" and total_rows == 0 and len(sources) == 1:
            raise InputDataError(f"{s.name}: the file has a header but no rows")
    if total_rows == 0:
        raise InputDataError(f"{', '.join(s.name for s in sources)}: no rows")

    rejects = None
    warnings: list[str] = []
    if invalid_rows:
        allowed = _allowed_invalid(cfg.analysis.max_invalid, total_rows)
        examples = canon.filter(invalid_expr()).head(max(EXAMPLES * 4, allowed if invalid_rows <= allowed else 0))
        bad = examples.collect()
        if invalid_rows > allowed:
            raise InputDataError(*_invalid_report(sources, colmaps, src_stats, bad, total_rows, invalid_rows))
        names = {i: s.name for i, s in enumerate(sources)}
        rejects = (canon.filter(invalid_expr()).collect()
                   .select(pl.col("source").replace_strict(names, return_dtype=pl.String).alias("file"), "line", pl.col("raw_customer_id").alias("customer_id"),
                           pl.col("raw_date").alias("date"), pl.col("raw_amount").alias("amount")))
        warnings.append(f"{invalid_rows} invalid row{'s' if invalid_rows > 1 else ''} skipped "
                        f"(within --max-invalid {cfg.analysis.max_invalid:g}); written to the rejects file")

    if cur.height > 1:
        raise InputDataError(
            f"{', '.join(s.name for s in sources)}: more than one currency in one run: {', '.join(cur['currency'])}",
            ["segment each currency separately (filter the export), or convert amounts first"])
    if cfg.input.currency and cur.height == 1 and cur["currency"][0] != cfg.input.currency.upper():
        raise InputDataError(f"currency {cur['currency'][0]} found, but input.currency is {cfg.input.currency}")

    if days.height == 0:
        raise InputDataError("no valid rows to analyse")
    latest = days["date"].max()
    as_of = cfg.analysis.as_of or latest
    assert isinstance(as_of, dt.date)
    after = int(days.filter(pl.col("date") > as_of)["rows"].sum())
    start = as_of - dt.timedelta(days=cfg.analysis.window_days) if cfg.analysis.window_days else None
    outside = int(days.filter(pl.col("date") <= start)["rows"].sum()) if start else 0
    kept_days = days.filter((pl.col("date") <= as_of) & ((pl.col("date") > start) if start else pl.lit(True)))
    if after:
        warnings.append(f"{after} row{'s' if after > 1 else ''} dated after the as-of date {as_of} dropped")
    if outside:
        warnings.append(f"{outside} row{'s' if outside > 1 else ''} before the {cfg.analysis.window_days}-day "
                        f"window (on or before {start}) dropped")
    rounded = int(src_stats["rounded"].sum())
    if rounded:
        warnings.append(f"{rounded} amount{'s' if rounded > 1 else ''} had more than {cfg.input.amount_scale} "
                        "decimal places and were rounded half-to-even")
    if kept_days.height == 0:
        raise InputDataError(f"no rows on or before the as-of date {as_of}"
                             + (f" inside the {cfg.analysis.window_days}-day window" if start else ""))

    date = pl.col("ts").dt.date()
    keep = valid & (date <= as_of)
    if start is not None:
        keep = keep & (date > start)
    counts = {
        "rows_read": total_rows,
        "rows_invalid": invalid_rows,
        "rows_after_as_of": after,
        "rows_outside_window": outside,
        "rows_used": int(kept_days["rows"].sum()),
        "rows_returns": int(kept_days["returns"].sum()),
        "rows_zero_amount": int(kept_days["zeros"].sum()),
        "amounts_rounded": rounded,
    }
    src_records = [
        {"path": s.name, "bytes": s.size, "format": s.kind, "encoding": s.encoding if s.kind == "csv" else None,
         "rows": int(r["rows"]), "rows_invalid": int(r["invalid"]),
         "columns": {k: v for k, v in colmaps[i].__dict__.items() if v}}
        for i, (s, r) in enumerate(zip(sources, src_stats.iter_rows(named=True)))
    ]
    return Transactions(canon.filter(keep), as_of, cfg.input.amount_scale, src_records, counts, warnings, rejects)


def _invalid_report(sources: list[Source], colmaps: list[Any], stats: pl.DataFrame, bad: pl.DataFrame,
                    total: int, invalid: int) -> tuple[str, list[str]]:
    names = ", ".join(s.name for s in sources)
    details = []
    for i, (rule, role, pred) in enumerate(RULES):
        for row in stats.iter_rows(named=True):
            n = int(row[f"bad_{i}"])
            if not n:
                continue
            src = sources[row["source"]]
            column = getattr(colmaps[row["source"]], role)
            details.append(f"{src.name}: column '{column}': {n} of {row['rows']} rows: {rule}")
            raw_col = f"raw_{role}"
            ex = bad.filter((pl.col("source") == row["source"]) & pred).head(EXAMPLES)
            where = "line" if src.kind != "parquet" else "row"
            for line, value in zip(ex["line"], ex[raw_col]):
                details.append(f"    {where} {line}: {column}={(value if value is not None else '')!r}")
    details.append("fix the rows, map the columns with [input.columns] / input.date_formats, or let up to N bad "
                   "rows through with --max-invalid N (they go to a rejects file)")
    return f"{names}: {invalid} of {total} rows are invalid", details


@dataclass
class Segmentation:
    """The result of a run: one row per customer and the record of how it was made."""

    customers: pl.DataFrame
    meta: dict[str, Any]
    warnings: list[str]
    rejects: pl.DataFrame | None
    concentration: Concentration


def customer_table(tx: Transactions, cfg: Config, *, keep_share: float | None = None) -> pl.DataFrame:
    """Per-customer features, scores, segment, Pareto rank and class (the lazy heavy step)."""
    lf = (
        customer_features(orders(tx.tx), as_of=tx.as_of)
        .pipe(score_rfm, cfg.rfm)
        .pipe(pareto_rank, cfg.pareto, keep_share=keep_share)
        .with_columns(
            monetary=money(pl.col("monetary_minor"), tx.scale),
            gross_revenue=money(pl.col("gross_minor"), tx.scale),
            returns_amount=money(pl.col("returns_minor"), tx.scale),
        )
        .with_columns(
            avg_order_value=pl.when(pl.col("frequency") > 0).then(pl.col("monetary") / pl.col("frequency")),
            as_of=pl.lit(tx.as_of),
        )
        .sort("customer_id")
    )
    try:
        return lf.collect()
    except pl.exceptions.PolarsError as exc:
        raise InputDataError(f"{', '.join(s['path'] for s in tx.sources)}: cannot parse: {exc}") from None


def add_clusters(df: pl.DataFrame, cfg: Config) -> tuple[pl.DataFrame, ClusterModel]:
    """Cluster the purchasers; customers without a purchase get a null cluster."""
    buyers = (df["frequency"] > 0).to_numpy()
    labels, model = cluster_customers(df.filter(pl.Series(buyers)), cfg.cluster)
    col = np.full(df.height, -1, dtype=np.int64)
    col[buyers] = labels
    cluster = pl.Series("cluster", col).replace(-1, None).cast(pl.Int64)
    return df.with_columns(cluster), model


def segment(inputs: list[str], cfg: Config, *, previous: pl.DataFrame | None = None,
            previous_meta: dict[str, Any] | None = None, force: bool = False,
            created_at: dt.datetime | None = None) -> Segmentation:
    """The main job (SPEC §3-§5): transactions in, one assignment per customer out."""
    preload()
    tx = load_transactions(inputs, cfg)
    has_prev = previous is not None
    df = customer_table(tx, cfg, keep_share=cfg.tiers.keep_share if has_prev else None)
    conc = concentration_of(df, cfg, tx.scale)
    df, model = add_clusters(df, cfg)
    warnings = list(tx.warnings)

    departed = pl.DataFrame()
    if previous is not None:
        _guard(previous, df, cfg, force, warnings)
        prev_vip = previous.filter((pl.col("tier") == ZHIXIN) & (pl.col("reason") != "departed"))
        df = df.with_columns(was_vip=pl.col("customer_id").is_in(prev_vip["customer_id"].implode()))
        prev_ids = previous.filter(pl.col("reason") != "departed")["customer_id"]
        departed = pl.DataFrame({"customer_id": prev_ids}).join(df.select("customer_id"), on="customer_id", how="anti")
        if departed.height:
            ids = departed["customer_id"].sort().to_list()
            warnings.append(f"{departed.height} customer{'s' if departed.height > 1 else ''} of the previous run "
                            f"absent from the data, written as yuxin with reason 'departed': "
                            f"{', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}")
    n_out = df.height + departed.height
    df = assign_tiers(df, cfg.tiers, n_customers=n_out, has_previous=has_prev, scale=tx.scale)
    groups, group_info = vip_groups(df, cfg)
    df = df.with_columns(groups)
    if departed.height:
        df = pl.concat([df, departed.with_columns(tier=pl.lit(YUXIN), reason=pl.lit("departed"),
                                                  as_of=pl.lit(tx.as_of))], how="diagonal_relaxed")
    group_names = [g["vip_group"] for g in group_info["groups"]]  # type: ignore[index]
    out = (
        with_service_terms(df.lazy(), cfg.service, group_names, cfg.tiers.labels)
        .select(OUTPUT_COLUMNS)
        .sort("customer_id")
        .collect()
    )
    meta = run_record(cfg, tx, model, group_info, out, created_at,
                      previous_meta=previous_meta if has_prev else None)
    return Segmentation(out, meta, warnings, tx.rejects, conc)


def concentration_of(df: pl.DataFrame, cfg: Config, scale: int) -> Concentration:
    """Pareto figures of a customer table (exact minor units)."""
    return concentration(df["monetary_minor"].to_numpy(), df["pareto_class"].to_numpy(), scale,
                         head_shares=HEAD_SHARES + (cfg.pareto.head_share,))


def _guard(previous: pl.DataFrame, df: pl.DataFrame, cfg: Config, force: bool, warnings: list[str]) -> None:
    """Stop when customers or revenue fell by more than ``guard.max_drop`` against PREV."""
    prev = previous.filter(pl.col("reason") != "departed")
    prev_n, cur_n = prev.height, df.height
    prev_rev = float(prev["monetary"].sum() or 0.0)
    cur_rev = float(df["monetary"].sum() or 0.0)
    drops = []
    if prev_n and (prev_n - cur_n) / prev_n > cfg.guard_max_drop:
        drops.append(f"customers fell from {prev_n} to {cur_n} ({(prev_n - cur_n) / prev_n:.1%})")
    if prev_rev > 0 and (prev_rev - cur_rev) / prev_rev > cfg.guard_max_drop:
        drops.append(f"total revenue fell from {prev_rev:,.2f} to {cur_rev:,.2f} ({(prev_rev - cur_rev) / prev_rev:.1%})")
    if drops and not force:
        raise InputDataError(
            f"the data shrank by more than guard.max_drop ({cfg.guard_max_drop:.0%}) against the previous run",
            [*drops, "a truncated export would demote many VIPs; check the export, or pass --force to go on"])
    warnings.extend(f"--force: {d}" for d in drops)


def run_record(cfg: Config, tx: Transactions, model: ClusterModel, group_info: dict[str, Any],
               out: pl.DataFrame, created_at: dt.datetime | None,
               previous_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's record, embedded in Parquet metadata or written as ``OUT.meta.json``."""
    tiers = out.group_by("tier").agg(n=pl.len(), revenue=exact_sum("monetary")).sort("tier")
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "segcli",
        "version": __version__,
        "as_of": tx.as_of.isoformat(),
        "config_hash": cfg.hash,
        "config": cfg.raw,
        "inputs": tx.sources,
        "rows": tx.counts,
        "customers": out.height,
        "tiers": {r["tier"]: {"customers": r["n"], "revenue": r["revenue"]} for r in tiers.iter_rows(named=True)},
        "model": {
            "cluster": {"k": model.k, "silhouette": model.silhouette, "silhouette_by_k": model.scores,
                        "fitted_on": model.fitted_on, "centroids": model.centroids},
            "vip_groups": group_info,
        },
        "previous": ({"as_of": previous_meta.get("as_of"), "config_hash": previous_meta.get("config_hash"),
                      "departed": out.filter(pl.col("reason") == "departed")["customer_id"].to_list()}
                     if previous_meta is not None else None),
        "created_at": created_timestamp(created_at),
    }


def created_timestamp(now: dt.datetime | None = None) -> str:
    """``SOURCE_DATE_EPOCH`` when set (reproducible builds), else the current UTC time."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).isoformat()
        except ValueError:
            raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not an integer") from None
    return (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds")


def rfm_table(inputs: list[str], cfg: Config) -> tuple[pl.DataFrame, dict[str, Any], list[str], pl.DataFrame | None]:
    """``segcli rfm``: features, scores, segment, cluster and Pareto columns; no tiers."""
    preload()
    tx = load_transactions(inputs, cfg)
    df, model = add_clusters(customer_table(tx, cfg), cfg)
    out = df.select(RFM_COLUMNS)
    meta = run_record(cfg, tx, model, {}, out.with_columns(tier=pl.lit("all")), None)
    meta.pop("tiers", None)
    return out, meta, tx.warnings, tx.rejects
