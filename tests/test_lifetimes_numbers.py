"""`segcli rfm --style lifetimes` (SPEC §3): frequency, recency, T, monetary_value per day and
per Monday-start week, against hand-computed literals and a pandas re-implementation of
lifetimes' ``summary_data_from_transaction_data`` (lifetimes itself is not installed)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl
import pytest

try:
    from helpers_numbers import AS_OF, invoke, lifetimes_reference, write_csv
except ImportError:  # tests collected as a package
    from tests.helpers_numbers import AS_OF, invoke, lifetimes_reference, write_csv

# as-of 2025-01-31, a Friday: its Monday-start week began on Monday 2025-01-27.
ROWS = [
    # L1: two rows on Mon 6 Jan, Wed 8 Jan, a free order Sun 19 Jan, two rows Mon 20 Jan
    ("L1", "2025-01-06 09:15:00", "10.00", None),
    ("L1", "2025-01-06 23:59:00", "5.00", None),
    ("L1", "2025-01-08", "20.00", None),
    ("L1", "2025-01-19", "0.00", None),
    ("L1", "2025-01-20", "7.00", None),
    ("L1", "2025-01-20", "3.00", None),
    ("L1", "2025-02-03", "100.00", None),  # after the as-of date: dropped
    # L2: two rows on the as-of day only
    ("L2", "2025-01-31", "2.50", None),
    ("L2", "2025-01-31 18:00:00", "2.50", None),
    # L3: Sun 29 Dec, Mon 30 Dec (a paid and a free row), Sun 5 Jan, Mon 27 Jan
    ("L3", "2024-12-29", "8.00", None),
    ("L3", "2024-12-30", "12.00", None),
    ("L3", "2024-12-30", "0.00", None),
    ("L3", "2025-01-05", "4.00", None),
    ("L3", "2025-01-27", "6.00", None),
    # L4: free orders only
    ("L4", "2025-01-10", "0.00", None),
    ("L4", "2025-01-15", "0.00", None),
]

# frequency, recency, T, monetary_value
EXPECTED_D = {
    # days 6 (15), 8 (20), 19 (0), 20 (10): 3 repeat days; 20-6 = 14; 31-6 = 25; (20+0+10)/3
    "L1": (3, 14, 25, 10.0),
    "L2": (0, 0, 0, 0.0),
    # days 29 Dec (8), 30 Dec (12), 5 Jan (4), 27 Jan (6): 29 days to the last, 33 to as-of
    "L3": (3, 29, 33, 22 / 3),
    # days 10 and 15 Jan, both worth 0
    "L4": (1, 5, 21, 0.0),
}
EXPECTED_W = {
    # weeks of 6 Jan (15+20), 13 Jan (0), 20 Jan (10); as-of week 27 Jan: T = 3; (0+10)/2
    "L1": (2, 2, 3, 5.0),
    "L2": (0, 0, 0, 0.0),
    # weeks of 23 Dec (8), 30 Dec (12+0+4), 27 Jan (6): 5 weeks to the last and to as-of
    "L3": (2, 5, 5, 11.0),
    # weeks of 6 Jan and 13 Jan: T = 3
    "L4": (1, 1, 3, 0.0),
}


def run_lifetimes(tmp, src, freq, as_of=AS_OF, out_name=None) -> pl.DataFrame:
    out = tmp / (out_name or f"lt_{freq}.csv")
    result = invoke(["rfm", str(src), "-o", str(out), "--style", "lifetimes", "--freq", freq,
                     "--as-of", str(as_of)])
    assert "after" in result.stderr  # the dropped row is reported (fixture only has one)
    if out.suffix == ".parquet":
        return pl.read_parquet(out)
    return pl.read_csv(out, schema_overrides={"customer_id": pl.String})


@pytest.fixture(scope="module")
def fixture_csv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lifetimes")
    return tmp, write_csv(tmp / "tx.csv", ROWS)


@pytest.mark.parametrize(("freq", "expected"), [("D", EXPECTED_D), ("W", EXPECTED_W)])
def test_lifetimes_summary_matches_hand_computed_values(fixture_csv, freq, expected):
    tmp, src = fixture_csv
    df = run_lifetimes(tmp, src, freq)
    assert df.columns == ["customer_id", "frequency", "recency", "T", "monetary_value"]
    assert df["customer_id"].to_list() == sorted(expected)
    for r in df.iter_rows(named=True):
        f, rec, t, mv = expected[r["customer_id"]]
        assert (r["frequency"], r["recency"], r["T"]) == (f, rec, t), r
        assert r["monetary_value"] == pytest.approx(mv, rel=1e-12, abs=1e-12), r


@pytest.mark.parametrize(("freq", "expected"), [("D", EXPECTED_D), ("W", EXPECTED_W)])
def test_hand_values_agree_with_the_lifetimes_algorithm(freq, expected):
    tx = pd.DataFrame(ROWS, columns=["customer_id", "date", "amount", "order_id"])
    tx["amount"] = tx["amount"].astype(float)
    tx["date"] = pd.to_datetime(tx["date"], format="mixed")
    tx = tx[tx["date"].dt.date <= AS_OF]
    ref = lifetimes_reference(tx, AS_OF, freq)
    for cid, (f, rec, t, mv) in expected.items():
        assert tuple(ref.loc[cid]) == pytest.approx((f, rec, t, mv)), cid


def test_parquet_output_has_integer_periods(fixture_csv):
    tmp, src = fixture_csv
    df = run_lifetimes(tmp, src, "W", out_name="lt.parquet")
    assert df.schema["frequency"].is_integer() and df.schema["recency"].is_integer()
    assert df.schema["T"].is_integer() and df.schema["monetary_value"] == pl.Float64
    assert {r["customer_id"]: (r["frequency"], r["recency"], r["T"]) for r in df.iter_rows(named=True)} == {
        c: v[:3] for c, v in EXPECTED_W.items()}


def test_week_starts_on_monday(tmp_path):
    """Sun 26 Jan and Mon 27 Jan are different weeks; Mon 27 Jan and Sun 2 Feb the same."""
    rows = [("w1", "2025-01-26", "1", None), ("w1", "2025-01-27", "2", None),
            ("w2", "2025-01-27", "1", None), ("w2", "2025-02-02", "2", None)]
    src = write_csv(tmp_path / "tx.csv", rows)
    out = tmp_path / "w.csv"
    invoke(["rfm", str(src), "-o", str(out), "--style", "lifetimes", "--freq", "W", "--as-of", "2025-02-02"])
    df = pl.read_csv(out)
    got = {r["customer_id"]: (r["frequency"], r["recency"], r["T"], r["monetary_value"]) for r in df.iter_rows(named=True)}
    assert got == {"w1": (1, 1, 1, 2.0), "w2": (0, 0, 0, 0.0)}


# --------------------------------------------------------------------------- random cross-check


def _random_tx(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cust = rng.integers(0, n, size=n * 4)
    days = rng.integers(0, 200, size=n * 4)
    hours = rng.integers(0, 24, size=n * 4)
    amounts = rng.choice([0, 0, 5, 9.99, 10, 25.5, 100], size=n * 4)
    start = pd.Timestamp("2024-07-01")
    tx = pd.DataFrame({
        "customer_id": [f"R{c:04d}" for c in cust],
        "date": start + pd.to_timedelta(days, unit="D") + pd.to_timedelta(hours, unit="h"),
        "amount": amounts,
    })
    return tx


@pytest.mark.parametrize("freq", ["D", "W"])
def test_random_data_matches_lifetimes_algorithm(tmp_path, freq):
    as_of = dt.date(2025, 1, 15)  # a Wednesday; some rows fall after it
    tx = _random_tx(5, 500)
    rows = [(r.customer_id, r.date.strftime("%Y-%m-%d %H:%M:%S"), f"{r.amount:.2f}", None)
            for r in tx.itertuples()]
    src = write_csv(tmp_path / "tx.csv", rows)
    out = tmp_path / "lt.csv"
    invoke(["rfm", str(src), "-o", str(out), "--style", "lifetimes", "--freq", freq, "--as-of", str(as_of)])
    got = pl.read_csv(out, schema_overrides={"customer_id": pl.String}).to_pandas().set_index("customer_id")

    kept = tx[tx["date"].dt.date <= as_of]  # SPEC: rows after the as-of date are dropped first
    ref = lifetimes_reference(kept, as_of, freq)
    assert list(got.index) == sorted(ref.index)
    ref = ref.loc[got.index]
    for col in ("frequency", "recency", "T"):
        np.testing.assert_array_equal(got[col].to_numpy(), ref[col].to_numpy().astype(np.int64), err_msg=col)
    np.testing.assert_allclose(got["monetary_value"].to_numpy(), ref["monetary_value"].to_numpy(),
                               rtol=1e-9, atol=1e-9)
    assert (got["frequency"] > 0).mean() > 0.3  # repeat buyers are well represented


# --------------------------------------------------------------------------- returns (SPEC §3)

# as-of 2025-01-31 (Friday; week of Monday 27 Jan)
RETURN_ROWS = [
    # N: no order ids, timestamps: every row at its own time is its own order
    ("N", "2025-01-06 10:00:00", "50.00", None),
    ("N", "2025-01-06 15:00:00", "-20.00", None),  # a return alone, on a purchase day: day 6 = 30
    ("N", "2025-01-08 09:00:00", "10.00", None),
    ("N", "2025-01-08 12:00:00", "-5.00", None),  # day 8 = 5
    ("N", "2025-01-10 11:00:00", "-7.00", None),  # a day with no purchase: not counted (D); week of 6 Jan (W)
    ("N", "2025-01-14 10:00:00", "40.00", None),
    # O: order ids
    ("O", "2025-01-06", "100.00", "O1"),
    ("O", "2025-01-09", "-30.00", "O1"),  # nets against O1, dated 6 Jan: day 6 = 70
    ("O", "2025-01-09", "25.00", "O2"),
    ("O", "2025-01-09", "-4.00", "R9"),  # an order of returns only: belongs to no purchase, day 9 = 21
    ("O", "2025-01-20", "60.00", "O3"),
    # M: a return-only order whose two returns are dated on different days (Sun 12, Mon 13 Jan)
    ("M", "2025-01-12", "10.00", "O7"),
    ("M", "2025-01-12", "-3.00", "R7"),  # day 12 = 7
    ("M", "2025-01-13", "10.00", "O8"),
    ("M", "2025-01-13", "-2.00", "R7"),  # day 13 = 8
    # S: a return-only order whose returns fall on two days (Tue 14, Wed 15 Jan) of one week
    ("S", "2025-01-14", "10.00", "O9"),
    ("S", "2025-01-14", "-1.00", "R5"),  # day 14 = 9
    ("S", "2025-01-15", "20.00", "O10"),
    ("S", "2025-01-15", "-2.00", "R5"),  # day 15 = 18
]
RETURNS_D = {
    "N": (2, 8, 25, (5 + 40) / 2),  # days 6 (30), 8 (5), 14 (40)
    "O": (2, 14, 25, (21 + 60) / 2),  # days 6 (70), 9 (21), 20 (60)
    "M": (1, 1, 19, 8.0),  # days 12 (7), 13 (8)
    "S": (1, 1, 17, 18.0),  # days 14 (9), 15 (18)
}
RETURNS_W = {
    "N": (1, 1, 3, 40.0),  # weeks of 6 Jan (30 + 5 - 7 = 28) and 13 Jan (40)
    "O": (1, 2, 3, 60.0),  # weeks of 6 Jan (70 + 21 = 91) and 20 Jan (60)
    "M": (1, 1, 3, 8.0),  # weeks of 6 Jan (7) and 13 Jan (8)
    "S": (0, 0, 2, 0.0),  # the week of 13 Jan (9 + 18), two weeks before the as-of week
}


@pytest.mark.parametrize(("freq", "expected"), [("D", RETURNS_D), ("W", RETURNS_W)])
def test_returns_net_into_their_order_or_the_period_they_are_dated_in(tmp_path, freq, expected):
    src = write_csv(tmp_path / "tx.csv", RETURN_ROWS)
    out = tmp_path / "lt.csv"
    invoke(["rfm", str(src), "-o", str(out), "--style", "lifetimes", "--freq", freq, "--as-of", str(AS_OF)])
    df = pl.read_csv(out, schema_overrides={"customer_id": pl.String})
    got = {r["customer_id"]: (r["frequency"], r["recency"], r["T"], r["monetary_value"]) for r in df.iter_rows(named=True)}
    assert got.keys() == expected.keys()
    for cid, (f, rec, t, mv) in expected.items():
        assert got[cid][:3] == (f, rec, t), cid
        assert got[cid][3] == pytest.approx(mv, rel=1e-12), cid


@pytest.mark.parametrize(("freq", "expected", "drop"), [("D", RETURNS_D, {"2025-01-10 11:00:00"}), ("W", RETURNS_W, set())])
def test_returns_without_order_id_on_purchase_days_agree_with_the_lifetimes_algorithm(freq, expected, drop):
    # lifetimes knows no orders: it sums every row of a period; on data where each return
    # without an order id falls on a purchase day (in a counted period) that is SPEC §3 too
    rows = [r for r in RETURN_ROWS if r[0] == "N" and r[1] not in drop]
    tx = pd.DataFrame(rows, columns=["customer_id", "date", "amount", "order_id"])
    tx["amount"] = tx["amount"].astype(float)
    tx["date"] = pd.to_datetime(tx["date"])
    ref = lifetimes_reference(tx, AS_OF, freq)
    assert tuple(ref.loc["N"]) == pytest.approx(expected["N"])
