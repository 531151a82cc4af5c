"""The heavy step on Apache Spark (``--engine spark``, SPEC §8), with segcli's own code.

Spark gives distribution; segcli's Polars functions give every number. No rule of SPEC §3
or §6 is written again here:

1. Spark reads the inputs (CSV as text with a header, Parquet typed, tables by name).
2. Stage 1, ``mapInArrow``: each Arrow batch -> :func:`segcli.parse.canonical`, with the
   parse plan (date formats, amount clean-up) chosen on the driver from a sample, exactly
   as :func:`segcli.loading.load_transactions` chooses it.
3. The canonical rows are shuffled by their (canonical) customer id, so that all rows of
   a customer, and all rows identical to each other, meet in one partition.
4. Stage 2, ``mapInArrow`` per partition: :func:`segcli.loading.check_query` (the counts
   the checks need) and the per-customer aggregation (``rfm_features`` or
   ``lifetimes_periods``), returned as Arrow IPC blobs.
5. The driver adds up the counts (sums, mins and maxes of disjoint row sets), decides
   as-of date, warnings and errors with the pipeline's own functions
   (:func:`~segcli.loading.check_tables`, :func:`~segcli.loading.decide_run`), and hands
   the per-customer table to the rest of the pipeline, unchanged.

Error examples name the file and the raw values; Spark cannot number the rows of a file,
so they carry no line numbers (except ragged rows of a local file, which are read again
the way the polars engine does).
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import socket
import sys
import warnings as _warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import polars as pl
import pyarrow as pa

from segcli.config import Config, InputConfig
from segcli.engines.settings import EngineSettings
from segcli.errors import ConfigError, InputDataError, InputMissingError, RunWarning, UsageError
from segcli.io import EXCEL_SUFFIXES, PARQUET_SUFFIXES, Source, expand_inputs, open_source
from segcli.loading import (
    Aggregate,
    Transactions,
    analysed_rows,
    check_currencies,
    check_not_empty,
    check_query,
    check_ragged,
    check_strict,
    check_tables,
    decide_run,
    estimate_rows,
    invalid_rows,
    marks_identical,
    parse_plan,
    plans_to_widen,
    source_records,
    widen_plan,
)
from segcli.parse import (
    PLAN_SAMPLE_ROWS,
    REPEAT_COUNT_MAX_ROWS,
    ColumnMap,
    ParsePlan,
    _row_hash,
    amount_hits,
    canonical,
    date_hits,
    invalid_expr,
    resolve_columns,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

EXTRA = "pip install 'segcli[spark]'"
CORRUPT = "__segcli_corrupt__"  # Spark's raw text of a CSV record with another number of fields
FILE = "__segcli_file__"
# Spark's own defaults (10,000 rows an Arrow batch) make stage 1 pay Polars' per-call cost
# a thousand times per 10 million rows; the rest keep a local run quiet and time-zone-free.
DEFAULT_CONF = {
    "spark.sql.execution.arrow.maxRecordsPerBatch": "200000",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # the per-customer table comes back to the driver: 1 GB (Spark's default) is ~15M customers
    "spark.driver.maxResultSize": "0",
}
# multiLine=true reads quoted fields with line breaks, as the polars engine does, but reads a
# file in one task; a lake of files without such fields can split files: set it to false
MULTILINE_CONF = "spark.segcli.csv.multiLine"
SUBMIT_ENV = "PYSPARK_GATEWAY_PORT"  # set by spark-submit for the Python program it runs
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_SESSIONS: dict[EngineSettings, SparkSession] = {}

# the canonical columns stage 1 hands to the shuffle (Spark has no unsigned integers: the
# u64 hashes travel as i64 with the same bits, and are turned back in stage 2)
_STAGE1 = {"source": pa.int32(), "customer_id": pa.string(), "ts": pa.timestamp("us"), "amount_minor": pa.int64(),
           "order_key": pa.int64(), "currency": pa.string(), "amount_rounded": pa.bool_(), "blank": pa.bool_(),
           "tail_null": pa.bool_()}
_SPARK_TYPES = {pa.int32(): "INT", pa.string(): "STRING", pa.timestamp("us"): "TIMESTAMP_NTZ", pa.int64(): "BIGINT",
                pa.bool_(): "BOOLEAN", pa.binary(): "BINARY"}


# --------------------------------------------------------------------------- the session


def _reachable(url: str, default_port: int) -> None:
    """A master or Connect server that does not answer is a selection error (exit 78), at
    once: Spark itself would retry for a minute before giving up."""
    for hostport in urlparse(url).netloc.split(","):
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
        host = host or hostport
        try:
            with socket.create_connection((host.strip("[]"), int(port or default_port)), timeout=5):
                return
        except (OSError, ValueError):
            continue
    raise ConfigError(f"Spark master {url} is unreachable",
                      ["check the address, or run locally with --spark-master 'local[*]'"])


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def session(settings: EngineSettings) -> SparkSession:
    """The Spark session of ``settings``: one per process, made on first use.

    Raises :class:`ConfigError` (exit 78) when PySpark is not installed, Java is missing,
    or the master does not answer.
    """
    if settings in _SESSIONS:
        return _SESSIONS[settings]
    # PySpark 4 warns on every mapInArrow that it is not tested with pandas 3 (which it
    # imports there, but segcli's stages do not use)
    _warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    try:
        import pandas  # noqa: F401 - PySpark's mapInArrow imports it on the driver
        from pyspark.sql import SparkSession
    except ImportError as exc:
        missing = (exc.name or "pyspark").split(".")[0]
        raise ConfigError(f"--engine spark needs PySpark ({missing} is not installed): {EXTRA}") from None
    if settings.remote:
        _reachable(settings.remote, 15002)
        try:
            builder = SparkSession.builder.remote(settings.remote)
        except Exception as exc:  # noqa: BLE001 - the Connect client's missing pieces
            raise ConfigError(f"Spark Connect ({settings.remote}): {str(exc).splitlines()[0]}",
                              ["the Connect client needs: pip install 'pyspark[connect]>=4,<5'"]) from None
    else:
        # under spark-submit its JVM is running already, started with its --master and settings
        submitted = SUBMIT_ENV in os.environ
        master = settings.master or ("" if submitted else "local[*]")
        if not submitted and _java() is None:
            raise ConfigError("--engine spark needs Java 17 or later: none found (set JAVA_HOME or put java on PATH)")
        if master.startswith("spark://"):
            _reachable(master, 7077)
        if master.startswith("local") and not submitted:
            # Python workers of a local master are started from PYSPARK_PYTHON (default:
            # python3 on PATH, which may lack segcli): this interpreter has it
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.appName("segcli")
        builder = builder.master(master) if master else builder
        conf = dict(DEFAULT_CONF)
        if not submitted:
            log4j = Path(__file__).with_name("log4j2.properties")
            conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={log4j.as_uri()}"
        for key, value in conf.items():
            builder = builder.config(key, value)
    for key, value in settings.conf:
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - Py4J, gRPC and Spark all raise their own types
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot start Spark ({settings.remote or settings.master or 'local[*]'}): {text}") from None
    if settings.remote:  # a Connect session takes SQL settings after it starts
        given = {key for key, _ in settings.conf}
        for key in ("spark.sql.session.timeZone", "spark.sql.execution.arrow.maxRecordsPerBatch"):
            if key not in given:
                spark.conf.set(key, DEFAULT_CONF[key])
    else:
        spark.sparkContext.setLogLevel("ERROR")
    _SESSIONS[settings] = spark
    return spark


def _engine_record(spark: SparkSession, settings: EngineSettings) -> dict[str, Any]:
    return {"name": "spark", "spark_version": spark.version,
            "master": "connect" if settings.remote else spark.sparkContext.master}


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class SparkSource:
    """One input as Spark reads it: a local file (checked and, for another encoding than
    UTF-8, transcoded by the driver as the polars engine does), a URI or a table."""

    name: str  # as shown to the user
    kind: str  # "csv", "parquet" or "table"
    read: str  # what Spark reads: a path, URI, glob or table name
    size: int | None = None
    encoding: str = "utf-8"
    separator: str = ","
    local: Source | None = None  # for the polars engine's file checks and messages


def _remote(item: str, inp: InputConfig) -> SparkSource:
    suffix = Path(urlparse(item).path.rstrip("/")).suffix.lower()
    if suffix in EXCEL_SUFFIXES:
        raise UsageError(f"{item}: Excel is read by the polars engine only (--engine polars)")
    kind = "csv" if suffix in {".csv", ".tsv", ".txt"} else "parquet"  # a lake folder: Parquet
    encoding = "utf-8" if inp.encoding in ("auto", "") else inp.encoding
    separator = "\t" if suffix == ".tsv" else (inp.separator or ",")
    return SparkSource(item, kind, item, encoding=encoding, separator=separator)


def resolve_sources(inputs: list[str], inp: InputConfig) -> list[SparkSource]:
    """Inputs -> sources. Local paths, folders and globs are expanded file by file, as the
    polars engine does (same order, same checks, same record); URIs (``s3a://``,
    ``hdfs://``, ``abfss://``, ...) and table names go to Spark as they are."""
    sources: list[SparkSource] = []
    for item in inputs:
        if _URI.match(item) and not item.startswith("file://"):
            sources.append(_remote(item, inp))
            continue
        path = item.removeprefix("file://")
        is_path = (path == "-" or "/" in path or any(ch in path for ch in "*?[") or Path(path).exists()
                   or Path(path).suffix.lower() in {".csv", ".tsv", ".txt", ".parquet", ".pq", *EXCEL_SUFFIXES})
        if not is_path and _TABLE.match(item):
            sources.append(SparkSource(item, "table", item))
            continue
        for name in expand_inputs([path]):
            if Path(name).suffix.lower() in EXCEL_SUFFIXES:
                raise UsageError(f"{name}: Excel is read by the polars engine only (--engine polars)")
            src = open_source(name, inp.encoding)
            kind = "parquet" if Path(name).suffix.lower() in PARQUET_SUFFIXES else "csv"
            sources.append(SparkSource(src.name, kind, str(src.path.resolve()), src.size, src.encoding,
                                       src.separator, src))
    return sources


def _read(spark: SparkSession, src: SparkSource) -> DataFrame:
    """The source's raw columns (CSV: all text, and ``CORRUPT`` for ragged records)."""
    try:
        if src.kind == "table":
            return spark.table(src.read)
        if src.kind == "parquet":
            return spark.read.parquet(src.read)
        multiline = spark.conf.get(MULTILINE_CONF, "true")
        # a local file is UTF-8 here (transcoded by the driver when it was not)
        options = {"header": "true", "sep": src.separator, "quote": '"', "escape": '"', "multiLine": multiline,
                   "encoding": "UTF-8" if src.local is not None else src.encoding}
        header = spark.read.options(**options).csv(src.read).schema
        from pyspark.sql.types import StringType, StructField, StructType

        schema = StructType([StructField(f.name, StringType()) for f in header] + [StructField(CORRUPT, StringType())])
        return (spark.read.options(**options, mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT)
                .schema(schema).csv(src.read))
    except Exception as exc:  # noqa: BLE001 - Spark's analysis errors: a path or table that is not there
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "PATH_NOT_FOUND" in text or "TABLE_OR_VIEW_NOT_FOUND" in text or "does not exist" in text:
            raise InputMissingError(f"{src.name}: not found: {text}") from None
        raise InputMissingError(f"{src.name}: cannot read: {text}") from None


def _spark_error(exc: Exception, sources: list[SparkSource]) -> InputDataError:
    """A failure inside a Spark job -> exit 65 naming the inputs (the first line of Spark's own words)."""
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    first = next((ln for ln in lines if "Error" in ln or "Exception" in ln), lines[0] if lines else type(exc).__name__)
    return InputDataError(f"{', '.join(s.name for s in sources)}: cannot read: {first.strip()[:300]}")


# --------------------------------------------------------------------------- the two stages


@dataclass(frozen=True)
class _Parse:
    """What stage 1 needs to parse one source's batches (pickled to the workers)."""

    schema: pl.Schema
    cols: ColumnMap
    inp: InputConfig
    source: int
    plan: ParsePlan
    keyed: bool  # add the 128-bit row key (h0, h1) that input.dedupe drops repeats by
    emit: str = "rows"  # "rows" | "invalid" (raw values of bad rows) | "hits" (plan widening) | "currency"


def _stage1_schema(p: _Parse) -> dict[str, pa.DataType]:
    if p.emit == "invalid":
        return {"source": pa.int32(), "file": pa.string(), "customer_id": pa.string(), "ts": pa.timestamp("us"),
                "amount_minor": pa.int64(), "raw_customer_id": pa.string(), "raw_date": pa.string(),
                "raw_amount": pa.string()}
    if p.emit == "hits":
        return {**{f"date_hit_{i}": pa.bool_() for i in range(len(p.inp.date_formats))}, "amount_hit": pa.bool_()}
    if p.emit == "currency":
        return {"currency": pa.string()}
    extra = {"row_hash": pa.int64()} if p.plan.count_repeats else {}
    return {**_STAGE1, **extra, **({"h0": pa.int64(), "h1": pa.int64()} if p.keyed else {})}


def _ddl(types: dict[str, pa.DataType]) -> str:
    return ", ".join(f"`{name}` {_SPARK_TYPES[t]}" for name, t in types.items())


def _as_batches(df: pl.DataFrame, types: dict[str, pa.DataType]) -> Iterator[pa.RecordBatch]:
    table = df.select(list(types)).to_arrow().cast(pa.schema(list(types.items())))
    yield from table.to_batches()


def _signed(col: str) -> pl.Expr:
    return pl.col(col).reinterpret(signed=True)


def parse_batches(p: _Parse, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Stage 1: raw Arrow batches -> canonical rows (segcli's own parse, row by row)."""
    types = _stage1_schema(p)
    names = list(p.schema.names())
    for batch in batches:
        raw = pl.from_arrow(batch)
        assert isinstance(raw, pl.DataFrame)
        ragged = raw[CORRUPT].is_not_null() if CORRUPT in raw.columns else None
        file = raw[FILE] if FILE in raw.columns else None
        raw = raw.select(names)
        canon = canonical(raw.lazy(), p.schema, p.cols, p.inp, p.source, 0, p.plan).collect()
        if ragged is not None:  # a ragged record leaves the last column null, as in the polars engine
            canon = canon.with_columns(tail_null=pl.col("tail_null") | ragged)
        if p.emit == "hits":
            found = canon.filter(~pl.col("blank")).select(*date_hits(p.inp.date_formats, p.inp.timezone),
                                                         amount_hits(p.inp.amount_scale))
            yield from _as_batches(found, types)
            continue
        if p.emit == "invalid":
            bad = canon.with_columns(file=file if file is not None else pl.lit(None, pl.String)).filter(
                ~pl.col("blank") & invalid_expr())
            yield from _as_batches(bad, types)
            continue
        if p.emit == "currency":
            yield from _as_batches(canon.filter(~pl.col("blank") & ~invalid_expr())
                                   .select(pl.col("currency").drop_nulls().unique()), types)
            continue
        if p.keyed:
            # the same 128-bit key as the Polars engine's dedupe: the data columns by name, so a
            # row repeated in another file (same customer, so the same partition) is a repeat too
            key = raw.select(_row_hash(names, 0).alias("h0"), _row_hash(names, 1).alias("h1"))
            canon = canon.with_columns(h0=key["h0"], h1=key["h1"])
        yield from _as_batches(canon.with_columns(*(_signed(c) for c in ("order_key", "row_hash", "h0", "h1")
                                                    if c in canon.columns)), types)


@dataclass(frozen=True)
class _Aggregate:
    """What stage 2 needs per partition (pickled to the workers)."""

    dedupe: bool
    distinct: bool  # count identical rows (distinct row hashes)
    checks: bool  # return check_query's counts
    per_customer: Aggregate | None  # rows -> per-customer table, on the rows the analysis keeps
    keep: pl.Expr  # analysed_rows(as_of, cfg)


def aggregate_partition(a: _Aggregate, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Stage 2: every row of a set of customers -> (the check counts, their per-customer table),
    each as one Arrow IPC blob."""
    got = list(batches)
    if not got:
        return
    df = pl.from_arrow(pa.Table.from_batches(got))
    assert isinstance(df, pl.DataFrame)
    # stage 1 ships the normalised currency only: as written it is its own spelling
    df = df.with_columns(pl.col("source").cast(pl.UInt16), pl.col("currency").alias("raw_currency"),
                         *(pl.col(c).reinterpret(signed=False) for c in ("order_key", "row_hash") if c in df.columns))
    # input.dedupe: a row identical (in every column of its file) to an earlier one; which of
    # them is kept cannot matter, they are equal
    repeat = ~pl.struct("h0", "h1").is_first_distinct() if a.dedupe else pl.lit(False)
    lf = df.lazy().with_columns(repeat=repeat)
    used = ~pl.col("blank") & ~(pl.col("repeat") & pl.lit(a.dedupe))
    kinds, queries = [], []
    if a.checks:
        kinds.append("checks")
        queries.append(check_query(lf, distinct=a.distinct))
    if a.per_customer is not None:
        kinds.append("customers")
        queries.append(a.per_customer(lf.filter(used & a.keep)))
    for kind, frame in zip(kinds, pl.collect_all(queries)):
        buf = io.BytesIO()
        frame.write_ipc(buf, compression="lz4")
        yield pa.record_batch([pa.array([kind]), pa.array([buf.getvalue()], pa.binary())], names=["kind", "data"])


def _empty_canonical(count_repeats: bool) -> pl.LazyFrame:
    schema: dict[str, pl.DataType] = {"source": pl.UInt16(), "customer_id": pl.String(), "ts": pl.Datetime("us"),
                                      "amount_minor": pl.Int64(), "order_key": pl.UInt64(), "currency": pl.String(),
                                      "raw_currency": pl.String(), "amount_rounded": pl.Boolean(),
                                      "blank": pl.Boolean(), "tail_null": pl.Boolean(), "repeat": pl.Boolean()}
    if count_repeats:
        schema["row_hash"] = pl.UInt64()
    return pl.LazyFrame(schema=schema)


def _merge_checks(parts: list[pl.DataFrame], count_repeats: bool) -> pl.DataFrame:
    """The partitions' check counts -> the counts of all rows: they are sums, mins and maxes
    over disjoint sets of rows (``distinct`` too: identical rows share a partition)."""
    if not parts:
        return check_query(_empty_canonical(count_repeats), distinct=count_repeats).collect()
    keys = ["source", "date", "blank", "repeat"]
    frame = pl.concat(parts)
    sums = [c for c in frame.columns if c not in (*keys, "cur_min", "cur_max", "abs_units")]
    return frame.group_by(keys).agg(pl.col(sums).cast(pl.Int64).sum(), pl.col("abs_units").sum(),
                                    pl.col("cur_min").min(), pl.col("cur_max").max())


# --------------------------------------------------------------------------- the loader


@dataclass
class _Run:
    """The sources of one run, read by Spark, with their column maps and parse plans."""

    spark: SparkSession
    sources: list[SparkSource]
    frames: list[DataFrame]
    schemas: list[pl.Schema]
    colmaps: list[ColumnMap]
    plans: list[ParsePlan]
    inp: InputConfig
    mark: bool  # identical rows are marked: counted, or dropped by ``input.dedupe``

    @property
    def where(self) -> str:
        """The inputs as messages about all of them name them."""
        return ", ".join(s.name for s in self.sources)

    def parsed(self, emit: str = "rows", *, keyed: bool = False, only: int | None = None) -> DataFrame:
        """Stage 1 over every source (or source ``only``), as one Spark DataFrame."""
        from pyspark.sql import functions as F

        out = None
        for i, (frame, schema, cols, plan) in enumerate(zip(self.frames, self.schemas, self.colmaps, self.plans)):
            if only is not None and i != only:
                continue
            p = _Parse(schema, cols, self.inp, i, plan, keyed, emit)
            if emit == "invalid":
                frame = frame.withColumn(FILE, F.input_file_name())
            part = frame.mapInArrow(functools.partial(parse_batches, p), _ddl(_stage1_schema(p)))
            out = part if out is None else out.unionByName(part)
        assert out is not None
        return out

    def aggregate(self, a: _Aggregate, *, keyed: bool) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
        """Stages 1 and 2: (the check counts, the per-customer table)."""
        rows = self.parsed(keyed=keyed).repartition("customer_id")
        blobs = rows.mapInArrow(functools.partial(aggregate_partition, a), "kind STRING, data BINARY")
        try:
            table = blobs.toArrow()
        except Exception as exc:  # noqa: BLE001 - a failed Spark job (unreadable file, bad bytes)
            raise _spark_error(exc, self.sources) from None
        kinds, data = table.column("kind").to_pylist(), table.column("data").to_pylist()
        checks = [pl.read_ipc(io.BytesIO(b)) for k, b in zip(kinds, data) if k == "checks"]
        customers = [pl.read_ipc(io.BytesIO(b)) for k, b in zip(kinds, data) if k == "customers"]
        merged = _merge_checks(checks, a.distinct) if a.checks else None
        features = None
        if a.per_customer is not None:
            features = pl.concat(customers) if customers else a.per_customer(_empty_canonical(False)).collect()
        return merged, features

    def collect(self, frame: DataFrame) -> pl.DataFrame:
        try:
            out = pl.from_arrow(frame.toArrow())
        except Exception as exc:  # noqa: BLE001 - a failed Spark job
            raise _spark_error(exc, self.sources) from None
        assert isinstance(out, pl.DataFrame)
        return out


def _sample(frame: DataFrame, src: SparkSource) -> pl.DataFrame:
    """The first rows of a source: its Polars schema, and the sample the parse plan is chosen on."""
    try:
        out = pl.from_arrow(frame.limit(PLAN_SAMPLE_ROWS).toArrow())
    except Exception as exc:  # noqa: BLE001 - a failed Spark job
        raise _spark_error(exc, [src]) from None
    assert isinstance(out, pl.DataFrame)
    return out


def _estimated_rows(src: SparkSource) -> int | None:
    """Rows of a source for the identical-rows rule of the polars engine: local files only
    (a CSV from its first MiB, Parquet from its footer); ``None`` for URIs and tables."""
    if src.local is None:
        return None
    if src.kind == "csv":
        return estimate_rows(src.local.path)
    import pyarrow.parquet as pq

    return pq.ParquetFile(src.local.path).metadata.num_rows


def load_transactions(inputs: list[str], cfg: Config, *, settings: EngineSettings,
                      count_identical: bool | None = None, aggregate: Aggregate | None = None,
                      memory_limit: int | None = None, strict: bool = True) -> Transactions:
    """:func:`segcli.loading.load_transactions` on Spark: the same checks, counts, warnings,
    errors and exit codes; with ``aggregate``, ``Transactions.aggregated`` holds the
    per-customer table (there is no row frame on the driver: ``tx`` is empty).

    ``memory_limit`` is not used: Spark sizes its partitions itself (``--spark-conf``).
    Raises :class:`ConfigError` (exit 78) when Spark cannot be started, besides the errors
    of the polars engine.
    """
    del memory_limit
    inp = cfg.input
    run = _open_run(inputs, cfg, settings, count_identical)
    fuse = aggregate is not None and (cfg.analysis.as_of is not None or not cfg.analysis.window_days)
    groups, features = _check_passes(run, cfg, aggregate if fuse else None)
    src_stats, days, cur = check_tables(groups, dedupe=inp.dedupe)
    rejects, warnings = _report_problems(run, src_stats, cur, cfg)
    as_of, run_warnings, counts = decide_run(days, src_stats, cfg, where=run.where, counted=run.mark)
    warnings += run_warnings
    if aggregate is not None and not fuse:  # the window ends at the latest date, known only now
        _, features = run.aggregate(_Aggregate(inp.dedupe, False, False, aggregate, analysed_rows(as_of, cfg)),
                                    keyed=inp.dedupe)
    records = source_records(run.sources, src_stats, run.colmaps)
    if strict:
        check_strict(warnings, cfg, inputs)
    return Transactions(_empty_canonical(False).select("customer_id", "order_key", "ts", "amount_minor"), as_of,
                        inp.amount_scale, records, counts, warnings, rejects, 1, features,
                        engine=_engine_record(run.spark, settings))


def _open_run(inputs: list[str], cfg: Config, settings: EngineSettings, count_identical: bool | None) -> _Run:
    """Resolve and read the sources, map their columns and choose their parse plans on a
    sample, as :func:`segcli.loading.plan_parse` does."""
    inp = cfg.input
    sources = resolve_sources(inputs, inp)  # a missing local input is exit 66 before Spark starts
    spark = session(settings)
    frames = [_read(spark, s) for s in sources]
    samples, schemas, colmaps = [], [], []
    for src, frame in zip(sources, frames):
        sample = _sample(frame, src)
        sample = sample.drop(CORRUPT) if CORRUPT in sample.columns else sample
        names = sample.columns
        if not any(n.strip().lstrip("\ufeff").strip() for n in names):
            raise InputDataError(f"{src.name}: the file is empty (no header, no rows)")
        colmaps.append(resolve_columns(names, inp.columns.__dict__, src.name))
        schemas.append(sample.schema)
        samples.append(sample)
    estimates = [_estimated_rows(s) for s in sources]
    rows = sum(e for e in estimates if e is not None) if None not in estimates else REPEAT_COUNT_MAX_ROWS + 1
    mark = marks_identical(inp, count_identical, rows)
    plans = [parse_plan(s.select(pl.col(c.date).alias("date"), pl.col(c.amount).alias("amount")), sch, c, inp,
                        mark=mark, drop_repeats=False, blank_rows=src.kind == "csv")
             for s, sch, c, src in zip(samples, schemas, colmaps, sources)]
    return _Run(spark, sources, frames, schemas, colmaps, plans, inp, mark)


def _check_passes(run: _Run, cfg: Config, aggregate: Aggregate | None) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Stages 1 and 2: (the check counts, the per-customer table when ``aggregate``), read
    again with widened plans when the sampled ones left dates or amounts unparsed that
    another configured format parses (:func:`segcli.loading.check_passes`)."""
    inp = cfg.input
    agg = _Aggregate(inp.dedupe, run.mark and not inp.dedupe, True, aggregate, analysed_rows(cfg.analysis.as_of, cfg))
    groups, features = run.aggregate(agg, keyed=inp.dedupe)
    assert groups is not None
    widened = list(run.plans)
    for i in plans_to_widen(groups, run.plans, inp):
        found = run.collect(run.parsed("hits", only=i))
        widened[i] = widen_plan(run.plans[i], {c: bool(found[c].any()) for c in found.columns}, inp)
    if widened != run.plans:
        run.plans = widened
        groups, features = run.aggregate(agg, keyed=inp.dedupe)
        assert groups is not None
    return groups, features


def _report_problems(run: _Run, src_stats: pl.DataFrame, cur: pl.DataFrame, cfg: Config,
                     ) -> tuple[pl.DataFrame | None, list[RunWarning]]:
    """(the rejects, the warnings) of the check counts, or the error they show, in the order
    of :func:`segcli.loading.report_problems`; bad rows are read by Spark, by file."""
    sources = run.sources
    for row in src_stats.iter_rows(named=True):
        if sources[row["source"]].kind == "csv" and row["tail_null"]:
            _check_ragged(run, row["source"])
    check_not_empty(int(src_stats["rows"].sum()), sources, header_file=len(sources) == 1 and sources[0].kind == "csv")
    rejects, warnings = invalid_rows(
        [_shown(s) for s in sources], run.colmaps, src_stats, cfg,
        examples=lambda n: _with_line(run.collect(run.parsed("invalid").limit(n)), sources),
        every=lambda: _with_line(run.collect(run.parsed("invalid")), sources))
    check_currencies(cur, run.where, cfg.input, lambda: run.collect(
        run.parsed("currency").distinct().orderBy("currency").limit(10))["currency"].to_list())
    return rejects, warnings


def _shown(src: SparkSource) -> Source:
    """A :class:`Source` for the polars engine's messages (``name``, ``row_word``)."""
    return src.local or Source(src.name, Path(src.read), "csv" if src.kind == "csv" else "parquet", src.size or 0)


def _with_line(bad: pl.DataFrame, sources: list[SparkSource]) -> pl.DataFrame:
    """Bad rows as the polars engine's reports take them: Spark has no line numbers, and a
    row of a table that is not a set of files is named by the table."""
    names = pl.col("source").replace_strict({i: s.name for i, s in enumerate(sources)}, return_dtype=pl.String)
    file = pl.col("file").str.replace(r"^file://", "")
    return bad.with_columns(pl.col("source").cast(pl.UInt16), line=pl.lit(None, pl.UInt64),
                            file=pl.when(file.fill_null("") == "").then(names).otherwise(file))


def _check_ragged(run: _Run, i: int) -> None:
    """Records with another number of fields than the header are an error (exit 65), as on
    the polars engine: a local file is read again the same way (line numbers included);
    elsewhere Spark's record text and file are shown."""
    src = run.sources[i]
    if src.local is not None:
        check_ragged(src.local, len(run.schemas[i]))
        return
    from pyspark.sql import functions as F

    frame = run.frames[i]
    if CORRUPT not in frame.columns:
        return
    bad = frame.select("*", F.input_file_name().alias(FILE)).where(F.col(CORRUPT).isNotNull())
    count = bad.count()
    if not count:
        return
    rows = run.collect(bad.select(FILE, CORRUPT).limit(5))
    width = len(run.schemas[i])
    raise InputDataError(
        f"{src.name}: ragged rows: {count} row{'s have' if count > 1 else ' has'} another number of fields than "
        f"the header ({width})",
        [*(f"{f}: {t[:80]!r}" for f, t in zip(rows[FILE], rows[CORRUPT])),
         "line numbers are not available on Spark",
         "fix the rows, or quote the fields that hold the separator or a line break"])
