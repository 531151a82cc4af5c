"""Independent reference computations for the numbers segcli writes and prints.

Nothing here imports segcli's computing modules: every formula is re-implemented from
SPEC.md §3-§5 in plain Python (``decimal``/``fractions``), numpy or pandas, so a test that
compares segcli's output with these functions checks segcli against the contract, not
against itself. Only the CLI entry point (``segcli.cli.app``) is used, to run segcli.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from typer.testing import CliRunner

from segcli.cli import app

AS_OF = dt.date(2025, 1, 31)
BINS = 5
SCALE = 4  # default amount_scale: money is exact to 1/10_000
HEAD_SHARES = (0.50, 0.80, 0.90, 0.95)
TOP_SHARES = (0.01, 0.05, 0.10, 0.20, 0.50)

# SPEC §3: rows R 5..1, columns F 1..5 (R 1 and 2 share a row).
SEGMENT_GRID: dict[tuple[int, int], str] = {}
_ROWS = {
    5: ["new", "potential_loyalist", "potential_loyalist", "champions", "champions"],
    4: ["promising", "potential_loyalist", "potential_loyalist", "loyal", "loyal"],
    3: ["about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"],
    2: ["hibernating", "hibernating", "at_risk", "at_risk", "cannot_lose"],
    1: ["hibernating", "hibernating", "at_risk", "at_risk", "cannot_lose"],
}
for _r, _names in _ROWS.items():
    for _f, _name in enumerate(_names, start=1):
        SEGMENT_GRID[(_r, _f)] = _name


# --------------------------------------------------------------------------- running segcli


def invoke(args: Sequence[str], *, ok: bool = True):  # type: ignore[no-untyped-def]
    """Run segcli in-process; with ``ok`` assert exit 0 and show stderr on failure."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (
            f"segcli {' '.join(map(str, args))} exited {result.exit_code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\nexception: {result.exception!r}"
        )
    return result


