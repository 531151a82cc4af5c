"""Reading, checking and the as-of date of transaction inputs: paths -> :class:`Transactions`.

:func:`load_transactions` reads as a list of named steps: open the inputs (:func:`open_inputs`),
plan the parse (:func:`plan_parse`), the one checking pass over every row and its re-runs
(:func:`checking_pass`, :func:`check_passes`), the report of problems (:func:`refuse_bad_files`,
:func:`input_warnings`, :func:`invalid_rows`, :func:`check_currencies`) and the as-of date,
window, warnings and counts of the record (:func:`decide_run`). The Spark engine reuses the
steps that do not read rows (:mod:`segcli.engines.spark`).
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

import polars as pl

from segcli import reading
from segcli.config import Config, InputConfig
from segcli.errors import InputDataError, RunWarning, SegcliError, UsageError
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
from segcli.parse import (
    PLAN_SAMPLE_ROWS,
    REPEAT_COUNT_MAX_ROWS,
    RULES,
    ColumnMap,
    ParsePlan,
    amount_hits,
    canonical,
    currency_code,
    date_hits,
    formats_for,
    invalid_expr,
    mark_repeats,
    plain_amounts,
    resolve_columns,
    unmapped_hints,
)
from segcli.rfm import check_money_range

# Rows aggregated in one pass. Above it, customers are split into hash buckets aggregated one
# after another: the order-level group-by state then grows with a bucket, not with the
# export (at 100 million rows it would hold ~56 million orders at once).
ROWS_PER_PART = 10_000_000
EXAMPLES = 5  # bad rows shown per rule and file
# --memory-limit: rows per bucket = limit / BYTES_PER_ROW (measured: the one-pass aggregation
# of 10^7 rows of 10^6 customers peaks at 1.9 GB, start-up and customer table included)
BYTES_PER_ROW = 200
MIN_ROWS_PER_PART = 1_000_000
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
ROW_ESTIMATE_SLACK = 1.1
ESTIMATE_SAMPLE_BYTES = 2**20


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
    opened = open_inputs(inputs, cfg)
    plan = plan_parse(opened, cfg, count_identical=count_identical, memory_limit=memory_limit,
                      fusable=aggregate is not None)
    checked = check_passes(opened, plan, cfg, aggregate)
    src_stats, days, cur = check_tables(checked.groups, dedupe=inp.dedupe)
    rejects, warnings = report_problems(opened, plan, checked, src_stats, cur, cfg)
    as_of, run_warnings, counts = decide_run(days, src_stats, cfg, where=opened.where, counted=plan.mark,
                                             sources=opened.sources, across_repeats=checked.across,
                                             totals=len(checked.totals))
    warnings += run_warnings
    records = source_records(opened.sources, src_stats, opened.colmaps)
    if strict:
        check_strict(warnings, cfg, inputs)
    used = checked.rows.filter(used_rows(inp.dedupe)) if plan.parts == 1 else checked.rows  # a spill: used rows
    return Transactions(used.filter(analysed_rows(as_of, cfg)), as_of, inp.amount_scale, records, counts,
                        warnings, rejects, plan.parts, checked.aggregated)


# -------------------------------------------------------- opening the inputs and planning the parse


@dataclass(frozen=True)
class OpenInputs:
    """The inputs opened, their headers checked and their columns mapped: one entry per
    input file in each list, in the order the files were named."""

    files: list[str]  # as expanded from folders and globs
    sources: list[Source]
    raws: list[pl.LazyFrame]  # the raw columns, scanned lazily
    schemas: list[pl.Schema]
    colmaps: list[ColumnMap]
    warnings: list[RunWarning]  # found before the rows are read: skipped files, unmapped columns

    @property
    def where(self) -> str:
        """The inputs as messages about all of them name them."""
        return ", ".join(s.name for s in self.sources)


def open_inputs(inputs: list[str], cfg: Config) -> OpenInputs:
    """Expand folders and globs, open and scan every file, check its header and map its
    columns; warn about files skipped in folders and columns that look unmapped."""
    inp = cfg.input
    skipped: list[str] = []
    files = expand_inputs(inputs, skipped)
    sources: list[Source] = []
    raws: list[pl.LazyFrame] = []
    schemas: list[pl.Schema] = []
    colmaps: list[ColumnMap] = []
    early = reading.skipped_files_warning(skipped)
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
    return OpenInputs(files, sources, raws, schemas, colmaps, early)


@dataclass(frozen=True)
class PassPlan:
    """How the checking pass reads the inputs."""

    plans: list[ParsePlan]  # per input: date formats and amount clean-up, chosen on a sample
    rows: int  # the inputs' rows: exact for Parquet, estimated for text files
    mark: bool  # identical rows are marked: counted, or dropped by ``input.dedupe``
    parts: int  # customer buckets the kept rows are spilled in; 1: no spill
    across: bool  # identical rows across inputs are counted (and the pairs sharing rows)
    fuse: bool  # the aggregation runs in the checking pass


def plan_parse(opened: OpenInputs, cfg: Config, *, count_identical: bool | None, memory_limit: int | None,
               fusable: bool) -> PassPlan:
    """A sample decides each input's cheap parse plan; the row count decides whether identical
    rows are counted and how many customer buckets a large export is spilled in (``fusable``:
    an aggregation was asked for, which the pass can run when no spill or window waits)."""
    inp = cfg.input
    try:
        samples = pl.collect_all([raw.select(pl.col(c.date).alias("date"), pl.col(c.amount).alias("amount"))
                                  .head(PLAN_SAMPLE_ROWS) for raw, c in zip(opened.raws, opened.colmaps)])
        # Parquet knows its row count from metadata; counting CSV rows would be a whole
        # extra read, so text files are sized from the lines in their first MiB
        counted = [raw.select(pl.len()) for raw, src in zip(opened.raws, opened.sources) if src.kind != "csv"]
        rows = sum(int(s.item()) for s in pl.collect_all(counted)) if counted else 0
        rows += sum(estimate_rows(src.path) for src in opened.sources if src.kind == "csv")
    except pl.exceptions.PolarsError as exc:
        raise polars_error(exc, opened.sources) from None
    mark = marks_identical(inp, count_identical, rows)
    plans = [parse_plan(s, sch, c, inp, mark=mark, drop_repeats=inp.dedupe,
                        blank_rows=src.kind not in ("parquet", "postgres"))
             for s, sch, c, src in zip(samples, opened.schemas, opened.colmaps, opened.sources)]
    # A large export is parsed once: the pass that counts for the checks also spills the
    # rows the analysis keeps (4 columns), split into customer buckets; the aggregation
    # then reads the spill one bucket at a time.
    # text files' rows are an estimate: 10% over the bucket size still goes in one pass
    per_part = rows_per_part(memory_limit)
    parts = max(1, math.ceil(rows / per_part)) if rows > per_part * ROW_ESTIMATE_SLACK else 1
    fuse = fusable and parts == 1 and (cfg.analysis.as_of is not None or not cfg.analysis.window_days)
    return PassPlan(plans, rows, mark, parts, across=mark and len(opened.sources) > 1, fuse=fuse)


def marks_identical(inp: InputConfig, count_identical: bool | None, rows: int) -> bool:
    """Whether identical rows are marked: always with dedupe, else ``count_identical``, or
    (``None``) when the inputs hold at most ``REPEAT_COUNT_MAX_ROWS`` rows."""
    return inp.dedupe or bool(count_identical) or (count_identical is None and rows <= REPEAT_COUNT_MAX_ROWS)


def parse_plan(sample: pl.DataFrame, schema: pl.Schema, cols: ColumnMap, inp: InputConfig, *, mark: bool,
               drop_repeats: bool, blank_rows: bool) -> ParsePlan:
    """One input's parse plan from its first rows (``sample``: columns ``date`` and ``amount``):
    the configured date formats that parse them, plain amounts when they need no clean-up.
    The checking pass checks it on every row (:func:`plans_to_widen`)."""
    return ParsePlan(formats_for(sample["date"], inp.date_formats, inp.timezone) if schema[cols.date] == pl.String
                     else inp.date_formats,
                     plain_amounts=schema[cols.amount] == pl.String and plain_amounts(sample["amount"]),
                     count_repeats=mark and not inp.dedupe, drop_repeats=drop_repeats, blank_rows=blank_rows)


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


# -------------------------------------------------------------------------------- the checking pass


@dataclass(frozen=True)
class CheckPass:
    """What one checking pass found."""

    rows: pl.LazyFrame  # for the aggregation: all parsed rows, or the spill of the kept ones
    parsed: pl.LazyFrame  # the rows parsed afresh: raw values and line numbers of error examples
    groups: pl.DataFrame  # check_query's counts
    aggregated: pl.DataFrame | None  # the aggregate of the kept rows, when fused
    across: int | None  # rows identical to an earlier row of any input, when counted (without dedupe)
    totals: dict[int, int] = field(default_factory=dict)  # input -> line of its trailing total row


def check_passes(opened: OpenInputs, plan: PassPlan, cfg: Config, aggregate: Aggregate | None) -> CheckPass:
    """The checking pass, run again when its counts show that it read the rows in a way that
    was not final: a total marker that is not its file's last row, or a sampled parse plan
    that left values unparsed which another configured format parses."""
    checked = checking_pass(opened, plan, cfg, aggregate)
    # Total rows: the pass dropped every row whose customer id is a total marker; that is
    # right when each sits last in its file (a finance workbook's 合计). A marker elsewhere
    # stays a row as it always was: count again, dropping only the trailing ones.
    totals, elsewhere = reading.total_rows(checked.groups)
    if elsewhere:
        checked = checking_pass(opened, plan, cfg, aggregate, totals)
    widened = widened_plans(opened, plan.plans, checked, cfg.input)
    if widened != plan.plans:
        checked = checking_pass(opened, dataclasses.replace(plan, plans=widened), cfg, aggregate,
                                totals if elsewhere else None)
    return dataclasses.replace(checked, totals=totals)


def checking_pass(opened: OpenInputs, plan: PassPlan, cfg: Config, aggregate: Aggregate | None,
                  totals: dict[int, int] | None = None) -> CheckPass:
    """Parse every row with ``plan`` and gather every count the checks need in one scan,
    which also spills the kept rows by bucket (a large export) or aggregates them (fused).
    ``totals``: the trailing total rows (None: every total marker is taken for one)."""
    inp = cfg.input
    frames = [canonical(raw, sch, c, inp, i, src.first_line, p) for i, (raw, sch, c, src, p)
              in enumerate(zip(opened.raws, opened.schemas, opened.colmaps, opened.sources, plan.plans))]
    canon = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    parsed = canon = (mark_repeats(canon) if inp.dedupe else canon).with_columns(total=reading.total_rule(totals))
    extras = [reading.repeats_across(canon)] if plan.across and not inp.dedupe else []
    query = check_query(canon, distinct=plan.mark and not inp.dedupe)
    kept = canon.filter(used_rows(inp.dedupe) & analysed_rows(cfg.analysis.as_of, cfg))  # the aggregation's rows
    try:
        if plan.parts > 1:
            spill, sink = spill_by_bucket(kept.select(*SPILLED), plan.parts)
            stats, _, *extra = pl.collect_all([query, sink, *extras])  # one scan feeds both
            _check_spill(spill, opened.sources)
            canon, agg = pl.scan_parquet(spill / "**" / "*.parquet", hive_partitioning=True), None
        elif plan.fuse:
            assert aggregate is not None
            # one scan feeds both: Polars shares the common part of the two plans
            stats, agg, *extra = pl.collect_all([query, aggregate(kept), *extras])
        else:
            stats, *extra = pl.collect_all([query, *extras])
            agg = None
    except pl.exceptions.PolarsError as exc:
        # a full TMPDIR does not always say so: a sink can fail on the damaged file it left
        if plan.parts > 1 and (disk_error(exc) or _scratch_full()):
            raise _spill_error(exc, opened.sources) from None
        raise polars_error(exc, opened.sources) from None
    except OSError as exc:
        raise _spill_error(exc, opened.sources) from None
    return CheckPass(canon, parsed, stats, agg, int(extra[0].item() or 0) if extras else None)


def used_rows(dedupe: bool, total: pl.Expr | None = None) -> pl.Expr:
    """Rows that are rows: blank lines and trailing total rows (``total``, default the
    ``total`` column) are not; identical rows are, unless dedupe drops them."""
    total = pl.col("total") if total is None else total
    return ~pl.col("blank") & ~total & ~(pl.col("repeat") & pl.lit(dedupe))


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


def widened_plans(opened: OpenInputs, plans: list[ParsePlan], checked: CheckPass, inp: InputConfig,
                  ) -> list[ParsePlan]:
    """Dates or amounts the sampled plan left unparsed: does another configured format, or the
    full clean-up of amounts, parse them? Then that file's plan is widened, so that
    first-match-wins stays exact. Read only when such rows exist."""
    checks = [(i, checked.parsed.filter((pl.col("source") == i) & ~pl.col("blank")).select(
                   *date_hits(inp.date_formats, inp.timezone), amount_hits(inp.amount_scale)))
              for i in plans_to_widen(checked.groups, plans, inp)]
    if not checks:
        return plans
    try:
        found = dict(zip((i for i, _ in checks), pl.collect_all([q for _, q in checks])))
    except pl.exceptions.PolarsError as exc:
        raise polars_error(exc, opened.sources) from None
    return [widen_plan(plan, found[i].row(0, named=True), inp) if i in found else plan
            for i, plan in enumerate(plans)]


def plans_to_widen(groups: pl.DataFrame, plans: list[ParsePlan], inp: InputConfig) -> list[int]:
    """The inputs whose sampled parse plan left dates or amounts unparsed that another
    configured format, or the full clean-up of amounts, might parse (``groups``: the
    :func:`check_query` counts). Only those are read again, for :func:`widen_plan`."""
    dates, amounts = bad_column("date"), bad_column("amount")
    unparsed = groups.filter(~pl.col("blank")).group_by("source").agg(pl.col(dates, amounts).sum())
    out = []
    for i, plan in enumerate(plans):
        counts_i = unparsed.filter(pl.col("source") == i)
        bad_dates = counts_i.height and counts_i[dates][0] and len(plan.formats) < len(inp.date_formats)
        bad_amounts = counts_i.height and counts_i[amounts][0] and plan.plain_amounts
        if bad_dates or bad_amounts:
            out.append(i)
    return out


def widen_plan(plan: ParsePlan, hits: dict[str, Any], inp: InputConfig) -> ParsePlan:
    """``plan`` with every configured date format that parses some value (``date_hit_K``)
    and the full amount clean-up when plain amounts missed some (``amount_hit``): so that
    first-match-wins stays exact for every row, not only the sampled ones."""
    formats = tuple(f for k, f in enumerate(inp.date_formats) if f in plan.formats or hits.get(f"date_hit_{k}"))
    return dataclasses.replace(plan, formats=formats, plain_amounts=plan.plain_amounts and not hits.get("amount_hit"))


def bad_column(role: str) -> str:
    """The count of rows breaking the rule on column ``role`` (:data:`segcli.parse.RULES`):
    ``bad_customer_id``, ``bad_date``, ``bad_amount``."""
    return f"bad_{role}"


RULE_COLUMNS = tuple(bad_column(role) for _, role, _ in RULES)


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
        **{bad_column(role): pred for _, role, pred in RULES},
        rounded=pl.col("amount_rounded") & valid,
        returns=valid & (pl.col("amount_minor") < 0),
        zeros=valid & (pl.col("amount_minor") == 0),
        # Int128: the sum that tells whether int64 money sums are safe cannot wrap itself
        abs_units=pl.when(valid).then(pl.col("amount_minor").cast(pl.Int128).abs()),
        cur=pl.when(valid).then(pl.col("raw_currency")),  # spellings: see check_currencies
        **({"mline": pl.when(pl.col("total_marker")).then(pl.col("line"))} if totals else {}),
    )
    markers = {"markers": pl.col("total_marker").sum(), "marker_line": pl.col("mline").max(),
               "last_line": pl.col("line").max()} if totals else {}
    return flags.group_by("source", pl.col("ts").dt.date().alias("date"), "blank", "repeat",
                          *(["total"] if totals else [])).agg(
        pl.len().alias("rows"),
        pl.col("valid", *RULE_COLUMNS, "rounded", "returns", "zeros", "tail_null",
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
    used = used_rows(dedupe, pl.col("total") if "total" in groups.columns else pl.lit(False))
    per_src = groups.group_by("source").agg(
        records=pl.col("rows").sum(),
        blank=pl.col("rows").filter(pl.col("blank")).sum(),
        # with dedupe the rows are flagged; else rows beyond the distinct ones of their day
        repeats=(pl.col("rows").filter(~pl.col("blank") & pl.col("repeat")).sum() if dedupe
                 else (pl.col("rows") - pl.col("distinct")).filter(~pl.col("blank")).sum()),
        read=pl.col("rows").filter(~pl.col("blank")).sum(),
    )
    src_stats = (groups.filter(used).group_by("source")
                 .agg(pl.col("rows", "invalid", "rounded", "tail_null", *RULE_COLUMNS).sum())
                 .join(per_src, on="source", how="right").fill_null(0).sort("source"))
    days = (groups.filter(used & pl.col("date").is_not_null()).group_by("date")
            .agg(rows=pl.col("valid").sum(), returns=pl.col("returns").sum(), zeros=pl.col("zeros").sum(),
                 abs_units=pl.col("abs_units").sum())
            .filter(pl.col("rows") > 0))
    cur = groups.filter(used).select(lo=pl.col("cur_min").min(), hi=pl.col("cur_max").max())
    return src_stats, days, cur


# --------------------------------------------------------------- the bucket spill of a large export


def bucket_expr(parts: int) -> pl.Expr:
    """A customer's bucket: a seeded hash of the id (the same id, the same bucket)."""
    return (pl.col("customer_id").hash(seed=0) % parts).cast(pl.UInt32)


