"""PostgreSQL in and out (SPEC §8): a table or query as an input, a table as an output.

Reading: the query's Arrow record batches (ADBC's PostgreSQL driver, binary COPY, a few MB
per batch) are spooled into a Parquet file in the run's scratch folder, so the rest of the
pipeline (checks, row numbers, the bucket spill of large inputs) reads it as it reads any
Parquet file. A known as-of date and window are pushed into the SQL.

Writing: the rows are bulk-loaded (COPY) into a staging table and swapped into place in the
same transaction, so a reader sees the old table or the new one, never a half-loaded one;
the run record goes to ``<table>_runs`` in that transaction too.

Passwords: the command line replaces each URI by its masked form (``user:***@``) and keeps
the real one here, so every message, progress line and run record shows the masked form;
driver messages are scrubbed of the password before they are shown.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import polars as pl

from segcli.errors import ConfigError, InputDataError, InputMissingError, OutputError, SegcliError, UsageError

SCHEMES = ("postgresql://", "postgres://")
INSTALL = "pip install 'segcli[postgres]'"
MASK = "***"
QUERY_MARK = "query="  # fragment of an input URI holding a query instead of a table name
_REAL: dict[str, str] = {}  # masked URI -> the URI with its password (set by the command line)
_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_QUALIFIED = re.compile(rf"^\s*({_IDENT})(?:\s*\.\s*({_IDENT}))?\s*$")
PG_NAME_BYTES = 63  # PostgreSQL truncates longer identifiers
BATCH_BYTES = 16 << 20  # Arrow batch size asked of the driver: what reading holds in memory at once


def is_database(name: str) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URI."""
    return isinstance(name, str) and name.lower().startswith(SCHEMES)


# --------------------------------------------------------------------------- URIs and secrets


def _userinfo(netloc: str) -> tuple[str, str | None, str]:
    """(user part, password or None, host part) of a URI's authority."""
    if "@" not in netloc:
        return "", None, netloc
    info, host = netloc.rsplit("@", 1)
    user, sep, password = info.partition(":")
    return user, (password if sep else None), host


def mask(uri: str) -> str:
    """The URI with its password (in the authority or a ``password=`` parameter) as ``***``."""
    head, sep, fragment = uri.partition("#")
    scheme, rest = head.split("://", 1) if "://" in head else ("", head)
    netloc, slash, tail = rest.partition("/")
    user, password, host = _userinfo(netloc)
    if password is not None:
        netloc = f"{user}:{MASK}@{host}"
    tail = re.sub(r"(?i)((?:^|[?&])(?:ssl)?password=)[^&]*", rf"\g<1>{MASK}", tail)
    return f"{scheme}://{netloc}{slash}{tail}{sep}{fragment}"


def _secrets(uri: str) -> list[str]:
    """Every form of the URI's passwords that could show up in a driver message."""
    head = uri.partition("#")[0]
    rest = head.split("://", 1)[-1]
    found: list[str] = []
    password = _userinfo(rest.partition("/")[0])[1]
    if password:
        found += [password, unquote(password)]
    query = rest.partition("?")[2]
    found += [v for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() in ("password", "sslpassword") and v]
    env = os.environ.get("PGPASSWORD")
    if env:
        found.append(env)
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, uri: str) -> str:
    """A driver message made safe to show: passwords replaced, URIs masked."""
    for secret in _secrets(uri):
        text = text.replace(secret, MASK)
    return re.sub(r"(?i)(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", rf"\g<1>{MASK}@", text)


def _driver_cause(exc: BaseException, uri: str) -> tuple[str, list[str]]:
    """(one line naming the cause, further lines) from an ADBC/libpq error, scrubbed."""
    text = scrub(str(exc), uri)
    text = text.split("\nQuery was:", 1)[0].split(". SQLSTATE:", 1)[0]
    text = re.sub(r"^[A-Z_]+: (\[libpq\] )?", "", text.strip())
    text = re.sub(r"^(Failed to (connect|prepare query|execute query|execute COPY|begin copy)[^:]*: )", "", text)
    text = re.sub(r"^(ERROR|FATAL):\s+", "", text)
    # the server's LINE/caret pointer shows segcli's own wrapping SQL, its position lost: dropped
    lines = [ln.strip() for ln in text.splitlines()
             if ln.strip() and not ln.lstrip().startswith("LINE ") and ln.strip() != "^"]
    return (lines[0] if lines else type(exc).__name__), lines[1:]


