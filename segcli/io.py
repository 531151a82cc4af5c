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
import dataclasses
import errno
import glob
import hashlib
import io
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import polars.selectors as cs

from segcli.errors import InputDataError, InputMissingError, OutputError, UsageError
from segcli.postgres import is_database

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
EXCEL_SUFFIXES = {".xlsx", ".xls", ".xlsm"}
SNIFF_BYTES = 1 << 16
CHUNK_BYTES = 1 << 22  # what streaming passes over a file hold in memory at once
STDIN = "-"
# Python's csv module stops at a field over 128 KiB, which Polars reads: the error paths that
# walk a file with it (ragged rows, line numbers) must read whatever Polars read.
csv.field_size_limit(2**31 - 1)
_TEMP_DIR: tempfile.TemporaryDirectory[str] | None = None
# Files segcli wrote itself for an input that is no file (a DataFrame given to the Python
# API): path -> how messages and run records name the input
_DISPLAY_NAMES: dict[str, str] = {}
OWNER_FILE = ".segcli-run"  # inside every scratch folder segcli makes: who made it (pid, start time)
_LIVE_TEMPS: set[Path] = set()  # temporary outputs being written, removed on SIGTERM too
# set once SIGTERM's clean-up has begun: the run's own errors (its spill folder vanished) are
# then not reported, and the process ends with SIGTERM's status (see ``__main__``)
TERMINATING = threading.Event()


def scratch_dir() -> Path:
    """A private temporary folder removed at exit (stdin copies, transcoded CSV, bucket spill).

    A file inside names the run that made it (pid and process start time), so that a folder
    left by a killed run (a transcoded copy can be as large as the input) is removed by the
    next run, and nothing else in ``TMPDIR`` is ever touched (SPEC §6).
    """
    global _TEMP_DIR
    if _TEMP_DIR is None:
        root = Path(tempfile.gettempdir())
        remove_stale_scratch(root)
        try:
            made = tempfile.TemporaryDirectory(prefix=f"segcli-{os.getpid()}-")
            owner = {"tool": "segcli", "pid": os.getpid(), "start": process_start(os.getpid())}
            (Path(made.name) / OWNER_FILE).write_text(json.dumps(owner) + "\n", encoding="utf-8")
        except OSError as exc:
            raise scratch_error(exc, root) from None
        _TEMP_DIR = made
        atexit.register(made.cleanup)
    return Path(_TEMP_DIR.name)


def scratch_error(exc: OSError, folder: Path, needed: int | None = None) -> OutputError:
    """Exit 73 for a temporary folder that cannot be written: which folder, why, what it needs."""
    details = []
    with contextlib.suppress(OSError):
        details.append(f"free space in {folder}: {_size_text(shutil.disk_usage(folder).free)}")
    room = f"about {_size_text(needed)} free" if needed else "room for about the size of the input"
    details.append(f"set TMPDIR to a folder with {room}")
    return OutputError(f"cannot write temporary files to {folder}: {exc.strerror or exc}", details)


def disk_error(exc: BaseException) -> bool:
    """Whether a Polars error is a write that the disk refused (full, quota, read-only)."""
    text = str(exc)
    return any(s in text for s in ("No space left", "os error 28", "Disk quota", "os error 122",
                                   "Read-only file system", "os error 30", "File too large", "os error 27"))


def _size_text(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks after boot, field 22 of /proc/PID/stat), or ""
    where /proc is missing. With the pid it names one process: a pid reused later differs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    # field 2, the command name, is in parentheses and may hold spaces: count after the last ')'
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def _owner_gone(folder: Path) -> bool:
    """True only for a folder segcli made (it holds a valid owner file) whose run has ended:
    its pid is not running, or now belongs to a process that started at another time."""
    try:
        owner = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        pid, start = int(owner["pid"]), str(owner.get("start") or "")
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not marked: not ours, never removed
    if owner.get("tool") != "segcli" or pid == os.getpid():
        return False
    if not _pid_alive(pid):
        return True
    now = process_start(pid)
    return bool(start and now and now != start)


def hold_if_terminating() -> None:
    """Block for good once SIGTERM's clean-up has begun: the thread doing it ends the process
    (exit 143); an error this thread met meanwhile is a consequence, not news."""
    if TERMINATING.is_set():
        threading.Event().wait()