# the columns the aggregation reads (and the checks of analysed_rows)
SPILLED = ("customer_id", "order_key", "ts", "amount_minor")


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


def _spill_error(exc: Exception, sources: list[Source]) -> SegcliError:
    """The bucket spill did not fit in TMPDIR: exit 73 naming the folder and the room needed
    (about the input's size), the free space measured once the partial spill is gone."""
    return spill_failure(exc, sum(s.size for s in sources))


def _scratch_full() -> bool:
    """Less than 1 MiB left where the spill goes."""
    try:
        return shutil.disk_usage(scratch_dir()).free < (1 << 20)
    except OSError:
        return False


def spill_failure(exc: Exception, need: int) -> SegcliError:
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


# --------------------------------------------------------------------------- the report of problems


def report_problems(opened: OpenInputs, plan: PassPlan, checked: CheckPass, src_stats: pl.DataFrame,
                    cur: pl.DataFrame, cfg: Config) -> tuple[pl.DataFrame | None, list[RunWarning]]:
    """(the rejects, the warnings) of the checking pass's counts (:func:`check_tables`), or the
    error they show: about whole inputs first (:func:`refuse_bad_files`), then the warnings
    about inputs, invalid rows (:func:`invalid_rows`) and currencies. Bad rows are read
    again (raw values, line numbers) only when there are some."""
    inp = cfg.input
    lines = LineMap(opened.sources, dict(zip(src_stats["source"], src_stats["records"])))
    used = checked.parsed.filter(used_rows(inp.dedupe))
    refuse_bad_files(opened, src_stats, used, lines, inp.amount_scale)
    warnings = [*opened.warnings, *input_warnings(opened, plan, checked, src_stats, lines)]
    bad = used.filter(invalid_expr())
    file = pl.col("source").replace_strict({i: s.name for i, s in enumerate(opened.sources)}, return_dtype=pl.String)
    rejects, found = invalid_rows(opened.sources, opened.colmaps, src_stats, cfg,
                                  examples=lambda n: lines(bad.head(n).collect()),
                                  every=lambda: lines(bad.collect()).with_columns(file=file))
    listed = used.filter(~invalid_expr()).select(pl.col("currency").drop_nulls().unique().sort().head(10))
    check_currencies(cur, opened.where, inp, lambda: listed.collect()["currency"].to_list())
    return rejects, warnings + found