def remember(uri: str) -> str:
    """The masked form of ``uri``, remembered so that it can be opened by that name."""
    shown = mask(uri)
    if shown != uri:
        _REAL[shown] = uri
    return shown


def _real(name: str) -> str:
    return _REAL.get(name, name)


@dataclass(frozen=True)
class Location:
    """A parsed database input or output: where to connect and what to read or write."""

    uri: str  # what libpq gets: the real URI without the fragment
    shown: str  # the masked URI without the fragment, for messages and records
    schema: str | None  # None: the connection's current schema
    table: str | None
    query: str | None

    @property
    def name(self) -> str:
        """How the source or target is named to the user (masked)."""
        if self.query is not None:
            return f"{self.shown}#{QUERY_MARK}{' '.join(self.query.split())}"
        return f"{self.shown}#{self.qualified_shown}"

    @property
    def qualified_shown(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else str(self.table)


def _unquote_ident(part: str) -> str:
    """PostgreSQL's folding: a quoted name as written, an unquoted one in lower case."""
    if part.startswith('"'):
        return part[1:-1].replace('""', '"')
    return part.lower()


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def parse_table(text: str, *, what: str) -> tuple[str | None, str]:
    """``schema.table`` or ``table`` (SQL identifiers; quoted ones keep their case)."""
    m = _QUALIFIED.match(text)
    if not m:
        raise UsageError(f"{what} {text!r}: not a table name (schema.table, or table)",
                         ['names with other characters are written in double quotes: \'"My Schema"."Orders"\''])
    first, second = m.group(1), m.group(2)
    if second is None:
        return None, _unquote_ident(first)
    return _unquote_ident(first), _unquote_ident(second)


def locate(name: str, *, what: str = "input") -> Location:
    """Parse ``postgresql://...[#schema.table | #query=SQL]`` (a masked name is looked up)."""
    real = _real(name)
    head, _sep, fragment = real.partition("#")
    if not is_database(head):
        raise UsageError(f"{what} {mask(name)}: not a postgresql:// URI")
    try:
        urlsplit(head)
    except ValueError as exc:
        raise UsageError(f"{what} {mask(head)}: not a valid URI: {scrub(str(exc), head)}") from None
    shown = mask(head)
    if fragment.startswith(QUERY_MARK):
        query = fragment[len(QUERY_MARK):].strip().rstrip(";").strip()
        if not query:
            raise UsageError(f"{what} {shown}: empty --query")
        return Location(head, shown, None, None, query)
    if not fragment:
        return Location(head, shown, None, None, None)
    schema, table = parse_table(unquote(fragment), what=f"{what} {shown}: table")
    return Location(head, shown, schema, table, None)


def command_line_inputs(inputs: list[str], *, table: str | None, query: str | None) -> list[str]:
    """The command line's inputs with ``--table``/``--query`` attached to each database URI
    and passwords masked (the real URIs are remembered here).

    Raises :class:`UsageError` when a database input has no table or query, or when
    ``--table``/``--query`` are given without one.
    """
    if table is not None and query is not None:
        raise UsageError("--table and --query both name what to read: choose one")
    databases = [i for i in inputs if is_database(i)]
    if (table is not None or query is not None) and not databases:
        raise UsageError(f"{'--table' if table is not None else '--query'} needs a postgresql:// input")
    out = []
    for item in inputs:
        if not is_database(item):
            out.append(item)
            continue
        head, _sep, fragment = item.partition("#")
        if fragment and (table is not None or query is not None):
            raise UsageError(f"{mask(head)}: the URI names a table (#{fragment}) and so does "
                             f"{'--table' if table is not None else '--query'}: choose one")
        if table is not None:
            parse_table(table, what="--table")
            fragment = table
        elif query is not None:
            if not query.strip():
                raise UsageError("--query is empty")
            fragment = QUERY_MARK + query
        if not fragment:
            raise UsageError(f"{mask(head)}: name what to read with --table schema.table or --query \"SELECT ...\"")
        out.append(remember(f"{head}#{fragment}"))
    return out


def command_line_output(output: str | None) -> str | None:
    """A database output with its password masked (the real URI remembered here)."""
    return remember(output) if output is not None and is_database(output) else output


# --------------------------------------------------------------------------- connections


def _dbapi() -> Any:
    try:
        import adbc_driver_postgresql.dbapi as dbapi
    except ImportError:
        raise ConfigError("PostgreSQL support is not installed (the optional extra segcli[postgres])",
                          [f"install it: {INSTALL}"]) from None
    return dbapi


@contextmanager
def connection(loc: Location, error: type[SegcliError], *, autocommit: bool = False) -> Iterator[Any]:
    """An ADBC connection; failing to connect is ``error`` (66 reading, 73 writing), one
    line with libpq's cause and the password masked."""
    dbapi = _dbapi()
    try:
        conn = dbapi.connect(loc.uri, autocommit=autocommit)
    except Exception as exc:  # noqa: BLE001 - ADBC raises its own hierarchy; all are "cannot connect"
        cause, more = _driver_cause(exc, loc.uri)
        raise error(f"{loc.shown}: cannot connect: {cause}", [*more, *_connect_hints(cause)]) from None
    try:
        yield conn
    finally:
        # closing a broken connection must not hide the first error
        with contextlib.suppress(Exception):
            conn.close()


def _connect_hints(cause: str) -> list[str]:
    low = cause.lower()
    if "password" in low or "authentication" in low:
        return ["check the user and password: in the URI, PGPASSWORD, or ~/.pgpass (PGPASSFILE)"]
    if "refused" in low or "could not translate" in low or "timeout" in low:
        return ["check host and port (in the URI, or PGHOST/PGPORT) and that the server is running"]
    return []


def _fail(error: type[SegcliError], what: str, exc: BaseException, loc: Location) -> SegcliError:
    cause, more = _driver_cause(exc, loc.uri)
    return error(f"{what}: {cause}", more)


# --------------------------------------------------------------------------- reading


def _select(loc: Location) -> str:
    if loc.query is not None:
        return loc.query
    table = quote_ident(str(loc.table))
    target = table if loc.schema is None else f"{quote_ident(loc.schema)}.{table}"
    return f"SELECT * FROM {target}"


def _window(config: Any, date_col: str, arrow_type: Any) -> tuple[str, str, str] | None:
    """(keep, after, before): SQL conditions on the date column for the rows kept, the rows
    after the as-of date, and the rows before the window; None when nothing can be pushed
    (no explicit as-of date, or the column is not a real date or timestamp)."""
    import pyarrow as pa

    analysis = getattr(config, "analysis", None)
    as_of = getattr(analysis, "as_of", None)
    if as_of is None:
        return None
    col = f"s.{quote_ident(date_col)}"
    hi = as_of + dt.timedelta(days=1)  # dates are local dates: date <= as_of is ts < as_of + 1 day
    days = int(getattr(analysis, "window_days", 0) or 0)
    lo = as_of - dt.timedelta(days=days) + dt.timedelta(days=1) if days else None
    if pa.types.is_date(arrow_type):
        def literal(d: dt.date) -> str:
            return f"DATE '{d.isoformat()}'"
    elif pa.types.is_timestamp(arrow_type) and arrow_type.tz is None:
        def literal(d: dt.date) -> str:
            return f"TIMESTAMP '{d.isoformat()} 00:00:00'"
    elif pa.types.is_timestamp(arrow_type):
        tz = str(config.input.timezone).replace("'", "''")

        def literal(d: dt.date) -> str:  # local midnight in input.timezone (index-friendly)
            return f"(TIMESTAMP '{d.isoformat()} 00:00:00' AT TIME ZONE '{tz}')"
    else:
        return None
    after = f"{col} >= {literal(hi)}"
    before = f"{col} < {literal(lo)}" if lo else "FALSE"
    keep = f"{col} IS NULL OR ({col} < {literal(hi)}" + (f" AND {col} >= {literal(lo)})" if lo else ")")
    return keep, after, before


@dataclass(frozen=True)
class Pushdown:
    """What the date filter sent to the server left there (counted with one aggregate)."""

    where: str
    rows: int  # every row left on the server
    after_as_of: int  # the valid ones dated after the as-of date
    outside_window: int  # the valid ones before the window


def _pushdown(cur: Any, base: str, schema: Any, config: Any, name: str) -> Pushdown | None:
    """The WHERE clause for a known as-of date and window, and what it leaves out."""
    from segcli.parse import resolve_columns

    names = list(schema.names)
    cols = resolve_columns(names, dict(config.input.columns.__dict__), name)
    window = _window(config, cols.date, schema.field(cols.date).type)
    if window is None:
        return None
    keep, after, before = window
    # "valid" as the checks count it: an id and an amount (the date is known to be there)
    cid, amount = f"s.{quote_ident(cols.customer_id)}", f"s.{quote_ident(cols.amount)}"
    text_id = schema.field(cols.customer_id).type in _text_types()
    valid = f"{cid} IS NOT NULL AND {amount} IS NOT NULL" + (f" AND btrim({cid}::text) <> ''" if text_id else "")
    cur.execute(f"SELECT count(*) FILTER (WHERE NOT ({keep})), count(*) FILTER (WHERE {valid} AND {after}), "
                f"count(*) FILTER (WHERE {valid} AND {before}) FROM ({base}\n) AS s")
    rows, late, early = cur.fetchone()
    return Pushdown(keep, int(rows), int(late), int(early))


def _text_types() -> tuple[Any, ...]:
    import pyarrow as pa

    return (pa.string(), pa.large_string())


def _plain_column(array: Any, field: Any) -> tuple[Any, Any]:
    """An Arrow column as Polars reads it typed: PostgreSQL ``numeric(p, s)`` (sent as text)
    becomes ``decimal128(p, s)`` (exact), other extension types their storage."""
    import pyarrow as pa
    import pyarrow.compute as pc

    typ = field.type
    if not isinstance(typ, pa.BaseExtensionType):
        return array, field.remove_metadata()
    storage = array.storage if isinstance(array, pa.ExtensionArray) else array.cast(typ.storage_type)
    if getattr(typ, "type_name", "") == "numeric":
        typmod = int((field.metadata or {}).get(b"POSTGRESQL:typmod", b"-1"))
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
        if typmod >= 4 and 0 < precision <= 38:
            try:
                target = pa.decimal128(precision, scale)
                return pc.cast(storage, target), pa.field(field.name, target)
            except pa.ArrowInvalid:
                pass  # NaN or Infinity: left as text, reported as unparsable amounts with their rows
    if isinstance(storage.type, pa.FixedSizeBinaryType) and getattr(typ, "extension_name", "") == "arrow.uuid":
        hexed = pl.from_arrow(storage.cast(pa.binary())).bin.encode("hex")  # type: ignore[union-attr]
        parts = [hexed.str.slice(start, length) for start, length in ((0, 8), (8, 4), (12, 4), (16, 4), (20, 12))]
        text = pl.select(pl.concat_str(parts, separator="-")).to_series().to_arrow().cast(pa.string())
        return text, pa.field(field.name, pa.string())  # a uuid id as the text PostgreSQL prints
    return storage, pa.field(field.name, storage.type)


def _spool(reader: Any, path: Path, name: str) -> tuple[int, int]:
    """Write the record batches to a Parquet file one at a time (bounded memory);
    (rows, Arrow bytes) read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    rows = size = 0
    try:
        for batch in reader:
            pairs = [_plain_column(batch.column(i), batch.schema.field(i)) for i in range(batch.num_columns)]
            plain = pa.RecordBatch.from_arrays([a for a, _ in pairs], schema=pa.schema([f for _, f in pairs]))
            if writer is None:
                writer = pq.ParquetWriter(path, plain.schema, compression="lz4")
            elif plain.schema != writer.schema:
                # a numeric column typed as decimal in the first batch holds NaN or Infinity here
                bad = [f.name for f, g in zip(plain.schema, writer.schema) if f.type != g.type]
                raise InputDataError(f"{name}: column '{bad[0]}': a numeric value that is not a number "
                                     f"(NaN or Infinity) after row {rows}",
                                     ["leave such rows out with --query \"SELECT ... WHERE col <> 'NaN'\""])
            writer.write_batch(plain)
            rows += plain.num_rows
            size += batch.nbytes
        if writer is None:  # no batch at all: an empty file with the query's columns
            fields = [_plain_column(pa.array([], f.type.storage_type if isinstance(f.type, pa.BaseExtensionType)
                                             else f.type), f)[1]
                      for f in reader.schema]
            writer = pq.ParquetWriter(path, pa.schema(fields), compression="lz4")
    finally:
        if writer is not None:
            writer.close()
    return rows, size


@dataclass(frozen=True)
class Spool:
    """A table or query read into a Parquet file (:func:`open_postgres`)."""

    name: str  # the source as shown: the masked URI and the table or query
    path: Path
    size: int  # bytes received from the server
    pushed: Pushdown  # what the pushed-down date filter left on the server


def open_postgres(name: str, folder: Path, config: Any = None) -> Spool:
    """Read a table or query into a Parquet spool in ``folder`` (the run's scratch folder),
    rows numbered in the order the server sent them; :func:`segcli.io.open_source` makes it
    a source of kind ``postgres``.

    With an explicit as-of date (``config.analysis.as_of``) and a date column of a date or
    timestamp type, only the rows the analysis keeps are sent (plus those with a null date,
    which the checks report); the rows left on the server are counted on the server.

    Raises :class:`InputMissingError` (66) when the server cannot be reached, the login
    fails, or the table or query fails; :class:`ConfigError` (78) without the driver.
    """
    loc = locate(name)
    if loc.table is None and loc.query is None:
        raise UsageError(f"{loc.shown}: name what to read with --table schema.table or --query \"SELECT ...\"")
    base = _select(loc)
    path = folder / f"postgres-{len(os.listdir(folder))}.parquet"
    with connection(loc, InputMissingError) as conn, conn.cursor() as cur:
        try:
            # the newline ends a trailing -- comment of a --query
            schema = cur.adbc_execute_schema(f"SELECT * FROM ({base}\n) AS s")
        except Exception as exc:  # noqa: BLE001 - ADBC's error hierarchy: a missing table, a bad query
            raise _fail(InputMissingError, f"cannot read {loc.name}", exc, loc) from None
        try:
            pushed = _pushdown(cur, base, schema, config, loc.name) if config is not None else None
            sql = f"SELECT * FROM ({base}\n) AS s" + (f" WHERE {pushed.where}" if pushed else "")
            if pushed is None and loc.table is not None:
                sql = base
            cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_BYTES)})
            cur.execute(sql)
            _rows, size = _spool(cur.fetch_record_batch(), path, loc.name)
        except SegcliError:
            raise
        except OSError as exc:
            raise SegcliError(f"cannot write temporary files to {folder}: {exc.strerror or exc}") from None
        except Exception as exc:  # noqa: BLE001
            raise _fail(InputMissingError, f"cannot read {loc.name}", exc, loc) from None
    return Spool(loc.name, path, size, pushed or Pushdown("", 0, 0, 0))


# --------------------------------------------------------------------------- writing


def _target(out: str) -> Location:
    loc = locate(out, what="output")
    if loc.query is not None or loc.table is None:
        raise UsageError(f"output {loc.shown}: name the table to write after '#': {loc.shown}#schema.table")
    return loc


def check_sink(out: str, inputs: list[str]) -> None:
    """Before the work: the output is a table name, not one of the inputs, the driver is
    installed (78) and the server takes the login (73): a cron job fails in a second, not
    after the computation."""
    loc = _target(out)
    for item in inputs:
        if is_database(item):
            src = locate(item)
            if (src.table is not None and src.shown == loc.shown and src.table == loc.table
                    and (src.schema or "public") == (loc.schema or "public")):
                raise UsageError(f"output {loc.name} is also an input: refusing to overwrite an input")
    with connection(loc, OutputError, autocommit=True):
        pass


PG_TYPES = {
    pl.String: "text", pl.Categorical: "text", pl.Enum: "text", pl.Null: "text",
    pl.Int8: "bigint", pl.Int16: "bigint", pl.Int32: "bigint", pl.Int64: "bigint",
    pl.UInt8: "bigint", pl.UInt16: "bigint", pl.UInt32: "bigint", pl.UInt64: "bigint",
    pl.Float32: "double precision", pl.Float64: "double precision",
    pl.Date: "date", pl.Boolean: "boolean",
}


def column_type(name: str, dtype: pl.DataType) -> str:
    """The SQL type of an output column (SPEC §5: text, bigint, double precision, date,
    boolean; money as numeric(38, scale) with ``output.money = "decimal"``)."""
    if isinstance(dtype, pl.Decimal):
        return f"numeric(38, {dtype.scale or 0})"
    if isinstance(dtype, pl.Datetime):
        return "timestamptz" if dtype.time_zone else "timestamp"
    base = dtype.base_type()
    if base in PG_TYPES:
        return PG_TYPES[base]
    raise OutputError(f"column {name!r} of type {dtype} has no PostgreSQL column type here")


def _arrow(df: pl.DataFrame) -> Any:
    """The frame as Arrow types the driver's COPY takes (plain strings, int64, float64)."""
    import pyarrow as pa

    table = df.to_arrow()
    fields = []
    for field, dtype in zip(table.schema, df.dtypes):
        sql = column_type(field.name, dtype)
        target = {"text": pa.string(), "bigint": pa.int64(), "double precision": pa.float64()}.get(sql, field.type)
        fields.append(pa.field(field.name, target))
    return table.cast(pa.schema(fields)) if table.schema != pa.schema(fields) else table


def _name(base: str, suffix: str) -> str:
    """``base + suffix`` within PostgreSQL's 63-byte names (``base`` shortened)."""
    room = PG_NAME_BYTES - len(suffix.encode())
    cut = base.encode()[:room].decode(errors="ignore")
    return cut + suffix


def write_postgres(df: pl.DataFrame, out: str, *, meta: dict[str, Any] | None, mode: str = "replace",
                   keyed: bool = True) -> list[str]:
    """Write ``df`` to the table named in ``out`` atomically; the run record to ``<table>_runs``.

    ``replace``: in one transaction, the old rows are deleted and the new ones COPied in
    (readers see the old rows until the commit: MVCC, no lock they wait on); a table of
    another shape is replaced by a new one, primary key ``customer_id``, loaded beside it
    and swapped in (its grants carried over). ``append``: the
    table keeps every as-of date, primary key ``(as_of, customer_id)``; the rows of this
    as-of date are replaced in one transaction. ``keyed=False``: no primary key (rejected
    rows); ``meta=None``: no run record. Returns the name written (masked).

    Raises :class:`OutputError` (73) for a server that cannot be reached, a failed login,
    or a load that fails (e.g. a duplicate key): the old table is then left as it was.
    """
    loc = _target(out)
    if mode not in ("replace", "append"):
        raise UsageError(f"--mode {mode!r}: replace or append")
    if mode == "append" and "as_of" not in df.columns:
        if not meta or not meta.get("as_of"):
            raise OutputError(f"{loc.name}: --mode append needs an as_of date (none in the output or its record)")
        df = df.select(pl.lit(dt.date.fromisoformat(str(meta["as_of"]))).alias("as_of"), pl.all())
    columns = [(c, column_type(c, t)) for c, t in zip(df.columns, df.dtypes)]
    data = _arrow(df)
    with connection(loc, OutputError) as conn, conn.cursor() as cur:
        try:
            cur.execute("SELECT current_schema()")
            schema = loc.schema or cur.fetchone()[0]
            if schema is None:
                raise OutputError(f"{loc.name}: no schema to write to (name it: #schema.{loc.table})")
            table = str(loc.table)
            if mode == "replace":
                _replace(cur, schema, table, columns, data, keyed=keyed)
            else:
                _append(cur, schema, table, columns, data, loc)
            if meta is not None:
                _record(cur, schema, table, meta, mode, df.height)
            conn.commit()
        except SegcliError:
            _rollback(conn)
            raise
        except Exception as exc:  # noqa: BLE001 - ADBC's hierarchy: constraint, permission, lost server
            _rollback(conn)
            raise _fail(OutputError, f"cannot write {loc.name}", exc, loc) from None
    return [loc.name]


def _rollback(conn: Any) -> None:
    with contextlib.suppress(Exception):  # the connection may be gone; the server rolls back then
        conn.rollback()


def _qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def _exists(cur: Any, schema: str, table: str) -> bool:
    cur.execute("SELECT to_regclass($1) IS NOT NULL", parameters=(_qualified(schema, table),))
    return bool(cur.fetchone()[0])


def _shape(cur: Any, schema: str, table: str) -> list[tuple[str, str]] | None:
    """[(column, SQL type)] of an existing table, None when there is none."""
    cur.execute("SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                parameters=(_qualified(schema, table),))
    found = [(str(n), str(t).replace(" ", "")) for n, t in cur.fetchall()]
    return found or None


def _replace(cur: Any, schema: str, table: str, columns: list[tuple[str, str]], data: Any, *, keyed: bool) -> None:
    """Replace the table's rows in the open transaction.

    Same columns and types: DELETE and COPY into the table itself. A swap of tables
    (DROP, RENAME) would make a reader that waited for the swap's lock read the new table
    with the snapshot it took before waiting: an empty table (seen with the driver's own
    COPY-based reads). A table of another shape can only be swapped: COPY into a staging
    table beside it, add the key, carry the grants over, drop the old, rename.
    """
    target = _qualified(schema, table)
    if _shape(cur, schema, table) == [(c, t.replace(" ", "")) for c, t in columns]:
        cur.execute(f"DELETE FROM {target}")  # not TRUNCATE: that is not MVCC-safe for readers
        cur.adbc_ingest(table, data, mode="append", db_schema_name=schema)
        return
    staging = _name(table, f"__segcli_new_{os.getpid()}")
    ddl = ", ".join(f"{quote_ident(c)} {t}" for c, t in columns)
    cur.execute(f"CREATE TABLE {_qualified(schema, staging)} ({ddl})")
    cur.adbc_ingest(staging, data, mode="append", db_schema_name=schema)
    key = _name(staging, "_pkey")
    keyed = keyed and "customer_id" in dict(columns)
    if keyed:
        cur.execute(f"ALTER TABLE {_qualified(schema, staging)} ADD CONSTRAINT {quote_ident(key)} "
                    "PRIMARY KEY (customer_id)")
    if _exists(cur, schema, table):
        for grant in _grants(cur, schema, table):
            cur.execute(grant.format(table=_qualified(schema, staging)))
        cur.execute(f"DROP TABLE {target}")  # no CASCADE: a view on the table stops the swap (exit 73)
    cur.execute(f"ALTER TABLE {_qualified(schema, staging)} RENAME TO {quote_ident(table)}")
    if keyed:
        cur.execute(f"ALTER INDEX {_qualified(schema, key)} RENAME TO {quote_ident(_name(table, '_pkey'))}")


def _grants(cur: Any, schema: str, table: str) -> list[str]:
    """GRANT statements giving the new table the old one's privileges (owner's own aside)."""
    cur.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, a.privilege_type, "
        "a.is_grantable FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a "
        "LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE c.oid = to_regclass($1) AND a.grantee <> c.relowner",
        parameters=(_qualified(schema, table),))
    return [f"GRANT {priv} ON {{table}} TO {who}" + (" WITH GRANT OPTION" if grantable else "")
            for who, priv, grantable in cur.fetchall()]


def _append(cur: Any, schema: str, table: str, columns: list[tuple[str, str]], data: Any, loc: Location) -> None:
    """Replace this as-of date's rows in a table keyed by (as_of, customer_id)."""
    target = _qualified(schema, table)
    if not _exists(cur, schema, table):
        ddl = ", ".join(f"{quote_ident(c)} {t}" for c, t in columns)
        key = ", ".join(quote_ident(c) for c in ("as_of", "customer_id") if c in dict(columns))
        cur.execute(f"CREATE TABLE {target} ({ddl}, CONSTRAINT {quote_ident(_name(table, '_pkey'))} "
                    f"PRIMARY KEY ({key}))")
    else:
        have = _shape(cur, schema, table) or []
        want = [(c, t.replace(" ", "")) for c, t in columns]
        if have != want:
            names = [c for c, _ in have]
            missing = [c for c, _ in want if c not in names]
            extra = [c for c in names if c not in dict(want)]
            retyped = [f"{c} is {dict(have)[c]}, the output's {t}"
                       for c, t in want if c in names and dict(have)[c] != t]
            raise OutputError(f"{loc.name}: the table's columns differ from this output's",
                              [*(["not in the table: " + ", ".join(missing)] if missing else []),
                               *(["only in the table: " + ", ".join(extra)] if extra else []), *retyped,
                               *([] if missing or extra or retyped else ["the same columns in another order"]),
                               "append to a table written by the same command and settings, or --mode replace"])
    dates = data.column("as_of").unique().to_pylist()
    for day in dates:
        cur.execute(f"DELETE FROM {target} WHERE as_of = $1::date", parameters=(day.isoformat(),))
    cur.adbc_ingest(table, data, mode="append", db_schema_name=schema)


def _record(cur: Any, schema: str, table: str, meta: dict[str, Any] | None, mode: str, rows: int) -> None:
    """The run record as one row of ``<table>_runs`` (as_of, created_at, mode, rows, record)."""
    runs = _qualified(schema, _name(table, "_runs"))
    cur.execute(f"CREATE TABLE IF NOT EXISTS {runs} (as_of date, created_at timestamptz NOT NULL DEFAULT now(), "
                "mode text NOT NULL, rows bigint NOT NULL, record jsonb)")
    record = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str) if meta is not None else None
    as_of = (meta or {}).get("as_of")
    created = (meta or {}).get("created_at")
    cur.execute(f"INSERT INTO {runs} (as_of, created_at, mode, rows, record) "
                "VALUES ($1::date, coalesce($2::timestamptz, now()), $3, $4, $5::jsonb)",
                parameters=(as_of, created, mode, rows, record))



def write_rejects_table(rejects: pl.DataFrame | None, out: str) -> str | None:
    """The rows ``--max-invalid`` let through, as the table ``<table>_rejects`` beside the
    output table (replaced each run, dropped when there are none, as the rejects file
    beside a file output is). Returns its name, or None."""
    loc = _target(out)
    rejects_out = f"{_real(out).partition('#')[0]}#{quote_ident(loc.schema) + '.' if loc.schema else ''}" \
                  f"{quote_ident(_name(str(loc.table), '_rejects'))}"
    if rejects is not None:
        return write_postgres(rejects, rejects_out, meta=None, keyed=False)[0]
    target = _target(rejects_out)
    with connection(target, OutputError, autocommit=True) as conn, conn.cursor() as cur:
        name = _qualified(target.schema, str(target.table)) if target.schema else quote_ident(str(target.table))
        try:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
        except Exception as exc:  # noqa: BLE001
            raise _fail(OutputError, f"cannot drop {target.name}", exc, target) from None
    return None
