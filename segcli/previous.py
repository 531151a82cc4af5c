"""What a run takes from the previous one (``--previous``, ``diff PREV CURR``): its as-of date
and the run order, the config change, the shrink guard and the departed warning (SPEC §4, §6).
The previous tiers themselves (``was_vip``, tenure, grace) and the departed rows are the tier
lifecycle's: :func:`segcli.tiers.previous_state`, :func:`segcli.tiers.with_previous` and
:func:`segcli.tiers.departed_rows`.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import polars as pl

from segcli.config import Config
from segcli.errors import InputDataError, RunWarning

# the columns a previous run's file needs to take part (segment --previous, report --previous)
PREVIOUS_COLUMNS = ("customer_id", "tier", "reason", "monetary")
# keys that describe the run, not the segmentation: they change between runs on purpose
RUN_KEYS = ("analysis.as_of", "analysis.strict", "analysis.allow")
CHANGED_KEYS_SHOWN = 10
DEPARTED_SHOWN = 10


def check_previous(previous: pl.DataFrame, name: str) -> pl.DataFrame:
    """``previous`` when it has the columns of an assignments file, else :class:`InputDataError`."""
    missing = set(PREVIOUS_COLUMNS) - set(previous.columns)
    if missing:
        raise InputDataError(f"{name}: not a segcli assignments file (missing {', '.join(sorted(missing))})")
    return previous


def run_as_of(assignments: pl.DataFrame, record: dict[str, Any] | None) -> dt.date | None:
    """A run's as-of date: from its run record, else the latest of its ``as_of`` column;
    ``None`` when neither says."""
    recorded = (record or {}).get("as_of")
    if recorded:
        return dt.date.fromisoformat(str(recorded)[:10])
    if "as_of" in assignments.columns and assignments["as_of"].drop_nulls().len():
        value = assignments["as_of"].drop_nulls().max()
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
    return None


def check_run_order(prev_as_of: dt.date | None, curr_as_of: dt.date | None, force: bool, *,
                    prev_name: str = "the previous run", curr_name: str = "this run",
                    hint: str = "were the two runs swapped? Pass the older one as the previous run, "
                                "or --force to go on") -> RunWarning | None:
    """Reversed runs (SPEC §6): the earlier run's as-of date must come before the later's.

    Parameters
    ----------
    prev_as_of, curr_as_of:
        The two runs' as-of dates; when either is unknown there is nothing to check.
    force:
        Go on all the same (``--force``): the mistake becomes a ``forced`` warning.
    prev_name, curr_name:
        How the message names the runs.
    hint:
        The detail line saying how to put it right.

    Returns
    -------
    RunWarning or None
        The ``forced`` warning to report, or ``None`` when the order is right.

    Raises
    ------
    InputDataError
        (exit 65) when the order is wrong and not ``force``.
    """
    if prev_as_of is None or curr_as_of is None or prev_as_of < curr_as_of:
        return None
    what = f"{prev_name} (as of {prev_as_of}) is not earlier than {curr_name} (as of {curr_as_of})"
    if not force:
        raise InputDataError(what, [hint])
    return RunWarning("forced", f"--force: {what}")


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config documents, with the values
    when they are short (``tiers.max_share 0.2 -> 0.1``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [k for key in sorted(set(old) | set(new), key=str)
                for k in changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    key = prefix.rstrip(".")
    if old == new or key in RUN_KEYS:
        return []
    if isinstance(old, (list, dict)) or isinstance(new, (list, dict)):
        return [key]
    return [f"{key} {json.dumps(old, ensure_ascii=False)} -> {json.dumps(new, ensure_ascii=False)}"]


def config_changed(previous_meta: dict[str, Any] | None, cfg: Config) -> RunWarning | None:
    """``config_changed`` (SPEC §6): PREV was made with another config, naming the keys."""
    recorded = (previous_meta or {}).get("config")
    if not isinstance(recorded, dict):
        return None  # nothing to compare with
    # the recorded config went through JSON: compare like with like
    current = json.loads(json.dumps(cfg.raw, ensure_ascii=False, default=str))
    keys = changed_keys(recorded, current)
    if not keys:
        return None
    more = f" (and {len(keys) - CHANGED_KEYS_SHOWN} more)" if len(keys) > CHANGED_KEYS_SHOWN else ""
    return RunWarning("config_changed", f"the config differs from the one the previous run was made with "
                      f"(config hash {str((previous_meta or {}).get('config_hash', ''))[:12]} -> {cfg.hash[:12]}): "
                      f"{'; '.join(keys[:CHANGED_KEYS_SHOWN])}{more}")


def previous_checks(previous: pl.DataFrame, previous_meta: dict[str, Any] | None, cfg: Config, as_of: dt.date,
                    force: bool) -> list[RunWarning]:
    """``--previous`` must be an earlier run (exit 65 unless ``force``); a config change
    against it is a warning."""
    found = [check_run_order(run_as_of(previous, previous_meta), as_of, force), config_changed(previous_meta, cfg)]
    return [w for w in found if w is not None]


def present(previous: pl.DataFrame) -> pl.DataFrame:
    """The customers in the previous run's data: a row written as ``departed`` only demoted one."""
    return previous.filter(pl.col("reason") != "departed")


def shrink_guard(previous: pl.DataFrame, customers: pl.DataFrame, cfg: Config, force: bool) -> list[RunWarning]:
    """Stop when customers or revenue fell by more than ``guard.max_drop`` against PREV (a
    truncated export must not demote half the VIPs); with ``force`` each drop is a
    ``forced`` warning instead.

    Raises
    ------
    InputDataError
        (exit 65) on a drop beyond the guard, unless ``force``.
    """
    prev = present(previous)
    prev_n, cur_n = prev.height, customers.height
    prev_rev = float(prev["monetary"].sum() or 0.0)
    cur_rev = float(customers["monetary"].sum() or 0.0)
    drops = []
    if prev_n and (prev_n - cur_n) / prev_n > cfg.guard_max_drop:
        drops.append(f"customers fell from {prev_n} to {cur_n} ({(prev_n - cur_n) / prev_n:.1%})")
    if prev_rev > 0 and (prev_rev - cur_rev) / prev_rev > cfg.guard_max_drop:
        drops.append(f"total revenue fell from {prev_rev:,.2f} to {cur_rev:,.2f} "
                     f"({(prev_rev - cur_rev) / prev_rev:.1%})")
    if drops and not force:
        raise InputDataError(
            f"the data shrank by more than guard.max_drop ({cfg.guard_max_drop:.0%}) against the previous run",
            [*drops, "a truncated export would demote many VIPs; check the export, or pass --force to go on"])
    return [RunWarning("forced", f"--force: {d}") for d in drops]


def departed_warning(departed: pl.DataFrame) -> RunWarning | None:
    """The ``departed`` warning naming the first of PREV's customers absent from this run's
    data (:func:`segcli.tiers.departed_rows`, in customer-id order); they are written as
    yuxin with reason ``departed`` so that a CRM upsert does not leave them VIP (SPEC §4)."""
    if not departed.height:
        return None
    ids = departed["customer_id"].sort().to_list()
    return RunWarning("departed", f"{departed.height} customer{'s' if departed.height > 1 else ''} "
                      "of the previous run absent from the data, written as yuxin with reason "
                      f"'departed': {', '.join(ids[:DEPARTED_SHOWN])}{' ...' if len(ids) > DEPARTED_SHOWN else ''}")
