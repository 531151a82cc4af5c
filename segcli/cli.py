"""The Typer command line: parse options, load config, call the core, render, map errors.

Data goes to stdout only when asked for (``-o -``, ``--json``, tables); warnings, hints and
errors go to stderr. Every :class:`SegcliError` becomes one ``segcli: error: ...`` line plus
details and its exit code; anything else is ``segcli: internal error`` (exit 1).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import polars as pl
import tomli_w
import typer
from tabulate import tabulate_formats

from segcli import __version__
from segcli.config import ROLES, Config, config_from_dict, default_config_text, json_schema, load_config
from segcli.diff import TO_FIELDS as DIFF_TO_FIELDS
from segcli.diff import TierDiff, change_count_map, change_counts, change_lists, check_run_order, departed_terms, run_as_of, tier_diff
from segcli.engines import engine_settings, loader
from segcli.errors import WARNING_KINDS, InputDataError, OutputError, RunWarning, SegcliError, UsageError
from segcli.explain import cut_points_table, decision_text, explain, render_explanations
from segcli.io import check_output_path, read_assignments, read_record, write_table, write_text, write_workbook
from segcli.lifetimes import lifetimes_finish, lifetimes_periods, lifetimes_record
from segcli.plot import CurveMarks, curve_points, plot_format, write_plot
from segcli.postgres import command_line_inputs, command_line_output, is_database, write_rejects_table
from segcli.pipeline import (MEMORY_LIMIT_ENV, Loader, concentration_of, customer_table, features_by_part,
                             load_transactions, parse_size, rfm_features, rfm_table, segment, warning_records)
from segcli.report import concentration_document, headline, render, render_concentration, summarize, to_records
from segcli.tiers import vip_limit
from segcli.usage import SegcliCommand, SegcliGroup

app = typer.Typer(
    name="segcli",
    cls=SegcliGroup,
    help="Segment customers into 知心 (zhixin, VIP) and 遇心 (yuxin, standard) service tiers "
    "from a transactions export, with Pareto 80/20 and RFM analysis.\n\n"
    "Example: segcli segment sample_data/transactions.csv -o assignments.parquet",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Write or show configuration.\n\nExample: segcli config show --from assignments.parquet",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(config_app, name="config")

F = TypeVar("F", bound=Callable[..., Any])


class Grouping(str, Enum):
    tier = "tier"
    vip_group = "vip_group"
    rfm_segment = "rfm_segment"
    cluster = "cluster"
    reason = "reason"


class Style(str, Enum):
    segcli = "segcli"
    lifetimes = "lifetimes"


class Freq(str, Enum):
    D = "D"
    W = "W"


class Engine(str, Enum):
    polars = "polars"
    spark = "spark"


class CsvEncoding(str, Enum):
    utf8 = "utf-8"
    utf8_sig = "utf-8-sig"
    gb18030 = "gb18030"


TABLE_FORMATS = ("csv", "json", *sorted(tabulate_formats))


def _check_format(value: str) -> str:
    """--format: an unknown name is a usage error (tabulate would fall back without a word)."""
    if value not in TABLE_FORMATS:
        raise typer.BadParameter(f"{value!r} is not a table format; formats: {', '.join(TABLE_FORMATS)}")
    return value


# Options shared by every command that reads transactions (SPEC §2).
Inputs = Annotated[list[str], typer.Argument(help="CSV/TSV, Parquet or Excel files, directories, globs, or - for CSV on stdin.", show_default=False)]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config (only what differs from the defaults).", show_default=False)]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Analysis date YYYY-MM-DD [default: latest transaction].", show_default=False)]
WindowOpt = Annotated[int | None, typer.Option("--window-days", help="Keep only the last N days up to the as-of date.", show_default=False)]
EncodingOpt = Annotated[str | None, typer.Option("--encoding", help="CSV encoding: auto, utf-8, gb18030.", show_default=False)]
SheetOpt = Annotated[str | None, typer.Option("--sheet", help="Excel: the sheet to read, by name or 1-based position [default: the first].", show_default=False)]
HeaderRowOpt = Annotated[int | None, typer.Option("--header-row", help="The row (CSV: line) holding the header, as the file numbers it (e.g. 3 below two title rows).", show_default=False, min=1)]
SeparatorOpt = Annotated[str | None, typer.Option("--separator", help="Text input field separator: , ; tab | or whitespace [default: detected].", show_default=False)]
ColumnOpt = Annotated[list[str] | None, typer.Option("--column", help="Map a column, ROLE=HEADER (repeatable; roles: customer_id, date, amount, order_id, currency).", show_default=False)]
AllowOpt = Annotated[list[str] | None, typer.Option("--allow", help="A warning kind --strict lets through (repeatable), e.g. identical_rows.", show_default=False)]
MaxInvalidOpt = Annotated[float | None, typer.Option("--max-invalid", help="Tolerate N bad rows (or a share < 1); they go to OUT.rejects.csv.", show_default=False)]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Warnings become errors (exit 65).")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="Maximum worker threads.", show_default=False, min=1)]
MemoryOpt = Annotated[str | None, typer.Option("--memory-limit", envvar=MEMORY_LIMIT_ENV, help="Memory budget, e.g. 4G: large exports are aggregated in customer buckets sized to it (env SEGCLI_MEMORY_LIMIT).", show_default=False)]
FormatOpt = Annotated[str, typer.Option("--format", help="Table format: any tabulate format (github, simple, plain, psql, ...), csv or json.", callback=_check_format)]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout (= --format json).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No summary and no warnings on the terminal.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")]
OutEncodingOpt = Annotated[CsvEncoding | None, typer.Option("--output-encoding", help="Encoding of CSV output.", show_default=False)]
EngineOpt = Annotated[Engine, typer.Option("--engine", help="Where the heavy step runs: polars (embedded) or spark (pip install 'segcli[spark]'; SPARK_REMOTE=sc://... for Spark Connect).")]
SparkMasterOpt = Annotated[str | None, typer.Option("--spark-master", help="--engine spark: the master URL, e.g. local[2], spark://host:7077, yarn [default: local[*], or spark-submit's --master].", show_default=False)]
SparkConfOpt = Annotated[list[str] | None, typer.Option("--spark-conf", help="--engine spark: a Spark setting KEY=VALUE (repeatable), e.g. spark.driver.memory=4g.", show_default=False)]
SPARK_REMOTE_ENV = "SPARK_REMOTE"  # Spark Connect, as PySpark itself reads it


def _loader(engine: Engine, master: str | None, conf: list[str] | None) -> Loader:
    """The engine options -> the loader the core is given (SPARK_REMOTE: Spark Connect)."""
    settings = engine_settings(engine.value, master=master, conf=conf, remote=os.environ.get(SPARK_REMOTE_ENV))
    return load_transactions if engine is Engine.polars else loader(settings)


class WriteMode(str, Enum):
    REPLACE = "replace"
    APPEND = "append"


# PostgreSQL (SPEC §8): what a postgresql:// input reads, how a postgresql:// output is written
TableOpt = Annotated[str | None, typer.Option("--table", help="postgresql:// input: the table to read, schema.table.", show_default=False)]
QueryOpt = Annotated[str | None, typer.Option("--query", help="postgresql:// input: a SELECT to read instead of a table.", show_default=False)]
ModeOpt = Annotated[WriteMode, typer.Option("--mode", help="postgresql://...#schema.table output: replace the table, or append (one set of rows per as-of date).")]


def _database_output(output: str | None, mode: WriteMode) -> str | None:
    """-o postgresql://...: the password masked in every message; --mode needs such an output."""
    if mode is WriteMode.APPEND and not (output and is_database(output)):
        raise UsageError("--mode append needs a postgresql://...#schema.table output")
    return command_line_output(output)


