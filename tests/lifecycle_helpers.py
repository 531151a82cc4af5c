"""Hand fixtures of the tier lifecycle (issue 14): small transaction sets whose Pareto classes,
limits and lifecycle dates are worked out by hand in the comments, chained over three monthly
runs through the command line. Shared by test_lifecycle.py and test_explain.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from helpers_numbers import invoke, write_config, write_csv
from segcli.io import read_assignments

M1, M2, M3 = dt.date(2025, 1, 31), dt.date(2025, 2, 28), dt.date(2025, 3, 31)
SMALL = [(f"s{i}", "2025-01-05", "10", f"s{i}") for i in range(1, 7)]  # six small buyers, 60 in all

# Grace. keep_share = head_share switches hysteresis off, so grace alone keeps VIPs.
#   M1: A 400, B 300, C 200, E 190, small 60 = 1,150; 80% = 920. Revenue before each, biggest
#       first: A 0, B 400, C 700, E 900 (< 920: A), s 1,090. Class A = A B C E; N 10, L 5.
#   M2: + D 1,200 (Feb 20) = 2,350; 80% = 1,880. Before: D 0, A 1,200, B 1,600, C 1,900 (not A).
#       C and E drop out but are active: in grace until Feb 28 + 30 = Mar 30, at risk.
#       D is promoted. N 11, L 5: seats A B C E (incumbents), then D.
#   M3: + E 300 (Mar 15): E 490, total 2,650; 80% = 2,120. Before: D 0, E 1,200, A 1,690,
#       B 2,090 (< 2,120: A), C 2,390. E is back in class A: grace ends, tier_since kept.
#       C: Mar 31 is on or after Mar 30 and C still does not qualify: demoted.
GRACE_ROWS = [("A", "2025-01-10", "400", "a1"), ("B", "2025-01-12", "300", "b1"), ("C", "2025-01-15", "200", "c1"),
              ("E", "2025-01-20", "190", "e1"), *SMALL, ("D", "2025-02-20", "1200", "d1"),
              ("E", "2025-03-15", "300", "e2")]
GRACE_CONFIG = """
[tiers]
max_share = 0.5
keep_share = 0.80

[tiers.lifecycle]
grace_days = 30
"""

# Tenure (no grace, no hysteresis): a VIP is kept while tier_since is < 45 days before as-of.
#   M1: P1 400, P2 300, small 60 = 760; 80% = 608: P1 0, P2 400 -> A. VIPs P1 P2 (since Jan 31).
#   M2: + N1 350 (Feb 10) = 1,110; 80% = 888: P1 0, N1 400, P2 750 -> all A. N1 new, since Feb 28.
#   M3: + Q 3,000 (Mar 20) = 4,110; 80% = 3,288: Q 0, P1 3,000 (A), N1 3,400, P2 3,750.
#       N1: VIP since Feb 28, 31 days < 45: kept (min_tenure, at risk). P2: since Jan 31, 59
#       days: demoted. N 10, L 5.
TENURE_ROWS = [("P1", "2025-01-10", "400", "p1"), ("P2", "2025-01-12", "300", "p2"), *SMALL,
               ("N1", "2025-02-10", "350", "n1"), ("Q", "2025-03-20", "3000", "q1")]
TENURE_CONFIG = """
[tiers]
max_share = 0.5
keep_share = 0.80

[tiers.lifecycle]
min_tenure_days = 45
"""

# Capacity: the grace data, and one account manager fewer from February (capacity 3).
#   M2: L = min(3, floor(0.5 x 11)) = 3. Candidates in seating order: incumbents A 400, B 300,
#       C 200 (grace), E 190 (grace), then the entrant D 1,200. E (seat 4) and D (seat 5) are
#       cut: the kept customers alone exceed L, the lowest monetary among them goes.
CAPACITY_CONFIG = GRACE_CONFIG.replace("keep_share = 0.80", "keep_share = 0.80\ncapacity = 3")

LIFECYCLE_COLUMNS = ("tier", "reason", "previous_tier", "tier_since", "at_risk", "grace_until")


def segment_run(tmp: Path, src: Path, as_of: dt.date, config: Path, *, previous: Path | None = None,
                suffix: str = ".parquet", extra: Sequence[str] = ()) -> tuple[pl.DataFrame, dict[str, Any], Path]:
    """One `segcli segment` run to ``tmp/<as_of><suffix>``: (rows, run record, path)."""
    out = tmp / f"{as_of.isoformat()}{suffix}"
    args = ["segment", src, "-o", out, "--as-of", as_of.isoformat(), "-c", config, "-q", *extra]
    if previous is not None:
        args += ["--previous", previous]
    invoke(args)
    df, meta = read_assignments(str(out))
    return df, meta, out


def chain(tmp: Path, rows: list[tuple[str, str, str, str]], config_text: str, *,
          configs: Sequence[str] | None = None, suffix: str = ".parquet",
          ) -> list[tuple[pl.DataFrame, dict[str, Any], Path]]:
    """M1 (no --previous), M2 and M3 each with the run before as --previous; ``configs``
    gives each month its own config text."""
    src = write_csv(tmp / "tx.csv", rows)
    texts = list(configs) if configs else [config_text] * 3
    runs: list[tuple[pl.DataFrame, dict[str, Any], Path]] = []
    for i, as_of in enumerate((M1, M2, M3)):
        cfg = write_config(tmp / f"c{i}.toml", texts[i])
        runs.append(segment_run(tmp, src, as_of, cfg, previous=runs[-1][2] if runs else None, suffix=suffix))
    return runs


def lifecycle_view(df: pl.DataFrame) -> dict[str, tuple[Any, ...]]:
    """customer -> (tier, reason, previous_tier, tier_since, at_risk, grace_until), dates as text."""
    out = {}
    for r in df.iter_rows(named=True):
        out[r["customer_id"]] = tuple(v.isoformat() if isinstance(v, dt.date) else v
                                      for v in (r[c] for c in LIFECYCLE_COLUMNS))
    return out
