"""Input and output at the edges: find and scan input files, write outputs atomically.

No business rules here: reading turns files into LazyFrames of raw columns, writing turns
frames into files that appear complete or not at all.
"""

from __future__ import annotations

import atexit
import base64
import codecs
import contextlib
import csv
import glob
import io
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import polars.selectors as cs

from segcli.errors import InputDataError, InputMissingError, OutputError, UsageError

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
EXCEL_SUFFIXES = {".xlsx", ".xls", ".xlsm"}
SNIFF_BYTES = 1 << 16
CHUNK_BYTES = 1 << 22  # what streaming passes over a file hold in memory at once
STDIN = "-"
_TEMP_DIR: tempfile.TemporaryDirectory[str] | None = None
# Files segcli wrote itself for an input that is no file (a DataFrame given to the Python
# API): path -> how messages and run records name the input
_DISPLAY_NAMES: dict[str, str] = {}


def scratch_dir() -> Path:
    """A private temporary folder removed at exit (stdin copies, transcoded CSV).

    Its name carries the process id, so that folders left by a killed run (a transcoded
    copy can be as large as the input) are removed by the next run.
    """
    global _TEMP_DIR
    if _TEMP_DIR is None:
        for stale in Path(tempfile.gettempdir()).glob("segcli-*-*"):
            pid = stale.name.split("-")[1]
            if stale.is_dir() and pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        _TEMP_DIR = tempfile.TemporaryDirectory(prefix=f"segcli-{os.getpid()}-")
        atexit.register(_TEMP_DIR.cleanup)
    return Path(_TEMP_DIR.name)


@dataclass(frozen=True)
class Source:
    """One input file: what the user named, where its bytes are, and how to parse it."""

    name: str  # as shown to the user
    path: Path  # file to scan (a transcoded copy for non-UTF-8 CSV or stdin)
    kind: str  # "csv", "parquet" or "excel"
    size: int
    separator: str = ","
    encoding: str = "utf-8"
    first_line: int = 2  # line number of the first data row (CSV), sheet row (Excel) or 1 (Parquet)
    sheet: str = ""  # Excel: sheet name, or its 1-based position as digits; "" = the first sheet
    header_row: int = 0  # Excel: 1-based row of the header; 0 = the first non-empty row

    @property
    def row_word(self) -> str:
        """How a position is named in messages: CSV lines, spreadsheet or Parquet rows."""
        return "line" if self.kind == "csv" else "row"


