"""The runs of segcli's commands: inputs -> checked transactions -> customers -> assignments,
and the record of each run.

Each number is computed in exactly one module (rfm, pareto, clusters, tiers); this module
reads and checks the inputs (:func:`load_transactions`), wires the stages together and keeps
the record of the run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from segcli import __version__, reading
from segcli.clusters import ClusterModel, cluster_customers, preload
from segcli.config import Config, InputConfig
from segcli.errors import InputDataError, RunWarning, SegcliError, UsageError, warning_records
from segcli.io import (
    Source,
    check_header,
    check_utf8,
    count_ragged,
    disk_error,
    display_name,
    expand_inputs,
    header_width,
    open_source,
    physical_lines,
    quote_problem,
    ragged_lines,
    read_columns,
    scan_source,
    scratch_dir,
    scratch_error,
)
from segcli.pareto import concentration_of, pareto_rank
from segcli.parse import (
    PLAN_SAMPLE_ROWS,
    REPEAT_COUNT_MAX_ROWS,
    RULES,
    ColumnMap,
    ParsePlan,
    amount_hits,
    canonical,
    date_hits,
    formats_for,
    invalid_expr,
    mark_repeats,
    plain_amounts,
    resolve_columns,
    unmapped_hints,
)
from segcli.previous import departed_warning, previous_checks, shrink_guard
from segcli.results import ParetoResult, RfmResult, SegmentResult
from segcli.rfm import (
    MONEY_PLACES,
    check_money_range,
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

# Rows aggregated in one pass. Above it, customers are split into hash buckets aggregated one
# after another: the order-level group-by state then grows with a bucket, not with the
# export (at 100 million rows it would hold ~56 million orders at once).
ROWS_PER_PART = 10_000_000
EXAMPLES = 5  # bad rows shown per rule and file
# --memory-limit: rows per bucket = limit / BYTES_PER_ROW (measured: the one-pass aggregation
# of 10^7 rows of 10^6 customers peaks at 1.9 GB, start-up and customer table included)
BYTES_PER_ROW = 200
MIN_ROWS_PER_PART = 1_000_000
MEMORY_LIMIT_ENV = "SEGCLI_MEMORY_LIMIT"  # read by the CLI only, as --memory-limit's default
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """``8G``, ``512M``, ``4GiB``, ``1.5g``, ``2000000000`` -> bytes (powers of 1024)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    number = t[:-1] if unit else t
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"--memory-limit {text!r}: not a size (examples: 8G, 512M, 4GiB)") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"--memory-limit {text!r}: must be a positive size")
    return int(value * _UNITS[unit])


ROW_ESTIMATE_SLACK = 1.1
ESTIMATE_SAMPLE_BYTES = 2**20


def estimate_rows(path: Path) -> int:
    """Rows of a text file from the line breaks in its first MiB (exact for a small file)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(ESTIMATE_SAMPLE_BYTES)
    lines = head.count(b"\n")
    if len(head) >= size:
        return lines
    return math.ceil(size * max(lines, 1) / len(head))


def rows_per_part(memory_limit: int | None = None) -> int:
    """Rows aggregated in one pass: ``ROWS_PER_PART``, or sized from ``memory_limit`` (bytes,
    ``--memory-limit``): a smaller budget means more, smaller customer buckets."""
    if not memory_limit:
        return ROWS_PER_PART
    return max(MIN_ROWS_PER_PART, memory_limit // BYTES_PER_ROW)


@dataclass
class Transactions:
    """Checked transactions, ready for analysis, and what was found on the way."""

    tx: pl.LazyFrame  # canonical rows kept: valid, dated on or before as_of, inside the window
    as_of: dt.date
    scale: int
    sources: list[dict[str, Any]]
    counts: dict[str, int | None]  # rows_identical is None when not counted
    warnings: list[RunWarning] = field(default_factory=list)
    rejects: pl.DataFrame | None = None
    parts: int = 1  # > 1: ``tx`` reads a spill split into this many customer buckets (``bucket``)
    aggregated: pl.DataFrame | None = None  # ``aggregate(tx)``, when it ran in the checking pass
    engine: dict[str, Any] = field(default_factory=lambda: {"name": "polars"})  # where the heavy step ran


def _polars_error(exc: Exception, sources: list[Source]) -> InputDataError:
    """Turn a Polars read failure into a message naming the file and what is wrong there."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    csvs = [s for s in sources if s.kind == "csv"]
    if "utf-8" in text.lower() or "utf8" in text.lower():
        for s in csvs:
            error = check_utf8(s)
            if error is not None:
                return error
        return InputDataError(f"{', '.join(s.name for s in sources)}: bytes that are not valid UTF-8",
                              ["if the file is GBK/GB18030, pass --encoding gb18030"])
    if "more fields" in text or "ragged" in text.lower():
        for s in csvs:
            width = header_width(s)
            short, long = count_ragged(s, width)
            examples = ragged_lines(s)
            if short + long or examples:
                return _ragged_error(s, width, short + long or len(examples), examples)
        return InputDataError(f"{', '.join(s.name for s in sources)}: ragged rows: a row has more fields than the header",
                              ["fix the row, or quote the field that holds the extra separator"])
    if "could not parse" in text or "malformed" in text.lower():
        for s in csvs:
            problem = quote_problem(s)
            if problem is not None:
                return InputDataError(f"{s.name}: misplaced quotes: {problem.split(': ', 1)[1].split(':')[0]}",
                                      [problem, 'a field with a separator, quote or line break must be quoted whole, '
                                                'inner quotes doubled: "12"" screen, black"'])
    return InputDataError(f"{', '.join(s.name for s in sources)}: cannot parse: {text}")