def write_csv(path: Path, rows: Iterable[Sequence[Any]],
              header: Sequence[str] = ("customer_id", "order_date", "amount", "order_id")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow(["" if v is None else v for v in row])
    return path


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def run_rfm(tmp: Path, csv_path: Path, *, as_of: dt.date | str = AS_OF, config: Path | None = None,
            out_name: str = "rfm.parquet", extra: Sequence[str] = ()):  # type: ignore[no-untyped-def]
    """``segcli rfm`` to a file; returns (the written table, the CliRunner result)."""
    out = tmp / out_name
    args = ["rfm", str(csv_path), "-o", str(out), "--as-of", str(as_of), *extra]
    if config is not None:
        args += ["-c", str(config)]
    result = invoke(args)
    df = pl.read_parquet(out) if out.suffix == ".parquet" else pl.read_csv(
        out, schema_overrides={"customer_id": pl.String}, try_parse_dates=True)
    return df, result


def run_segment(tmp: Path, csv_path: Path, *, as_of: dt.date | str = AS_OF, config: Path | None = None,
                extra: Sequence[str] = ()):  # type: ignore[no-untyped-def]
    out = tmp / "assignments.parquet"
    args = ["segment", str(csv_path), "-o", str(out), "--as-of", str(as_of), *extra]
    if config is not None:
        args += ["-c", str(config)]
    result = invoke(args)
    return pl.read_parquet(out), result


def run_pareto_json(csv_path: Path, *, as_of: dt.date | str = AS_OF, config: Path | None = None) -> dict[str, Any]:
    args = ["pareto", str(csv_path), "--json", "--as-of", str(as_of)]
    if config is not None:
        args += ["-c", str(config)]
    return json.loads(invoke(args).stdout)


# --------------------------------------------------------------------------- features (SPEC §3)


@dataclass
class Features:
    customer_id: str
    frequency: int
    first_purchase: dt.date | None
    last_purchase: dt.date | None
    recency_days: int | None
    monetary: Decimal
    gross_revenue: Decimal
    returns_amount: Decimal

    @property
    def avg_order_value(self) -> float | None:
        """Money (SPEC §5): the mean rounded half-to-even to amount_scale places."""
        if not self.frequency:
            return None
        return float((self.monetary / self.frequency).quantize(Decimal(1).scaleb(-SCALE), ROUND_HALF_EVEN))


def parse_ts(text: str) -> dt.datetime:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            pass
    raise ValueError(text)


def reference_features(rows: Iterable[Sequence[Any]], as_of: dt.date = AS_OF) -> dict[str, Features]:
    """SPEC §3 order/purchase/feature rules in plain Python with exact decimals.

    ``rows``: (customer_id, timestamp text, amount text, order_id or None/"").
    """
    orders: dict[tuple[str, str], list[tuple[dt.datetime, Decimal]]] = defaultdict(list)
    customers: set[str] = set()
    for cust, ts_text, amount, order_id in rows:
        ts = parse_ts(ts_text)
        if ts.date() > as_of:
            continue
        key = f"id:{order_id}" if order_id not in (None, "") else f"ts:{ts.isoformat()}"
        orders[(cust, key)].append((ts, Decimal(str(amount))))
        customers.add(cust)
    out = {c: Features(c, 0, None, None, None, Decimal(0), Decimal(0), Decimal(0)) for c in customers}
    for (cust, _key), lines in orders.items():
        f = out[cust]
        net = sum((a for _, a in lines), Decimal(0))
        has_return = any(a < 0 for _, a in lines)
        f.monetary += net
        f.gross_revenue += sum((a for _, a in lines if a > 0), Decimal(0))
        f.returns_amount += sum((-a for _, a in lines if a < 0), Decimal(0))
        purchase = net > 0 or (net == 0 and not has_return)
        if purchase:
            day = min(ts for ts, a in lines if a >= 0).date()
            f.frequency += 1
            f.first_purchase = day if f.first_purchase is None else min(f.first_purchase, day)
            f.last_purchase = day if f.last_purchase is None else max(f.last_purchase, day)
    for f in out.values():
        if f.last_purchase is not None:
            f.recency_days = (as_of - f.last_purchase).days
    return out


def minor(value: Decimal) -> int:
    """Exact minor units (amount x 10^SCALE)."""
    q = value * (10**SCALE)
    assert q == q.to_integral_value()
    return int(q)


# --------------------------------------------------------------------------- scores (SPEC §3)


def spec_scores(goodness: Sequence[float | int], bins: int = BINS) -> np.ndarray:
    """``1 + floor(bins * (rank_min - 1) / n)``, ranking worst (smallest goodness) to best,
    except the tie group holding the best value, which gets ``bins``; when all values are
    equal, everyone gets ``ceil(bins / 2)``.

    ``rank_min`` of a value is 1 + the number of values strictly worse; computed with pandas'
    ``rank(method="min")`` and cross-checked with a sorted search in numpy.
    """
    s = pd.Series(list(goodness), dtype="object")
    n = len(s)
    rank_min = s.rank(method="min").astype(np.int64).to_numpy()
    arr = np.array(sorted(goodness), dtype=object)
    alt = np.array([int(np.searchsorted(arr, v, side="left")) + 1 for v in goodness], dtype=np.int64)
    assert (rank_min == alt).all()
    if len(set(goodness)) == 1:
        return np.full(n, math.ceil(bins / 2), dtype=np.int64)
    scores = 1 + (bins * (rank_min - 1)) // n
    scores[np.array([v == max(goodness) for v in goodness])] = bins
    return scores


NEVER = -(10**15)  # goodness of "no purchase": worse than any real recency


def reference_scores(feats: dict[str, Features], bins: int = BINS) -> dict[str, tuple[int, int, int]]:
    ids = sorted(feats)
    r_good = [NEVER if feats[c].recency_days is None else -feats[c].recency_days for c in ids]
    f_good = [feats[c].frequency for c in ids]
    m_good = [minor(feats[c].monetary) for c in ids]
    r, f, m = spec_scores(r_good, bins), spec_scores(f_good, bins), spec_scores(m_good, bins)
    # a customer without purchase has the worst R and F (SPEC §3), even when nobody bought
    never = [feats[c].frequency == 0 for c in ids]
    return {c: (1 if never[i] else int(r[i]), 1 if never[i] else int(f[i]), int(m[i])) for i, c in enumerate(ids)}


# --------------------------------------------------------------------------- Pareto (SPEC §3)


@dataclass
class ParetoRef:
    order: list[str]  # customer ids, biggest first, ties by id
    cum_share: dict[str, float]
    pareto_class: dict[str, str]
    total_minor: int
    gini: float
    head: dict[float, tuple[int, float]]
    top: dict[float, tuple[int, float]]
    abc: dict[str, tuple[int, float]]


def reference_pareto(monetary_minor: dict[str, int], head_share: float = 0.80, b_share: float = 0.95) -> ParetoRef:
    """Pareto classes and concentration figures in exact integer/fraction arithmetic."""
    x = {c: max(v, 0) for c, v in monetary_minor.items()}
    # Python str order = code point order = UTF-8 byte order
    order = sorted(x, key=lambda c: (-x[c], c))
    n = len(order)
    total = sum(x.values())
    a_line, b_line = Fraction(str(head_share)), Fraction(str(b_share))
    cum = 0
    cum_share: dict[str, float] = {}
    cls: dict[str, str] = {}
    cums: list[int] = []
    for c in order:
        before = cum
        cum += x[c]
        cums.append(cum)
        cum_share[c] = cum / total if total else 0.0
        if total and before < a_line * total:
            cls[c] = "A"
        elif total and before < b_line * total:
            cls[c] = "B"
        else:
            cls[c] = "C"
    asc = sorted(x.values())
    num = sum((2 * i - n - 1) * v for i, v in enumerate(asc, start=1))
    gini = float(Fraction(num, n * total)) if total else 0.0
    head = {}
    for share in HEAD_SHARES:
        line = Fraction(str(share)) * total
        k = next(i + 1 for i, cv in enumerate(cums) if cv >= line) if total else 0
        head[share] = (k, k / n)
    top = {}
    for p in TOP_SHARES:
        k = math.ceil(Fraction(str(p)) * n)
        top[p] = (k, cums[k - 1] / total if total and k else 0.0)
    abc = {}
    for c in "ABC":
        members = [i for i in order if cls[i] == c]
        abc[c] = (len(members), sum(x[i] for i in members) / total if total else 0.0)
    return ParetoRef(order, cum_share, cls, total, gini, head, top, abc)


# --------------------------------------------------------------------------- lifetimes (SPEC §3)


def lifetimes_reference(tx: pd.DataFrame, observation_period_end: dt.date, freq: str) -> pd.DataFrame:
    """A pandas re-implementation of lifetimes' ``summary_data_from_transaction_data``
    (``customer_id_col``, ``datetime_col``, ``monetary_value_col``, default
    ``include_first_transaction=False``, ``freq_multiplier=1``), written from its algorithm:

    timestamps -> periods (``to_period(freq).to_timestamp()``), rows after the end dropped,
    values summed per (customer, period), the first period of each customer marked,
    frequency = periods - 1, T / recency = (end / last period - first period) in periods,
    monetary_value = mean of the non-first period sums, 0 when there are none.
    """
    end = pd.Timestamp(observation_period_end).to_period(freq).to_timestamp()
    t = tx[["customer_id", "date", "amount"]].sort_values(["customer_id", "date", "amount"]).copy()
    t["date"] = pd.to_datetime(t["date"])
    t["period"] = t["date"].dt.to_period(freq).dt.to_timestamp()
    t = t[t["period"] <= end]
    per = t.groupby(["period", "customer_id"], sort=False, as_index=False)["amount"].sum()
    per = per.sort_values(["customer_id", "period"]).reset_index(drop=True)
    per["first"] = False
    per.loc[per.groupby("customer_id", sort=True).head(1).index, "first"] = True
    cust = per.groupby("customer_id")["period"].agg(["min", "max", "count"])
    unit = np.timedelta64(1, freq)
    cust["frequency"] = cust["count"] - 1
    cust["T"] = (end - cust["min"]) / unit
    cust["recency"] = (cust["max"] - cust["min"]) / unit
    per.loc[per["first"], "amount"] = np.nan
    cust["monetary_value"] = per.groupby("customer_id")["amount"].mean().fillna(0)
    return cust[["frequency", "recency", "T", "monetary_value"]].astype(float)