def _memory_limit(limit: str | None) -> int | None:
    """--memory-limit (or SEGCLI_MEMORY_LIMIT, its default) in bytes, passed to the core as
    a parameter: exit 2 when it is no size."""
    return parse_size(limit) if limit is not None and limit.strip() else None


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


# errors of a write the system refused, which are exit 73 wherever they surface
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EBADF}


def _internal_error(exc: Exception, debug: bool | None) -> NoReturn:
    _err(f"segcli: internal error: {type(exc).__name__}: {exc}")
    if debug:
        traceback.print_exc()
    else:
        _err("  run again with --debug for the traceback")
    raise typer.Exit(1) from None


def handle_errors(fn: F) -> F:
    """Map core errors to one ``segcli: error:`` line, details and the SPEC's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SegcliError as exc:
            _err(f"segcli: error: {exc.message}")
            for line in exc.details:
                _err(f"  {line}")
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            raise
        except OSError as exc:
            if exc.errno not in WRITE_ERRNOS:
                _internal_error(exc, kwargs.get("debug"))
            # a write the system refused (disk full, /dev/full, read-only, closed stdout): exit 73
            # file writes go through atomic_set (OutputError) or name their file: the rest is stdout
            _err(f"segcli: error: cannot write {exc.filename or 'to standard output'}: {exc.strerror or exc}")
            raise typer.Exit(OutputError.exit_code) from None
        except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into exit 1
            _internal_error(exc, kwargs.get("debug"))

    return wrapper  # type: ignore[return-value]


def _columns(pairs: list[str] | None) -> dict[str, str]:
    """``--column ROLE=HEADER`` (repeatable) -> ``{"input.columns.ROLE": HEADER}``."""
    out = {}
    for pair in pairs or []:
        role, sep, header = pair.partition("=")
        role = role.strip()
        if not sep or not role or not header:
            raise UsageError(f"--column {pair!r}: expected ROLE=HEADER, e.g. --column order_id='Order ID'")
        if role not in ROLES:
            raise UsageError(f"--column {pair!r}: unknown role {role!r}; roles: {', '.join(ROLES)}")
        out[f"input.columns.{role}"] = header
    return out


def _config(config: Path | None, *, as_of: str | None = None, window_days: int | None = None,
            encoding: str | None = None, max_invalid: float | None = None, strict: bool = False,
            sheet: str | None = None, header_row: int | None = None, separator: str | None = None,
            columns: list[str] | None = None, allow: list[str] | None = None) -> Config:
    overrides: dict[str, Any] = _columns(columns)
    if separator is not None:
        overrides["input.separator"] = separator
    if allow:
        unknown = sorted(set(allow) - set(WARNING_KINDS))
        if unknown:
            raise UsageError(f"--allow {unknown[0]}: unknown warning kind; kinds: {', '.join(WARNING_KINDS)}")
        overrides["analysis.allow+"] = allow  # added to the config's own list
    if sheet is not None:
        overrides["input.sheet"] = sheet
    if header_row is not None:
        overrides["input.header_row"] = header_row
    if as_of is not None:
        overrides["analysis.as_of"] = as_of
    if window_days is not None:
        if window_days < 0:
            raise UsageError("--window-days must not be negative")
        overrides["analysis.window_days"] = window_days
    if encoding is not None:
        overrides["input.encoding"] = encoding
    if max_invalid is not None:
        overrides["analysis.max_invalid"] = max_invalid
    if strict:
        overrides["analysis.strict"] = True
    try:
        return load_config(config, overrides)
    except SegcliError as exc:
        # a bad value given on the command line is a usage error, not a config file error
        flag = next((f for k, f in (("analysis.as_of", "--as-of"), ("input.encoding", "--encoding"),
                                     ("analysis.max_invalid", "--max-invalid"), ("input.separator", "--separator"))
                     if k in exc.message and k in overrides), None)
        if flag:
            raise UsageError(f"{flag}: {exc.message.split(': ', 1)[-1]}") from None
        raise


def _table_format(fmt: str, as_json: bool) -> str:
    return "json" if as_json else fmt


def _warn(warnings: list[RunWarning], cfg: Config, quiet: bool, inputs: list[str]) -> None:
    """Print warnings (--strict is enforced by the core: ``pipeline.check_strict``)."""
    if not quiet:
        for w in warnings:
            _err(f"segcli: warning: {w}")


REJECTS_CLAIM = "written to the rejects file"  # how pipeline.load_transactions ends an invalid_rows warning


def _rejects_where(warnings: list[RunWarning], output: str | None, *, writes: bool = True) -> list[RunWarning]:
    """An ``invalid_rows`` warning says where the rows went; only a file output gets a
    rejects file, so a preview, stdout output or a command that writes nothing says where
    they would go instead."""
    if output is not None and output != "-":
        return warnings
    where = ("the output is stdout, so they are not written (use -o FILE for OUT.rejects.csv)" if output == "-"
             else "with -o OUT they would go to OUT.rejects.csv" if writes
             else "segcli segment -o OUT would write them to OUT.rejects.csv")
    return [RunWarning(w.kind, w.text.replace(REJECTS_CLAIM, where)) if w.kind == "invalid_rows" else w
            for w in warnings]


class Progress:
    """Stage and elapsed time on one self-overwriting stderr line, only on a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.started = time.monotonic()
        self.width = 0

    def __call__(self, stage: str) -> None:
        if self.enabled:
            line = f"segcli: {time.monotonic() - self.started:5.1f}s {stage} ..."
            sys.stderr.write("\r" + line.ljust(self.width))
            sys.stderr.flush()
            self.width = len(line)

    def done(self) -> None:
        if self.enabled and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()