def _ragged_error(src: Source, width: int, count: int, examples: list[str]) -> InputDataError:
    fix = ("columns aligned with spaces: an empty value, or a value holding a space, shifts the columns; export the "
           "data with a separator (CSV)" if src.layout == "whitespace" else
           "fix the rows, or quote the fields that hold the separator "
           f"({'tab' if src.separator == chr(9) else repr(src.separator)}) or a line break")
    return InputDataError(
        f"{src.name}: ragged rows: {count} row{'s have' if count > 1 else ' has'} another number of fields than "
        f"the header ({width})", [*examples, fix])


def _allowed_invalid(max_invalid: float, rows: int) -> int:
    """``max_invalid`` is a row count, or a share of the rows when below 1."""
    if 0 < max_invalid < 1:
        return math.floor(max_invalid * rows)
    return int(max_invalid)


Aggregate = Callable[[pl.LazyFrame], pl.LazyFrame]
Loader = Callable[..., "Transactions"]  # load_transactions, or an engine's (segcli.engines)


def load_transactions(inputs: list[str], cfg: Config, *, count_identical: bool | None = None,
                      aggregate: Aggregate | None = None, memory_limit: int | None = None,
                      strict: bool = True) -> Transactions:
    """Read every input, check every row, fix the as-of date and apply window and drops.

    One pass over the data gathers every count the checks need; examples of bad rows are
    read only when there are some. With ``aggregate`` (rows -> per-customer frame, needing
    no as-of date) that same pass also aggregates the rows the analysis keeps, whenever
    which rows it keeps is known before reading: always, except with a window but no
    as-of date (the window then ends at the latest date, known only after the pass), and
    for an export large enough to be spilled in buckets. The result is ``aggregated``.

    Parameters
    ----------
    inputs:
        Paths, directories, globs or ``-`` (SPEC §2).
    cfg:
        The run's configuration (``input`` and ``analysis`` sections are used here).
    count_identical:
        Count rows identical to an earlier row (a hash of every row): ``True`` always,
        ``False`` never, ``None`` when the inputs hold at most ``REPEAT_COUNT_MAX_ROWS``
        rows. Always done with ``input.dedupe``, which drops them.
    memory_limit:
        Memory budget in bytes (``--memory-limit``): sizes the customer buckets of a large
        export (:func:`rows_per_part`); ``None``: ``ROWS_PER_PART`` rows a bucket.
    strict:
        Apply :func:`check_strict` to the warnings found here (``analysis.strict``); a
        caller that adds warnings of its own passes ``False`` and checks them all at once.

    Raises :class:`InputDataError` (exit 65) on bad rows beyond ``max_invalid``, ragged
    rows, undecodable bytes, several currencies, no usable rows, money sums beyond int64,
    or warnings under ``analysis.strict``; :class:`InputMissingError` (66) on missing or
    unreadable inputs.
    """
    inp = cfg.input
    skipped: list[str] = []
    files = expand_inputs(inputs, skipped)
    sources: list[Source] = []
    raws: list[pl.LazyFrame] = []
    schemas: list[pl.Schema] = []
    colmaps: list[ColumnMap] = []
    early = reading.skipped_files_warning(skipped)  # warnings found before the rows are read
    unmapped: dict[str, list[str]] = {}  # hint -> the files it is about
    for name in files:
        src = open_source(name, inp.encoding, sheet=inp.sheet, header_row=inp.header_row, separator=inp.separator,
                          config=cfg)
        raw = scan_source(src)
        names = read_columns(src, raw)
        hint = (f"if title rows sit above the header, name the header's {src.row_word} with --header-row N "
                "(or [input] header_row)") if src.kind != "parquet" else None
        check_header(src, names)
        colmaps.append(resolve_columns(names, inp.columns.__dict__, src.name, hint=hint))
        for text in unmapped_hints(names, colmaps[-1]):
            unmapped.setdefault(text, []).append(src.name)
        schemas.append(raw.collect_schema())
        sources.append(src)
        raws.append(raw)
    early.extend(reading.unmapped_warnings(unmapped))

    # A sample decides the cheap parse plan; the stats pass checks it on every row.
    try:
        samples = pl.collect_all([raw.select(pl.col(c.date).alias("date"), pl.col(c.amount).alias("amount"))
                                  .head(PLAN_SAMPLE_ROWS) for raw, c in zip(raws, colmaps)])
        # Parquet knows its row count from metadata; counting CSV rows would be a whole
        # extra read, so text files are sized from the lines in their first MiB
        counted = [raw.select(pl.len()) for raw, src in zip(raws, sources) if src.kind != "csv"]
        rows = sum(int(s.item()) for s in pl.collect_all(counted)) if counted else 0
        rows += sum(estimate_rows(src.path) for src in sources if src.kind == "csv")
        mark = inp.dedupe or bool(count_identical) or (count_identical is None and rows <= REPEAT_COUNT_MAX_ROWS)
    except pl.exceptions.PolarsError as exc:
        raise _polars_error(exc, sources) from None
    plans = [ParsePlan(formats_for(s["date"], inp.date_formats, inp.timezone) if sch[c.date] == pl.String
                       else inp.date_formats,
                       plain_amounts=sch[c.amount] == pl.String and plain_amounts(s["amount"]),
                       count_repeats=mark and not inp.dedupe, drop_repeats=inp.dedupe,
                       blank_rows=src.kind not in ("parquet", "postgres"))
             for s, sch, c, src in zip(samples, schemas, colmaps, sources)]

    # A large export is parsed once: the pass that counts for the checks also spills the
    # rows the analysis keeps (4 columns), split into customer buckets; the aggregation
    # then reads the spill one bucket at a time.
    # text files' rows are an estimate: 10% over the bucket size still goes in one pass
    per_part = rows_per_part(memory_limit)
    parts = max(1, math.ceil(rows / per_part)) if rows > per_part * ROW_ESTIMATE_SLACK else 1
    # blank lines and trailing total rows are no rows; identical rows count as rows unless
    # dedupe drops them
    used_rows = ~pl.col("blank") & ~pl.col("total") & ~(pl.col("repeat") & pl.lit(inp.dedupe))
    # identical rows across inputs: counted (and the pairs sharing rows) when rows are counted
    across = mark and len(sources) > 1
    fixed_as_of = cfg.analysis.as_of
    fuse = aggregate is not None and parts == 1 and (fixed_as_of is not None or not cfg.analysis.window_days)

    def stats_pass(plans: list[ParsePlan], totals: dict[int, int] | None = None,
                   ) -> tuple[pl.LazyFrame, pl.LazyFrame, pl.DataFrame, pl.DataFrame | None, list[pl.DataFrame]]:
        """(the rows for the aggregation: all parsed rows, or the spill of the kept ones; the
        rows parsed afresh, for the raw values and line numbers of error examples; the
        per-file and per-day counts; the aggregate when fused; the counts across inputs:
        repeated rows, distinct rows per input and shared per pair, when ``across``).
        ``totals``: the trailing total rows (None: every total marker is taken for one)."""
        frames = [canonical(raw, sch, c, inp, i, src.first_line, plan)
                  for i, (raw, sch, c, src, plan) in enumerate(zip(raws, schemas, colmaps, sources, plans))]
        canon = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
        parsed = canon = (mark_repeats(canon) if inp.dedupe else canon).with_columns(total=reading.total_rule(totals))
        extras = [reading.repeats_across(canon)] if across and not inp.dedupe else []
        query = check_query(canon, distinct=mark and not inp.dedupe)
        kept = canon.filter(used_rows & analysed_rows(fixed_as_of, cfg))  # what the aggregation reads
        try:
            if parts > 1:
                spill, sink = spill_by_bucket(kept.select(*SPILLED), parts)
                stats, _, *extra = pl.collect_all([query, sink, *extras])  # one scan feeds both
                _check_spill(spill, sources)
                return pl.scan_parquet(spill / "**" / "*.parquet", hive_partitioning=True), parsed, stats, None, extra
            if not fuse:
                stats, *extra = pl.collect_all([query, *extras])
                return canon, parsed, stats, None, extra
            assert aggregate is not None
            # one scan feeds both: Polars shares the common part of the two plans
            stats, agg, *extra = pl.collect_all([query, aggregate(kept), *extras])
            return canon, parsed, stats, agg, extra
        except pl.exceptions.PolarsError as exc:
            # a full TMPDIR does not always say so: a sink can fail on the damaged file it left
            if parts > 1 and (disk_error(exc) or _scratch_full()):
                raise _spill_error(exc, sources) from None
            raise _polars_error(exc, sources) from None
        except OSError as exc:
            raise _spill_error(exc, sources) from None

    canon, parsed, groups, aggregated, extra = stats_pass(plans)
    # Total rows: the pass dropped every row whose customer id is a total marker; that is
    # right when each sits last in its file (a finance workbook's 合计). A marker elsewhere
    # stays a row as it always was: count again, dropping only the trailing ones.
    totals, elsewhere = reading.total_rows(groups)
    if elsewhere:
        canon, parsed, groups, aggregated, extra = stats_pass(plans, totals)
    # Dates or amounts the sampled plan left unparsed: does another configured format, or the
    # full clean-up of amounts, parse them? Then widen that file's plan and count again, so
    # that first-match-wins stays exact. Read only when such rows exist.
    checks = [(i, parsed.filter((pl.col("source") == i) & ~pl.col("blank")).select(
                   *date_hits(inp.date_formats, inp.timezone), amount_hits(inp.amount_scale)))
              for i in plans_to_widen(groups, plans, inp)]
    if checks:
        try:
            found = dict(zip((i for i, _ in checks), pl.collect_all([q for _, q in checks])))
        except pl.exceptions.PolarsError as exc:
            raise _polars_error(exc, sources) from None
        widened = [widen_plan(plan, found[i].row(0, named=True), inp) if i in found else plan
                   for i, plan in enumerate(plans)]
        if widened != plans:
            plans = widened
            canon, parsed, groups, aggregated, extra = stats_pass(plans, totals if elsewhere else None)

    used = canon.filter(used_rows) if parts == 1 else canon  # the spill holds only used rows
    used_parsed = parsed.filter(used_rows)  # for examples: raw values and line numbers
    src_stats, days, cur = check_tables(groups, dedupe=inp.dedupe)
    total_rows = int(src_stats["rows"].sum())
    invalid_rows = int(src_stats["invalid"].sum())
    records = dict(zip(src_stats["source"], src_stats["records"]))

    def real_lines(frame: pl.DataFrame) -> pl.DataFrame:
        """Record positions -> the lines they start on (quoted fields may span lines)."""
        out = []
        for i, part in frame.partition_by("source", as_dict=True, maintain_order=True).items():
            src = sources[i[0]]
            first = part["line"].cast(pl.Int64) - src.first_line
            mapping = physical_lines(src, int(records[i[0]]), first.to_list())
            out.append(part.with_columns(line=first.replace_strict(mapping, return_dtype=pl.UInt64)))
        return pl.concat(out) if out else frame

    # Ragged records: a short one leaves the last column null, so look only when it has nulls.
    for row in src_stats.iter_rows(named=True):
        src = sources[row["source"]]
        if src.kind == "csv" and row["tail_null"]:
            width = len(schemas[row["source"]])
            short, long = count_ragged(src, width)
            if short + long:
                raise _ragged_error(src, width, short + long, ragged_lines(src))

    if total_rows == 0:
        if len(sources) == 1 and sources[0].kind not in ("parquet", "postgres"):
            raise InputDataError(f"{sources[0].name}: the file has a header but no rows")
        raise InputDataError(f"{', '.join(s.name for s in sources)}: no rows")

    if int(src_stats[f"bad_{AMOUNT_RULE}"].sum()):
        _check_amount_sizes(used_parsed, sources, colmaps, inp.amount_scale, real_lines)
    rejects = None
    warnings: list[RunWarning] = list(early)
    across_repeats = int(extra.pop(0).item() or 0) if across and not inp.dedupe else None
    twins = reading.same_files(files, sources) if len(sources) > 1 else []
    # Which inputs share rows: a query of its own (a second read), made only when rows repeat
    # across inputs (without dedupe: more repeats over all inputs than within each)
    within = int(src_stats["repeats"].sum())
    shared = (across_repeats > within) if across_repeats is not None else (across and within > 0)
    try:
        keys = reading.overlap_keys(parsed).collect() if shared and rows <= reading.OVERLAP_MAX_ROWS else None
    except pl.exceptions.PolarsError as exc:
        raise _polars_error(exc, sources) from None
    warnings.extend(reading.overlap_warnings(sources, twins, keys))
    if totals:
        warnings.extend(reading.total_row_warnings(sources, real_lines(reading.total_row_values(parsed, totals))))
    if invalid_rows:
        allowed = _allowed_invalid(cfg.analysis.max_invalid, total_rows)
        if invalid_rows > allowed:
            bad = real_lines(used_parsed.filter(invalid_expr()).head(EXAMPLES * len(RULES) * len(sources)).collect())
            raise InputDataError(*_invalid_report(sources, colmaps, src_stats, bad, total_rows, invalid_rows))
        file_names = {i: s.name for i, s in enumerate(sources)}
        rejects = (real_lines(used_parsed.filter(invalid_expr()).collect())
                   .select(pl.col("source").replace_strict(file_names, return_dtype=pl.String).alias("file"), "line",
                           pl.col("raw_customer_id").alias("customer_id"), pl.col("raw_date").alias("date"),
                           pl.col("raw_amount").alias("amount")))
        warnings.append(RunWarning("invalid_rows", f"{invalid_rows} invalid row{'s' if invalid_rows > 1 else ''} "
                                   f"skipped (within --max-invalid {cfg.analysis.max_invalid:g}); written to the "
                                   "rejects file"))

    lo, hi = cur.row(0)
    if lo is not None and lo != hi:
        listed = (parsed.filter(used_rows & ~invalid_expr())
                  .select(pl.col("currency").drop_nulls().unique().sort().head(10)).collect())
        raise InputDataError(
            f"{', '.join(s.name for s in sources)}: more than one currency in one run: {', '.join(listed['currency'])}",
            ["segment each currency separately (filter the export), or convert amounts first"])
    if inp.currency and lo is not None and lo != inp.currency.upper():
        raise InputDataError(f"currency {lo} found, but input.currency is {inp.currency}")

    as_of, run_warnings, counts = decide_run(days, src_stats, cfg, where=", ".join(s.name for s in sources),
                                             counted=mark, sources=sources, across_repeats=across_repeats,
                                             totals=len(totals))
    warnings += run_warnings
    src_records = [
        {"path": s.name, "bytes": s.size, "format": s.kind, "encoding": s.encoding if s.kind == "csv" else None,
         "rows": int(r["read"]), "rows_invalid": int(r["invalid"]),
         "columns": {k: v for k, v in colmaps[i].__dict__.items() if v}}
        for i, (s, r) in enumerate(zip(sources, src_stats.iter_rows(named=True)))
    ]
    if strict:
        check_strict(warnings, cfg, inputs)
    return Transactions(used.filter(analysed_rows(as_of, cfg)), as_of, inp.amount_scale, src_records, counts,
                        warnings, rejects, parts, aggregated)


