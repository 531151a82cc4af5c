"""Input and output at the edges: find and scan input files, write outputs atomically.

No business rules here: reading turns files into LazyFrames of raw columns, writing turns
frames into files that appear complete or not at all.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import glob
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from segcli.errors import InputDataError, InputMissingError, OutputError, UsageError

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
EXCEL_SUFFIXES = {".xlsx", ".xls", ".xlsm"}
SNIFF_BYTES = 1 << 16
STDIN = "-"
_TEMP_DIR: tempfile.TemporaryDirectory[str] | None = None


def _scratch_dir() -> Path:
    """A private temporary folder removed at exit (stdin copies, transcoded CSV)."""
    global _TEMP_DIR
    if _TEMP_DIR is None:
        _TEMP_DIR = tempfile.TemporaryDirectory(prefix="segcli-")
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
    first_line: int = 2  # line number of the first data row (CSV) or 1 (rows in Parquet)


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
            found = sorted(glob.glob(item, recursive=True))
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
    """BOM, then strict UTF-8 on the prefix, else GB18030 (a superset of GBK that has ¥)."""
    if prefix.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(prefix, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "gb18030"


def sniff_separator(header: str, suffix: str) -> str:
    """Pick the delimiter from the header line: tab, semicolon or comma."""
    if suffix == ".tsv":
        return "\t"
    counts = {sep: header.count(sep) for sep in ("\t", ";", ",")}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] > 0 else ","


def _transcode(src: Path, encoding: str, display: str) -> Path:
    """Stream a non-UTF-8 file into a UTF-8 copy in the scratch folder (bounded memory)."""
    out = _scratch_dir() / f"utf8-{len(os.listdir(_scratch_dir()))}.csv"
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    with src.open("rb") as fin, out.open("w", encoding="utf-8", newline="") as fout:
        while chunk := fin.read(1 << 22):
            try:
                fout.write(decoder.decode(chunk))
            except UnicodeDecodeError as exc:
                at = offset + exc.start
                raise InputDataError(
                    f"{display}: bytes that are not valid {encoding} at byte offset {at}",
                    [f"bytes there: {chunk[exc.start:exc.start + 8]!r}",
                     "save the file as UTF-8, or name its encoding with --encoding"]) from None
            offset += len(chunk)
        fout.write(decoder.decode(b"", final=True))
    return out


def _check_utf8(src: Path, display: str) -> None:
    """Fail early, with a byte offset, on a file that claims UTF-8 but is not."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    with src.open("rb") as fin:
        while chunk := fin.read(1 << 24):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                at = offset + exc.start
                raise InputDataError(
                    f"{display}: bytes that are not valid UTF-8 at byte offset {at}",
                    [f"bytes there: {chunk[max(exc.start - 8, 0):exc.start + 8]!r}",
                     "if the file is GBK/GB18030, pass --encoding gb18030"]) from None
            offset += len(chunk)


def open_source(name: str, encoding: str = "auto") -> Source:
    """Look at one input and decide how to scan it."""
    if name == STDIN:
        path = _scratch_dir() / "stdin.csv"
        with path.open("wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out)
        display, suffix = "<stdin>", ".csv"
    else:
        path, display, suffix = Path(name), name, Path(name).suffix.lower()
    size = path.stat().st_size
    if suffix in PARQUET_SUFFIXES:
        return Source(display, path, "parquet", size, first_line=1)
    if suffix in EXCEL_SUFFIXES:
        return Source(display, path, "excel", size, first_line=2)
    if size == 0:
        raise InputDataError(f"{display}: the file is empty (no header, no rows)")
    with path.open("rb") as fh:
        prefix = fh.read(SNIFF_BYTES)
    enc = detect_encoding(prefix) if encoding == "auto" else encoding
    if enc in ("gbk", "gb2312"):
        enc = "gb18030"  # GBK lacks characters such as ¥; GB18030 decodes every GBK file
    if enc in ("utf-8", "utf-8-sig"):
        if size <= SNIFF_BYTES:
            _check_utf8(path, display)
        text = prefix.decode(enc, errors="ignore")
    else:
        path = _transcode(path, enc, display)
        text = prefix.decode(enc, errors="ignore")
    header = text.splitlines()[0] if text else ""
    return Source(display, path, "csv", size, sniff_separator(header, suffix), enc)


def scan_source(src: Source) -> pl.LazyFrame:
    """A LazyFrame of the file's raw columns (CSV: every column as text)."""
    try:
        if src.kind == "parquet":
            return pl.scan_parquet(src.path)
        if src.kind == "excel":
            return pl.read_excel(src.path, infer_schema_length=0).lazy()
        return pl.scan_csv(src.path, separator=src.separator, infer_schema=False, raise_if_empty=True)
    except pl.exceptions.NoDataError:
        raise InputDataError(f"{src.name}: the file is empty (no header, no rows)") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputMissingError(f"{src.name}: cannot read: {str(exc).splitlines()[0]}") from None


def read_columns(src: Source, lf: pl.LazyFrame) -> list[str]:
    try:
        return lf.collect_schema().names()
    except pl.exceptions.NoDataError:
        raise InputDataError(f"{src.name}: the file is empty (no header, no rows)") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputDataError(f"{src.name}: cannot read: {str(exc).splitlines()[0]}") from None


def ragged_lines(src: Source, limit: int = 5) -> list[str]:
    """Lines whose field count differs from the header's (read only on the error path)."""
    import csv

    found: list[str] = []
    with src.path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=src.separator)
        header = next(reader, [])
        for row in reader:
            if row and len(row) != len(header):
                found.append(f"line {reader.line_num}: {len(row)} fields, the header has {len(header)}")
                if len(found) >= limit:
                    break
    return found


# --------------------------------------------------------------------------- writing


def check_output_path(out: str, inputs: list[str]) -> None:
    """Refuse an output that would overwrite an input, or that sits in a missing folder."""
    if out == STDIN:
        return
    target = Path(out).resolve()
    for item in inputs:
        if item != STDIN and Path(item).resolve() == target:
            raise UsageError(f"output {out} is also an input: refusing to overwrite an input")
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
            df.write_ndjson(tmp)
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
    ``large_string``), int64, float64, date32; zstd; the run record under key ``segcli``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = df.to_arrow()
    plain = pa.schema([
        f.with_type(pa.string()) if pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type) else f
        for f in table.schema
    ])
    table = table.cast(plain)
    if meta is not None:
        table = table.replace_schema_metadata(
            {"segcli": json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str)})
    pq.write_table(table, path, compression="zstd")


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
            return pl.read_parquet(p), meta
        side = p.with_name(p.name + ".meta.json")
        meta = json.loads(side.read_text(encoding="utf-8")) if side.exists() else {}
        if kind == "csv":
            df = pl.read_csv(p, schema_overrides={"customer_id": pl.String}, try_parse_dates=True)
        else:
            df = pl.read_ndjson(p)
        return df, meta
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise InputDataError(f"{path}: cannot read assignments: {str(exc).splitlines()[0]}") from None