def remove_stale_scratch(root: Path) -> None:
    """Remove the scratch folders of segcli runs that were killed (and only those)."""
    for folder in root.glob("segcli-*"):
        if folder.is_dir() and not folder.is_symlink() and _owner_gone(folder):
            shutil.rmtree(folder, ignore_errors=True)


def remove_temporaries(settle: float = 0.05, limit: float = 5.0) -> None:
    """Remove this run's temporary outputs and scratch folder now (on SIGTERM): what the
    ``finally`` blocks and the exit handler do after Ctrl-C.

    Polars' threads keep running meanwhile, and a partitioned sink recreates the folders of a
    partition it opens (``create_dir_all``) after they were removed: the folder is removed
    again until it has stayed away for three checks ``settle`` seconds apart (at most
    ``limit`` seconds in all)."""
    TERMINATING.set()
    for tmp in list(_LIVE_TEMPS):
        with contextlib.suppress(OSError):
            tmp.unlink()
    if _TEMP_DIR is None:
        return
    deadline, quiet = time.monotonic() + limit, 0
    while quiet < 3 and time.monotonic() < deadline:
        shutil.rmtree(_TEMP_DIR.name, ignore_errors=True)
        quiet = 0 if os.path.lexists(_TEMP_DIR.name) else quiet + 1
        time.sleep(settle)


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
    header_row: int = 0  # CSV and Excel: 1-based line/row of the header; 0 = the first (non-empty) row
    layout: str = ""  # "whitespace": columns aligned with spaces (``path`` is a tab-separated copy)
    # kind "postgres": rows a pushed-down date filter left on the server (all of them, and the
    # valid ones after the as-of date and before the window), counted as if read and dropped
    rows_filtered: int = 0
    rows_after_as_of: int = 0
    rows_outside_window: int = 0

    @property
    def row_word(self) -> str:
        """How a position is named in messages: CSV lines, spreadsheet or Parquet rows."""
        return "line" if self.kind == "csv" else "row"

    @property
    def skip(self) -> int:
        """CSV records above the header (title rows), skipped by every reader of the file."""
        return max(self.header_row - 1, 0) if self.kind == "csv" else 0


DATA_SUFFIXES = CSV_SUFFIXES | PARQUET_SUFFIXES | EXCEL_SUFFIXES
# Excel's lock file of an open workbook (~$book.xlsx) and hidden files (.DS_Store, LibreOffice's
# .~lock.book.xlsx#): never transactions, and a lock file is not even a readable workbook.
SKIPPED_PREFIXES = ("~$", ".")


def _reported_skip(name: str) -> bool:
    """Is a skipped file worth naming: a lock file or hidden copy of an export (not .DS_Store)?"""
    bare = name.lstrip(".").removeprefix("~lock.").removeprefix("~$").rstrip("#")
    return Path(bare).suffix.lower() in DATA_SUFFIXES


def _folder_files(folder: Path, skipped: list[str]) -> list[str]:
    """Data files of a folder and of its hive partition folders below it (``year=2025/``)."""
    found: list[str] = []
    for p in folder.iterdir():
        if p.name.startswith(SKIPPED_PREFIXES):
            if _reported_skip(p.name):
                skipped.append(str(p))
        elif p.is_dir() and "=" in p.name:
            found.extend(_folder_files(p, skipped))
        elif p.is_file() and p.suffix.lower() in DATA_SUFFIXES:
            found.append(str(p))
    return found


def expand_inputs(inputs: list[str], skipped: list[str] | None = None) -> list[str]:
    """Expand directories and globs into a sorted list of files; missing inputs are exit 66.

    Lock files and hidden files are left out of folders (and lock files out of globs);
    those that look like exports are appended to ``skipped``, to be named in a warning.
    """
    files: list[str] = []
    left_out: list[str] = []
    for item in inputs:
        if item == STDIN or is_database(item):
            files.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(_folder_files(path, left_out))
            if not found:
                raise InputMissingError(f"directory {item} holds no CSV, Parquet or Excel files",
                                        [f"skipped: {', '.join(left_out)}"] if left_out else [])
            files.extend(found)
        elif any(ch in item for ch in "*?["):
            matched = sorted(p for p in glob.glob(item, recursive=True) if Path(p).is_file())
            left_out.extend(p for p in matched if Path(p).name.startswith("~$"))
            found = [p for p in matched if not Path(p).name.startswith("~$")]
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
    if skipped is not None:
        skipped.extend(left_out)
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


