"""The Typer command line: parse options, load config, call the API once, render, map errors.

Every command is parse -> config -> one call of :mod:`segcli.api` -> write and render. Data
goes to stdout only when asked for (``-o -``, ``--json``, tables); warnings, hints and errors
go to stderr. Every :class:`SegcliError` becomes one ``segcli: error: ...`` line plus details
and its exit code; anything else is ``segcli: internal error`` (exit 1).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import inspect
import json
import os
import sys
import time
import traceback
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from segcli import __version__
from segcli.config import ROLES, Config, config_from_dict, default_config_text, json_schema, load_config
from segcli.errors import WARNING_KINDS, InputDataError, OutputError, RunWarning, SegcliError, UsageError
from segcli.io import (
    check_output_path,
    hold_if_terminating,
    read_assignments,
    read_record,
    write_table,
    write_text,
    write_workbook,
)
from segcli.postgres import command_line_inputs, command_line_output, is_database, write_rejects_table
from segcli.usage import SegcliCommand, SegcliGroup

# Start-up (issue 16): what only some commands need is imported in them, so that `--help`, `config`
# and `summary` do not load the API's stages (NumPy, the clustering), and `validate` only what it runs.
if TYPE_CHECKING:
    import polars as pl

    from segcli import api
    from segcli.engines import EngineSettings

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


class Lang(str, Enum):
    zh = "zh"
    en = "en"


@functools.cache
def table_formats() -> tuple[str, ...]:
    """Every --format: csv, json and tabulate's formats (tabulate is imported when first asked)."""
    from tabulate import tabulate_formats

    return ("csv", "json", *sorted(tabulate_formats))


def _check_format(value: str) -> str:
    """--format: an unknown name is a usage error (tabulate would fall back without a word)."""
    if value not in ("simple", "csv", "json") and value not in table_formats():  # the default needs no tabulate
        raise typer.BadParameter(f"{value!r} is not a table format; formats: {', '.join(table_formats())}")
    return value


def _option(*names: str, help: str, **kwargs: Any) -> Any:
    """A ``typer.Option`` with segcli's habits: no ``[default: None]`` unless asked for."""
    return typer.Option(*names, help=help, **{"show_default": False, **kwargs})


# Options shared by every command that reads transactions (SPEC §2): InputOptions holds them.
Inputs = Annotated[list[str], typer.Argument(
    help="CSV/TSV, Parquet or Excel files, directories, globs, or - for CSV on stdin.", show_default=False)]
ConfigOpt = Annotated[Path | None, _option("--config", "-c", help="TOML config (only what differs from the defaults).")]
AsOfOpt = Annotated[str | None, _option("--as-of", help="Analysis date YYYY-MM-DD [default: latest transaction].")]
WindowOpt = Annotated[int | None, _option("--window-days", help="Keep only the last N days up to the as-of date.")]
EncodingOpt = Annotated[str | None, _option("--encoding", help="CSV encoding: auto, utf-8, gb18030.")]
SheetOpt = Annotated[str | None, _option(
    "--sheet", help="Excel: the sheet to read, by name or 1-based position [default: the first].")]
HeaderRowOpt = Annotated[int | None, _option(
    "--header-row", min=1,
    help="The row (CSV: line) holding the header, as the file numbers it (e.g. 3 below two title rows).")]
SeparatorOpt = Annotated[str | None, _option(
    "--separator", help="Text input field separator: , ; tab | or whitespace [default: detected].")]
ColumnOpt = Annotated[list[str] | None, _option(
    "--column",
    help="Map a column, ROLE=HEADER (repeatable; roles: customer_id, date, amount, order_id, currency).")]
AllowOpt = Annotated[list[str] | None, _option(
    "--allow", help="A warning kind --strict lets through (repeatable), e.g. identical_rows.")]
MaxInvalidOpt = Annotated[float | None, _option(
    "--max-invalid", help="Tolerate N bad rows (or a share < 1); they go to OUT.rejects.csv.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Warnings become errors (exit 65).")]
MEMORY_LIMIT_ENV = "SEGCLI_MEMORY_LIMIT"  # --memory-limit's default; the core takes the budget as a parameter
ThreadsOpt = Annotated[int | None, _option("--threads", help="Maximum worker threads.", min=1)]
MemoryOpt = Annotated[str | None, _option(
    "--memory-limit", envvar=MEMORY_LIMIT_ENV,
    help="Memory budget, e.g. 4G: large exports are aggregated in customer buckets sized to it "
         "(env SEGCLI_MEMORY_LIMIT).")]