@dataclass(frozen=True)
class LineMap:
    """Record positions -> the lines they start on (quoted fields may span lines), from each
    input's record count (``records``, by input)."""

    sources: list[Source]
    records: dict[int, int]

    def __call__(self, frame: pl.DataFrame) -> pl.DataFrame:
        out = []
        for i, part in frame.partition_by("source", as_dict=True, maintain_order=True).items():
            src = self.sources[i[0]]
            first = part["line"].cast(pl.Int64) - src.first_line
            mapping = physical_lines(src, int(self.records[i[0]]), first.to_list())
            out.append(part.with_columns(line=first.replace_strict(mapping, return_dtype=pl.UInt64)))
        return pl.concat(out) if out else frame


def refuse_bad_files(opened: OpenInputs, src_stats: pl.DataFrame, used: pl.LazyFrame, lines: LineMap,
                     scale: int) -> None:
    """Errors about whole inputs, before any about rows: ragged records, no rows at all,
    amounts too large for ``amount_scale`` (``used``: the parsed rows that are rows)."""
    # Ragged records: a short one leaves the last column null, so look only when it has nulls.
    for row in src_stats.iter_rows(named=True):
        src = opened.sources[row["source"]]
        if src.kind == "csv" and row["tail_null"]:
            check_ragged(src, len(opened.schemas[row["source"]]))
    sources = opened.sources
    check_not_empty(int(src_stats["rows"].sum()), sources,
                    header_file=len(sources) == 1 and sources[0].kind not in ("parquet", "postgres"))
    if int(src_stats[bad_column("amount")].sum()):
        _check_amount_sizes(used, sources, opened.colmaps, scale, lines)


