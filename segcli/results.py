"""The result objects of the Python API (SPEC §7): Polars frames, the run record and the
warnings of one run, with the summary tables and the JSON documents the CLI prints.

They only hold and arrange what the stages computed: ``document()`` is what ``--json`` prints,
``summary(by=...)`` what ``segcli summary --by`` shows. Nothing here prints, reads a file or
exits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from segcli.config import Config
from segcli.errors import RunWarning, warning_records
from segcli.report import concentration_document, summarize, to_records

if TYPE_CHECKING:  # start-up (issue 16): `segcli validate` does not load the tiers and clustering
    from segcli.diff import TierDiff
    from segcli.pareto import Concentration

LIFETIMES_STATISTICS = ("count", "mean", "min", "50%", "max")


@dataclass(frozen=True)
class SegmentResult:
    """``segcli segment``: one assignment per customer (SPEC §5) and how it was made.

    Attributes
    ----------
    assignments:
        The assignments table, sorted by ``customer_id``, columns as SPEC §5 lists them.
    record:
        The run record written with the assignments (Parquet metadata or ``OUT.meta.json``).
    warnings:
        What the run found worth a look (also in ``record["warnings"]``).
    rejects:
        The invalid rows ``analysis.max_invalid`` let through (file, line, raw values), or None.
    concentration:
        The Pareto figures of the customers (what ``segcli pareto`` reports).
    config:
        The configuration of the run.
    previous:
        The previous run's assignments the run was compared with, or None.
    """

    assignments: pl.DataFrame
    record: dict[str, Any]
    warnings: list[RunWarning]
    rejects: pl.DataFrame | None
    concentration: Concentration
    config: Config
    previous: pl.DataFrame | None = None

    @property
    def departed(self) -> int:
        """Rows written only to demote customers of the previous run absent from the data."""
        return int((self.assignments["reason"] == "departed").sum())

    def summary(self, by: str = "tier") -> pl.DataFrame:
        """Per ``tier`` (or ``vip_group``, ``rfm_segment``, ``cluster``, ``reason``): customers,
        shares, recency, frequency, revenue and service terms, as ``segcli summary --by``."""
        return summarize(self.assignments, by)

    def document(self, *, output: str | None = None) -> dict[str, Any]:
        """The JSON document ``segcli segment --json`` prints (``output``: its ``-o``)."""
        gone = self.departed
        return {"as_of": self.record["as_of"], "customers": self.assignments.height - gone, "departed": gone,
                "rows": self.record["rows"], "output": output, "pareto": concentration_document(self.concentration),
                "tiers": to_records(self.summary("tier")), "vip_groups": to_records(self.summary("vip_group")),
                "model": self.record["model"]["cluster"], "decision": self.record.get("decision")}


@dataclass(frozen=True)
class RfmResult:
    """``segcli rfm``: per-customer features, scores, segment, cluster and Pareto columns.

    Attributes
    ----------
    table:
        One row per customer (``schema.RFM_COLUMNS``), sorted by ``customer_id``.
    record, warnings, rejects:
        As in :class:`SegmentResult`.
    """

    table: pl.DataFrame
    record: dict[str, Any]
    warnings: list[RunWarning]
    rejects: pl.DataFrame | None

    def summary(self, by: str = "rfm_segment") -> pl.DataFrame:
        """The segment summary ``segcli rfm`` prints (any column ``summary --by`` takes)."""
        return summarize(self.table, by)

    def document(self) -> list[dict[str, Any]]:
        """What ``segcli rfm --json`` prints: the segment summary as records."""
        return to_records(self.summary())


@dataclass(frozen=True)
class LifetimesResult:
    """``segcli rfm --style lifetimes``: ``frequency``, ``recency``, ``T`` and
    ``monetary_value`` per customer with a purchase (SPEC §3), in periods of ``freq``.

    Attributes
    ----------
    table:
        One row per customer, sorted by ``customer_id``.
    freq:
        ``"D"`` (days) or ``"W"`` (Monday-start weeks).
    record, warnings, rejects:
        As in :class:`SegmentResult`.
    """

    table: pl.DataFrame
    record: dict[str, Any]
    warnings: list[RunWarning]
    rejects: pl.DataFrame | None
    freq: str

    def summary(self) -> pl.DataFrame:
        """Count, mean, min, median and max of each column: the preview ``rfm --style
        lifetimes`` prints without ``-o``."""
        described = self.table.select("frequency", "recency", "T", "monetary_value").describe(percentiles=(0.5,))
        return described.filter(pl.col("statistic").is_in(LIFETIMES_STATISTICS))

    def document(self) -> list[dict[str, Any]]:
        """What ``segcli rfm --style lifetimes --json`` prints: every row as a record."""
        return to_records(self.table)


@dataclass(frozen=True)
class ParetoResult:
    """``segcli pareto``: revenue concentration.

    Attributes
    ----------
    table:
        ``customer_id``, ``monetary``, ``pareto_rank`` (1 = biggest), ``cum_share`` and
        ``pareto_class`` per customer, sorted by ``customer_id``.
    concentration:
        Head sizes, top shares, Gini and ABC counts.
    vip_limit:
        The VIP limit L of the config for these customers (the chart marks it).
    record, warnings, rejects:
        As in :class:`SegmentResult` (no file is written: ``record`` says what was read).
    """

    table: pl.DataFrame
    concentration: Concentration
    vip_limit: int
    record: dict[str, Any]
    warnings: list[RunWarning]
    rejects: pl.DataFrame | None

    def document(self) -> dict[str, Any]:
        """What ``segcli pareto --json`` prints."""
        return concentration_document(self.concentration)


@dataclass(frozen=True)
class ValidationResult:
    """``segcli validate``: the inputs passed every check.

    Attributes
    ----------
    as_of:
        The as-of date the inputs give (ISO text).
    inputs:
        Per input file: path, bytes, format, encoding, rows, invalid rows, mapped columns.
    rows:
        The row counts of the run record (read, blank, identical, invalid, dropped, used, ...).
    warnings:
        What the checks found worth a look.
    engine:
        Where the checks ran (``{"name": "polars"}``, or Spark's version and master).
    """

    as_of: str
    inputs: list[dict[str, Any]]
    rows: dict[str, Any]
    warnings: list[RunWarning]
    engine: dict[str, Any] = field(default_factory=lambda: {"name": "polars"})

    def summary(self) -> pl.DataFrame:
        """The row counts as a table (``check``, ``rows``)."""
        return pl.DataFrame({"check": list(self.rows), "rows": list(self.rows.values())})

    def document(self) -> dict[str, Any]:
        """What ``segcli validate --json`` prints."""
        return {"valid": True, "as_of": self.as_of, "inputs": self.inputs, "engine": self.engine, "rows": self.rows,
                "warnings": warning_records(self.warnings)}


@dataclass(frozen=True)
class DiffResult:
    """``segcli diff PREV CURR``: tier migrations between two runs.

    Attributes
    ----------
    diff:
        Every customer of either run with its ``change``, and the tier matrix.
    previous, current:
        How the two runs are named (their paths).
    warnings:
        A ``forced`` warning when ``force`` let a reversed pair of runs through.
    tier_changes_only:
        ``table`` leaves out VIP-group changes whose service terms stay the same.
    """

    diff: TierDiff
    previous: str
    current: str
    warnings: list[RunWarning]
    tier_changes_only: bool = False

    @property
    def table(self) -> pl.DataFrame:
        """The changed customers as ``diff -o FILE`` writes them."""
        from segcli.diff import change_table

        return change_table(self.diff, tier_changes_only=self.tier_changes_only)

    @property
    def matrix(self) -> pl.DataFrame:
        """from_tier x to_tier: customers and revenue."""
        return self.diff.matrix

    def summary(self) -> pl.DataFrame:
        """Customers per kind of change, and how many of them get other service terms."""
        from segcli.diff import change_counts

        return change_counts(self.diff)

    def lists(self) -> dict[str, pl.DataFrame]:
        """The moved customers of each kind, biggest current revenue first."""
        from segcli.diff import change_lists

        return change_lists(self.diff)

    def document(self) -> dict[str, Any]:
        """What ``segcli diff --json`` prints: the runs, the matrix, counts per change, the
        lists of each kind of move and the customers still departed."""
        from segcli.diff import change_count_map

        d = self.diff
        lists = {f"{k}s" if k != "new" else "new": to_records(v) for k, v in self.lists().items()}
        return {"previous": self.previous, "current": self.current, "matrix": to_records(d.matrix),
                **change_count_map(d), **lists,
                "still_departed": d.changes.filter(pl.col("change") == "still_departed")["customer_id"].to_list()}