# Options of the commands that print tables.
FormatOpt = Annotated[str, typer.Option(
    "--format", help="Table format: any tabulate format (github, simple, plain, psql, ...), csv or json.",
    callback=_check_format)]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout (= --format json).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No summary and no warnings on the terminal.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")]
OutEncodingOpt = Annotated[CsvEncoding | None, _option("--output-encoding", help="Encoding of CSV output.")]
EngineOpt = Annotated[Engine, typer.Option(
    "--engine", help="Where the heavy step runs: polars (embedded) or spark (pip install 'segcli[spark]'; "
                     "SPARK_REMOTE=sc://... for Spark Connect).")]
SparkMasterOpt = Annotated[str | None, _option(
    "--spark-master", help="--engine spark: the master URL, e.g. local[2], spark://host:7077, yarn "
                           "[default: local[*], or spark-submit's --master].")]
SparkConfOpt = Annotated[list[str] | None, _option(
    "--spark-conf", help="--engine spark: a Spark setting KEY=VALUE (repeatable), e.g. spark.driver.memory=4g.")]
SPARK_REMOTE_ENV = "SPARK_REMOTE"  # Spark Connect, as PySpark itself reads it


class WriteMode(str, Enum):
    REPLACE = "replace"
    APPEND = "append"


# PostgreSQL (SPEC §8): what a postgresql:// input reads, how a postgresql:// output is written
TableOpt = Annotated[str | None, _option("--table", help="postgresql:// input: the table to read, schema.table.")]
QueryOpt = Annotated[str | None, _option("--query", help="postgresql:// input: a SELECT to read instead of a table.")]
ModeOpt = Annotated[WriteMode, typer.Option(
    "--mode", help="postgresql://...#schema.table output: replace the table, or append (one set of rows per as-of "
                   "date).")]


def _database_output(output: str | None, mode: WriteMode) -> str | None:
    """-o postgresql://...: the password masked in every message; --mode needs such an output."""
    if mode is WriteMode.APPEND and not (output and is_database(output)):
        raise UsageError("--mode append needs a postgresql://...#schema.table output")
    return command_line_output(output)


@dataclass(frozen=True)
class InputOptions:
    """The options of every command that reads transactions (SPEC §2), declared once.

    A command takes ``opts: InputOptions = NO_INPUT_OPTIONS`` where these options belong
    in its help, and :func:`input_options` puts each of them there for Typer.
    """

    config: Path | None = None
    as_of: str | None = None
    window_days: int | None = None
    encoding: str | None = None
    sheet: str | None = None
    header_row: int | None = None
    separator: str | None = None
    column: list[str] | None = None
    max_invalid: float | None = None
    strict: bool = False
    allow: list[str] | None = None
    threads: int | None = None  # applied by segcli.__main__ before Polars starts; here for --help and its check
    memory_limit: str | None = None
    db_table: str | None = None  # --table: what a postgresql:// input reads
    db_query: str | None = None  # --query: a SELECT a postgresql:// input reads instead
    engine: Engine = Engine.polars  # --engine: where the heavy step runs (SPEC §8)
    spark_master: str | None = None
    spark_conf: list[str] | None = None

    def load_config(self) -> Config:
        """The config file with these options over it (a bad flag value is a usage error)."""
        return _config(self.config, as_of=self.as_of, window_days=self.window_days, encoding=self.encoding,
                       max_invalid=self.max_invalid, strict=self.strict, sheet=self.sheet,
                       header_row=self.header_row, separator=self.separator, columns=self.column, allow=self.allow)

    def memory_bytes(self) -> int | None:
        """--memory-limit (or SEGCLI_MEMORY_LIMIT, its default) in bytes, passed to the core
        as a parameter: exit 2 when it is no size."""
        from segcli.loading import parse_size

        limit = self.memory_limit
        return parse_size(limit) if limit is not None and limit.strip() else None

    def inputs(self, inputs: list[str]) -> list[str]:
        """The command line's inputs with --table/--query attached to a postgresql:// input
        and its password masked (:func:`segcli.postgres.command_line_inputs`)."""
        return command_line_inputs(inputs, table=self.db_table, query=self.db_query)

    def engine_settings(self) -> EngineSettings:
        """--engine, --spark-master, --spark-conf and SPARK_REMOTE (Spark Connect) -> the
        engine the API runs the heavy step on (a bad --spark-conf is a usage error)."""
        from segcli.engines import engine_settings

        return engine_settings(self.engine.value, master=self.spark_master, conf=self.spark_conf,
                               remote=os.environ.get(SPARK_REMOTE_ENV))