def plans_to_widen(groups: pl.DataFrame, plans: list[ParsePlan], inp: InputConfig) -> list[int]:
    """The inputs whose sampled parse plan left dates or amounts unparsed that another
    configured format, or the full clean-up of amounts, might parse (``groups``: the
    :func:`check_query` counts). Only those are read again, for :func:`widen_plan`."""
    unparsed = groups.filter(~pl.col("blank")).group_by("source").agg(pl.col("bad_1", "bad_2").sum())
    out = []
    for i, plan in enumerate(plans):
        counts_i = unparsed.filter(pl.col("source") == i)
        bad_dates = counts_i.height and counts_i["bad_1"][0] and len(plan.formats) < len(inp.date_formats)
        bad_amounts = counts_i.height and counts_i["bad_2"][0] and plan.plain_amounts
        if bad_dates or bad_amounts:
            out.append(i)
    return out


def widen_plan(plan: ParsePlan, hits: dict[str, Any], inp: InputConfig) -> ParsePlan:
    """``plan`` with every configured date format that parses some value (``date_hit_K``)
    and the full amount clean-up when plain amounts missed some (``amount_hit``): so that
    first-match-wins stays exact for every row, not only the sampled ones."""
    formats = tuple(f for k, f in enumerate(inp.date_formats) if f in plan.formats or hits.get(f"date_hit_{k}"))
    return dataclasses.replace(plan, formats=formats, plain_amounts=plan.plain_amounts and not hits.get("amount_hit"))