def _emit(text: str, *, to_stderr: bool) -> None:
    (sys.stderr if to_stderr else sys.stdout).write(text)


def _write_rejects(rejects: pl.DataFrame | None, out: str | None) -> str | None:
    """Where the rows --max-invalid let through were written: beside the output, in the same
    set as it (``write_table``), so that a rejects file always belongs to its output; for a
    database output, the table ``<table>_rejects`` (dropped when there are none)."""
    if out is not None and is_database(out):
        return write_rejects_table(rejects, out)
    if out is None or rejects is None:
        return None
    if out == "-":  # the invalid_rows warning said they are not written (_rejects_where)
        return None
    return f"{out}.rejects.csv"


@app.command("segment", cls=SegcliCommand)
@handle_errors
def segment_cmd(
    inputs: Inputs,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Assignments file: .parquet, .csv, .jsonl, or - for CSV on stdout.", show_default=False)] = None,
    previous: Annotated[str | None, typer.Option("--previous", help="Previous assignments file: keeps VIPs stable (hysteresis) and marks departed customers.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Go on even when the data shrank more than guard.max_drop against --previous, or --previous is not an earlier run.")] = False,
    config: ConfigOpt = None, as_of: AsOfOpt = None, window_days: WindowOpt = None, encoding: EncodingOpt = None,
    sheet: SheetOpt = None, header_row: HeaderRowOpt = None, separator: SeparatorOpt = None, column: ColumnOpt = None,
    max_invalid: MaxInvalidOpt = None, strict: StrictOpt = False, allow: AllowOpt = None, threads: ThreadsOpt = None,
    memory_limit: MemoryOpt = None, db_table: TableOpt = None, db_query: QueryOpt = None, mode: ModeOpt = WriteMode.REPLACE,
    engine: EngineOpt = Engine.polars, spark_master: SparkMasterOpt = None, spark_conf: SparkConfOpt = None,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
    output_encoding: OutEncodingOpt = None,
) -> None:
    """Assign every customer a tier, VIP group and service terms (the main job).

    Example: segcli segment sample_data/transactions.csv -o assignments.parquet
    """
    limit = _memory_limit(memory_limit)
    inputs, output = command_line_inputs(inputs, table=db_table, query=db_query), _database_output(output, mode)
    if output == "-" and as_json:
        raise UsageError("-o - and --json both ask for stdout: choose one")
    cfg = _config(config, as_of=as_of, window_days=window_days, encoding=encoding, max_invalid=max_invalid, strict=strict,
                  sheet=sheet, header_row=header_row, separator=separator, columns=column, allow=allow)
    if output is not None:
        check_output_path(output, inputs + ([previous] if previous else []))
    prev_df = prev_meta = None
    if previous is not None:
        prev_df, prev_meta = read_assignments(previous)
        missing = {"customer_id", "tier", "reason", "monetary"} - set(prev_df.columns)
        if missing:
            raise InputDataError(f"{previous}: not a segcli assignments file (missing {', '.join(sorted(missing))})")
    progress = Progress(quiet)
    try:
        result = segment(inputs, cfg, previous=prev_df, previous_meta=prev_meta, force=force, progress=progress,
                         memory_limit=limit, load=_loader(engine, spark_master, spark_conf))
        progress.done()
        _warn(_rejects_where(result.warnings, output), cfg, quiet, inputs)
        if output is not None and output != "-":
            progress(f"writing {output}")
        if output is not None:
            write_table(result.customers, output, meta=result.meta, rejects=result.rejects,
                        csv_encoding=(output_encoding.value if output_encoding else cfg.csv_encoding), mode=mode.value)
            rejects = _write_rejects(result.rejects, output)
    finally:
        progress.done()
    if output is not None:
        if rejects and not quiet:
            _err(f"segcli: rejected rows written to {rejects}")
    elif not quiet:
        _err("segcli: preview only: nothing written (use -o assignments.parquet to write the assignments)")
    if quiet and not as_json:
        return
    df, conc = result.customers, result.concentration
    summary = summarize(df, "tier")
    gone = df.filter(pl.col("reason") == "departed").height  # rows that only demote, not in the data
    fmt = _table_format(fmt, as_json)
    if fmt == "json":
        doc = {"as_of": result.meta["as_of"], "customers": df.height - gone, "departed": gone, "rows": result.meta["rows"],
               "output": output, "pareto": concentration_document(conc), "tiers": to_records(summary),
               "vip_groups": to_records(summarize(df, "vip_group")), "model": result.meta["model"]["cluster"],
               "decision": result.meta.get("decision")}
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n")
        return
    text = render(summary, fmt)
    if fmt not in ("csv",):
        counts, model = result.meta["rows"], result.meta["model"]
        sil = model["cluster"]["silhouette"]
        groups = ", ".join(f"{g['vip_group']} ({g['customers']:,})" for g in model["vip_groups"]["groups"])
        text = (f"as of {result.meta['as_of']}: {df.height - gone:,} customers from {counts['rows_used']:,} rows"
                + (f" (and {gone:,} departed, written as yuxin)" if gone else "") + "\n"
                f"{headline(conc, cfg.pareto.head_share)}\n"
                f"clusters: k={model['cluster']['k']}" + (f" (silhouette {sil:.3f})" if sil is not None else "")
                + (f"; VIP groups: {groups}" if groups else "") + f"\n{decision_text(result.meta)}\n\n{text}")
    _emit(text, to_stderr=(output == "-"))