def check_ragged(src: Source, width: int) -> None:
    """Records of a text file with another number of fields than its header (``width``) are
    an error (exit 65) listing the first ones by line."""
    short, long = count_ragged(src, width)
    if short + long:
        raise ragged_error(src, width, short + long, ragged_lines(src))


def check_not_empty(total_rows: int, sources: Sequence[Any], *, header_file: bool) -> None:
    """No rows in any input is an error; ``header_file``: the one input is a file whose
    header line was read."""
    if total_rows == 0:
        if header_file:
            raise InputDataError(f"{sources[0].name}: the file has a header but no rows")
        raise InputDataError(f"{', '.join(s.name for s in sources)}: no rows")


def input_warnings(opened: OpenInputs, plan: PassPlan, checked: CheckPass, src_stats: pl.DataFrame,
                   lines: LineMap) -> list[RunWarning]:
    """``overlapping_inputs`` (the same file twice, inputs sharing most rows) and ``total_row``."""
    sources = opened.sources
    twins = reading.same_files(opened.files, sources) if len(sources) > 1 else []
    # Which inputs share rows: a query of its own (a second read), made only when rows repeat
    # across inputs (without dedupe: more repeats over all inputs than within each)
    within = int(src_stats["repeats"].sum())
    shared = (checked.across > within) if checked.across is not None else (plan.across and within > 0)
    try:
        keys = (reading.overlap_keys(checked.parsed).collect() if shared and plan.rows <= reading.OVERLAP_MAX_ROWS
                else None)
    except pl.exceptions.PolarsError as exc:
        raise polars_error(exc, sources) from None
    warnings = reading.overlap_warnings(sources, twins, keys)
    if checked.totals:
        rows = lines(reading.total_row_values(checked.parsed, checked.totals))
        warnings.extend(reading.total_row_warnings(sources, rows))
    return warnings


