"""Errors and warnings of segcli's core: SegcliError subclasses, each with the exit code the CLI
maps it to (SPEC §2), and RunWarning with its stable kinds (SPEC §6)."""

from __future__ import annotations

from dataclasses import dataclass


class SegcliError(Exception):
    """Base class: a user-facing failure with an exit code and optional detail lines."""

    exit_code = 1

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details or [])


class UsageError(SegcliError):
    """The command line asks for something impossible."""

    exit_code = 2


class InputDataError(SegcliError):
    """The transactions are readable but bad: missing columns, unparsable values."""

    exit_code = 65


class InputMissingError(SegcliError):
    """An input path does not exist or cannot be read."""

    exit_code = 66


class OutputError(SegcliError):
    """An output cannot be written."""

    exit_code = 73


class ConfigError(SegcliError):
    """The configuration is invalid."""

    exit_code = 78


@dataclass(frozen=True)
class RunWarning:
    """A run that goes on but should be looked at: a stable ``kind`` (what ``--allow`` names,
    recorded in the run record) and the sentence a person reads (SPEC §6)."""

    kind: str
    text: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.text}"


def warning_records(warnings: list[RunWarning]) -> list[dict[str, str]]:
    """The warnings as the run record and ``--json`` documents keep them: kind and text."""
    return [{"kind": w.kind, "text": w.text} for w in warnings]


# Every warning kind segcli raises; ``--allow`` and ``analysis.allow`` accept only these.
WARNING_KINDS = {
    "identical_rows": "rows identical to an earlier row in every column (kept)",
    "after_as_of": "rows dated after the as-of date (dropped)",
    "outside_window": "rows before the window (dropped)",
    "rounded": "amounts with more decimal places than amount_scale (rounded)",
    "invalid_rows": "invalid rows let through by --max-invalid (written to the rejects file)",
    "total_row": "a trailing total row (合计, Total, ...) dropped",
    "skipped_files": "files skipped when expanding a folder (lock files, hidden files)",
    "stale_export": "the latest transaction is older than analysis.max_staleness_days before the as-of date",
    "overlapping_inputs": "the same file given twice, or inputs sharing identical rows",
    "config_changed": "the config differs from the one --previous was made with",
    "departed": "customers of the previous run absent from the data (written as departed)",
    "forced": "a guard was overridden with --force",
    "unmapped_column": "a header that looks like an order id or currency was not mapped",
}