def check_query(canon: pl.LazyFrame, *, distinct: bool) -> pl.LazyFrame:
    """Canonical rows -> the counts every check needs, per (source, date, blank, repeat), and
    per ``total`` when the rows carry that flag (the trailing total rows of files read here;
    then also the total markers' count and line and each group's last line).

    ``distinct`` counts distinct ``row_hash`` values per group (identical rows); else
    ``distinct`` equals ``rows``. Every column but ``distinct`` is a sum, a min or a max, so
    counts of disjoint row sets add up; ``distinct`` too when identical rows never fall in
    two sets (the Spark engine splits rows by customer id, which identical rows share).
    """
    totals = "total" in canon.collect_schema().names()
    valid = ~invalid_expr()
    # Flags first, then plain sums: Polars runs simple aggregations vectorised, while
    # an expression inside .agg() would be evaluated group by group.
    flags = canon.with_columns(
        valid=valid,
        **{f"bad_{i}": pred for i, (_, _, pred) in enumerate(RULES)},
        rounded=pl.col("amount_rounded") & valid,
        returns=valid & (pl.col("amount_minor") < 0),
        zeros=valid & (pl.col("amount_minor") == 0),
        # Int128: the sum that tells whether int64 money sums are safe cannot wrap itself
        abs_units=pl.when(valid).then(pl.col("amount_minor").cast(pl.Int128).abs()),
        cur=pl.when(valid).then(pl.col("currency")),
        **({"mline": pl.when(pl.col("total_marker")).then(pl.col("line"))} if totals else {}),
    )
    markers = {"markers": pl.col("total_marker").sum(), "marker_line": pl.col("mline").max(),
               "last_line": pl.col("line").max()} if totals else {}
    return flags.group_by("source", pl.col("ts").dt.date().alias("date"), "blank", "repeat",
                          *(["total"] if totals else [])).agg(
        pl.len().alias("rows"),
        pl.col("valid", *(f"bad_{i}" for i in range(len(RULES))), "rounded", "returns", "zeros", "tail_null",
               "abs_units").sum(),
        invalid=(~pl.col("valid")).sum(),
        cur_min=pl.col("cur").min(),
        cur_max=pl.col("cur").max(),
        distinct=pl.col("row_hash").n_unique() if distinct else pl.len(),
        **markers,
    )