def invalid_rows(sources: Sequence[Any], colmaps: list[ColumnMap], src_stats: pl.DataFrame, cfg: Config, *,
                 examples: Callable[[int], pl.DataFrame], every: Callable[[], pl.DataFrame],
                 ) -> tuple[pl.DataFrame | None, list[RunWarning]]:
    """Invalid rows beyond ``analysis.max_invalid`` are an error showing the first ones
    (``examples(n)``: up to n bad rows); within it they are the rejects (``every()``: all bad
    rows, with their ``file``) and a warning. Each engine reads the bad rows its own way."""
    invalid, total = int(src_stats["invalid"].sum()), int(src_stats["rows"].sum())
    if not invalid:
        return None, []
    if invalid > allowed_invalid(cfg.analysis.max_invalid, total):
        bad = examples(EXAMPLES * len(RULES) * len(sources))
        raise InputDataError(*invalid_report(sources, colmaps, src_stats, bad, total, invalid))
    rejects = every().select("file", "line", pl.col("raw_customer_id").alias("customer_id"),
                             pl.col("raw_date").alias("date"), pl.col("raw_amount").alias("amount"))
    return rejects, [RunWarning("invalid_rows", f"{invalid} invalid row{'s' if invalid > 1 else ''} skipped (within "
                                f"--max-invalid {cfg.analysis.max_invalid:g}); written to the rejects file")]