def expand_inputs(inputs: list[str]) -> list[str]:
    """Expand directories and globs into a sorted list of files; missing inputs are exit 66."""
    files: list[str] = []
    for item in inputs:
        if item == STDIN:
            files.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower()
                           in CSV_SUFFIXES | PARQUET_SUFFIXES | EXCEL_SUFFIXES and not p.name.startswith("."))
            if not found:
                raise InputMissingError(f"directory {item} holds no CSV, Parquet or Excel files")
            files.extend(found)
        elif any(ch in item for ch in "*?["):
            found = sorted(p for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                raise InputMissingError(f"no input file matches {item}")
            files.extend(found)
        elif not path.exists():
            raise InputMissingError(f"input file not found: {item}")
        elif not os.access(path, os.R_OK):
            raise InputMissingError(f"input file not readable: {item}")
        else:
            files.append(item)
    if files.count(STDIN) > 1:
        raise UsageError("standard input ('-') can be read only once")
    return files


def detect_encoding(prefix: bytes) -> str:
    """BOM, then strict UTF-8 on the prefix, else GB18030 (a superset of GBK that has ¥).

    A UTF-16 BOM (Excel's "Unicode text" export) is honoured too.
    """
    if prefix.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if prefix.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(prefix, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "gb18030"


def _damaged_utf8(prefix: bytes) -> int | None:
    """Offset of the first bad byte when ``prefix`` is UTF-8 text with a few damaged bytes.

    GB18030 text read as UTF-8 fails on nearly every Chinese character; a UTF-8 export with
    one corrupted byte decodes almost entirely. Guessing GB18030 for the latter would turn
    every Chinese name into garbage without a word, so it is an error instead.
    """
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(prefix, final=False)
    bad = text.count("\ufffd")
    good = sum(1 for ch in text if ord(ch) > 0x7F) - bad
    if bad == 0 or good < 8 * bad:
        return None
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(prefix, final=False)
    except UnicodeDecodeError as exc:
        return exc.start
    return None


def _utf8_error(display: str, at: int, around: bytes) -> InputDataError:
    return InputDataError(
        f"{display}: bytes that are not valid UTF-8 at byte offset {at}",
        [f"bytes there: {around!r}",
         "the file is damaged there, or not UTF-8: if it is GBK/GB18030, pass --encoding gb18030"])


def sniff_separator(header: str, suffix: str) -> str:
    """Pick the delimiter from the header line: tab, semicolon or comma."""
    if suffix == ".tsv":
        return "\t"
    counts = {sep: header.count(sep) for sep in ("\t", ";", ",")}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] > 0 else ","


def _transcode(src: Path, encoding: str, display: str) -> Path:
    """Stream a non-UTF-8 file into a UTF-8 copy in the scratch folder (bounded memory).

    Polars reads only UTF-8; decoding chunk by chunk keeps memory at a few chunks whatever
    the file's size, and the copy is then scanned like any UTF-8 file.
    """
    out = scratch_dir() / f"utf8-{len(os.listdir(scratch_dir()))}.csv"
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    with src.open("rb") as fin, out.open("w", encoding="utf-8", newline="") as fout:
        while True:
            chunk = fin.read(CHUNK_BYTES)
            pending = decoder.getstate()[0]
            try:
                fout.write(decoder.decode(chunk, final=not chunk))
            except UnicodeDecodeError as exc:
                # the exception counts from the bytes held back from the previous chunk
                data = pending + chunk
                raise InputDataError(
                    f"{display}: bytes that are not valid {encoding} at byte offset {offset - len(pending) + exc.start}",
                    [f"bytes there: {data[exc.start:exc.start + 8]!r}",
                     "save the file as UTF-8, or name its encoding with --encoding"]) from None
            if not chunk:
                break
            offset += len(chunk)
    return out


def check_utf8(src: Source) -> InputDataError | None:
    """The error for the first invalid UTF-8 byte of a CSV source, if it has one.

    Streams the file (read only on the error path, or for files smaller than the sniffed
    prefix), so the message names a byte offset instead of Polars' bare complaint.
    """
    if src.kind != "csv":
        return None
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    with src.path.open("rb") as fin:
        while True:
            chunk = fin.read(CHUNK_BYTES)
            pending = decoder.getstate()[0]
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                if not chunk:
                    return InputDataError(
                        f"{src.name}: the file ends inside a multi-byte character (byte offset {offset - len(pending)})",
                        ["the file looks cut short: export it again"])
                # the exception counts from the bytes held back from the previous chunk
                data = pending + chunk
                return _utf8_error(src.name, offset - len(pending) + exc.start, data[max(exc.start - 8, 0):exc.start + 8])
            if not chunk:
                return None
            offset += len(chunk)


def name_input(path: str, display: str | None) -> None:
    """Name the input at ``path`` ``display`` in messages and records (``None``: forget it)."""
    if display is None:
        _DISPLAY_NAMES.pop(path, None)
    else:
        _DISPLAY_NAMES[path] = display


def display_name(name: str) -> str:
    """How messages name an input: as given, or as :func:`name_input` named it."""
    return _DISPLAY_NAMES.get(name, name)


def open_source(name: str, encoding: str = "auto", *, sheet: str = "", header_row: int = 0) -> Source:
    """Look at one input and decide how to scan it."""
    if name == STDIN:
        path = scratch_dir() / "stdin.csv"
        with path.open("wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out)
        display, suffix = "<stdin>", ".csv"
    else:
        path, display, suffix = Path(name), display_name(name), Path(name).suffix.lower()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputMissingError(f"{display}: cannot read: {exc.strerror or exc}") from None
    if suffix in PARQUET_SUFFIXES:
        return Source(display, path, "parquet", size, first_line=1)
    if suffix in EXCEL_SUFFIXES:
        return Source(display, path, "excel", size, first_line=(header_row or 1) + 1, sheet=sheet,
                      header_row=header_row)
    if size == 0:
        raise InputDataError(f"{display}: the file is empty (no header, no rows)")
    try:
        with path.open("rb") as fh:
            prefix = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise InputMissingError(f"{display}: cannot read: {exc.strerror or exc}") from None
    if prefix.startswith(b"PK\x03\x04"):
        raise InputDataError(f"{display}: this is a zip archive (an Excel workbook?), not CSV text",
                             ["give an Excel workbook its .xlsx name, or export the sheet as CSV"])
    enc = detect_encoding(prefix) if encoding == "auto" else encoding
    nul = prefix.find(b"\x00")
    if nul >= 0 and not enc.startswith("utf-16"):
        raise InputDataError(f"{display}: binary data (a NUL byte at byte offset {nul}), not CSV text",
                             ["export the data as CSV, Excel or Parquet"])
    if enc in ("gbk", "gb2312"):
        enc = "gb18030"  # GBK lacks characters such as ¥; GB18030 decodes every GBK file
    if enc == "utf-8" and prefix.startswith(codecs.BOM_UTF8):
        enc = "utf-8-sig"
    if encoding == "auto" and enc == "gb18030":
        at = _damaged_utf8(prefix)
        if at is not None:
            raise _utf8_error(display, at, prefix[max(at - 8, 0):at + 8])
    if enc in ("utf-8", "utf-8-sig"):
        src = Source(display, path, "csv", size, encoding=enc)
        if size <= SNIFF_BYTES:
            error = check_utf8(src)
            if error is not None:
                raise error
    else:
        path = _transcode(path, enc, display)
    text = prefix.decode(enc, errors="ignore")
    header = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    return Source(display, path, "csv", size, sniff_separator(header, suffix), enc)


def _excel_sheet(src: Source) -> dict[str, Any]:
    """``read_excel`` arguments naming the sheet: by name, else by 1-based position."""
    if not src.sheet:
        return {"sheet_id": 1}
    import fastexcel

    try:
        names = fastexcel.read_excel(src.path).sheet_names
    except Exception as exc:  # noqa: BLE001 - fastexcel has no common base class for a bad workbook
        raise InputMissingError(f"{src.name}: cannot read the workbook: {str(exc).splitlines()[0]}") from None
    if src.sheet in names:
        return {"sheet_name": src.sheet}
    if src.sheet.isdigit() and 1 <= int(src.sheet) <= len(names):
        return {"sheet_id": int(src.sheet)}
    raise InputMissingError(f"{src.name}: no sheet {src.sheet!r}", [f"sheets in the workbook: {', '.join(names)}"])


def scan_source(src: Source) -> pl.LazyFrame:
    """A LazyFrame of the file's raw columns (CSV and Excel: every column as text)."""
    try:
        if src.kind == "parquet":
            return pl.scan_parquet(src.path)
        if src.kind == "excel":
            # Empty rows are kept (and skipped later as blank) so that row numbers stay true.
            options = {"header_row": src.header_row - 1} if src.header_row else {}
            return pl.read_excel(src.path, **_excel_sheet(src), infer_schema_length=0, drop_empty_rows=False,
                                 read_options=options).lazy()
        return pl.scan_csv(src.path, separator=src.separator, infer_schema=False, raise_if_empty=True)
    except pl.exceptions.NoDataError:
        raise InputDataError(f"{src.name}: the file is empty (no header, no rows)") from None
    except InputMissingError:
        raise
    except Exception as exc:  # noqa: BLE001 - Excel engines raise their own exception types
        raise InputMissingError(f"{src.name}: cannot read: {str(exc).strip().splitlines()[0]}") from None


def read_columns(src: Source, lf: pl.LazyFrame) -> list[str]:
    try:
        names = lf.collect_schema().names()
    except pl.exceptions.NoDataError:
        raise InputDataError(f"{src.name}: the file is empty (no header, no rows)") from None
    except pl.exceptions.ComputeError as exc:
        if "utf-8" in str(exc).lower():
            raise check_utf8(src) or InputDataError(f"{src.name}: not valid UTF-8") from None
        raise InputDataError(f"{src.name}: cannot read: {str(exc).splitlines()[0]}") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputDataError(f"{src.name}: cannot read: {str(exc).splitlines()[0]}") from None
    if not any(n.strip().lstrip("\ufeff").strip() for n in names):
        raise InputDataError(f"{src.name}: the file is empty (no header, no rows)")
    return names


def _records(src: Source) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of every CSV record after the header, as Polars splits them.

    Python's csv module walks the file; used only on error paths, for the few rows reported.
    """
    with src.path.open(encoding="utf-8-sig", newline="", errors="replace") as fh:
        reader = csv.reader(fh, delimiter=src.separator)
        next(reader, None)
        start = reader.line_num + 1
        for row in reader:
            yield start, row
            start = reader.line_num + 1


def quote_problem(src: Source) -> str | None:
    """The first place where quotes break the CSV layout, described for a person.

    Polars stops at a quote inside an unquoted field, text after a closing quote, or a
    quoted field that never closes, with a message about chunks and dtypes. This walks the
    file (lines without quotes cost a substring test) on that error path only.
    """
    if src.kind != "csv":
        return None
    sep = src.separator
    state, opened = "start", 0  # start | plain | quoted | closed (just after a closing quote)
    with src.path.open(encoding="utf-8-sig", newline="", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if state != "quoted":
                if '"' not in line:
                    continue
                state = "start"
            for ch in line:
                if state == "quoted":
                    if ch == '"':
                        state = "closed"
                elif state == "closed":
                    if ch == '"':
                        state = "quoted"  # a doubled quote stands for one
                    elif ch == sep or ch in "\r\n":
                        state = "start"
                    else:
                        where = "a field" if opened == number else f"the field opened on line {opened}"
                        return f"line {number}: text after the closing quote of {where}: {line.rstrip()[:80]!r}"
                elif ch == '"':
                    if state != "start":
                        return (f"line {number}: a quote inside a field that does not start with one: "
                                f"{line.rstrip()[:80]!r}")
                    state, opened = "quoted", number
                elif ch == sep or ch in "\r\n":
                    state = "start"
                else:
                    state = "plain"
    if state == "quoted":
        return f"line {opened}: a quoted field is never closed (it runs to the end of the file)"
    return None


def header_width(src: Source) -> int:
    """Number of fields in a CSV source's header."""
    with src.path.open(encoding="utf-8-sig", newline="", errors="replace") as fh:
        return len(next(csv.reader(fh, delimiter=src.separator), []))


def ragged_lines(src: Source, limit: int = 5) -> list[str]:
    """The first few records whose field count differs from the header's, with their text.

    Blank lines are not ragged: they are skipped like Polars' all-null rows. Walks the file
    with Python's csv module up to the last example: used only on the error path.
    """
    if src.kind != "csv":
        return []
    width = header_width(src)
    found: list[str] = []
    for line, row in _records(src):
        if len(row) == width or not "".join(row).strip():
            continue
        text = src.separator.join(row)
        found.append(f"line {line}: {len(row)} field{'s' if len(row) != 1 else ''}, the header has {width}: "
                     f"{text[:80]!r}{' ...' if len(text) > 80 else ''}")
        if len(found) >= limit:
            break
    return found


def count_ragged(src: Source, columns: int) -> tuple[int, int]:
    """(records with fewer fields than the header, records with more), blank lines aside.

    Polars fills a short record with nulls without a word, and reports a long one only when
    every column is read; this native pyarrow pass counts both. Run when the stats pass
    shows that one can exist (the last column has nulls) or Polars has complained.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    short = long = 0

    def on_bad(row: Any) -> str:
        nonlocal short, long
        if (row.text or "").strip():
            if row.actual_columns < row.expected_columns:
                short += 1
            else:
                long += 1
        return "skip"

    names = [f"c{i}" for i in range(columns)]
    try:
        reader = pacsv.open_csv(
            src.path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=src.separator, newlines_in_values=True,
                                             invalid_row_handler=on_bad),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 include_columns=names[:1]),
        )
        for _batch in reader:
            pass
    except (pa.ArrowException, OSError):
        return 0, 0  # not something pyarrow can split: Polars' own read decides
    return short, long


def physical_lines(src: Source, records: int, wanted: list[int]) -> dict[int, int]:
    """Map record positions (0-based, after the header) to the line each starts on.

    Quoted fields may hold newlines, so record ``i`` need not start on line ``i + 2``. A
    byte count of newlines tells whether any record spans lines; only then is the file
    walked, and only up to the last record wanted.
    """
    if src.kind != "csv" or not wanted:
        return {i: i + src.first_line for i in wanted}
    newlines, last = 0, b""
    with src.path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    lines = newlines + (0 if last == b"\n" else 1)
    if lines == records + 1:
        return {i: i + src.first_line for i in wanted}
    todo = set(wanted)
    found: dict[int, int] = {}
    for i, (line, _row) in enumerate(_records(src)):
        if i in todo:
            found[i] = line
            if len(found) == len(todo):
                break
    return {i: found.get(i, i + src.first_line) for i in wanted}


# --------------------------------------------------------------------------- writing


def check_output_path(out: str, inputs: list[str]) -> None:
    """Refuse an output that would overwrite an input, or that sits in a missing folder."""
    if out == STDIN:
        return
    target = Path(out).resolve()
    for item in inputs:
        if item != STDIN and Path(item).resolve() == target:
            raise UsageError(f"output {out} is also an input: refusing to overwrite an input")
    try:
        files = expand_inputs([i for i in inputs if i != STDIN])
    except (InputMissingError, UsageError):
        files = []  # reported when the inputs are read
    if any(Path(f).resolve() == target for f in files):
        raise UsageError(f"output {out} is one of the inputs (through a folder or glob): refusing to overwrite an input")
    if not target.parent.is_dir():
        raise OutputError(f"cannot write {out}: folder {target.parent} does not exist")
    if target.is_dir():
        raise OutputError(f"cannot write {out}: it is a directory")


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success fsync and rename it into place.

    The old file survives any failure: the rename is the only moment ``final`` changes.
    """
    final = Path(final)
    tmp = final.with_name(f".{final.name}.segcli-tmp-{os.getpid()}")
    try:
        yield tmp
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        with contextlib.suppress(OSError):
            dir_fd = os.open(final.parent, os.O_RDONLY)
            os.fsync(dir_fd)
            os.close(dir_fd)
    except OSError as exc:
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def clean_stale_temps(folder: Path, name: str) -> None:
    """Remove temporary files left beside ``name`` by a killed run."""
    for stale in folder.glob(f".{name}.segcli-tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                stale.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def output_kind(out: str) -> str:
    if out == STDIN:
        return "csv"
    suffix = Path(out).suffix.lower()
    kinds = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
    if suffix not in kinds:
        raise UsageError(f"cannot tell the output format of {out}: use .parquet, .csv or .jsonl (or - for CSV on stdout)")
    return kinds[suffix]


def _csv_bytes(df: pl.DataFrame, encoding: str) -> bytes:
    buf = io.BytesIO()
    df.write_csv(buf)
    data = buf.getvalue()
    if encoding == "utf-8":
        return data
    text = data.decode("utf-8")
    return text.encode("utf-8-sig" if encoding == "utf-8-sig" else "gb18030")


def _ndjson_bytes(df: pl.DataFrame) -> bytes:
    """JSON Lines; decimal money columns (``output.money = "decimal"``) as JSON numbers with
    their exact decimal text (Polars writes decimals as strings; SPEC §5: numbers)."""
    decimals = [name for name, dtype in df.schema.items() if isinstance(dtype, pl.Decimal)]
    buf = io.BytesIO()
    if not decimals:
        df.write_ndjson(buf)
        return buf.getvalue()
    df.with_columns(pl.col(decimals).cast(pl.String)).write_ndjson(buf)
    # a key followed by ":" can only be a key: inside a string value the quotes are escaped
    keys = b"|".join(re.escape(json.dumps(name, ensure_ascii=False).encode("utf-8")) for name in decimals)
    return re.sub(rb"(" + keys + rb'):"(-?[0-9]+(?:\.[0-9]+)?)"', rb"\1:\2", buf.getvalue())


def write_table(df: pl.DataFrame, out: str, *, meta: dict[str, Any] | None, csv_encoding: str = "utf-8") -> list[str]:
    """Write ``df`` to ``out`` (parquet/csv/jsonl or ``-``) atomically with its run metadata.

    Returns the paths written (the sidecar ``OUT.meta.json`` for CSV and JSONL included;
    none when ``meta`` is None).
    """
    kind = output_kind(out)
    if out == STDIN:
        sys.stdout.buffer.write(_csv_bytes(df, csv_encoding))
        sys.stdout.buffer.flush()
        return []
    final = Path(out)
    clean_stale_temps(final.parent, final.name)
    with atomic_path(final) as tmp:
        if kind == "parquet":
            _write_parquet(df, tmp, meta)
        elif kind == "csv":
            tmp.write_bytes(_csv_bytes(df, csv_encoding))
        else:
            tmp.write_bytes(_ndjson_bytes(df))
    written = [str(final)]
    if kind != "parquet" and meta is not None:
        side = final.with_name(final.name + ".meta.json")
        with atomic_path(side) as tmp:
            tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n",
                           encoding="utf-8")
        written.append(str(side))
    return written


def _write_parquet(df: pl.DataFrame, path: Path, meta: dict[str, Any] | None) -> None:
    """Parquet with plain Arrow types for CRM importers: ``string`` (not Polars'
    ``large_string``), int64, float64, date32; zstd; the run record under key ``segcli``.

    Polars' own writer (several columns at once, no Arrow copy of the table) writes the
    file; the Arrow schema it embeds for Arrow readers (key ``ARROW:schema``) is replaced
    by the plain one, which the Parquet columns (UTF8 byte arrays) match exactly.
    """
    import pyarrow as pa

    arrow_schema = df.head(0).to_arrow().schema
    plain = pa.schema([
        f.with_type(pa.string()) if pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type) else f
        for f in arrow_schema
    ])
    metadata = {"ARROW:schema": base64.b64encode(plain.serialize().to_pybytes()).decode("ascii")}
    if meta is not None:
        metadata["segcli"] = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str)
    df.write_parquet(path, compression="zstd", metadata=metadata)


def write_text(text: str, out: str) -> None:
    """Write a text document (summary table, JSON) atomically, or to stdout for ``-``."""
    if out == STDIN:
        sys.stdout.write(text)
        return
    with atomic_path(Path(out)) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_assignments(path: str) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read an assignments file written by segcli and its run record."""
    p = Path(path)
    if not p.exists():
        raise InputMissingError(f"assignments file not found: {path}")
    kind = output_kind(path)
    try:
        if kind == "parquet":
            raw = pl.read_parquet_metadata(p).get("segcli")
            meta = json.loads(raw) if raw else {}
            # decimal money (output.money = "decimal") is read as the floats segcli computes with
            return pl.read_parquet(p).with_columns(cs.decimal().cast(pl.Float64)), meta
        side = p.with_name(p.name + ".meta.json")
        meta = json.loads(side.read_text(encoding="utf-8")) if side.exists() else {}
        if kind == "csv":
            df = pl.read_csv(p, schema_overrides={"customer_id": pl.String}, try_parse_dates=True)
        else:
            df = pl.read_ndjson(p)
        return df, meta
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise InputDataError(f"{path}: cannot read assignments: {str(exc).splitlines()[0]}") from None