def check_tables(groups: pl.DataFrame, *, dedupe: bool) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """:func:`check_query`'s counts -> (per source, per day of the rows used, the currency range).
    Blank lines and trailing total rows are no rows; identical rows are, unless dedupe drops them."""
    total = pl.col("total") if "total" in groups.columns else pl.lit(False)
    used_rows = ~pl.col("blank") & ~total & ~(pl.col("repeat") & pl.lit(dedupe))
    per_src = groups.group_by("source").agg(
        records=pl.col("rows").sum(),
        blank=pl.col("rows").filter(pl.col("blank")).sum(),
        # with dedupe the rows are flagged; else rows beyond the distinct ones of their day
        repeats=(pl.col("rows").filter(~pl.col("blank") & pl.col("repeat")).sum() if dedupe
                 else (pl.col("rows") - pl.col("distinct")).filter(~pl.col("blank")).sum()),
        read=pl.col("rows").filter(~pl.col("blank")).sum(),
    )
    src_stats = (groups.filter(used_rows).group_by("source")
                 .agg(pl.col("rows", "invalid", "rounded", "tail_null", *(f"bad_{i}" for i in range(len(RULES)))).sum())
                 .join(per_src, on="source", how="right").fill_null(0).sort("source"))
    days = (groups.filter(used_rows & pl.col("date").is_not_null()).group_by("date")
            .agg(rows=pl.col("valid").sum(), returns=pl.col("returns").sum(), zeros=pl.col("zeros").sum(),
                 abs_units=pl.col("abs_units").sum())
            .filter(pl.col("rows") > 0))
    cur = groups.filter(used_rows).select(lo=pl.col("cur_min").min(), hi=pl.col("cur_max").max())
    return src_stats, days, cur