def check_currencies(cur: pl.DataFrame, where: str, inp: InputConfig, listed: Callable[[], list[str]]) -> None:
    """One currency a run, and the configured one if any.

    ``cur``: the lowest and highest currency as written (:func:`check_tables`). One spelling
    is one code, normalised here; otherwise ``listed()`` reads the codes of the rows
    (normalised, distinct, sorted, up to ten): "CNY" and " cny" are one currency."""
    lo, hi = cur.row(0)
    if lo is None:
        return
    if lo == hi:
        code = pl.select(currency_code(pl.lit(lo, pl.String))).item()
        codes = [] if code is None else [code]
    else:
        codes = listed()
    if len(codes) > 1:
        raise InputDataError(f"{where}: more than one currency in one run: {', '.join(codes)}",
                             ["segment each currency separately (filter the export), or convert amounts first"])
    if inp.currency and codes and codes[0] != inp.currency.upper():
        raise InputDataError(f"currency {codes[0]} found, but input.currency is {inp.currency}")


def allowed_invalid(max_invalid: float, rows: int) -> int:
    """``max_invalid`` is a row count, or a share of the rows when below 1."""
    if 0 < max_invalid < 1:
        return math.floor(max_invalid * rows)
    return int(max_invalid)


def invalid_report(sources: Sequence[Any], colmaps: list[Any], stats: pl.DataFrame, bad: pl.DataFrame,
                    total: int, invalid: int) -> tuple[str, list[str]]:
    """The error for too many invalid rows: per file and rule, a count and the first rows."""
    names = ", ".join(s.name for s in sources)
    details = []
    for rule, role, pred in RULES:
        for row in stats.iter_rows(named=True):
            n = int(row[bad_column(role)])
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
        raise polars_error(exc, sources) from None
    if counts.height:
        raise reading.too_large_error(real_lines(examples), dict(zip(counts["source"], counts["n"])), largest.item(),
                                      scale, sources, {i: c.amount for i, c in enumerate(colmaps)})