@app.command("rfm", cls=SegcliCommand)
@handle_errors
def rfm_cmd(
    inputs: Inputs,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Output file: .parquet, .csv, .jsonl, or - for CSV on stdout.", show_default=False)] = None,
    style: Annotated[Style, typer.Option("--style", help="segcli: RFM features, scores, segment, cluster; lifetimes: frequency/recency/T/monetary_value for CLV models.")] = Style.segcli,
    freq: Annotated[Freq, typer.Option("--freq", help="Period for --style lifetimes: D (day) or W (Monday-start week).")] = Freq.D,
    config: ConfigOpt = None, as_of: AsOfOpt = None, window_days: WindowOpt = None, encoding: EncodingOpt = None,
    sheet: SheetOpt = None, header_row: HeaderRowOpt = None, separator: SeparatorOpt = None, column: ColumnOpt = None,
    max_invalid: MaxInvalidOpt = None, strict: StrictOpt = False, allow: AllowOpt = None, threads: ThreadsOpt = None,
    memory_limit: MemoryOpt = None, db_table: TableOpt = None, db_query: QueryOpt = None, mode: ModeOpt = WriteMode.REPLACE,
    engine: EngineOpt = Engine.polars, spark_master: SparkMasterOpt = None, spark_conf: SparkConfOpt = None,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
    output_encoding: OutEncodingOpt = None,
) -> None:
    """Per-customer RFM features, scores, named segment and cluster (no tiers).

    Example: segcli rfm export.csv -o rfm.csv --style lifetimes --freq W
    """
    limit = _memory_limit(memory_limit)
    inputs, output = command_line_inputs(inputs, table=db_table, query=db_query), _database_output(output, mode)
    if output == "-" and as_json:
        raise UsageError("-o - and --json both ask for stdout: choose one")
    cfg = _config(config, as_of=as_of, window_days=window_days, encoding=encoding, max_invalid=max_invalid, strict=strict,
                  sheet=sheet, header_row=header_row, separator=separator, columns=column, allow=allow)
    if output is not None:
        check_output_path(output, inputs)
    load = _loader(engine, spark_master, spark_conf)
    if style is Style.lifetimes:
        periods = functools.partial(lifetimes_periods, freq=freq.value)
        tx = load(inputs, cfg, aggregate=periods, memory_limit=limit)
        df = lifetimes_finish(features_by_part(tx, per_customer=periods).lazy(), as_of=tx.as_of, freq=freq.value,
                              scale=tx.scale).collect()
        meta = lifetimes_record(cfg, tx, freq.value)
        warnings, rejects = tx.warnings, tx.rejects
    else:
        progress = Progress(quiet)
        try:
            df, meta, warnings, rejects = rfm_table(inputs, cfg, progress=progress, memory_limit=limit, load=load)
        finally:
            progress.done()
    _warn(_rejects_where(warnings, output), cfg, quiet, inputs)
    if output is not None:
        write_table(df, output, meta=meta, rejects=rejects,
                    csv_encoding=(output_encoding.value if output_encoding else cfg.csv_encoding), mode=mode.value)
        _write_rejects(rejects, output)
        if output == "-":
            return
    fmt = _table_format(fmt, as_json)
    if quiet and fmt != "json":
        return
    if style is Style.lifetimes:
        if fmt == "json" and output is None:
            text = render(df, fmt)
        else:
            described = df.select("frequency", "recency", "T", "monetary_value").describe(
                percentiles=(0.5,)).filter(pl.col("statistic").is_in(["count", "mean", "min", "50%", "max"]))
            text = render(described, fmt)
            if output is None and fmt != "json":
                _err("segcli: preview: summary statistics only (use -o FILE for one row per customer)")
    else:
        text = render(summarize(df, "rfm_segment"), fmt)
        if output is None and fmt != "json":
            _err("segcli: preview: segment summary only (use -o FILE for one row per customer)")
    sys.stdout.write(text)