def decide_run(days: pl.DataFrame, src_stats: pl.DataFrame, cfg: Config, *, where: str, counted: bool,
               sources: Sequence[Any] = (), across_repeats: int | None = None,
               totals: int = 0) -> tuple[dt.date, list[RunWarning], dict[str, Any]]:
    """The as-of date, the warnings about dropped, repeated and rounded rows, and the row
    counts of the record, from :func:`check_tables`' counts (``counted``: identical rows
    were counted; ``across_repeats``: identical rows counted over all inputs together;
    ``totals``: trailing total rows dropped; ``sources``: rows a database left on the
    server). Raises :class:`InputDataError` when no row is left to analyse, or money sums
    could overflow."""
    inp = cfg.input
    warnings: list[RunWarning] = []
    if days.height == 0:
        raise InputDataError("no valid rows to analyse")
    latest = days["date"].max()
    as_of = cfg.analysis.as_of or latest
    assert isinstance(as_of, dt.date)
    after = int(days.filter(pl.col("date") > as_of)["rows"].sum())
    start = as_of - dt.timedelta(days=cfg.analysis.window_days) if cfg.analysis.window_days else None
    outside = int(days.filter(pl.col("date") <= start)["rows"].sum()) if start else 0
    # a database source's pushed-down date filter left these rows on the server: dropped all the same
    after += sum(getattr(s, "rows_after_as_of", 0) for s in sources)
    outside += sum(getattr(s, "rows_outside_window", 0) for s in sources)
    kept_days = days.filter((pl.col("date") <= as_of) & ((pl.col("date") > start) if start else pl.lit(True)))
    repeats = int(src_stats["repeats"].sum()) if across_repeats is None else across_repeats
    # dedupe = true is the user's decision: the dropped rows are counted in the record, not warned about
    if repeats and not inp.dedupe:
        warnings.append(RunWarning("identical_rows", f"{repeats} row{'s are' if repeats > 1 else ' is'} identical to "
                                   "an earlier row in every column: kept (line-item exports repeat legitimately); "
                                   "set [input] dedupe = true to drop them"))
    if after:
        warnings.append(RunWarning("after_as_of", f"{after} row{'s' if after > 1 else ''} dated after the as-of date "
                                   f"{as_of} dropped"))
    if outside:
        warnings.append(RunWarning("outside_window", f"{outside} row{'s' if outside > 1 else ''} before the "
                                   f"{cfg.analysis.window_days}-day window (on or before {start}) dropped"))
    rounded = int(src_stats["rounded"].sum())
    if rounded:
        warnings.append(RunWarning("rounded", f"{rounded} amount{'s' if rounded > 1 else ''} had more than "
                                   f"{inp.amount_scale} decimal places and {'were' if rounded > 1 else 'was'} "
                                   "rounded half-to-even"))
    assert isinstance(latest, dt.date)
    stale = stale_warning(latest, cfg)
    if stale is not None:
        warnings.append(stale)
    if kept_days.height == 0:
        raise InputDataError(f"no rows on or before the as-of date {as_of}"
                             + (f" inside the {cfg.analysis.window_days}-day window" if start else ""))
    check_money_range(int(kept_days["abs_units"].sum()), int(kept_days["rows"].sum()), inp.amount_scale, where)

    counts: dict[str, Any] = {
        "rows_read": int(src_stats["read"].sum()),
        "rows_blank": int(src_stats["blank"].sum()),
        "rows_total": totals,
        "rows_identical": repeats if counted else None,
        "rows_invalid": int(src_stats["invalid"].sum()),
        "rows_after_as_of": after,
        "rows_outside_window": outside,
        "rows_used": int(kept_days["rows"].sum()),
        "rows_returns": int(kept_days["returns"].sum()),
        "rows_zero_amount": int(kept_days["zeros"].sum()),
        "amounts_rounded": rounded,
    }
    counts["rows_read"] += sum(getattr(s, "rows_filtered", 0) for s in sources)  # read on the server, not sent
    return as_of, warnings, counts


