"""The Typer command line: parse options, load config, call the core, render, map errors.

Data goes to stdout only when asked for (``-o -``, ``--json``, tables); warnings, hints and
errors go to stderr. Every :class:`SegcliError` becomes one ``segcli: error: ...`` line plus
details and its exit code; anything else is ``segcli: internal error`` (exit 1).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import polars as pl
import tomli_w
import typer

from segcli import __version__
from segcli.config import ROLES, Config, config_from_dict, default_config_text, load_config
from segcli.diff import change_counts, change_lists, tier_diff
from segcli.engines import engine_settings, loader
from segcli.errors import WARNING_KINDS, InputDataError, OutputError, RunWarning, SegcliError, UsageError
from segcli.io import check_output_path, read_assignments, write_table, write_text
from segcli.lifetimes import lifetimes_finish, lifetimes_periods
from segcli.plot import CurveMarks, curve_points, plot_format, write_plot
from segcli.pipeline import (MEMORY_LIMIT_ENV, Loader, concentration_of, customer_table, features_by_part,
                             load_transactions, parse_size, rfm_features, rfm_table, segment, warning_records)
from segcli.report import concentration_document, headline, render, render_concentration, summarize, to_records
from segcli.tiers import vip_limit

app = typer.Typer(
    name="segcli",
    help="Segment customers into 知心 (zhixin, VIP) and 遇心 (yuxin, standard) service tiers "
    "from a transactions export, with Pareto 80/20 and RFM analysis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Write or show configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

F = TypeVar("F", bound=Callable[..., Any])


class Grouping(str, Enum):
    tier = "tier"
    vip_group = "vip_group"
    rfm_segment = "rfm_segment"
    cluster = "cluster"


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


# Options shared by every command that reads transactions (SPEC §2).
Inputs = Annotated[list[str], typer.Argument(help="CSV/TSV, Parquet or Excel files, directories, globs, or - for CSV on stdin.", show_default=False)]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config (only what differs from the defaults).", show_default=False)]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Analysis date YYYY-MM-DD [default: latest transaction].", show_default=False)]
WindowOpt = Annotated[int | None, typer.Option("--window-days", help="Keep only the last N days up to the as-of date.", show_default=False)]
EncodingOpt = Annotated[str | None, typer.Option("--encoding", help="CSV encoding: auto, utf-8, gb18030.", show_default=False)]
SheetOpt = Annotated[str | None, typer.Option("--sheet", help="Excel: the sheet to read, by name or 1-based position [default: the first].", show_default=False)]
HeaderRowOpt = Annotated[int | None, typer.Option("--header-row", help="Excel: the row holding the header, as the spreadsheet numbers it (e.g. 3 below two title rows).", show_default=False, min=1)]
SeparatorOpt = Annotated[str | None, typer.Option("--separator", help="Text input field separator: , ; tab | or whitespace [default: detected].", show_default=False)]
ColumnOpt = Annotated[list[str] | None, typer.Option("--column", help="Map a column, ROLE=HEADER (repeatable; roles: customer_id, date, amount, order_id, currency).", show_default=False)]
AllowOpt = Annotated[list[str] | None, typer.Option("--allow", help="A warning kind --strict lets through (repeatable), e.g. identical_rows.", show_default=False)]
MaxInvalidOpt = Annotated[float | None, typer.Option("--max-invalid", help="Tolerate N bad rows (or a share < 1); they go to OUT.rejects.csv.", show_default=False)]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Warnings become errors (exit 65).")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="Maximum worker threads.", show_default=False, min=1)]
MemoryOpt = Annotated[str | None, typer.Option("--memory-limit", envvar=MEMORY_LIMIT_ENV, help="Memory budget, e.g. 4G: large exports are aggregated in customer buckets sized to it (env SEGCLI_MEMORY_LIMIT).", show_default=False)]
FormatOpt = Annotated[str, typer.Option("--format", help="Table format: any tabulate format (github, simple, plain, psql, ...), csv or json.")]
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


def _memory_limit(limit: str | None) -> int | None:
    """--memory-limit (or SEGCLI_MEMORY_LIMIT, its default) in bytes, passed to the core as
    a parameter: exit 2 when it is no size."""
    return parse_size(limit) if limit is not None and limit.strip() else None


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


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
        except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into exit 1
            _err(f"segcli: internal error: {type(exc).__name__}: {exc}")
            if kwargs.get("debug"):
                traceback.print_exc()
            else:
                _err("  run again with --debug for the traceback")
            raise typer.Exit(1) from None

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
    """Write the rows --max-invalid let through beside the output; a rejects file left by an
    earlier run is removed, so the one beside an output always belongs to it."""
    if out is None:
        return None
    if out == "-":
        if rejects is not None:
            _err(f"segcli: warning: {rejects.height} rejected rows not written (the output is stdout; use -o FILE)")
        return None
    path = Path(f"{out}.rejects.csv")
    if rejects is None:
        path.unlink(missing_ok=True)
        return None
    write_table(rejects, str(path), meta=None)
    return str(path)


@app.command("segment")
@handle_errors
def segment_cmd(
    inputs: Inputs,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Assignments file: .parquet, .csv, .jsonl, or - for CSV on stdout.", show_default=False)] = None,
    previous: Annotated[str | None, typer.Option("--previous", help="Previous assignments file: keeps VIPs stable (hysteresis) and marks departed customers.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Go on even when the data shrank more than guard.max_drop against --previous, or --previous is not an earlier run.")] = False,
    config: ConfigOpt = None, as_of: AsOfOpt = None, window_days: WindowOpt = None, encoding: EncodingOpt = None,
    sheet: SheetOpt = None, header_row: HeaderRowOpt = None, separator: SeparatorOpt = None, column: ColumnOpt = None,
    max_invalid: MaxInvalidOpt = None, strict: StrictOpt = False, allow: AllowOpt = None, threads: ThreadsOpt = None,
    memory_limit: MemoryOpt = None,
    engine: EngineOpt = Engine.polars, spark_master: SparkMasterOpt = None, spark_conf: SparkConfOpt = None,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
    output_encoding: OutEncodingOpt = None,
) -> None:
    """Assign every customer a tier, VIP group and service terms (the main job).

    Example: segcli segment sample_data/transactions.csv -o assignments.parquet
    """
    limit = _memory_limit(memory_limit)
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
        _warn(result.warnings, cfg, quiet, inputs)
        if output is not None and output != "-":
            progress(f"writing {output}")
        if output is not None:
            write_table(result.customers, output, meta=result.meta,
                        csv_encoding=(output_encoding.value if output_encoding else cfg.csv_encoding))
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
    fmt = _table_format(fmt, as_json)
    if fmt == "json":
        doc = {"as_of": result.meta["as_of"], "customers": df.height, "rows": result.meta["rows"],
               "output": output, "pareto": concentration_document(conc), "tiers": to_records(summary),
               "vip_groups": to_records(summarize(df, "vip_group")), "model": result.meta["model"]["cluster"]}
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n")
        return
    text = render(summary, fmt)
    if fmt not in ("csv",):
        counts, model = result.meta["rows"], result.meta["model"]
        sil = model["cluster"]["silhouette"]
        groups = ", ".join(f"{g['vip_group']} ({g['customers']:,})" for g in model["vip_groups"]["groups"])
        text = (f"as of {result.meta['as_of']}: {df.height:,} customers from {counts['rows_used']:,} rows\n"
                f"{headline(conc, cfg.pareto.head_share)}\n"
                f"clusters: k={model['cluster']['k']}" + (f" (silhouette {sil:.3f})" if sil is not None else "")
                + (f"; VIP groups: {groups}" if groups else "") + f"\n\n{text}")
    _emit(text, to_stderr=(output == "-"))



@app.command("rfm")
@handle_errors
def rfm_cmd(
    inputs: Inputs,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Output file: .parquet, .csv, .jsonl, or - for CSV on stdout.", show_default=False)] = None,
    style: Annotated[Style, typer.Option("--style", help="segcli: RFM features, scores, segment, cluster; lifetimes: frequency/recency/T/monetary_value for CLV models.")] = Style.segcli,
    freq: Annotated[Freq, typer.Option("--freq", help="Period for --style lifetimes: D (day) or W (Monday-start week).")] = Freq.D,
    config: ConfigOpt = None, as_of: AsOfOpt = None, window_days: WindowOpt = None, encoding: EncodingOpt = None,
    sheet: SheetOpt = None, header_row: HeaderRowOpt = None, separator: SeparatorOpt = None, column: ColumnOpt = None,
    max_invalid: MaxInvalidOpt = None, strict: StrictOpt = False, allow: AllowOpt = None, threads: ThreadsOpt = None,
    memory_limit: MemoryOpt = None,
    engine: EngineOpt = Engine.polars, spark_master: SparkMasterOpt = None, spark_conf: SparkConfOpt = None,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
    output_encoding: OutEncodingOpt = None,
) -> None:
    """Per-customer RFM features, scores, named segment and cluster (no tiers).

    Example: segcli rfm sample_data/transactions.csv -o rfm.csv --style lifetimes --freq W
    """
    limit = _memory_limit(memory_limit)
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
        meta = {"schema_version": 1, "version": __version__, "style": "lifetimes", "freq": freq.value,
                "as_of": tx.as_of.isoformat(), "config_hash": cfg.hash, "inputs": tx.sources, "engine": tx.engine,
                "rows": tx.counts}
        warnings, rejects = tx.warnings, tx.rejects
    else:
        progress = Progress(quiet)
        try:
            df, meta, warnings, rejects = rfm_table(inputs, cfg, progress=progress, memory_limit=limit, load=load)
        finally:
            progress.done()
    _warn(warnings, cfg, quiet, inputs)
    if output is not None:
        write_table(df, output, meta=meta, csv_encoding=(output_encoding.value if output_encoding else cfg.csv_encoding))
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


@app.command("pareto")
@handle_errors
def pareto_cmd(
    inputs: Inputs,
    plot: Annotated[str | None, typer.Option("--plot", help="Also draw the concentration curve to a .png, .svg or .html file.", show_default=False)] = None,
    font: Annotated[str | None, typer.Option("--font", help="--plot: a font file with Chinese glyphs [default: found with fontconfig].", show_default=False)] = None,
    config: ConfigOpt = None, as_of: AsOfOpt = None, window_days: WindowOpt = None, encoding: EncodingOpt = None,
    sheet: SheetOpt = None, header_row: HeaderRowOpt = None, separator: SeparatorOpt = None, column: ColumnOpt = None,
    max_invalid: MaxInvalidOpt = None, strict: StrictOpt = False, allow: AllowOpt = None, threads: ThreadsOpt = None,
    memory_limit: MemoryOpt = None,
    engine: EngineOpt = Engine.polars, spark_master: SparkMasterOpt = None, spark_conf: SparkConfOpt = None,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """Revenue concentration: customers holding 50/80/90/95% of revenue, top shares, Gini, ABC.

    Example: segcli pareto sample_data/transactions.csv --plot pareto.svg
    """
    limit = _memory_limit(memory_limit)
    cfg = _config(config, as_of=as_of, window_days=window_days, encoding=encoding, max_invalid=max_invalid, strict=strict,
                  sheet=sheet, header_row=header_row, separator=separator, columns=column, allow=allow)
    if plot is not None:
        plot_format(plot)
        check_output_path(plot, inputs)
    # the aggregation runs in the checking pass (on Spark, where the rows are)
    tx = _loader(engine, spark_master, spark_conf)(inputs, cfg, aggregate=rfm_features, memory_limit=limit)
    table = customer_table(tx, cfg)
    conc = concentration_of(table, cfg, tx.scale)
    _warn(tx.warnings, cfg, quiet, inputs)
    if plot is not None:
        marks = CurveMarks(conc, cfg.pareto.head_share, vip_limit(cfg.tiers, conc.customers), cfg.tiers.labels)
        write_plot(curve_points(table["cum_share"].to_numpy()), marks, plot, font=_chart_font(font, cfg, quiet))
        if not quiet:
            _err(f"segcli: wrote {plot}")
    sys.stdout.write(render_concentration(conc, _table_format(fmt, as_json)))


@app.command("summary")
@handle_errors
def summary_cmd(
    assignments: Annotated[str, typer.Argument(help="An assignments file written by segcli segment.", show_default=False)],
    by: Annotated[Grouping, typer.Option("--by", help="Group by tier, vip_group, rfm_segment or cluster.")] = Grouping.tier,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write the table to a file instead of stdout.", show_default=False)] = None,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """Summary table of an assignments file: customers, revenue shares, recency, service terms.

    Example: segcli summary assignments.parquet --by vip_group --format github
    """
    df, _meta = read_assignments(assignments)
    if by.value not in df.columns:
        raise InputDataError(f"{assignments}: no column {by.value!r} to group by")
    text = render(summarize(df, by.value), _table_format(fmt, as_json))
    if output is not None:
        check_output_path(output, [assignments])
        write_text(text, output)
    else:
        sys.stdout.write(text)


LIST_ROWS = 20


@app.command("diff")
@handle_errors
def diff_cmd(
    prev: Annotated[str, typer.Argument(help="The earlier assignments file.", show_default=False)],
    curr: Annotated[str, typer.Argument(help="The later assignments file.", show_default=False)],
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write the changed customers (customer_id, from_tier, to_tier, from_group, to_group, change) to .csv/.parquet/.jsonl or - for stdout.", show_default=False)] = None,
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
    d = tier_diff(read_assignments(prev)[0], read_assignments(curr)[0], prev_name=prev, curr_name=curr)
    moved = d.moved
    if output is not None:
        table = moved.select("customer_id", "from_tier", "to_tier", "from_group", "to_group", "change")
        write_table(table, output, meta=None,
                    csv_encoding=output_encoding.value if output_encoding else "utf-8")
        if output == "-":
            return
    fmt = _table_format(fmt, as_json)
    lists = change_lists(d)
    if fmt == "json":
        doc = {"previous": prev, "current": curr, "matrix": to_records(d.matrix),
               "counts": dict(change_counts(d).iter_rows()),
               **{f"{k}s" if k != "new" else "new": to_records(v) for k, v in lists.items()}}
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
        return
    if quiet:
        return
    if moved.height == 0:
        sys.stdout.write(f"no changes: {d.changes.height:,} customers in the same tier and group\n")
        return
    parts = [render(d.matrix, fmt, title=f"tier migrations {prev} -> {curr}"),
             render(change_counts(d), fmt, title="changes")]
    cols = ["customer_id", "from_group", "to_group", "from_monetary", "to_monetary", "recency_days", "frequency"]
    for kind in ("upgrade", "downgrade"):
        rows = lists[kind]
        if rows.height:
            more = f" (first {LIST_ROWS}; -o FILE for all)" if rows.height > LIST_ROWS else ""
            parts.append(render(rows.select([c for c in cols if c in rows.columns]).head(LIST_ROWS), fmt,
                                title=f"{kind}s: {rows.height:,}{more}"))
    sys.stdout.write("\n".join(parts))


@app.command("validate")
@handle_errors
def validate_cmd(
    inputs: Inputs,
    config: ConfigOpt = None, as_of: AsOfOpt = None, window_days: WindowOpt = None, encoding: EncodingOpt = None,
    sheet: SheetOpt = None, header_row: HeaderRowOpt = None, separator: SeparatorOpt = None, column: ColumnOpt = None,
    max_invalid: MaxInvalidOpt = None, strict: StrictOpt = False, allow: AllowOpt = None, threads: ThreadsOpt = None,
    memory_limit: MemoryOpt = None,
    engine: EngineOpt = Engine.polars, spark_master: SparkMasterOpt = None, spark_conf: SparkConfOpt = None,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """Check an export and report every problem; writes nothing.

    Example: segcli validate export.csv --strict
    """
    limit = _memory_limit(memory_limit)
    cfg = _config(config, as_of=as_of, window_days=window_days, encoding=encoding, max_invalid=max_invalid, strict=strict,
                  sheet=sheet, header_row=header_row, separator=separator, columns=column, allow=allow)
    # the checking command always counts identical rows
    tx = _loader(engine, spark_master, spark_conf)(inputs, cfg, count_identical=True, memory_limit=limit)
    _warn(tx.warnings, cfg, quiet, inputs)
    fmt = _table_format(fmt, as_json)
    if fmt == "json":
        sys.stdout.write(json.dumps({"valid": True, "as_of": tx.as_of.isoformat(), "inputs": tx.sources,
                                     "engine": tx.engine, "rows": tx.counts, "warnings": warning_records(tx.warnings)}, ensure_ascii=False, indent=2) + "\n")
        return
    if not quiet:
        table = pl.DataFrame({"check": list(tx.counts), "rows": list(tx.counts.values())})
        sys.stdout.write(f"ok: {', '.join(s['path'] for s in tx.sources)} (as of {tx.as_of})\n" + render(table, fmt))


@config_app.command("init")
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


@config_app.command("show")
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


@app.command("export")
@handle_errors
def export_cmd(
    assignments: Annotated[str, typer.Argument(help="An assignments file written by segcli segment (.parquet, .csv, .jsonl).", show_default=False)],
    profile: Annotated[str, typer.Option("--profile", help="Target: generic, salesforce, zendesk, hubspot, dynamics, freshdesk, or a profile of your config's [export.NAME].", show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", help="Folder to write (replaced atomically; an existing one must be an earlier export unless --force).", show_default=False)],
    changes_from: Annotated[str | None, typer.Option("--changes-from", help="Previous assignments file: export only the customers whose exported fields changed, and the departed.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an -o segcli did not write; accept a --changes-from that is not earlier.")] = False,
    config: ConfigOpt = None,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """Hand the tiers to a CRM or help desk: records shaped for it, the tier policy, a manifest.

    Example: segcli export assignments.parquet --profile zendesk -o crm/zendesk --changes-from last-month.parquet
    """
    from segcli.export import export_assignments
    from segcli.pipeline import created_timestamp

    cfg = _config(config)
    created = created_timestamp() if os.environ.get("SOURCE_DATE_EPOCH") else None
    result = export_assignments(assignments, profile=profile, out_dir=output, config=cfg, changes_from=changes_from,
                                force=force, created_at=created)
    fmt = _table_format(fmt, as_json)
    if fmt == "json":
        sys.stdout.write(json.dumps(result.manifest, ensure_ascii=False, indent=2) + "\n")
        return
    if quiet:
        return
    m = result.manifest
    table = pl.DataFrame(result.files).select("path", "kind", "rows", "bytes")
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


@app.command("report")
@handle_errors
def report_cmd(
    inputs: Inputs,
    output: Annotated[str, typer.Option("--output", "-o", help="report.html (one self-contained page) or report.md (Markdown, PNG charts beside it).", show_default=False)],
    previous: Annotated[str | None, typer.Option("--previous", help="Previous assignments file: the run keeps VIPs stable, and the page shows the migrations.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Go on even when the data shrank more than guard.max_drop against --previous.")] = False,
    lang: Annotated[Lang, typer.Option("--lang", help="The language the page opens in (the HTML page switches).")] = Lang.zh,
    font: Annotated[str | None, typer.Option("--font", help=".md: a font file with Chinese glyphs for the PNG charts [default: found with fontconfig].", show_default=False)] = None,
    config: ConfigOpt = None, as_of: AsOfOpt = None, window_days: WindowOpt = None, encoding: EncodingOpt = None,
    sheet: SheetOpt = None, header_row: HeaderRowOpt = None, separator: SeparatorOpt = None, column: ColumnOpt = None,
    max_invalid: MaxInvalidOpt = None, strict: StrictOpt = False, allow: AllowOpt = None, threads: ThreadsOpt = None,
    memory_limit: MemoryOpt = None,
    engine: EngineOpt = Engine.polars, spark_master: SparkMasterOpt = None, spark_conf: SparkConfOpt = None,
    quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """One page for a manager: headline figures, concentration, tiers, R x F grid, profiles,
    service terms and, with --previous, the migrations. Needs segcli[report] for HTML.

    Example: segcli report sample_data/transactions.csv --previous last-month.parquet -o report.html
    """
    from segcli.page.results import build_results
    from segcli.page.write import report_kind, write_report

    limit = _memory_limit(memory_limit)
    kind = report_kind(output)
    cfg = _config(config, as_of=as_of, window_days=window_days, encoding=encoding, max_invalid=max_invalid, strict=strict,
                  sheet=sheet, header_row=header_row, separator=separator, columns=column, allow=allow)
    check_output_path(output, inputs + ([previous] if previous else []))
    prev_df, prev_meta = _read_previous(previous)
    chart_font = _chart_font(font, cfg, quiet, required=True) if kind == "md" else None
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


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"segcli {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")] = False,
) -> None:
    """segcli: Pareto 80/20 and RFM segmentation into VIP (知心) and standard (遇心) service tiers."""
