"""Export files: shaped records as UTF-8 CSV split within a target's row and byte limits,
JSONL request bodies in its batch size, and the file entries the manifest lists."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from segcli.errors import ConfigError
from segcli.export.profiles import Body, Profile

SLICE_ROWS = 200_000  # rows turned into CSV text at a time: memory stays bounded
_QUOTE, _NEWLINE = 34, 10


def file_entry(path: Path, kind: str, rows: int, **extra: Any) -> dict[str, Any]:
    """A manifest entry: name, kind, rows, bytes and SHA-256 of a file just written."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return {"path": path.name, "kind": kind, "rows": rows, **extra, "bytes": path.stat().st_size,
            "sha256": digest.hexdigest()}


def write_file(path: Path, data: bytes) -> None:
    """Write and fsync one file (the folder is swapped in only once everything is on disk)."""
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def record_ends(body: bytes) -> np.ndarray:
    """Offsets just past each CSV record of ``body`` (text without a header).

    A line break ends a record unless it lies inside a quoted field. Quotes come in pairs
    within a field (a doubled quote inside stands for one), so a break is a record end
    exactly when the count of quotes before it is even: the parity survives a cumulative
    sum taken modulo 256, one byte per byte of text.
    """
    text = np.frombuffer(body, dtype=np.uint8)
    breaks = np.flatnonzero(text == _NEWLINE)
    quotes = text == _QUOTE
    if quotes.any():
        parity = np.cumsum(quotes, dtype=np.uint8)
        breaks = breaks[parity[breaks] % 2 == 0]
    return breaks.astype(np.int64) + 1


class CsvParts:
    """Numbered CSV files (``STEM-0001.csv``, ...) each within ``max_rows`` data rows and
    ``max_bytes`` bytes, header included; a limit of 0 is no limit."""

    def __init__(self, folder: Path, profile: Profile, header: bytes) -> None:
        self.folder, self.profile, self.header = folder, profile, header
        self.files: list[dict[str, Any]] = []
        self._fh: io.BufferedWriter | None = None
        self._path = folder
        self._rows = self._bytes = 0
        if profile.max_bytes and len(header) >= profile.max_bytes:
            raise self._too_small(f"the header alone takes {len(header)} bytes")

    def _too_small(self, why: str) -> ConfigError:
        return ConfigError(f"bad configuration value 'export.{self.profile.name}.max_bytes': "
                           f"{self.profile.max_bytes} is too small: {why}")

    def _open(self) -> None:
        self._path = self.folder / f"{self.profile.file_stem}-{len(self.files) + 1:04d}.csv"
        self._fh = self._path.open("wb")
        self._fh.write(self.header)
        self._rows, self._bytes = 0, len(self.header)

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            self.files.append(file_entry(self._path, "records", self._rows))

    def _room(self, ends: np.ndarray, first: int, offset: int) -> int:
        """How many of the records from ``first`` on fit in the open file."""
        left = len(ends) - first
        if self.profile.max_rows:
            left = min(left, self.profile.max_rows - self._rows)
        if self.profile.max_bytes:
            budget = offset + self.profile.max_bytes - self._bytes
            left = min(left, int(np.searchsorted(ends, budget, side="right")) - first)
        return left

    def feed(self, body: bytes) -> None:
        """Append CSV records (no header), opening a new file whenever one is full."""
        ends = record_ends(body)
        first = offset = 0
        while first < len(ends):
            if self._fh is None:
                self._open()
            fit = self._room(ends, first, offset)
            if fit <= 0:
                if self._rows == 0:
                    raise self._too_small(f"a record of {int(ends[first]) - offset} bytes does not fit "
                                          "beside the header")
                self._close()
                continue
            end = int(ends[first + fit - 1])
            assert self._fh is not None
            self._fh.write(body[offset:end])
            self._rows, self._bytes = self._rows + fit, self._bytes + end - offset
            first, offset = first + fit, end

    def finish(self) -> list[dict[str, Any]]:
        """Close the last file; an export without records still gets one header-only file."""
        if self._fh is None and not self.files:
            self._open()
        self._close()
        return self.files


def _csv_text(df: pl.DataFrame, *, header: bool) -> bytes:
    buf = io.BytesIO()
    df.write_csv(buf, include_header=header)
    return buf.getvalue()


def write_csv_parts(records: pl.DataFrame, folder: Path, profile: Profile) -> list[dict[str, Any]]:
    """Write the shaped records as UTF-8 CSV (no BOM, ISO dates), split within the limits."""
    parts = CsvParts(folder, profile, _csv_text(records.head(0), header=True))
    for start in range(0, records.height, SLICE_ROWS):
        parts.feed(_csv_text(records.slice(start, SLICE_ROWS), header=False))
    return parts.finish()


def _nest(paths: list[tuple[list[str], pl.Expr]]) -> list[pl.Expr]:
    """Struct expressions for dotted paths: ``a.b`` and ``a.c`` become ``{"a": {"b", "c"}}``."""
    groups: dict[str, list[tuple[list[str], pl.Expr]]] = {}
    for parts, expr in paths:
        groups.setdefault(parts[0], []).append((parts[1:], expr))
    out = []
    for name, items in groups.items():
        leaf = [expr for rest, expr in items if not rest]
        out.append(leaf[0].alias(name) if leaf else pl.struct(_nest(items)).alias(name))
    return out


def _value(records: pl.DataFrame, header: str, body: Body) -> pl.Expr:
    col = pl.col(header)
    if header in body.lists:
        return pl.when(col.is_not_null()).then(pl.concat_list(col))
    if body.empty_for_null and records.schema[header] == pl.String:
        return col.fill_null("")
    return col


def body_item(records: pl.DataFrame, profile: Profile, body: Body) -> pl.Expr:
    """One record as the object the target's bulk API takes."""
    headers = profile.headers if body.shape == "objects" else profile.headers[1:]
    values = [(h.split("."), _value(records, h, body)) for h in headers]
    if body.shape == "objects":
        return pl.struct(_nest(values))
    properties = pl.struct([expr.alias(h) for h, (_, expr) in zip(headers, values, strict=True)])
    return pl.struct(pl.lit(profile.key).alias("idProperty"), pl.col(profile.key).cast(pl.String).alias("id"),
                     properties.alias("properties"))


def write_bodies(records: pl.DataFrame, folder: Path, profile: Profile) -> dict[str, Any] | None:
    """JSONL: one request body a line, ``{"WRAPPER": [item, ...]}`` with ``batch_size`` items."""
    body = profile.body
    if body is None:
        return None
    batches = (
        records.with_row_index("__segcli_row")
        .select((pl.col("__segcli_row") // body.batch_size).alias("__segcli_batch"),
                body_item(records, profile, body).alias(body.wrapper))
        .group_by("__segcli_batch", maintain_order=True).agg(pl.col(body.wrapper))
        .select(body.wrapper)
    )
    path = folder / "requests.jsonl"
    buf = io.BytesIO()
    if batches.height:
        batches.write_ndjson(buf)
    write_file(path, buf.getvalue())
    return file_entry(path, "requests", batches.height, records=records.height, batch_size=body.batch_size,
                      endpoint=body.endpoint)