SEPARATOR_CHARS = ("\t", ";", ",", "|")


def sniff_separator(header: str, suffix: str) -> str:
    """Pick the delimiter from the header line: tab, semicolon, comma or pipe."""
    if suffix == ".tsv":
        return "\t"
    counts = {sep: header.count(sep) for sep in SEPARATOR_CHARS}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] > 0 else ","


def whitespace_aligned(lines: list[str]) -> bool:
    """Are these lines (header first) columns aligned with runs of spaces, such as the raw
    CDNOW file: no separator character in the header, and every line splitting on
    whitespace into the header's number of fields (two or more)?"""
    rows = [line for line in lines if line.strip()]
    if len(rows) < 2 or any(sep in rows[0] for sep in SEPARATOR_CHARS):
        return False
    width = len(rows[0].split())
    return width >= 2 and all(len(line.split()) == width for line in rows[1:])


_LEADING_OR_TRAILING_SPACE = re.compile(r"^[ \t]+|[ \t\r]+$", re.MULTILINE)
_SPACE_RUN = re.compile(r"[ \t]+")


def _tabs_for_spaces(text: str) -> str:
    """Whitespace-aligned lines -> tab-separated ones (whole lines only; line count kept)."""
    return _SPACE_RUN.sub("\t", _LEADING_OR_TRAILING_SPACE.sub("", text))