def stale_warning(latest: dt.date, cfg: Config) -> RunWarning | None:
    """``stale_export`` (SPEC §6): an explicit as-of date more than
    ``analysis.max_staleness_days`` (0 = never) after the latest transaction. An old export
    run as of today makes every customer look inactive, and nothing else would say so."""
    as_of, limit = cfg.analysis.as_of, cfg.analysis.max_staleness_days
    if as_of is None or not limit or (as_of - latest).days <= limit:
        return None
    return RunWarning("stale_export", f"the latest transaction is dated {latest}, {(as_of - latest).days} days "
                      f"before the as-of date {as_of} (more than analysis.max_staleness_days = {limit}): "
                      "is the export stale? Recency is counted to the as-of date")


def check_strict(warnings: list[RunWarning], cfg: Config, inputs: list[str]) -> None:
    """``analysis.strict`` (``--strict``): warnings whose kind is not allowed (``--allow``,
    ``analysis.allow``) stop the run with :class:`InputDataError` (exit 65), before anything
    is written. The one place the rule lives: every command reaches it through the core."""
    blocking = [w for w in warnings if w.kind not in cfg.analysis.allow]
    if not blocking or not cfg.analysis.strict:
        return
    kinds = sorted({w.kind for w in blocking})
    raise InputDataError(f"{input_names(inputs)}: {len(blocking)} warning{'s' if len(blocking) > 1 else ''} "
                         "under --strict: nothing written",
                         [str(w) for w in blocking]
                         + [f"to let {'these' if len(kinds) > 1 else 'this'} through: "
                            + " ".join(f"--allow {k}" for k in kinds)])


def analysed_rows(as_of: dt.date | None, cfg: Config) -> pl.Expr:
    """The valid rows the analysis keeps: dated on or before ``as_of`` and inside the
    window ending there (``None``: the latest date, which every valid row is on or before)."""
    keep = ~invalid_expr()
    if as_of is None:
        return keep
    date = pl.col("ts").dt.date()
    keep = keep & (date <= as_of)
    if cfg.analysis.window_days:
        keep = keep & (date > as_of - dt.timedelta(days=cfg.analysis.window_days))
    return keep


def bucket_expr(parts: int) -> pl.Expr:
    """A customer's bucket: a seeded hash of the id (the same id, the same bucket)."""
    return (pl.col("customer_id").hash(seed=0) % parts).cast(pl.UInt32)


# the columns the aggregation reads (and the checks of analysed_rows)
SPILLED = ("customer_id", "order_key", "ts", "amount_minor")


def _spill_error(exc: Exception, sources: list[Source]) -> SegcliError:
    """The bucket spill did not fit in TMPDIR: exit 73 naming the folder and the room needed
    (about the input's size), the free space measured once the partial spill is gone."""
    return _spill_failure(exc, sum(s.size for s in sources))


def _scratch_full() -> bool:
    """Less than 1 MiB left where the spill goes."""
    try:
        return shutil.disk_usage(scratch_dir()).free < (1 << 20)
    except OSError:
        return False


def _spill_failure(exc: Exception, need: int) -> SegcliError:
    """:func:`_spill_error` for ``need`` bytes: a damaged spill read back on a full disk (a
    sink can end without an error there) names the full disk, else the damage."""
    if isinstance(exc, OSError):
        reason = exc
    elif disk_error(exc):  # Polars' own words: "No space left on device (os error 28)", ...
        reason = OSError(str(exc).splitlines()[0].split("IO error: ")[-1])
    elif _scratch_full():  # measured before the clean-up
        reason = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    else:
        reason = OSError(f"the bucket spill could not be read back: {str(exc).splitlines()[0]}")
    for spill in scratch_dir().glob("buckets-*"):
        shutil.rmtree(spill, ignore_errors=True)
    return scratch_error(reason, scratch_dir().parent, need)


def _check_spill(spill: Path, sources: list[Source]) -> None:
    """Every spill file whole: on a full disk a sink can end without an error and leave a
    truncated file, which would surface later as a damaged input (exit 65). A file whose
    footer cannot be read is the spill's failure: exit 73 naming TMPDIR."""
    import pyarrow.parquet as pq

    for part in spill.rglob("*.parquet"):
        try:
            pq.read_metadata(part)
        except Exception as exc:  # noqa: BLE001 - pyarrow's errors for a damaged footer vary
            full = shutil.disk_usage(spill).free < (1 << 20)
            reason = (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if full
                      else OSError(f"the spill file {part.name} is incomplete ({str(exc).splitlines()[0]})"))
            raise _spill_error(reason, sources) from None


def spill_by_bucket(lf: pl.LazyFrame, parts: int) -> tuple[Path, pl.LazyFrame]:
    """(the spill folder, the lazy sink that fills it).

    Collecting the sink writes ``lf`` once to a private temporary folder split by customer
    bucket (lz4 Parquet, hive-style ``bucket=i``); a hive scan of it has a ``bucket``
    column, and a filter on it reads only that bucket's files. Removed at exit."""
    spill = Path(tempfile.mkdtemp(prefix="buckets-", dir=scratch_dir()))
    sink = lf.with_columns(bucket=bucket_expr(parts)).sink_parquet(
        pl.PartitionBy(spill, key="bucket", include_key=False), compression="lz4", maintain_order=False, lazy=True)
    assert sink is not None
    return spill, sink