@app.command("pareto", cls=SegcliCommand)
@handle_errors
def pareto_cmd(
    inputs: Inputs,
    plot: Annotated[str | None, typer.Option("--plot", help="Also draw the concentration curve to a .png, .svg or .html file.", show_default=False)] = None,
    font: Annotated[str | None, typer.Option("--font", help="--plot: a font file with Chinese glyphs [default: found with fontconfig].", show_default=False)] = None,
    config: ConfigOpt = None, as_of: AsOfOpt = None, window_days: WindowOpt = None, encoding: EncodingOpt = None,
    sheet: SheetOpt = None, header_row: HeaderRowOpt = None, separator: SeparatorOpt = None, column: ColumnOpt = None,
    max_invalid: MaxInvalidOpt = None, strict: StrictOpt = False, allow: AllowOpt = None, threads: ThreadsOpt = None,
    memory_limit: MemoryOpt = None, db_table: TableOpt = None, db_query: QueryOpt = None,
    engine: EngineOpt = Engine.polars, spark_master: SparkMasterOpt = None, spark_conf: SparkConfOpt = None,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """Revenue concentration: customers holding 50/80/90/95% of revenue, top shares, Gini, ABC.

    Example: segcli pareto sample_data/transactions.csv --plot pareto.svg
    """
    limit = _memory_limit(memory_limit)
    inputs = command_line_inputs(inputs, table=db_table, query=db_query)
    cfg = _config(config, as_of=as_of, window_days=window_days, encoding=encoding, max_invalid=max_invalid, strict=strict,
                  sheet=sheet, header_row=header_row, separator=separator, columns=column, allow=allow)
    if plot is not None:
        plot_format(plot)
        check_output_path(plot, inputs)
    # the aggregation runs in the checking pass (on Spark, where the rows are)
    tx = _loader(engine, spark_master, spark_conf)(inputs, cfg, aggregate=rfm_features, memory_limit=limit)
    table = customer_table(tx, cfg)
    conc = concentration_of(table, cfg, tx.scale)
    _warn(_rejects_where(tx.warnings, None, writes=False), cfg, quiet, inputs)
    if plot is not None:
        marks = CurveMarks(conc, cfg.pareto.head_share, vip_limit(cfg.tiers, conc.customers), cfg.tiers.labels)
        write_plot(curve_points(table["cum_share"].to_numpy()), marks, plot, font=_chart_font(font, cfg, quiet))
        if not quiet:
            _err(f"segcli: wrote {plot}")
    sys.stdout.write(render_concentration(conc, _table_format(fmt, as_json)))


@app.command("summary", cls=SegcliCommand)
@handle_errors
def summary_cmd(
    assignments: Annotated[str, typer.Argument(help="An assignments file written by segcli segment (any segcli output with --record).", show_default=False)],
    by: Annotated[Grouping, typer.Option("--by", help="Group by tier, vip_group, rfm_segment (with the score cut points), cluster or reason.")] = Grouping.tier,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to a file, by extension: .csv, .json, .md, .xlsx (a workbook), else the table text.", show_default=False)] = None,
    record: Annotated[bool, typer.Option("--record", help="Print the run record (JSON) of any file segcli wrote, instead of a table.")] = False,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """Summary table of an assignments file: customers, revenue shares, recency, service terms.

    Example: segcli summary assignments.parquet --by vip_group --format github
    """
    if output is not None:
        check_output_path(output, [assignments])
    if record:
        meta = read_record(assignments)
        if not meta:
            raise InputDataError(f"{assignments}: no segcli run record (Parquet metadata key 'segcli' or "
                                 f"{Path(assignments).name}.meta.json beside it)")
        text = json.dumps(meta, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n"
        if output is not None:
            write_text(text, output)
        else:
            sys.stdout.write(text)
        return
    df, meta = read_assignments(assignments)
    if by.value not in df.columns:
        raise InputDataError(f"{assignments}: no column {by.value!r} to group by")
    table = summarize(df, by.value)
    if output is not None and Path(output).suffix.lower() == ".xlsx":
        write_workbook(table, output, sheet=f"by {by.value}")
        return
    # SPEC §2: a file's extension decides; --format for stdout and other names (.txt, ...)
    kind = {".csv": "csv", ".json": "json", ".md": "github"}.get(Path(output).suffix.lower()) if output else None
    fmt = kind or _table_format(fmt, as_json)
    text = render(table, fmt)
    cuts = cut_points_table(meta) if by is Grouping.rfm_segment and fmt not in ("csv", "json") else None
    if cuts is not None:
        text += "\n" + render(cuts, fmt, title="score cut points (run record): the value range of each score")
    if output is None:
        sys.stdout.write(text)
    else:
        write_text(text, output)


LIST_ROWS = 20


@app.command("diff", cls=SegcliCommand)
@handle_errors
def diff_cmd(
    prev: Annotated[str, typer.Argument(help="The earlier assignments file.", show_default=False)],
    curr: Annotated[str, typer.Argument(help="The later assignments file.", show_default=False)],
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write the changed customers (customer_id, from_tier, to_tier, from_group, to_group, change, then what CURR makes of them: reason, tier_label, service terms, terms_changed) to .csv/.parquet/.jsonl or - for stdout.", show_default=False)] = None,
    tier_changes_only: Annotated[bool, typer.Option("--tier-changes-only", help="Leave out VIP-group changes whose service terms stay the same.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Go on when PREV is not earlier than CURR (files reversed?).")] = False,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
    output_encoding: OutEncodingOpt = None,
) -> None:
    """Tier migrations between two runs: matrix, upgrades, downgrades, new and departed.

    Example: segcli diff 2025-11.parquet 2025-12.parquet -o moves.csv
    """
    if output == "-" and as_json:
        raise UsageError("-o - and --json both ask for stdout: choose one")
    if output is not None:
        check_output_path(output, [prev, curr])
    (prev_df, prev_meta), (curr_df, curr_meta) = read_assignments(prev), read_assignments(curr)
    forced = check_run_order(run_as_of(prev_df, prev_meta), run_as_of(curr_df, curr_meta), force,
                             prev_name=prev, curr_name=curr)
    if forced and not quiet:
        _err(f"segcli: warning: {forced}")
    d = tier_diff(prev_df, curr_df, prev_name=prev, curr_name=curr, departed=departed_terms(curr_meta))
    moved = d.moved
    if tier_changes_only:  # a group change whose terms stay the same asks nothing of a CRM
        moved = moved.filter(~((pl.col("change") == "group_change") & pl.col("terms_changed").eq_missing(False)))
    if output is not None:
        table = moved.select("customer_id", "from_tier", "to_tier", "from_group", "to_group", "change", *DIFF_TO_FIELDS,
                             "terms_changed")
        write_table(table, output, meta=None,
                    csv_encoding=output_encoding.value if output_encoding else "utf-8")
        if output == "-":
            return
    fmt = _table_format(fmt, as_json)
    lists = change_lists(d)
    counts = change_counts(d)
    if fmt == "json":
        doc = {"previous": prev, "current": curr, "matrix": to_records(d.matrix),
               **change_count_map(d),
               **{f"{k}s" if k != "new" else "new": to_records(v) for k, v in lists.items()},
               "still_departed": d.changes.filter(pl.col("change") == "still_departed")["customer_id"].to_list()}
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
        return
    if not quiet:
        sys.stdout.write(_diff_text(d, lists, counts, fmt, title=f"tier migrations {prev} -> {curr}"))


def _diff_text(d: TierDiff, lists: dict[str, pl.DataFrame], counts: pl.DataFrame, fmt: str, *, title: str) -> str:
    """The diff for people: matrix, counts and the first upgrades and downgrades."""
    if d.moved.height == 0:
        still = int(counts.filter(pl.col("change") == "still_departed")["customers"].sum())
        same = int(counts.filter(pl.col("change") == "unchanged")["customers"].sum())
        return (f"no changes: {same:,} customers in the same tier and group"
                + (f"; {still:,} still departed" if still else "") + "\n")
    parts = [render(d.matrix, fmt, title=title), render(counts, fmt, title="changes")]
    cols = ["customer_id", "from_group", "to_group", "from_monetary", "to_monetary", "recency_days", "frequency"]
    for kind in ("upgrade", "downgrade"):
        rows = lists[kind]
        if rows.height:
            more = f" (first {LIST_ROWS}; -o FILE for all)" if rows.height > LIST_ROWS else ""
            parts.append(render(rows.select([c for c in cols if c in rows.columns]).head(LIST_ROWS), fmt,
                                title=f"{kind}s: {rows.height:,}{more}"))
    return "\n".join(parts)


@app.command("validate", cls=SegcliCommand)
@handle_errors
def validate_cmd(
    inputs: Inputs,
    config: ConfigOpt = None, as_of: AsOfOpt = None, window_days: WindowOpt = None, encoding: EncodingOpt = None,
    sheet: SheetOpt = None, header_row: HeaderRowOpt = None, separator: SeparatorOpt = None, column: ColumnOpt = None,
    max_invalid: MaxInvalidOpt = None, strict: StrictOpt = False, allow: AllowOpt = None, threads: ThreadsOpt = None,
    memory_limit: MemoryOpt = None, db_table: TableOpt = None, db_query: QueryOpt = None,
    engine: EngineOpt = Engine.polars, spark_master: SparkMasterOpt = None, spark_conf: SparkConfOpt = None,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """Check an export and report every problem; writes nothing.

    Example: segcli validate export.csv --strict
    """
    limit = _memory_limit(memory_limit)
    inputs = command_line_inputs(inputs, table=db_table, query=db_query)
    cfg = _config(config, as_of=as_of, window_days=window_days, encoding=encoding, max_invalid=max_invalid, strict=strict,
                  sheet=sheet, header_row=header_row, separator=separator, columns=column, allow=allow)
    # the checking command always counts identical rows
    tx = _loader(engine, spark_master, spark_conf)(inputs, cfg, count_identical=True, memory_limit=limit)
    _warn(_rejects_where(tx.warnings, None, writes=False), cfg, quiet, inputs)
    fmt = _table_format(fmt, as_json)
    if fmt == "json":
        sys.stdout.write(json.dumps({"valid": True, "as_of": tx.as_of.isoformat(), "inputs": tx.sources,
                                     "engine": tx.engine, "rows": tx.counts, "warnings": warning_records(tx.warnings)}, ensure_ascii=False, indent=2) + "\n")
        return
    if not quiet:
        table = pl.DataFrame({"check": list(tx.counts), "rows": list(tx.counts.values())})
        sys.stdout.write(f"ok: {', '.join(s['path'] for s in tx.sources)} (as of {tx.as_of})\n" + render(table, fmt))


@config_app.command("init", cls=SegcliCommand)
@handle_errors
def config_init(
    path: Annotated[str, typer.Argument(help="Where to write the default config (TOML).", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Write the documented default config to PATH.

    Example: segcli config init my-segcli.toml
    """
    if Path(path).exists() and not force:
        raise OutputError(f"{path} exists: pass --force to replace it")
    if not Path(path).resolve().parent.is_dir():
        raise OutputError(f"cannot write {path}: its folder does not exist")
    write_text(default_config_text(), path)
    _err(f"segcli: wrote {path}")


@config_app.command("show", cls=SegcliCommand)
@handle_errors
def config_show(
    config: ConfigOpt = None,
    from_: Annotated[str | None, typer.Option("--from", help="Show the config recorded in an assignments file.", show_default=False)] = None,
    as_json: JsonOpt = False, debug: DebugOpt = False,
) -> None:
    """Print the effective config (defaults + file), or the one recorded in an output.

    Example: segcli config show --from assignments.parquet
    """
    if from_ is not None:
        _df, meta = read_assignments(from_)
        if "config" not in meta:
            raise InputDataError(f"{from_}: no segcli run record found (metadata or .meta.json sidecar)")
        cfg = config_from_dict(meta["config"])
    else:
        cfg = _config(config)
    if as_json:
        sys.stdout.write(json.dumps(cfg.raw, ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write(f"# effective segcli config (sha256 {cfg.hash[:16]})\n" + tomli_w.dumps(cfg.raw))


@config_app.command("schema", cls=SegcliCommand)
@handle_errors
def config_schema(
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write the schema to a file instead of stdout.", show_default=False)] = None,
    debug: DebugOpt = False,
) -> None:
    """Print the JSON Schema (draft 2020-12) of a config file, for editors and CI checks.

    Example: segcli config schema -o segcli.schema.json
    """
    out = output or "-"
    if out != "-" and not Path(out).resolve().parent.is_dir():
        raise OutputError(f"cannot write {out}: its folder does not exist")
    write_text(json.dumps(json_schema(), ensure_ascii=False, indent=2) + "\n", out)
    if out != "-":
        _err(f"segcli: wrote {out}")


@app.command("export", cls=SegcliCommand)
@handle_errors
def export_cmd(
    assignments: Annotated[str, typer.Argument(help="An assignments file written by segcli segment (.parquet, .csv, .jsonl).", show_default=False)],
    profile: Annotated[str, typer.Option("--profile", help="Target: generic, salesforce, zendesk, hubspot, dynamics, freshdesk, or a profile of your config's [export.NAME].", show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", help="Folder to write (replaced atomically; an existing one must be an earlier export unless --force); with --profile generic also postgresql://...#schema.table.", show_default=False)],
    changes_from: Annotated[str | None, typer.Option("--changes-from", help="Previous assignments file: export only the customers whose exported fields changed, and the departed.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an -o segcli did not write; accept a --changes-from that is not earlier.")] = False,
    config: ConfigOpt = None, mode: ModeOpt = WriteMode.REPLACE,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """Hand the tiers to a CRM or help desk: records shaped for it, the tier policy, a manifest.

    Example: segcli export assignments.parquet --profile zendesk -o crm/zendesk --changes-from last-month.parquet
    """
    from segcli.export import export_assignments
    from segcli.pipeline import created_timestamp

    cfg = _config(config)
    output = _database_output(output, mode) or output
    created = created_timestamp() if os.environ.get("SOURCE_DATE_EPOCH") else None
    result = export_assignments(assignments, profile=profile, out_dir=output, config=cfg, changes_from=changes_from,
                                force=force, created_at=created, mode=mode.value)
    fmt = _table_format(fmt, as_json)
    if fmt == "json":
        sys.stdout.write(json.dumps(result.manifest, ensure_ascii=False, indent=2) + "\n")
        return
    if quiet:
        return
    m = result.manifest
    files = pl.DataFrame(result.files)
    table = files.select(c for c in ("path", "kind", "rows", "bytes") if c in files.columns)
    what = f"{m['records']:,} changed customers ({m['departed']:,} departed)" if m["changes_from"] else f"{m['records']:,} customers"
    sys.stdout.write(render(table, fmt, title=f"{m['profile']['system']}: {what} as of {m['as_of']} -> {output}"))


class Lang(str, Enum):
    zh = "zh"
    en = "en"


def _chart_font(font: str | None, cfg: Config, quiet: bool, *, required: bool = False) -> Path | None:
    """The font for Chinese labels on PNG/SVG charts: --font (checked), else one found on the
    machine; without one, an error when ``required``, else a warning (English labels)."""
    from segcli.fonts import find_cjk_font
    from segcli.page.text import all_text

    try:
        return find_cjk_font(font, text=all_text(cfg.tiers.labels))
    except SegcliError as exc:
        if font is not None or required:
            raise
        if not quiet:
            _err(f"segcli: warning: {exc.message}: the chart's labels are in English only; "
                 "install one (e.g. apt-get install fonts-wqy-microhei) or pass --font PATH")
        return None


def _read_previous(previous: str | None) -> tuple[pl.DataFrame | None, dict[str, Any] | None]:
    """--previous: the assignments and run record of the earlier run (segment_cmd has a copy)."""
    if previous is None:
        return None, None
    prev_df, prev_meta = read_assignments(previous)
    missing = {"customer_id", "tier", "reason", "monetary"} - set(prev_df.columns)
    if missing:
        raise InputDataError(f"{previous}: not a segcli assignments file (missing {', '.join(sorted(missing))})")
    return prev_df, prev_meta


@app.command("report", cls=SegcliCommand)
@handle_errors
def report_cmd(
    inputs: Inputs,
    output: Annotated[str, typer.Option("--output", "-o", help="report.html (one self-contained page) or report.md (Markdown, PNG charts beside it).", show_default=False)],
    previous: Annotated[str | None, typer.Option("--previous", help="Previous assignments file: the run keeps VIPs stable, and the page shows the migrations.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Go on even when the data shrank more than guard.max_drop against --previous.")] = False,
    lang: Annotated[Lang, typer.Option("--lang", help="The language the page opens in (the HTML page switches).")] = Lang.zh,
    font: Annotated[str | None, typer.Option("--font", help="A font file with Chinese glyphs: .html embeds the part of it the page uses, .md draws its PNG charts with it [default: found with fontconfig].", show_default=False)] = None,
    config: ConfigOpt = None, as_of: AsOfOpt = None, window_days: WindowOpt = None, encoding: EncodingOpt = None,
    sheet: SheetOpt = None, header_row: HeaderRowOpt = None, separator: SeparatorOpt = None, column: ColumnOpt = None,
    max_invalid: MaxInvalidOpt = None, strict: StrictOpt = False, allow: AllowOpt = None, threads: ThreadsOpt = None,
    memory_limit: MemoryOpt = None, db_table: TableOpt = None, db_query: QueryOpt = None,
    engine: EngineOpt = Engine.polars, spark_master: SparkMasterOpt = None, spark_conf: SparkConfOpt = None,
    quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """One page for a manager: headline figures, concentration, tiers, R x F grid, profiles,
    service terms and, with --previous, the migrations. Needs segcli[report] for HTML.

    Example: segcli report sample_data/transactions.csv --previous last-month.parquet -o report.html
    """
    from segcli.fonts import find_page_font
    from segcli.page.results import build_results
    from segcli.page.text import all_text
    from segcli.page.write import report_kind, write_report

    limit = _memory_limit(memory_limit)
    inputs = command_line_inputs(inputs, table=db_table, query=db_query)
    kind = report_kind(output)
    cfg = _config(config, as_of=as_of, window_days=window_days, encoding=encoding, max_invalid=max_invalid, strict=strict,
                  sheet=sheet, header_row=header_row, separator=separator, columns=column, allow=allow)
    check_output_path(output, inputs + ([previous] if previous else []))
    prev_df, prev_meta = _read_previous(previous)
    if kind == "md":
        chart_font = _chart_font(font, cfg, quiet, required=True)
    else:  # the page embeds a subset of the font; without one it is written all the same
        chart_font, note = find_page_font(font, text=all_text(cfg.tiers.labels))
        if note is not None and not quiet:
            _err(f"segcli: warning: {note}")
    progress = Progress(quiet)
    try:
        result = segment(inputs, cfg, previous=prev_df, previous_meta=prev_meta, force=force, progress=progress,
                         memory_limit=limit, load=_loader(engine, spark_master, spark_conf))
        progress("writing the report")
        results = build_results(result, cfg, inputs=inputs, previous=prev_df, previous_name=previous or "")
        _warn(result.warnings, cfg, quiet, inputs)
        written = write_report(results, output, lang=lang.value, font=chart_font)
    finally:
        progress.done()
    if not quiet:
        _err(f"segcli: wrote {', '.join(written)}")


@app.command("explain")
@handle_errors
def explain_cmd(
    assignments: Annotated[str, typer.Argument(help="An assignments file written by segcli segment.", show_default=False)],
    customer_ids: Annotated[list[str], typer.Argument(help="The customers to explain.", show_default=False)],
    as_json: JsonOpt = False, debug: DebugOpt = False,
) -> None:
    """Why each customer has its tier: the rule, the figures it compared, the distance to the other tier.

    Example: segcli explain assignments.parquet C000123 C004711 --json
    """
    result = explain(assignments, customer_ids)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write(render_explanations(result))
    if result.unknown:
        raise InputDataError(f"{assignments}: no customer {', '.join(map(repr, result.unknown))}",
                             [f"{len(result.explanations)} of {len(customer_ids)} customers explained"])


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"segcli {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")] = False,
) -> None:
    """segcli: Pareto 80/20 and RFM segmentation into VIP (知心) and standard (遇心) service tiers."""