def _transcode(src: Path, encoding: str, display: str, *, cr_lines: bool = False, whitespace: bool = False) -> Path:
    """Stream a file into a UTF-8 copy in the scratch folder (bounded memory).

    Polars reads only UTF-8, with LF or CRLF line ends and one-character separators;
    decoding chunk by chunk keeps memory at a few chunks whatever the file's size, and the
    copy is then scanned like any UTF-8 file. ``cr_lines``: the old Mac line end (CR only)
    becomes LF; ``whitespace``: runs of spaces between columns become one tab. Both keep
    one line per line, so line numbers in messages stay the file's own.
    """
    out = scratch_dir() / f"utf8-{len(os.listdir(scratch_dir()))}.csv"
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    carry = ""  # an incomplete last line, held back until its end is read (whitespace)
    with src.open("rb") as fin, out.open("w", encoding="utf-8", newline="") as fout:
        while True:
            chunk = fin.read(CHUNK_BYTES)
            pending = decoder.getstate()[0]
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                # the exception counts from the bytes held back from the previous chunk
                data = pending + chunk
                raise InputDataError(
                    f"{display}: bytes that are not valid {encoding} at byte offset "
                    f"{offset - len(pending) + exc.start}",
                    [f"bytes there: {data[exc.start:exc.start + 8]!r}",
                     "save the file as UTF-8, or name its encoding with --encoding"]) from None
            if cr_lines:
                text = text.replace("\r", "\n")
            if whitespace:
                text = carry + text
                cut = len(text) if not chunk else text.rfind("\n") + 1
                text, carry = _tabs_for_spaces(text[:cut]), text[cut:]
            try:
                fout.write(text)
                if not chunk:
                    fout.flush()  # the last bytes: a full disk shows here, not when closing
            except OSError as exc:
                # UTF-8 takes 3 bytes where GB18030 takes 2 for a Chinese character
                raise scratch_error(exc, out.parent.parent, src.stat().st_size * 3 // 2) from None
            if not chunk:
                break
            offset += len(chunk)
    return out


def _copy_stream(stream: Any, display: str, suffix: str) -> Path:
    """Copy standard input or a pipe (``<(zcat export.csv.gz)``, a named pipe) to the scratch
    folder: it can be read only once and has no size, and every later step reads a file.
    Exit 66 when it is closed or unreadable, 73 when the copy does not fit."""
    if stream is None:
        raise InputMissingError("standard input ('-') is closed: nothing to read",
                                ["pipe the export in (segcli validate - < export.csv), or name the file"])
    path = scratch_dir() / f"stream-{len(os.listdir(scratch_dir()))}{suffix}"
    with path.open("wb") as out:
        while True:
            try:
                chunk = stream.read(CHUNK_BYTES)
            except (OSError, ValueError) as exc:
                raise InputMissingError(f"{display}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
            try:
                out.write(chunk)
                if not chunk:
                    out.flush()  # a full disk shows here, not when closing
                    return path
            except OSError as exc:
                raise scratch_error(exc, path.parent.parent) from None


def _is_stream(path: Path) -> bool:
    """A pipe or device rather than a file (its size is 0 until it is read)."""
    try:
        return not stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False  # reported by the caller's own stat


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
                        f"{src.name}: the file ends inside a multi-byte character "
                        f"(byte offset {offset - len(pending)})",
                        ["the file looks cut short: export it again"])
                # the exception counts from the bytes held back from the previous chunk
                data = pending + chunk
                return _utf8_error(src.name, offset - len(pending) + exc.start,
                                   data[max(exc.start - 8, 0):exc.start + 8])
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


SEPARATOR_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'", "whitespace": "whitespace"}


def open_source(name: str, encoding: str = "auto", *, sheet: str = "", header_row: int = 0,
                separator: str = "", config: Any = None) -> Source:
    """Look at one input and decide how to scan it.

    ``header_row`` (1-based; 0 = the first line) skips title rows above a CSV header as it
    does for a sheet; ``separator`` is ``,`` ``;`` tab ``|`` or ``whitespace``, "" = detected;
    ``config``: for a database source's pushed-down date window.
    """
    if is_database(name):
        from segcli.postgres import open_postgres

        spool = open_postgres(name, scratch_dir(), config)
        return Source(spool.name, spool.path, "postgres", spool.size, first_line=1, rows_filtered=spool.pushed.rows,
                      rows_after_as_of=spool.pushed.after_as_of, rows_outside_window=spool.pushed.outside_window)
    if name == STDIN:
        path, display, suffix = _copy_stream(getattr(sys.stdin, "buffer", None), "<stdin>", ".csv"), "<stdin>", ".csv"
    else:
        path, display, suffix = Path(name), display_name(name), Path(name).suffix.lower()
        if _is_stream(path):
            with path.open("rb") as stream:
                path = _copy_stream(stream, display, suffix or ".csv")
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
    enc = _text_encoding(prefix, encoding, display)
    text = prefix.decode(enc, errors="ignore").lstrip("\ufeff")
    lines = text.splitlines()[max(header_row - 1, 0):]  # splitlines: CR-only line ends too
    if lines and size > SNIFF_BYTES:
        lines.pop()  # the prefix may end inside a line
    whitespace = separator == "whitespace" or (not separator and whitespace_aligned(lines[:20]))
    sep = "\t" if whitespace else separator or sniff_separator(lines[0] if lines else "", suffix)
    cr_lines = "\r" in text and "\n" not in text
    src = Source(display, path, "csv", size, sep, enc, first_line=(header_row or 1) + 1, header_row=header_row,
                 layout="whitespace" if whitespace else "")
    if enc in ("utf-8", "utf-8-sig") and not (cr_lines or whitespace):
        if size <= SNIFF_BYTES:
            error = check_utf8(src)
            if error is not None:
                raise error
        return src
    return dataclasses.replace(src, path=_transcode(path, enc, display, cr_lines=cr_lines, whitespace=whitespace))


def _text_encoding(prefix: bytes, encoding: str, display: str) -> str:
    """The encoding to decode a text file with, or the error saying it is not text."""
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
    return enc


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
        if src.kind in ("parquet", "postgres"):  # a database source is spooled to Parquet
            return pl.scan_parquet(src.path)
        if src.kind == "excel":
            # Empty rows are kept (and skipped later as blank) so that row numbers stay true.
            options = {"header_row": src.header_row - 1} if src.header_row else {}
            return pl.read_excel(src.path, **_excel_sheet(src), infer_schema_length=0, drop_empty_rows=False,
                                 read_options=options).lazy()
        return pl.scan_csv(src.path, separator=src.separator, infer_schema=False, raise_if_empty=True,
                           skip_rows=src.skip)
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


def _separator_inside(field: str, used: str) -> str | None:
    """The separator a lone header field holds (``a;b;c`` read with ``,``), if any."""
    counts = {sep: field.count(sep) for sep in SEPARATOR_CHARS if sep != used}
    best = max(counts, key=lambda k: counts[k])
    if counts[best]:
        return best
    if used != "\t" and (re.search(r"\S {2,}\S", field) or len(field.split()) >= 3):
        return "whitespace"
    return None


def _repeated(fields: list[str]) -> dict[str, list[int]]:
    """Header names written more than once -> their 1-based column positions (empty names aside:
    spreadsheets leave unnamed trailing columns)."""
    positions: dict[str, list[int]] = {}
    for i, field in enumerate(fields, start=1):
        name = field.strip().lstrip("\ufeff").strip()
        if name:
            positions.setdefault(name, []).append(i)
    return {name: at for name, at in positions.items() if len(at) > 1}


def _excel_header(src: Source, names: list[str]) -> list[str]:
    """The header cells as written: the Excel reader renames a repeated ``amount`` to
    ``amount_1``, so the sheet is read again (its header rows only) when a name looks renamed."""
    renamed = (re.fullmatch(r"(.+)_\d+", n) for n in names)
    if not any(m and m.group(1) in names for m in renamed):
        return names
    try:
        top = pl.read_excel(src.path, **_excel_sheet(src), has_header=False, infer_schema_length=0,
                            read_options={"header_row": None, "n_rows": max(src.header_row, 1)})
    except Exception:  # noqa: BLE001 - the sheet was read once already; keep its names
        return names
    row = top.row(max(src.header_row, 1) - 1) if top.height >= max(src.header_row, 1) else ()
    return ["" if cell is None else str(cell) for cell in row] or names


def check_header(src: Source, names: list[str]) -> None:
    """Stop on a header that cannot be mapped for a reason other than a missing name: one
    field holding another separator, or names written twice (which column is the amount?)."""
    if src.kind == "csv" and len(names) == 1:
        inside = _separator_inside(names[0], src.separator)
        if inside is not None:
            flag = SEPARATOR_NAMES[inside]
            raise InputDataError(
                f"{src.name}: the header is one field holding {flag} separators: {names[0][:80]!r}",
                [f"the file was read with {SEPARATOR_NAMES.get(src.separator, repr(src.separator))} as the separator",
                 f"pass --separator {flag} (or in the config: [input] separator = \"{flag.strip(chr(39))}\")"])
    fields = header_fields(src) if src.kind == "csv" else _excel_header(src, names) if src.kind == "excel" else names
    repeated = _repeated(fields)
    if repeated:
        listed = "; ".join(f"{name!r} (columns {', '.join(map(str, at))})" for name, at in repeated.items())
        raise InputDataError(
            f"{src.name}: the header names {'a column' if len(repeated) == 1 else 'columns'} more than once: {listed}",
            ["which one holds the values is ambiguous: rename the repeated columns in the export"])


def _records(src: Source) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of every CSV record after the header, as Polars splits them.

    Python's csv module walks the file; used only on error paths, for the few rows reported.
    """
    with src.path.open(encoding="utf-8-sig", newline="", errors="replace") as fh:
        reader = csv.reader(fh, delimiter=src.separator)
        for _ in range(src.skip + 1):  # title rows, then the header
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


def header_fields(src: Source) -> list[str]:
    """The fields of a CSV source's header, as written (Polars renames repeated names)."""
    with src.path.open(encoding="utf-8-sig", newline="", errors="replace") as fh:
        reader = csv.reader(fh, delimiter=src.separator)
        for _ in range(src.skip):
            next(reader, None)
        return next(reader, [])


def header_width(src: Source) -> int:
    """Number of fields in a CSV source's header."""
    return len(header_fields(src))


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
    # Arrow's threads may release ``on_bad`` after this returns; doing so during interpreter
    # shutdown aborted the process (SIGABRT), hence the exit through os._exit in __main__.
    try:
        reader = pacsv.open_csv(
            src.path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=src.skip + 1, block_size=1 << 24),
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
    if lines == records + src.first_line - 1:  # title rows and the header above the records
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
    if is_database(out):
        from segcli.postgres import check_sink

        return check_sink(out, inputs)
    target = Path(out).resolve()
    for item in inputs:
        if item != STDIN and Path(item).resolve() == target:
            raise UsageError(f"output {out} is also an input: refusing to overwrite an input")
    try:
        files = expand_inputs([i for i in inputs if i != STDIN])
    except (InputMissingError, UsageError):
        files = []  # reported when the inputs are read
    if any(Path(f).resolve() == target for f in files):
        raise UsageError(f"output {out} is one of the inputs (through a folder or glob): "
                         "refusing to overwrite an input")
    if not target.parent.is_dir():
        raise OutputError(f"cannot write {out}: folder {target.parent} does not exist")
    if target.is_dir():
        raise OutputError(f"cannot write {out}: it is a directory")
    _check_writable(out, target.parent)


def _check_writable(out: str, folder: Path) -> None:
    """Exit 73 before any work when the output's folder cannot take a new file."""
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            raise OutputError(f"cannot write {out}: folder {folder} is on a read-only file system")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {out}: no permission to create files in folder {folder}")


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success fsync and rename it into place.

    The old file survives any failure: the rename is the only moment ``final`` changes.
    """
    with atomic_set([Path(final)]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_set(finals: list[Path], *, remove: tuple[Path, ...] = ()) -> Iterator[list[Path]]:
    """Yield a temporary path beside each of ``finals``; when every one is written, delete
    ``remove`` (files of the old set that the new one lacks) and rename the temporary files
    into place in the given order (sidecars first, the main file last).

    Nothing existing changes until all the files are complete on disk, so a full disk or an
    error leaves the old set as it was; a kill between the renames leaves new sidecars beside
    the old main file, which the sidecar's recorded size and sha256 expose
    (:func:`read_assignments`). A replaced file keeps its mode, owner and group.
    """
    temps = [f.with_name(f".{f.name}.segcli-tmp-{os.getpid()}") for f in finals]
    _LIVE_TEMPS.update(temps)
    try:
        yield temps
        for tmp in temps:
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
        for tmp, final in zip(temps, finals):
            _keep_permissions(final, tmp)
        for old in remove:
            old.unlink(missing_ok=True)
        for tmp, final in zip(temps, finals):
            os.replace(tmp, final)
        with contextlib.suppress(OSError):
            dir_fd = os.open(finals[-1].parent, os.O_RDONLY)
            os.fsync(dir_fd)
            os.close(dir_fd)
    except OSError as exc:
        _remove_temps(temps)
        raise OutputError(f"cannot write {finals[-1]}: {exc.strerror or exc}", _write_hints(exc, finals[-1])) from None
    except pl.exceptions.PolarsError as exc:
        # Polars' writers report an I/O failure as a ComputeError ("No space left on device")
        _remove_temps(temps)
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OutputError(f"cannot write {finals[-1]}: {text.split('IO error: ')[-1]}",
                          _write_hints(None, finals[-1])) from None
    finally:
        _remove_temps(temps)


def _remove_temps(temps: list[Path]) -> None:
    for tmp in temps:
        with contextlib.suppress(OSError):  # on a read-only file system unlink fails with EROFS
            tmp.unlink()
        _LIVE_TEMPS.discard(tmp)


def _write_hints(exc: OSError | None, final: Path) -> list[str]:
    """What the user can do about a failed write: the free space, the file system's state."""
    hints = []
    with contextlib.suppress(OSError):
        hints.append(f"free space in {final.parent.resolve()}: {_size_text(shutil.disk_usage(final.parent).free)}")
    if exc is not None and exc.errno == errno.EROFS:
        hints = [f"{final.parent.resolve()} is on a read-only file system"]
    hints.append(f"{final} was left as it was" if final.exists() else f"{final} was not created")
    return hints


def _keep_permissions(final: Path, tmp: Path) -> None:
    """Give ``tmp`` the mode, owner and group of the ``final`` it replaces (a 0640 file stays
    0640 for the group that reads it); a new file keeps the umask's mode."""
    try:
        st = final.stat()
    except FileNotFoundError:
        return
    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except PermissionError:  # only root gives files away; a member may still set the group
            with contextlib.suppress(PermissionError):
                os.chown(tmp, -1, st.st_gid)
    os.chmod(tmp, stat.S_IMODE(st.st_mode))  # after chown, which clears set-id bits


def clean_stale_temps(folder: Path, name: str) -> None:
    """Remove temporary files left beside ``name`` (and its sidecars) by a killed run."""
    for stale in folder.glob(f".{glob.escape(name)}*.segcli-tmp-*"):
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
        raise UsageError(f"cannot tell the output format of {out}: use .parquet, .csv or .jsonl "
                         "(or - for CSV on stdout)")
    return kinds[suffix]


def _csv_bytes(df: pl.DataFrame, encoding: str) -> bytes:
    buf = io.BytesIO()
    df.write_csv(buf)
    data = buf.getvalue()
    if encoding == "utf-8":
        return data
    text = data.decode("utf-8")
    return text.encode("utf-8-sig" if encoding == "utf-8-sig" else "gb18030")


def write_stdout(data: bytes) -> None:
    """Write bytes to standard output: exit 73 when it is closed or full (``>&-``, /dev/full)."""
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:
        raise OutputError("cannot write to standard output: it is closed")
    try:
        stream.write(data)
        stream.flush()
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot write to standard output: {getattr(exc, 'strerror', None) or exc}") from None


def file_digest(path: Path) -> dict[str, Any]:
    """Size and sha256 of a written file: how a sidecar names the file it belongs to."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


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


def write_table(df: pl.DataFrame, out: str, *, meta: dict[str, Any] | None, csv_encoding: str = "utf-8",
                rejects: pl.DataFrame | None = None, mode: str = "replace") -> list[str]:
    """Write ``df`` to ``out`` (parquet/csv/jsonl, ``-``, or a ``postgresql://...#schema.table``
    in ``mode`` replace or append) atomically with its run metadata.

    With ``meta``, the rows ``rejects`` (``OUT.rejects.csv``, else an old one is removed) and
    the sidecar ``OUT.meta.json`` (CSV, JSONL) form one set with the output: all are written
    to temporary files first, then renamed sidecars first and the output last. The record
    names the rejects file and the sidecar the output by size and sha256, so a reader can
    tell a sidecar that belongs to another version of the file. Returns the paths written.
    """
    if is_database(out):
        from segcli.postgres import write_postgres

        return write_postgres(df, out, meta=meta, mode=mode)
    kind = output_kind(out)
    if out == STDIN:
        write_stdout(_csv_bytes(df, csv_encoding))
        return []
    final = Path(out)
    clean_stale_temps(final.parent, final.name)
    record = dict(meta) if meta is not None else None
    reject_path = final.with_name(final.name + ".rejects.csv")
    side = final.with_name(final.name + ".meta.json")
    sidecars = [reject_path] if rejects is not None else []
    sidecars += [side] if kind != "parquet" and meta is not None else []
    finals = [*sidecars, final]  # renamed in this order: the output last
    # an old run's rejects file does not belong to this output (commands without a record write none)
    stale = (reject_path,) if rejects is None and meta is not None else ()
    with atomic_set(finals, remove=stale) as temps:
        if rejects is not None:
            temps[0].write_bytes(_csv_bytes(rejects, "utf-8"))
            if record is not None:
                record["rejects"] = {"file": reject_path.name, "rows": rejects.height, **file_digest(temps[0])}
        if kind == "parquet":
            _write_parquet(df, temps[-1], record)
        elif kind == "csv":
            temps[-1].write_bytes(_csv_bytes(df, csv_encoding))
        else:
            temps[-1].write_bytes(_ndjson_bytes(df))
        if kind != "parquet" and record is not None:
            record["output"] = {"file": final.name, **file_digest(temps[-1])}
            temps[-2].write_text(json.dumps(record, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n",
                                 encoding="utf-8")
    return [str(p) for p in finals]


def _write_parquet(df: pl.DataFrame, path: Path, meta: dict[str, Any] | None) -> None:
    """Parquet with plain Arrow types for CRM importers: ``string`` (not Polars'
    ``large_string``), int64, float64, date32; zstd; the run record under key ``segcli``.

    Polars' own writer (several columns at once, no Arrow copy of the table) writes the
    file; the Arrow schema it embeds for Arrow readers (key ``ARROW:schema``) is replaced
    by the plain one, which the Parquet columns (UTF8 byte arrays) match exactly.
    """
    import pyarrow as pa

    arrow_schema = df.head(0).to_arrow().schema
    record = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str) if meta is not None else None
    # the record in the Arrow schema too: pyarrow (pq.read_schema, read_table, pandas) shows
    # the embedded schema's metadata, not the file's key-value pairs
    plain = pa.schema([
        f.with_type(pa.string()) if pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type) else f
        for f in arrow_schema
    ], metadata={"segcli": record} if record is not None else None)
    metadata = {"ARROW:schema": base64.b64encode(plain.serialize().to_pybytes()).decode("ascii")}
    if record is not None:
        metadata["segcli"] = record
    # one chunk: Polars' writer starts a row group at every chunk, and a parallel sort's chunks
    # vary from run to run (a 10^6-customer lifetimes file's bytes did); free when already one
    df.rechunk().write_parquet(path, compression="zstd", metadata=metadata)


def write_text(text: str, out: str) -> None:
    """Write a text document (summary table, JSON) atomically, or to stdout for ``-``."""
    if out == STDIN:
        sys.stdout.write(text)
        return
    with atomic_path(Path(out)) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _check_sidecar(path: Path, side: Path, meta: dict[str, Any]) -> None:
    """Exit 65 when ``OUT.meta.json`` records another version of ``OUT`` (size or sha256):
    the file was edited, or a run was killed between writing the two. Records written
    before sidecars named their file carry no ``output`` and are taken as they are."""
    want = meta.get("output")
    if not isinstance(want, dict) or "sha256" not in want:
        return
    have: dict[str, Any] = {"bytes": path.stat().st_size}
    if have["bytes"] == want.get("bytes"):
        have = file_digest(path)
    if have.get("sha256") != want["sha256"]:
        raise InputDataError(
            f"{side}: this run record does not belong to {path} (the file differs from the one it records)",
            [f"recorded: {want.get('bytes')} bytes, sha256 {str(want['sha256'])[:16]}...; "
             f"the file: {have['bytes']} bytes" + (f", sha256 {have['sha256'][:16]}..." if "sha256" in have else ""),
             "the file was changed after segcli wrote it, or a run was stopped between writing the two: "
             "run segcli again, or delete the .meta.json to read the file without its record"])


def read_record(path: str) -> dict[str, Any]:
    """The run record of a file segcli wrote: Parquet key-value metadata ``segcli``, or the
    ``OUT.meta.json`` sidecar of CSV and JSONL (checked to belong to the file); {} if none."""
    p = Path(path)
    if not p.exists():
        raise InputMissingError(f"file not found: {path}")
    try:
        if output_kind(path) == "parquet":
            raw = pl.read_parquet_metadata(p).get("segcli")
            return json.loads(raw) if raw else {}
        side = p.with_name(p.name + ".meta.json")
        meta = json.loads(side.read_text(encoding="utf-8")) if side.exists() else {}
        _check_sidecar(p, side, meta)
        return meta
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise InputDataError(f"{path}: cannot read the run record: {str(exc).splitlines()[0]}") from None


def read_assignments(path: str) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read an assignments file written by segcli and its run record."""
    p = Path(path)
    if not p.exists():
        raise InputMissingError(f"assignments file not found: {path}")
    kind = output_kind(path)
    meta = read_record(path)
    try:
        if kind == "parquet":
            # decimal money (output.money = "decimal") is read as the floats segcli computes with
            return pl.read_parquet(p).with_columns(cs.decimal().cast(pl.Float64)), meta
        if kind == "csv":
            df = pl.read_csv(p, schema_overrides={"customer_id": pl.String}, try_parse_dates=True)
        else:
            df = pl.read_ndjson(p)
        return df, meta
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise InputDataError(f"{path}: cannot read assignments: {str(exc).splitlines()[0]}") from None


def write_workbook(df: pl.DataFrame, out: str, *, sheet: str) -> None:
    """Write ``df`` as an Excel workbook (one sheet) atomically."""
    buf = io.BytesIO()
    df.write_excel(buf, worksheet=sheet, autofit=True)
    with atomic_path(Path(out)) as tmp:
        tmp.write_bytes(buf.getvalue())