AMOUNT_RULE = next(i for i, (_, role, _) in enumerate(RULES) if role == "amount")


def _check_amount_sizes(rows: pl.LazyFrame, sources: list[Source], colmaps: list[ColumnMap], scale: int,
                        real_lines: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
    """Stop on amounts that are numbers but beyond what ``amount_scale`` keeps exactly: an
    error of its own (SPEC §6: lower amount_scale), never an "unparsable" row that
    ``--max-invalid`` could let through. Read only when some amount did not parse."""
    big = reading.too_large_rows(rows, scale)
    try:
        counts, examples, largest = pl.collect_all([
            big.group_by("source").agg(n=pl.len()),
            big.group_by("source", maintain_order=True).head(EXAMPLES).select("source", "line", "raw_amount"),
            big.select(pl.col("value").abs().max())])
    except pl.exceptions.PolarsError as exc:
        raise _polars_error(exc, sources) from None
    if counts.height:
        raise reading.too_large_error(real_lines(examples), dict(zip(counts["source"], counts["n"])), largest.item(),
                                      scale, sources, {i: c.amount for i, c in enumerate(colmaps)})


def _invalid_report(sources: list[Source], colmaps: list[Any], stats: pl.DataFrame, bad: pl.DataFrame,
                    total: int, invalid: int) -> tuple[str, list[str]]:
    """The error for too many invalid rows: per file and rule, a count and the first rows."""
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
            # an engine that cannot number rows (Spark) names each row's file instead
            files = ex["file"] if "file" in ex.columns else [src.name] * ex.height
            for line, value, file in zip(ex["line"], ex[raw_col], files):
                where = f"{src.row_word} {line}" if line is not None else file
                details.append(f"    {where}: {column}={(value if value is not None else '')!r}")
    if bad.height and bad["line"].is_null().all():
        details.append("line numbers are not available on Spark: rows are shown by file and raw values")
    details.append("fix the rows, map the columns with [input.columns] / input.date_formats, or let up to N bad "
                   "rows through with --max-invalid N (they go to a rejects file)")
    return f"{names}: {invalid} of {total} rows are invalid", details


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
            raise _spill_failure(exc, sum(int(s.get("bytes") or 0) for s in tx.sources)) from None
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
        features.sort("customer_id").lazy()  # sorted while narrow; every later step keeps the order
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


def input_names(inputs: list[str]) -> str:
    """The inputs as messages name them (a DataFrame given to the API is ``<DataFrame>``)."""
    return ", ".join(display_name(i) for i in inputs)


def segment(inputs: list[str], cfg: Config, *, previous: pl.DataFrame | None = None,
            previous_meta: dict[str, Any] | None = None, force: bool = False,
            progress: Progress = _quiet, memory_limit: int | None = None,
            load: Loader | None = None) -> SegmentResult:
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

    Raises
    ------
    InputDataError
        (exit 65) besides the input errors when ``previous`` is not an earlier run, the data
        shrank beyond ``guard.max_drop`` (both unless ``force``), or there are warnings under
        ``analysis.strict`` (:func:`check_strict`).
    """
    preload()
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
                      warnings=warnings, decision=decision)
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
               warnings: list[RunWarning] | None = None, decision: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's record, embedded in Parquet metadata or written as ``OUT.meta.json``;
    ``decision`` is :func:`segcli.tiers.tier_decision` of a segment run.

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
        "created_at": created_timestamp(),
    }


def created_timestamp(now: dt.datetime | None = None) -> str:
    """``SOURCE_DATE_EPOCH`` when set (reproducible builds), else the current UTC time."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            return dt.datetime.fromtimestamp(int(epoch), dt.UTC).isoformat()
        except ValueError:
            raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not an integer") from None
    return (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")


def rfm_table(inputs: list[str], cfg: Config, *, progress: Progress = _quiet,
              memory_limit: int | None = None, load: Loader | None = None) -> RfmResult:
    """``segcli rfm``: features, scores, segment, cluster and Pareto columns; no tiers.

    Raises :class:`InputDataError` on bad input and on warnings under ``analysis.strict``."""
    preload()
    progress(f"reading and checking {input_names(inputs)}")
    tx = (load or load_transactions)(inputs, cfg, aggregate=rfm_features, memory_limit=memory_limit)  # strict there
    progress(f"aggregating {tx.counts['rows_used']:,} rows into customers")
    table = customer_table(tx, cfg)
    progress(f"clustering {table.height:,} customers")
    df, model = add_clusters(table, cfg)
    out = df.lazy().pipe(output_money, tx.scale, cfg.money).select(RFM_COLUMNS).collect()
    meta = run_record(cfg, tx, model, {}, out.with_columns(tier=pl.lit("all")))
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