NO_INPUT_OPTIONS = InputOptions()
_INPUT_OPTIONS: dict[str, Any] = {
    "config": ConfigOpt, "as_of": AsOfOpt, "window_days": WindowOpt, "encoding": EncodingOpt, "sheet": SheetOpt,
    "header_row": HeaderRowOpt, "separator": SeparatorOpt, "column": ColumnOpt, "max_invalid": MaxInvalidOpt,
    "strict": StrictOpt, "allow": AllowOpt, "threads": ThreadsOpt, "memory_limit": MemoryOpt,
    "db_table": TableOpt, "db_query": QueryOpt,
    "engine": EngineOpt, "spark_master": SparkMasterOpt, "spark_conf": SparkConfOpt,
}


def input_options(fn: F) -> F:
    """Put the :class:`InputOptions` where ``fn`` has its ``opts`` parameter: Typer sees
    each option (the same help in every command), ``fn`` gets them as one value."""
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    defaults = {f.name: f.default for f in dataclasses.fields(InputOptions)}
    params: list[inspect.Parameter] = []
    for p in sig.parameters.values():
        if p.name == "opts":
            params += [inspect.Parameter(name, p.kind, default=defaults[name], annotation=annotation)
                       for name, annotation in _INPUT_OPTIONS.items()]
        else:
            params.append(p.replace(annotation=hints[p.name]))

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        opts = InputOptions(**{name: kwargs.pop(name) for name in _INPUT_OPTIONS})
        return fn(*args, opts=opts, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper  # type: ignore[return-value]


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
            try:
                return fn(*args, **kwargs)
            except BaseException:
                hold_if_terminating()  # SIGTERM: the run ends with 143, its errors unreported
                raise
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


# config keys set from a flag whose bad value is a usage error (exit 2), not a config error
FLAG_KEYS = (("analysis.as_of", "--as-of"), ("input.encoding", "--encoding"), ("analysis.max_invalid", "--max-invalid"),
             ("input.separator", "--separator"))


def _config(config: Path | None, *, as_of: str | None = None, window_days: int | None = None,
            encoding: str | None = None, max_invalid: float | None = None, strict: bool = False,
            sheet: str | None = None, header_row: int | None = None, separator: str | None = None,
            columns: list[str] | None = None, allow: list[str] | None = None) -> Config:
    """The config file (or the defaults) with the flags over it."""
    overrides: dict[str, Any] = _columns(columns)
    if allow:
        unknown = sorted(set(allow) - set(WARNING_KINDS))
        if unknown:
            raise UsageError(f"--allow {unknown[0]}: unknown warning kind; kinds: {', '.join(WARNING_KINDS)}")
    if window_days is not None and window_days < 0:
        raise UsageError("--window-days must not be negative")
    given = {"input.separator": separator, "analysis.allow+": allow or None,  # added to the config's own list
             "input.sheet": sheet, "input.header_row": header_row, "analysis.as_of": as_of,
             "analysis.window_days": window_days, "input.encoding": encoding, "analysis.max_invalid": max_invalid,
             "analysis.strict": True if strict else None}
    overrides.update({k: v for k, v in given.items() if v is not None})
    try:
        return load_config(config, overrides)
    except SegcliError as exc:
        flag = next((f for k, f in FLAG_KEYS if k in exc.message and k in overrides), None)
        if flag:
            raise UsageError(f"{flag}: {exc.message.split(': ', 1)[-1]}") from None
        raise


def _table_format(fmt: str, as_json: bool) -> str:
    return "json" if as_json else fmt


def _json(doc: Any) -> str:
    """One JSON document as every ``--json`` prints it."""
    return json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n"


def _one_stdout_document(output: str | None, as_json: bool) -> None:
    if output == "-" and as_json:
        raise UsageError("-o - and --json both ask for stdout: choose one")


def _csv_encoding(flag: CsvEncoding | None, cfg: Config) -> str:
    """--output-encoding, else the config's ``output.csv_encoding``."""
    return flag.value if flag else cfg.csv_encoding


def _warn(warnings: list[RunWarning], quiet: bool) -> None:
    """Print warnings (--strict is enforced by the core: ``loading.check_strict``)."""
    if not quiet:
        for w in warnings:
            _err(f"segcli: warning: {w}")


REJECTS_CLAIM = "written to the rejects file"  # how loading.load_transactions ends an invalid_rows warning


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


@app.command("segment", cls=SegcliCommand)
@handle_errors
@input_options
def segment_cmd(
    inputs: Inputs,
    output: Annotated[str | None, _option(
        "--output", "-o", help="Assignments file: .parquet, .csv, .jsonl, or - for CSV on stdout.")] = None,
    previous: Annotated[str | None, _option(
        "--previous",
        help="Previous assignments file: keeps VIPs stable (hysteresis) and marks departed customers.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Go on even when the data shrank more than guard.max_drop against --previous, or "
                        "--previous is not an earlier run.")] = False,
    opts: InputOptions = NO_INPUT_OPTIONS, mode: ModeOpt = WriteMode.REPLACE,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
    output_encoding: OutEncodingOpt = None,
) -> None:
    """Assign every customer a tier, VIP group and service terms (the main job).

    Example: segcli segment sample_data/transactions.csv -o assignments.parquet
    """
    from segcli import api
    from segcli.report import render_run

    limit = opts.memory_bytes()
    inputs, output = opts.inputs(inputs), _database_output(output, mode)
    _one_stdout_document(output, as_json)
    cfg = opts.load_config()
    if output is not None:
        check_output_path(output, inputs + ([previous] if previous else []))
    progress = Progress(quiet)
    rejects = None
    try:
        result = api.segment(inputs, cfg, previous=previous, force=force, progress=progress, memory_limit=limit,
                             engine=opts.engine_settings())
        progress.done()
        _warn(_rejects_where(result.warnings, output), quiet)
        if output is not None:
            if output != "-":
                progress(f"writing {output}")
            write_table(result.assignments, output, meta=result.record, rejects=result.rejects,
                        csv_encoding=_csv_encoding(output_encoding, cfg), mode=mode.value)
            rejects = _write_rejects(result.rejects, output)
    finally:
        progress.done()
    if output is None and not quiet:
        _err("segcli: preview only: nothing written (use -o assignments.parquet to write the assignments)")
    elif rejects and not quiet:
        _err(f"segcli: rejected rows written to {rejects}")
    if quiet and not as_json:
        return
    fmt = _table_format(fmt, as_json)
    if fmt == "json":
        sys.stdout.write(_json(result.document(output=output)))
        return
    _emit(render_run(result.summary("tier"), result.record, result.concentration, fmt,
                     head_share=cfg.pareto.head_share, departed=result.departed), to_stderr=(output == "-"))


@app.command("rfm", cls=SegcliCommand)
@handle_errors
@input_options
def rfm_cmd(
    inputs: Inputs,
    output: Annotated[str | None, _option(
        "--output", "-o", help="Output file: .parquet, .csv, .jsonl, or - for CSV on stdout.")] = None,
    style: Annotated[Style, typer.Option(
        "--style", help="segcli: RFM features, scores, segment, cluster; lifetimes: "
                        "frequency/recency/T/monetary_value for CLV models.")] = Style.segcli,
    freq: Annotated[Freq, typer.Option(
        "--freq", help="Period for --style lifetimes: D (day) or W (Monday-start week).")] = Freq.D,
    opts: InputOptions = NO_INPUT_OPTIONS, mode: ModeOpt = WriteMode.REPLACE,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
    output_encoding: OutEncodingOpt = None,
) -> None:
    """Per-customer RFM features, scores, named segment and cluster (no tiers).

    Example: segcli rfm export.csv -o rfm.csv --style lifetimes --freq W
    """
    from segcli import api
    from segcli.report import render

    limit = opts.memory_bytes()
    inputs, output = opts.inputs(inputs), _database_output(output, mode)
    _one_stdout_document(output, as_json)
    cfg = opts.load_config()
    if output is not None:
        check_output_path(output, inputs)
    result: api.RfmResult | api.LifetimesResult
    if style is Style.lifetimes:
        result = api.lifetimes_summary(inputs, cfg, freq=freq.value, memory_limit=limit,
                                       engine=opts.engine_settings())
    else:
        progress = Progress(quiet)
        try:
            result = api.rfm(inputs, cfg, progress=progress, memory_limit=limit,
                             engine=opts.engine_settings())
        finally:
            progress.done()
    _warn(_rejects_where(result.warnings, output), quiet)
    if output is not None:
        write_table(result.table, output, meta=result.record, rejects=result.rejects,
                    csv_encoding=_csv_encoding(output_encoding, cfg), mode=mode.value)
        _write_rejects(result.rejects, output)
        if output == "-":
            return
    fmt = _table_format(fmt, as_json)
    if quiet and fmt != "json":
        return
    if fmt == "json" and (output is None or style is Style.segcli):  # the file has the rows; the summary then
        sys.stdout.write(_json(result.document()))
        return
    sys.stdout.write(render(result.summary(), fmt))
    if output is None and fmt != "json":
        what = "summary statistics" if style is Style.lifetimes else "segment summary"
        _err(f"segcli: preview: {what} only (use -o FILE for one row per customer)")


@app.command("pareto", cls=SegcliCommand)
@handle_errors
@input_options
def pareto_cmd(
    inputs: Inputs,
    plot: Annotated[str | None, _option(
        "--plot", help="Also draw the concentration curve to a .png, .svg or .html file.")] = None,
    font: Annotated[str | None, _option(
        "--font", help="--plot: a font file with Chinese glyphs [default: found with fontconfig].")] = None,
    opts: InputOptions = NO_INPUT_OPTIONS,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """Revenue concentration: customers holding 50/80/90/95% of revenue, top shares, Gini, ABC.

    Example: segcli pareto sample_data/transactions.csv --plot pareto.svg
    """
    from segcli import api
    from segcli.plot import CurveMarks, curve_points, plot_format, write_plot
    from segcli.report import render_concentration

    limit = opts.memory_bytes()
    inputs = opts.inputs(inputs)
    cfg = opts.load_config()
    if plot is not None:
        plot_format(plot)
        check_output_path(plot, inputs)
    result = api.pareto(inputs, cfg, memory_limit=limit,
                        engine=opts.engine_settings())
    _warn(_rejects_where(result.warnings, None, writes=False), quiet)
    if plot is not None:
        marks = CurveMarks(result.concentration, cfg.pareto.head_share, result.vip_limit, cfg.tiers.labels)
        write_plot(curve_points(result.table["cum_share"].to_numpy()), marks, plot,
                   font=_chart_font(font, cfg, quiet))
        if not quiet:
            _err(f"segcli: wrote {plot}")
    fmt = _table_format(fmt, as_json)
    sys.stdout.write(_json(result.document()) if fmt == "json" else render_concentration(result.concentration, fmt))


@app.command("summary", cls=SegcliCommand)
@handle_errors
def summary_cmd(
    assignments: Annotated[str, typer.Argument(
        help="An assignments file written by segcli segment (any segcli output with --record).", show_default=False)],
    by: Annotated[Grouping, typer.Option(
        "--by", help="Group by tier, vip_group, rfm_segment (with the score cut points), cluster or reason.")
    ] = Grouping.tier,
    output: Annotated[str | None, _option(
        "--output", "-o",
        help="Write to a file, by extension: .csv, .json, .md, .xlsx (a workbook), else the table text.")] = None,
    record: Annotated[bool, typer.Option(
        "--record", help="Print the run record (JSON) of any file segcli wrote, instead of a table.")] = False,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """Summary table of an assignments file: customers, revenue shares, recency, service terms.

    Example: segcli summary assignments.parquet --by vip_group --format github
    """
    from segcli.report import render, summarize

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
    cuts = None
    if by is Grouping.rfm_segment and fmt not in ("csv", "json"):
        from segcli.explain import cut_points_table

        cuts = cut_points_table(meta)
    if cuts is not None:
        text += "\n" + render(cuts, fmt, title="score cut points (run record): the value range of each score")
    if output is None:
        sys.stdout.write(text)
    else:
        write_text(text, output)


@app.command("diff", cls=SegcliCommand)
@handle_errors
def diff_cmd(
    prev: Annotated[str, typer.Argument(help="The earlier assignments file.", show_default=False)],
    curr: Annotated[str, typer.Argument(help="The later assignments file.", show_default=False)],
    output: Annotated[str | None, _option(
        "--output", "-o",
        help="Write the changed customers (customer_id, from_tier, to_tier, from_group, to_group, change, then what "
             "CURR makes of them: reason, tier_label, service terms, terms_changed) to .csv/.parquet/.jsonl or - for "
             "stdout.")] = None,
    tier_changes_only: Annotated[bool, typer.Option(
        "--tier-changes-only", help="Leave out VIP-group changes whose service terms stay the same.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Go on when PREV is not earlier than CURR (files reversed?).")] = False,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
    output_encoding: OutEncodingOpt = None,
) -> None:
    """Tier migrations between two runs: matrix, upgrades, downgrades, new and departed.

    Example: segcli diff 2025-11.parquet 2025-12.parquet -o moves.csv
    """
    from segcli import api
    from segcli.report import render_diff

    _one_stdout_document(output, as_json)
    if output is not None:
        check_output_path(output, [prev, curr])
    result = api.diff(prev, curr, force=force, tier_changes_only=tier_changes_only)
    _warn(result.warnings, quiet)
    if output is not None:
        write_table(result.table, output, meta=None, csv_encoding=output_encoding.value if output_encoding else "utf-8")
        if output == "-":
            return
    fmt = _table_format(fmt, as_json)
    if fmt == "json":
        sys.stdout.write(_json(result.document()))
    elif not quiet:
        sys.stdout.write(render_diff(result.diff, fmt, title=f"tier migrations {prev} -> {curr}"))


@app.command("validate", cls=SegcliCommand)
@handle_errors
@input_options
def validate_cmd(
    inputs: Inputs,
    opts: InputOptions = NO_INPUT_OPTIONS,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """Check an export and report every problem; writes nothing.

    Example: segcli validate export.csv --strict
    """
    from segcli import api

    limit = opts.memory_bytes()
    result = api.validate(opts.inputs(inputs), opts.load_config(), memory_limit=limit,
                          engine=opts.engine_settings())
    _warn(_rejects_where(result.warnings, None, writes=False), quiet)
    fmt = _table_format(fmt, as_json)
    if fmt == "json":
        sys.stdout.write(_json(result.document()))
    elif not quiet:
        from segcli.report import render

        names = ", ".join(s["path"] for s in result.inputs)
        sys.stdout.write(f"ok: {names} (as of {result.as_of})\n" + render(result.summary(), fmt))


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
    from_: Annotated[str | None, _option("--from", help="Show the config recorded in an assignments file.")] = None,
    as_json: JsonOpt = False, debug: DebugOpt = False,
) -> None:
    """Print the effective config (defaults + file), or the one recorded in an output.

    Example: segcli config show --from assignments.parquet
    """
    import tomli_w

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
    output: Annotated[str | None, _option(
        "--output", "-o", help="Write the schema to a file instead of stdout.")] = None,
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
    assignments: Annotated[str, typer.Argument(
        help="An assignments file written by segcli segment (.parquet, .csv, .jsonl).", show_default=False)],
    profile: Annotated[str, _option(
        "--profile", help="Target: generic, salesforce, zendesk, hubspot, dynamics, freshdesk, or a profile of your "
                          "config's [export.NAME].")],
    output: Annotated[str, _option(
        "--output", "-o",
        help="Folder to write (replaced atomically; an existing one must be an earlier export unless --force); "
             "with --profile generic also postgresql://...#schema.table.")],
    changes_from: Annotated[str | None, _option(
        "--changes-from", help="Previous assignments file: export only the customers whose exported fields changed, "
                               "and the departed.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an -o segcli did not write; accept a --changes-from that is not earlier.")] = False,
    config: ConfigOpt = None, mode: ModeOpt = WriteMode.REPLACE,
    fmt: FormatOpt = "simple", as_json: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """Hand the tiers to a CRM or help desk: records shaped for it, the tier policy, a manifest.

    Example: segcli export assignments.parquet --profile zendesk -o crm/zendesk --changes-from last-month.parquet
    """
    import polars as pl

    from segcli.api import record_time
    from segcli.export import export_assignments
    from segcli.pipeline import created_timestamp
    from segcli.report import render

    cfg = _config(config)
    output = _database_output(output, mode) or output
    when = record_time()  # SOURCE_DATE_EPOCH: no clock time in the manifest otherwise
    created = created_timestamp(when) if when is not None else None
    result = export_assignments(assignments, profile=profile, out_dir=output, config=cfg, changes_from=changes_from,
                                force=force, created_at=created, mode=mode.value)
    fmt = _table_format(fmt, as_json)
    if fmt == "json":
        sys.stdout.write(_json(result.manifest))
        return
    if quiet:
        return
    m = result.manifest
    files = pl.DataFrame(result.files)
    table = files.select(c for c in ("path", "kind", "rows", "bytes") if c in files.columns)
    what = (f"{m['records']:,} changed customers ({m['departed']:,} departed)" if m["changes_from"]
            else f"{m['records']:,} customers")
    sys.stdout.write(render(table, fmt, title=f"{m['profile']['system']}: {what} as of {m['as_of']} -> {output}"))


@app.command("report", cls=SegcliCommand)
@handle_errors
@input_options
def report_cmd(
    inputs: Inputs,
    output: Annotated[str, _option(
        "--output", "-o",
        help="report.html (one self-contained page) or report.md (Markdown, PNG charts beside it).")],
    previous: Annotated[str | None, _option(
        "--previous",
        help="Previous assignments file: the run keeps VIPs stable, and the page shows the migrations.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Go on even when the data shrank more than guard.max_drop against --previous.")] = False,
    lang: Annotated[Lang, typer.Option(
        "--lang", help="The language the page opens in (the HTML page switches).")] = Lang.zh,
    font: Annotated[str | None, _option(
        "--font", help="A font file with Chinese glyphs: .html embeds the part of it the page uses, .md draws its "
                       "PNG charts with it [default: found with fontconfig].")] = None,
    opts: InputOptions = NO_INPUT_OPTIONS,
    quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """One page for a manager: headline figures, concentration, tiers, R x F grid, profiles,
    service terms and, with --previous, the migrations. Needs segcli[report] for HTML.

    Example: segcli report sample_data/transactions.csv --previous last-month.parquet -o report.html
    """
    from segcli import api
    from segcli.fonts import find_page_font
    from segcli.page.results import build_results
    from segcli.page.text import all_text
    from segcli.page.write import report_kind, write_report

    limit = opts.memory_bytes()
    inputs = opts.inputs(inputs)
    kind = report_kind(output)
    cfg = opts.load_config()
    check_output_path(output, inputs + ([previous] if previous else []))
    if kind == "md":
        chart_font = _chart_font(font, cfg, quiet, required=True)
    else:  # the page embeds a subset of the font; without one it is written all the same
        from segcli.page.charts import plotly_go

        plotly_go()  # a missing extra stops the run before the segmentation, not after it
        chart_font, note = find_page_font(font, text=all_text(cfg.tiers.labels))
        if note is not None and not quiet:
            _err(f"segcli: warning: {note}")
    progress = Progress(quiet)
    try:
        result = api.segment(inputs, cfg, previous=previous, force=force, progress=progress, memory_limit=limit,
                             engine=opts.engine_settings())
        progress("writing the report")
        _warn(result.warnings, quiet)
        written = write_report(build_results(result, inputs=inputs, previous_name=previous or ""), output,
                               lang=lang.value, font=chart_font)
    finally:
        progress.done()
    if not quiet:
        _err(f"segcli: wrote {', '.join(written)}")


@app.command("explain")
@handle_errors
def explain_cmd(
    assignments: Annotated[str, typer.Argument(
        help="An assignments file written by segcli segment.", show_default=False)],
    customer_ids: Annotated[list[str], typer.Argument(help="The customers to explain.", show_default=False)],
    as_json: JsonOpt = False, debug: DebugOpt = False,
) -> None:
    """Why each customer has its tier: the rule, the figures it compared, the distance to the other tier.

    Example: segcli explain assignments.parquet C000123 C004711 --json
    """
    from segcli import api
    from segcli.explain import render_explanations

    result = api.explain(assignments, customer_ids)
    if as_json:
        sys.stdout.write(_json(result.document()))
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
    version: Annotated[bool, typer.Option(
        "--version", callback=version_callback, is_eager=True, help="Show the version.")] = False,
) -> None:
    """segcli: Pareto 80/20 and RFM segmentation into VIP (知心) and standard (遇心) service tiers."""
