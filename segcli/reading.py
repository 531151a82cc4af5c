"""Checks over all inputs at once (SPEC §6): files skipped in folders, the same export given
twice, inputs sharing rows, trailing total rows, amounts too large for ``amount_scale``.

Each turns what the reading pass gathered into warnings or errors. Data is read again only
where something was found: files of equal size are hashed, rows repeated across inputs are
traced to their inputs, too large amounts are listed.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import polars as pl

from segcli.errors import InputDataError, RunWarning
from segcli.io import CHUNK_BYTES, STDIN, Source
from segcli.parse import INT64_MAX, clean_amount_text

# Two inputs sharing at least this share of the smaller one's distinct rows are one export
# read twice, or overlapping pulls (a month exported twice); a few shared rows are normal
# (a customer buying the same item on the same day in two monthly files is rare but real).
OVERLAP_SHARE = 0.5
# Rows up to which the rows shared by each pair of inputs are counted (when some rows repeat
# across inputs): a second read, and a hash set of every distinct row (about 50 bytes a row).
# Above it only the same file given twice is found.
OVERLAP_MAX_ROWS = 10_000_000
SHOWN = 10  # names listed in a warning


def skipped_files_warning(skipped: list[str]) -> list[RunWarning]:
    """Say which lock or hidden files a folder (or glob) held that were not read."""
    if not skipped:
        return []
    listed = ", ".join(skipped[:SHOWN]) + (" ..." if len(skipped) > SHOWN else "")
    lock = any(Path(p).name.startswith("~$") for p in skipped)
    return [RunWarning("skipped_files", f"{len(skipped)} lock or hidden file{'s' if len(skipped) > 1 else ''} "
                       f"not read: {listed}"
                       + (" (Excel's ~$ lock file means the workbook is open: save and close it)" if lock else ""))]


def unmapped_warnings(hints: dict[str, list[str]]) -> list[RunWarning]:
    """``unmapped_column``: one warning per hint, naming the files it is about (a folder of
    a hundred parts with the same header gets one line, not a hundred)."""
    return [RunWarning("unmapped_column", f"{files[0]}{f' (and {len(files) - 1} more)' if len(files) > 1 else ''}: "
                       f"{text}") for text, files in hints.items()]


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def same_files(files: list[str], sources: list[Source]) -> list[tuple[int, int]]:
    """Pairs of inputs (indexes, each later one paired with its first twin) that are one
    file: the same path after resolving links, or the same size and SHA-256 content."""
    first: dict[object, int] = {}
    pairs = []
    by_size: dict[int, list[int]] = defaultdict(list)
    for i, (name, src) in enumerate(zip(files, sources)):
        key = Path(name).resolve() if name != STDIN else None
        if key is not None and key in first:
            pairs.append((first[key], i))
            continue
        if key is not None:
            first[key] = i
        by_size[os.path.getsize(src.path)].append(i)
    for group in by_size.values():
        if len(group) < 2:
            continue
        seen: dict[str, int] = {}
        for i in group:
            digest = _digest(sources[i].path)
            if digest in seen:
                pairs.append((seen[digest], i))
            else:
                seen[digest] = i
    return sorted(pairs)


def overlap_keys(canon: pl.LazyFrame) -> pl.LazyFrame:
    """The distinct (``source``, ``row_hash``) pairs of the rows of every input, compared per
    pair of inputs by :func:`overlap_warnings`.

    ``canon`` holds the rows of every input (``source``, ``row_hash``, flags ``blank`` and
    ``total``)."""
    return canon.filter(~pl.col("blank") & ~pl.col("total")).select("source", "row_hash").unique()


def _shared_rows(keys: pl.DataFrame) -> tuple[dict[int, int], pl.DataFrame]:
    """(distinct rows per input, distinct rows shared per pair of inputs ``source`` <
    ``source_other``), from the keys of :func:`overlap_keys`."""
    distinct = dict(keys.group_by("source").len().iter_rows())
    shared = keys.filter(pl.col("row_hash").is_duplicated())  # rows found in more than one input
    pairs = (shared.join(shared, on="row_hash", suffix="_other").filter(pl.col("source") < pl.col("source_other"))
             .group_by("source", "source_other").agg(shared=pl.len()).sort("source", "source_other"))
    return distinct, pairs


def repeats_across(canon: pl.LazyFrame) -> pl.LazyFrame:
    """Rows identical to an earlier row of any input, per date (``rows - distinct``)."""
    return (canon.filter(~pl.col("blank") & ~pl.col("total")).group_by(pl.col("ts").dt.date())
            .agg(repeats=pl.len() - pl.col("row_hash").n_unique()).select(pl.col("repeats").sum()))


def overlap_warnings(sources: list[Source], twins: list[tuple[int, int]], keys: pl.DataFrame | None,
                     ) -> list[RunWarning]:
    """``overlapping_inputs``: the same file given twice, or inputs sharing most of their rows
    (``keys``: see :func:`overlap_keys`; None when they were not counted)."""
    warnings = [RunWarning("overlapping_inputs", f"{sources[j].name} is the same file as {sources[i].name}"
                           f"{' (same path)' if sources[i].name == sources[j].name else ' (same content)'}: "
                           "its rows are read twice and every sum counts them twice; give each export once")
                for i, j in twins]
    if keys is None:
        return warnings
    distinct, shared = _shared_rows(keys)
    twin_pairs = set(twins)
    for i, j, n in shared.iter_rows():
        smaller = i if distinct.get(i, 0) <= distinct.get(j, 0) else j
        if (i, j) in twin_pairs or not distinct.get(smaller) or n / distinct[smaller] < OVERLAP_SHARE:
            continue
        warnings.append(RunWarning(
            "overlapping_inputs",
            f"{sources[i].name} and {sources[j].name} share {n:,} identical rows ({n / distinct[smaller]:.0%} of "
            f"{sources[smaller].name}'s distinct rows): overlapping exports count those rows twice; give each "
            "period once, or set [input] dedupe = true to drop rows repeated across files"))
    return warnings


def total_rows(groups: pl.DataFrame) -> tuple[dict[int, int], bool]:
    """(input -> line of its total row: a total marker as the customer id of the last
    non-blank row; whether some input has a total marker elsewhere, which stays a row).

    ``groups`` are the reading pass's counts with ``markers``, ``marker_line`` and
    ``last_line`` per group."""
    per = (groups.filter(~pl.col("blank")).group_by("source")
           .agg(pl.col("markers").sum(), pl.col("marker_line").max(), pl.col("last_line").max()))
    found: dict[int, int] = {}
    elsewhere = False
    for row in per.filter(pl.col("markers") > 0).iter_rows(named=True):
        last = row["marker_line"] == row["last_line"]
        if last:
            found[row["source"]] = int(row["marker_line"])
        elsewhere = elsewhere or row["markers"] > int(last)
    return found, elsewhere


def total_rule(found: dict[int, int] | None) -> pl.Expr:
    """``total``: the row is a trailing total row. ``None``: every total marker is taken for
    one (the first pass, right unless a marker sits elsewhere than last)."""
    if found is None:
        return pl.col("total_marker")
    rule = pl.lit(False)
    for source, line in found.items():
        rule = rule | ((pl.col("source") == source) & (pl.col("line") == line))
    return rule


def total_row_values(parsed: pl.LazyFrame, found: dict[int, int]) -> pl.DataFrame:
    """The trailing total rows (``source``, ``line``, ``raw_customer_id``, ``raw_amount``),
    read for the warning: a second read, made only when a file has one."""
    return (parsed.filter(total_rule(found)).select("source", "line", "raw_customer_id", "raw_amount")
            .collect().sort("source"))


def total_row_warnings(sources: list[Source], rows: pl.DataFrame) -> list[RunWarning]:
    """``total_row``: the trailing total rows dropped, by file and line, with their amount."""
    return [RunWarning("total_row", f"{sources[i].name}: {sources[i].row_word} {line} is a total row (customer id "
                       f"{text!r}, amount {amount or ''!r}) and the file's last row: dropped, "
                       "not counted as a customer")
            for i, line, text, amount in rows.iter_rows()]


def _fitting_scale(largest: Decimal) -> int | None:
    """The largest amount_scale at which ``largest`` still fits exactly, if any."""
    for scale in range(8, -1, -1):
        if abs(largest) * 10**scale <= INT64_MAX:
            return scale
    return None


def too_large_error(examples: pl.DataFrame, counts: dict[int, int], largest: Decimal | None, scale: int,
                    sources: list[Source], columns: dict[int, str]) -> InputDataError:
    """The error for amounts beyond what ``amount_scale`` keeps exactly (SPEC §6)."""
    total = sum(counts.values())
    names = ", ".join(sources[i].name for i in sorted(counts))
    details = []
    for i in sorted(counts):
        details.append(f"{sources[i].name}: column '{columns[i]}': {counts[i]} amount{'s' if counts[i] > 1 else ''} "
                       f"above {INT64_MAX / 10**scale:,.0f}")
        for line, value in examples.filter(pl.col("source") == i).select("line", "raw_amount").iter_rows():
            details.append(f"    {sources[i].row_word} {line}: {columns[i]}={value!r}")
    fits = _fitting_scale(largest) if largest is not None else None
    if fits is not None and fits < scale:
        details.append(f"amounts are summed exactly as 64-bit integers of 10^-{scale} (amount_scale = {scale}): lower "
                       f"amount_scale; the largest amount here fits with [input] amount_scale = {fits} in the config "
                       "file (-c)")
    else:
        details.append("the amount is too large to keep exactly at any amount_scale: check the value")
    return InputDataError(f"{names}: {total} amount{'s are' if total > 1 else ' is'} too large for amount_scale = "
                          f"{scale}", details)


def too_large_rows(rows: pl.LazyFrame, scale: int) -> pl.LazyFrame:
    """Rows whose amount is a number but did not fit in minor units (``amount_minor`` null)."""
    value = clean_amount_text(pl.col("raw_amount")).cast(pl.Decimal(38, scale), strict=False)
    return (rows.filter(pl.col("amount_minor").is_null() & pl.col("raw_amount").is_not_null())
            .with_columns(value=value).filter(pl.col("value").is_not_null()))