def polars_error(exc: Exception, sources: list[Source]) -> InputDataError:
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
                return ragged_error(s, width, short + long or len(examples), examples)
        return InputDataError(f"{', '.join(s.name for s in sources)}: ragged rows: a row has more fields than the "
                              "header", ["fix the row, or quote the field that holds the extra separator"])
    if "could not parse" in text or "malformed" in text.lower():
        for s in csvs:
            problem = quote_problem(s)
            if problem is not None:
                return InputDataError(f"{s.name}: misplaced quotes: {problem.split(': ', 1)[1].split(':')[0]}",
                                      [problem, 'a field with a separator, quote or line break must be quoted whole, '
                                                'inner quotes doubled: "12"" screen, black"'])
    return InputDataError(f"{', '.join(s.name for s in sources)}: cannot parse: {text}")


def ragged_error(src: Source, width: int, count: int, examples: list[str]) -> InputDataError:
    """The error for ``count`` records with another number of fields than the header
    (``width``), the first ones (``examples``) and how to fix such a file."""
    fix = ("columns aligned with spaces: an empty value, or a value holding a space, shifts the columns; export the "
           "data with a separator (CSV)" if src.layout == "whitespace" else
           "fix the rows, or quote the fields that hold the separator "
           f"({'tab' if src.separator == chr(9) else repr(src.separator)}) or a line break")
    return InputDataError(
        f"{src.name}: ragged rows: {count} row{'s have' if count > 1 else ' has'} another number of fields than "
        f"the header ({width})", [*examples, fix])


# ------------------------------------------------------ the as-of date, the warnings and the record


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


def source_records(sources: Sequence[Any], src_stats: pl.DataFrame, colmaps: list[ColumnMap]) -> list[dict[str, Any]]:
    """The record's ``inputs``: each input's name, size, format, encoding, rows and columns."""
    return [
        {"path": s.name, "bytes": s.size, "format": s.kind, "encoding": s.encoding if s.kind == "csv" else None,
         "rows": int(r["read"]), "rows_invalid": int(r["invalid"]),
         "columns": {k: v for k, v in colmaps[i].__dict__.items() if v}}
        for i, (s, r) in enumerate(zip(sources, src_stats.iter_rows(named=True)))
    ]


def input_names(inputs: list[str]) -> str:
    """The inputs as messages name them (a DataFrame given to the API is ``<DataFrame>``)."""
    return ", ".join(display_name(i) for i in inputs)
