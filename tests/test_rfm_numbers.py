"""`segcli rfm`: every per-customer number checked against hand-computed literals and an
independent re-implementation of SPEC §3 (orders, purchases, features, scores, segments)."""

from __future__ import annotations

import datetime as dt
import json
import statistics
from decimal import Decimal

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from helpers_numbers import (
    AS_OF,
    SEGMENT_GRID,
    invoke,
    reference_features,
    reference_scores,
    run_rfm,
    spec_scores,
    write_config,
    write_csv,
)

D = dt.date

# (customer_id, order_date, amount, order_id); as-of 2025-01-31.
ROWS = [
    # C01: three line items in O1; O2 the same day; O3 later
    ("C01", "2025-01-10 09:00:00", "10.00", "O1"),
    ("C01", "2025-01-10 09:00:00", "15.50", "O1"),
    ("C01", "2025-01-10 09:00:00", "4.50", "O1"),
    ("C01", "2025-01-10 18:30:00", "20.00", "O2"),
    ("C01", "2025-01-20 12:00:00", "5.25", "O3"),
    # C02: no order id, timestamps: same timestamp = one order; another time = another order
    ("C02", "2025-01-05 10:00:00", "12.00", None),
    ("C02", "2025-01-05 10:00:00", "8.00", None),
    ("C02", "2025-01-05 15:00:00", "30.00", None),
    ("C02", "2025-01-25 11:00:00", "40.00", None),
    # C03: no order id, date only: one order per customer-day
    ("C03", "2025-01-02", "7.00", None),
    ("C03", "2025-01-02", "3.00", None),
    ("C03", "2025-01-03", "10.00", None),
    # C04: a return on its own order, dated later than the last purchase
    ("C04", "2024-12-01", "100.00", "A1"),
    ("C04", "2024-12-15", "60.00", "A2"),
    ("C04", "2025-01-28", "-25.00", "R1"),
    # C05: a fully refunded order (not a purchase), a free order (a purchase), a normal one
    ("C05", "2025-01-08", "50.00", "B1"),
    ("C05", "2025-01-12", "-50.00", "B1"),
    ("C05", "2025-01-15", "0.00", "B2"),
    ("C05", "2024-11-30", "19.99", "B3"),
    # C06: a purchase and a bigger return: non-positive revenue
    ("C06", "2025-01-03", "30.00", "D1"),
    ("C06", "2025-01-09", "-45.00", "D2"),
    # C07: only a return
    ("C07", "2025-01-20", "-10.00", "E1"),
    # C08: one purchase on the as-of date (its last second), two rows after it; order id
    # O1 is shared with C01 (orders are per customer)
    ("C08", "2025-01-31 23:59:59", "12.00", "O1"),
    ("C08", "2025-02-01", "99.00", "F2"),
    ("C08", "2025-02-03 08:00:00", "1.00", "F2"),
    # C09: only rows after the as-of date: not in the output
    ("C09", "2025-02-02", "5.00", "G1"),
]
ROWS_AFTER_AS_OF = 3

# Hand-computed per SPEC §3 (as-of 2025-01-31):
# customer: frequency, recency_days, first, last, monetary, gross, returns, avg_order_value
EXPECTED = {
    # avg_order_value is money: 55.25 / 3 rounded half-to-even to amount_scale (4) places
    "C01": (3, 11, D(2025, 1, 10), D(2025, 1, 20), 55.25, 55.25, 0.0, 18.4167),
    "C02": (3, 6, D(2025, 1, 5), D(2025, 1, 25), 90.0, 90.0, 0.0, 30.0),
    "C03": (2, 28, D(2025, 1, 2), D(2025, 1, 3), 20.0, 20.0, 0.0, 10.0),
    "C04": (2, 47, D(2024, 12, 1), D(2024, 12, 15), 135.0, 160.0, 25.0, 67.5),
    "C05": (2, 16, D(2024, 11, 30), D(2025, 1, 15), 19.99, 69.99, 50.0, 9.995),
    "C06": (1, 28, D(2025, 1, 3), D(2025, 1, 3), -15.0, 30.0, 45.0, -15.0),
    "C07": (0, None, None, None, -10.0, 0.0, 10.0, None),
    "C08": (1, 0, D(2025, 1, 31), D(2025, 1, 31), 12.0, 12.0, 0.0, 12.0),
}


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rfm_fixture")
    src = write_csv(tmp / "tx.csv", ROWS)
    df, result = run_rfm(tmp, src)
    return df, result


def _row(df: pl.DataFrame, cid: str) -> dict:
    rows = df.filter(pl.col("customer_id") == cid).to_dicts()
    assert len(rows) == 1, f"{cid}: {len(rows)} rows"
    return rows[0]


def test_output_has_one_row_per_customer_sorted_by_id(fixture_run):
    df, _ = fixture_run
    assert df["customer_id"].to_list() == sorted(EXPECTED)
    assert df.columns == [
        "customer_id", "recency_days", "frequency", "monetary", "gross_revenue", "returns_amount", "avg_order_value",
        "first_purchase", "last_purchase", "r_score", "f_score", "m_score", "rfm_code", "rfm_segment", "cluster",
        "cum_share", "pareto_class", "as_of",
    ]
    assert set(df["as_of"].to_list()) == {AS_OF}


@pytest.mark.parametrize("cid", sorted(EXPECTED))
def test_features_match_hand_computed_values(fixture_run, cid):
    df, _ = fixture_run
    row = _row(df, cid)
    freq, rec, first, last, mon, gross, ret, aov = EXPECTED[cid]
    assert row["frequency"] == freq
    assert row["recency_days"] == rec
    assert row["first_purchase"] == first
    assert row["last_purchase"] == last
    assert row["monetary"] == mon
    assert row["gross_revenue"] == gross
    assert row["returns_amount"] == ret
    if aov is None:
        assert row["avg_order_value"] is None
    else:
        assert row["avg_order_value"] == aov


def test_hand_computed_values_agree_with_reference_implementation():
    """Guards the literals above: the plain-Python SPEC implementation gives the same."""
    ref = reference_features(ROWS)
    assert sorted(ref) == sorted(EXPECTED)
    for cid, (freq, rec, first, last, mon, gross, ret, aov) in EXPECTED.items():
        f = ref[cid]
        assert (f.frequency, f.recency_days, f.first_purchase, f.last_purchase) == (freq, rec, first, last)
        assert (float(f.monetary), float(f.gross_revenue), float(f.returns_amount)) == (mon, gross, ret)
        assert f.avg_order_value == (None if aov is None else pytest.approx(aov))


def test_line_items_of_one_order_count_as_one_purchase(fixture_run):
    assert _row(fixture_run[0], "C01")["frequency"] == 3  # O1 (3 lines) + O2 + O3


def test_rows_without_order_id_group_by_timestamp(fixture_run):
    assert _row(fixture_run[0], "C02")["frequency"] == 3  # 10:00 (2 rows), 15:00, 25th


def test_date_only_rows_without_order_id_are_one_order_per_day(fixture_run):
    assert _row(fixture_run[0], "C03")["frequency"] == 2


def test_return_does_not_move_last_purchase(fixture_run):
    row = _row(fixture_run[0], "C04")
    assert row["last_purchase"] == D(2024, 12, 15)
    assert row["recency_days"] == 47
    assert row["monetary"] == 135.0 and row["returns_amount"] == 25.0


def test_fully_refunded_order_is_not_a_purchase_but_free_order_is(fixture_run):
    row = _row(fixture_run[0], "C05")
    assert row["frequency"] == 2
    assert row["last_purchase"] == D(2025, 1, 15)  # the free order, not the refunded one
    assert row["avg_order_value"] == pytest.approx(19.99 / 2)


def test_bigger_return_gives_negative_monetary_but_keeps_the_purchase(fixture_run):
    row = _row(fixture_run[0], "C06")
    assert row["frequency"] == 1 and row["monetary"] == -15.0 and row["avg_order_value"] == -15.0


def test_customer_with_only_a_return_has_null_dates_worst_r_and_f_and_null_cluster(fixture_run):
    row = _row(fixture_run[0], "C07")
    assert row["frequency"] == 0
    assert row["recency_days"] is None and row["first_purchase"] is None and row["last_purchase"] is None
    assert row["avg_order_value"] is None
    assert row["r_score"] == 1 and row["f_score"] == 1
    assert row["cluster"] is None


def test_buyers_all_have_a_cluster(fixture_run):
    df, _ = fixture_run
    assert df.filter(pl.col("frequency") > 0)["cluster"].null_count() == 0


def test_rows_after_as_of_are_dropped_with_a_counted_warning(fixture_run):
    df, result = fixture_run
    assert "C09" not in df["customer_id"].to_list()
    assert _row(df, "C08")["monetary"] == 12.0
    warning = [line for line in result.stderr.splitlines() if "after" in line]
    assert warning, result.stderr
    assert f"{ROWS_AFTER_AS_OF} rows" in warning[0]
    assert "after" not in result.stdout


def test_scores_follow_the_spec_formula_on_the_fixture(fixture_run):
    df, _ = fixture_run
    expected = reference_scores(reference_features(ROWS))
    got = {r["customer_id"]: (r["r_score"], r["f_score"], r["m_score"]) for r in df.iter_rows(named=True)}
    assert got == expected


def test_fixture_scores_by_hand():
    """n = 8, bins = 5: score = 1 + floor(5 (rank_min - 1) / 8)."""
    expected = reference_scores(reference_features(ROWS))
    # recency worst->best: C07 (none), C04 47, C03/C06 28, C05 16, C01 11, C02 6, C08 0
    # rank_min:             1          2      3   3       5       6       7      8
    assert {c: s[0] for c, s in expected.items()} == {
        "C07": 1, "C04": 1, "C03": 2, "C06": 2, "C05": 3, "C01": 4, "C02": 4, "C08": 5}
    # frequency: C07 0 | C06,C08 1 | C03,C04,C05 2 | C01,C02 3 -> rank_min 1, 2, 4, 7;
    # C01 and C02 hold the best value: 5, not the formula's 4 (C07 has no purchase: 1)
    assert {c: s[1] for c, s in expected.items()} == {
        "C07": 1, "C06": 1, "C08": 1, "C03": 2, "C04": 2, "C05": 2, "C01": 5, "C02": 5}
    # monetary: C06 -15, C07 -10, C08 12, C05 19.99, C03 20, C01 55.25, C02 90, C04 135
    # rank_min:   1         2        3       4          5       6          7       8
    assert {c: s[2] for c, s in expected.items()} == {
        "C06": 1, "C07": 1, "C08": 2, "C05": 2, "C03": 3, "C01": 4, "C02": 4, "C04": 5}


def test_rfm_code_is_the_three_scores(fixture_run):
    df, _ = fixture_run
    for r in df.iter_rows(named=True):
        assert r["rfm_code"] == f"{r['r_score']}{r['f_score']}{r['m_score']}"


def test_rfm_segment_follows_the_spec_grid(fixture_run):
    df, _ = fixture_run
    for r in df.iter_rows(named=True):
        assert r["rfm_segment"] == SEGMENT_GRID[(r["r_score"], r["f_score"])], r


def test_spec_grid_literal_is_complete():
    assert sorted(SEGMENT_GRID) == [(r, f) for r in range(1, 6) for f in range(1, 6)]
    assert len(set(SEGMENT_GRID.values())) == 10


def test_csv_output_carries_the_same_numbers(tmp_path, fixture_run):
    src = write_csv(tmp_path / "tx.csv", ROWS)
    df_csv, _ = run_rfm(tmp_path, src, out_name="rfm.csv")
    assert (tmp_path / "rfm.csv.meta.json").exists()
    df, _ = fixture_run
    for cid, (freq, rec, first, last, mon, gross, ret, _aov) in EXPECTED.items():
        row = _row(df_csv, cid)
        assert (row["frequency"], row["recency_days"], row["monetary"], row["gross_revenue"],
                row["returns_amount"]) == (freq, rec, mon, gross, ret)
        assert row["first_purchase"] == first and row["last_purchase"] == last
    assert df_csv.select("r_score", "f_score", "m_score").rows() == df.select("r_score", "f_score", "m_score").rows()


# --------------------------------------------------------------------------- random, heavy ties


def _random_rows(seed: int, n_customers: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    amounts = ["10", "10", "20", "50", "9.90", "0", "99.99"]
    start = dt.date(2024, 10, 1)
    rows = []
    oid = 0
    for c in range(n_customers):
        cid = f"K{c:05d}"
        n_orders = rng.choice([1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 5])
        for _ in range(n_orders):
            oid += 1
            day = start + dt.timedelta(days=int(rng.integers(0, 123)))  # up to the as-of date
            for _ in range(int(rng.choice([1, 1, 1, 2]))):
                rows.append((cid, day.isoformat(), str(rng.choice(amounts)), f"o{oid}"))
            if rng.random() < 0.05:  # a return on its own order, a few days later
                oid += 1
                later = min(day + dt.timedelta(days=int(rng.integers(1, 10))), AS_OF)
                rows.append((cid, later.isoformat(), "-" + str(rng.choice(["10", "20", "60"])), f"o{oid}"))
        if rng.random() < 0.01:  # a customer with only a return
            oid += 1
            rows.append((f"Z{c:05d}", "2025-01-15", "-5", f"o{oid}"))
    return rows


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rfm_random")
    rows = _random_rows(7, 2000)
    src = write_csv(tmp / "tx.csv", rows)
    cfg = write_config(tmp / "k3.toml", "[cluster]\nk = 3\n")  # fixed k: clusters are not under test here
    df, _ = run_rfm(tmp, src, config=cfg)
    return rows, df


def test_random_features_match_reference(random_run):
    rows, df = random_run
    ref = reference_features(rows)
    assert df["customer_id"].to_list() == sorted(ref)
    for r in df.iter_rows(named=True):
        f = ref[r["customer_id"]]
        assert (r["frequency"], r["recency_days"], r["first_purchase"], r["last_purchase"]) == (
            f.frequency, f.recency_days, f.first_purchase, f.last_purchase), r
        assert r["monetary"] == float(f.monetary)
        assert r["gross_revenue"] == float(f.gross_revenue)
        assert r["returns_amount"] == float(f.returns_amount)


def test_random_scores_match_spec_formula_with_heavy_ties(random_run):
    rows, df = random_run
    expected = reference_scores(reference_features(rows))
    got = {r["customer_id"]: (r["r_score"], r["f_score"], r["m_score"]) for r in df.iter_rows(named=True)}
    mismatched = {c: (got[c], expected[c]) for c in expected if got[c] != expected[c]}
    assert not mismatched, list(mismatched.items())[:10]
    # the data really is tie-heavy: most customers bought once
    assert (df["frequency"] == 1).mean() > 0.5


def test_equal_values_always_get_equal_scores(random_run):
    _, df = random_run
    for value, score in (("recency_days", "r_score"), ("frequency", "f_score"), ("monetary", "m_score")):
        per_value = df.group_by(value).agg(pl.col(score).n_unique().alias("n"))
        assert per_value["n"].max() == 1, value
        assert df[score].min() >= 1 and df[score].max() <= 5
        # scores never decrease from worse to better values (recency: none, then oldest first)
        ordered = df.sort(value, descending=(value == "recency_days"), nulls_last=False)
        assert np.all(np.diff(ordered[score].to_numpy().astype(int)) >= 0), value


def test_random_segments_follow_the_grid(random_run):
    _, df = random_run
    for r in df.select("r_score", "f_score", "rfm_segment").unique().iter_rows(named=True):
        assert r["rfm_segment"] == SEGMENT_GRID[(r["r_score"], r["f_score"])]


def test_score_formula_reference_on_textbook_cases():
    # all distinct, n = 10: two customers per bin
    assert spec_scores(list(range(10))).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # all tied: the column says nothing, everyone gets the middle score ceil(5 / 2) = 3
    assert spec_scores([7] * 6).tolist() == [3] * 6
    assert spec_scores([7] * 6, bins=4).tolist() == [2] * 6
    # the best value tied by many (a billing day): that group gets 5, not its rank_min's 2
    assert spec_scores([0, 1, 2, 2, 2, 2, 2, 2]).tolist() == [1, 1, 5, 5, 5, 5, 5, 5]
    # 7 of 10 tied at the bottom: bins 2..4 stay empty
    assert spec_scores([0] * 7 + [1, 2, 3]).tolist() == [1] * 7 + [4, 5, 5]


# --------------------------------------------------------------------------- exact money


def test_money_is_summed_exactly(tmp_path):
    rows = []
    for i in range(1000):
        rows.append(("M1", "2025-01-10", "0.1", f"a{i}"))
    for i in range(700):
        rows.append(("M2", "2025-01-11", "0.2", f"b{i}"))
        rows.append(("M2", "2025-01-11", "0.7", f"b{i}"))
        rows.append(("M2", "2025-01-12", "-0.1", f"r{i}"))
    for i in range(333):
        rows.append(("M3", "2025-01-12", "0.7", f"c{i}"))
        rows.append(("M3", "2025-01-12", "0.0001", f"c{i}"))
    rows.append(("M4", "2025-01-12", "100", "d1"))  # same exact total as M1
    for i in range(3):
        rows.append(("M5", "2025-01-12", "0.1", f"e{i}"))  # 0.3 exactly, though 0.1+0.1+0.1 != 0.3 in floats
    rows.append(("M6", "2025-01-12", "0.3", "f1"))
    src = write_csv(tmp_path / "tx.csv", rows)
    df, _ = run_rfm(tmp_path, src)

    exact = {c: Decimal(0) for c in ("M1", "M2", "M3", "M4", "M5", "M6")}
    gross = dict.fromkeys(exact, Decimal(0))
    returns = dict.fromkeys(exact, Decimal(0))
    for cid, _day, amount, _oid in rows:
        a = Decimal(amount)
        exact[cid] += a
        if a > 0:
            gross[cid] += a
        else:
            returns[cid] += -a
    assert exact["M1"] == Decimal("100.0") and exact["M2"] == Decimal("560.0")
    assert exact["M3"] == Decimal("233.1333")
    assert sum(0.1 for _ in range(1000)) != 100.0  # the trap a float sum falls into
    for r in df.iter_rows(named=True):
        cid = r["customer_id"]
        assert r["monetary"] == float(exact[cid]), cid
        assert r["gross_revenue"] == float(gross[cid]), cid
        assert r["returns_amount"] == float(returns[cid]), cid
    by_id = {r["customer_id"]: r for r in df.iter_rows(named=True)}
    # exactly equal totals are ties: same monetary, same m_score
    assert by_id["M1"]["m_score"] == by_id["M4"]["m_score"]
    assert by_id["M5"]["monetary"] == by_id["M6"]["monetary"] == 0.3
    assert by_id["M5"]["m_score"] == by_id["M6"]["m_score"]
    assert by_id["M2"]["avg_order_value"] == pytest.approx(float(Decimal("560.0") / 700), rel=1e-12)  # 700 purchases; returns alone are none


def test_amounts_with_more_places_are_rounded_half_even(tmp_path):
    rows = [
        ("H1", "2025-01-10", "0.00005", "a"),   # -> 0.0000 (half to even)
        ("H1", "2025-01-10", "0.00015", "b"),   # -> 0.0002
        ("H1", "2025-01-10", "0.00025", "c"),   # -> 0.0002
        ("H1", "2025-01-10", "1.23456", "d"),   # -> 1.2346
    ]
    src = write_csv(tmp_path / "tx.csv", rows)
    df, result = run_rfm(tmp_path, src)
    assert df["monetary"].to_list() == [float(Decimal("1.2350"))]
    assert "rounded" in result.stderr


def test_order_date_is_the_earliest_non_negative_row(tmp_path):
    rows = [
        # order X: a return row dated first, then the goods: the order is dated by the goods
        ("Q1", "2025-01-01", "-5.00", "X"),
        ("Q1", "2025-01-05", "20.00", "X"),
        # order Y: a zero-amount line dated before the paid line: zero is non-negative
        ("Q2", "2025-01-02", "0.00", "Y"),
        ("Q2", "2025-01-06", "20.00", "Y"),
    ]
    src = write_csv(tmp_path / "tx.csv", rows)
    df, _ = run_rfm(tmp_path, src)
    q1, q2 = _row(df, "Q1"), _row(df, "Q2")
    assert (q1["frequency"], q1["first_purchase"], q1["last_purchase"], q1["recency_days"], q1["monetary"]) == (
        1, D(2025, 1, 5), D(2025, 1, 5), 26, 15.0)
    assert (q2["frequency"], q2["first_purchase"], q2["last_purchase"], q2["recency_days"]) == (
        1, D(2025, 1, 2), D(2025, 1, 2), 29)


def test_amount_scale_from_config_rounds_half_even_then_sums_exactly(tmp_path):
    rows = [("a", "2025-01-10", "0.125", "1"),   # -> 0.12
            ("a", "2025-01-10", "0.135", "2"),   # -> 0.14
            ("b", "2025-01-10", "-0.125", "3"),  # -> -0.12
            ("b", "2025-01-10", "1.005", "4")]   # -> 1.00
    src = write_csv(tmp_path / "tx.csv", rows)
    cfg = write_config(tmp_path / "c.toml", "[input]\namount_scale = 2\n")
    df, result = run_rfm(tmp_path, src, config=cfg)
    got = {r["customer_id"]: (r["monetary"], r["gross_revenue"], r["returns_amount"]) for r in df.iter_rows(named=True)}
    assert got == {"a": (0.26, 0.26, 0.0), "b": (0.88, 1.0, 0.12)}
    assert "4 amounts" in result.stderr


def test_window_keeps_rows_strictly_after_as_of_minus_window(tmp_path):
    """--window-days 30 at 2025-01-31 keeps 2 Jan .. 31 Jan: 1 Jan is out."""
    rows = [("w1", "2025-01-01", "100", "a"), ("w1", "2025-01-02", "10", "b"),
            ("w2", "2025-01-01", "50", "c"), ("w3", "2024-12-15", "5", "d"), ("w3", "2025-01-31", "7", "e")]
    src = write_csv(tmp_path / "tx.csv", rows)
    df, result = run_rfm(tmp_path, src, extra=["--window-days", "30"])
    got = {r["customer_id"]: (r["frequency"], r["first_purchase"], r["recency_days"], r["monetary"])
           for r in df.iter_rows(named=True)}
    assert got == {"w1": (1, D(2025, 1, 2), 29, 10.0), "w3": (1, D(2025, 1, 31), 0, 7.0)}
    assert "3 rows" in result.stderr


def test_as_of_defaults_to_the_latest_transaction_date(tmp_path):
    rows = [("a", "2025-03-01", "10", "1"), ("b", "2025-03-10 22:00:00", "20", "2"), ("a", "2025-02-20", "5", "3")]
    src = write_csv(tmp_path / "tx.csv", rows)
    out = tmp_path / "o.parquet"
    invoke(["rfm", str(src), "-o", str(out)])
    df = pl.read_parquet(out)
    assert set(df["as_of"]) == {D(2025, 3, 10)}
    assert dict(zip(df["customer_id"], df["recency_days"])) == {"a": 9, "b": 0}


def test_printed_segment_summary_matches_independent_figures(tmp_path):
    """`segcli rfm --json` (no -o) prints one record per rfm_segment; recomputed here from the
    reference features, the SPEC score formula and the SPEC grid."""
    src = write_csv(tmp_path / "tx.csv", ROWS)
    doc = json.loads(invoke(["rfm", str(src), "--json", "--as-of", str(AS_OF)]).stdout)
    feats = reference_features(ROWS)
    scores = reference_scores(feats)
    segment = {c: SEGMENT_GRID[(r, f)] for c, (r, f, _m) in scores.items()}
    n = len(feats)
    total = sum(float(f.monetary) for f in feats.values())
    assert sorted(d["rfm_segment"] for d in doc) == sorted(set(segment.values()))
    for d in doc:
        members = [c for c, s in segment.items() if s == d["rfm_segment"]]
        revenue = sum(float(feats[c].monetary) for c in members)
        rec = [feats[c].recency_days for c in members if feats[c].recency_days is not None]
        assert d["customers"] == len(members), d
        assert d["customer_share"] == pytest.approx(len(members) / n), d
        assert d["revenue"] == pytest.approx(revenue, abs=1e-9), d
        assert d["revenue_share"] == pytest.approx(revenue / total), d
        assert d["mean_recency_days"] == (pytest.approx(statistics.mean(rec)) if rec else None), d
        assert d["median_recency_days"] == (pytest.approx(statistics.median(rec)) if rec else None), d
        assert d["mean_frequency"] == pytest.approx(statistics.mean(feats[c].frequency for c in members)), d
        assert d["mean_monetary"] == pytest.approx(revenue / len(members)), d


def test_parquet_columns_are_plain_arrow_types(tmp_path):
    """SPEC §5: string, int64, float64, date32 only (no int8, large_string or timestamps)."""
    src = write_csv(tmp_path / "tx.csv", ROWS)
    run_rfm(tmp_path, src, out_name="rfm.parquet")
    schema = pq.read_schema(tmp_path / "rfm.parquet")
    assert {str(schema.field(c).type) for c in ("r_score", "f_score", "m_score")} == {"int64"}
    assert {str(f.type) for f in schema} <= {"string", "int64", "double", "date32[day]"}


# --------------------------------------------------------------------------- billing data (issue 14)

BILL_MONTHS = ["2024-10-31", "2024-11-30", "2024-12-31", "2025-01-31"]


def test_billing_day_data_gives_current_customers_the_top_recency_score(tmp_path):
    """Monthly bills dated on the month end (telecom, utilities): five customers have a bill on
    the as-of date, one stopped after December. The five hold the best recency and the best
    frequency, so they score R = F = 5 (the formula alone would give R = 1: rank_min 2 of 6),
    and are champions, not hibernating."""
    rows = [(f"B{i}", d, str(50 + 10 * i), f"B{i}-{d}") for i in range(1, 6) for d in BILL_MONTHS]
    rows += [("B6", d, "80", f"B6-{d}") for d in BILL_MONTHS[:3]]
    src = write_csv(tmp_path / "bills.csv", rows)
    df, _ = run_rfm(tmp_path, src)
    got = {r["customer_id"]: (r["r_score"], r["f_score"], r["rfm_segment"]) for r in df.iter_rows(named=True)}
    assert got == {**{f"B{i}": (5, 5, "champions") for i in range(1, 6)}, "B6": (1, 1, "hibernating")}
    want = reference_scores(reference_features(rows))
    assert {r["customer_id"]: (r["r_score"], r["f_score"], r["m_score"]) for r in df.iter_rows(named=True)} == want


def test_billing_day_vips_are_not_lapsing(tmp_path):
    """Billing data through `segment`: ten current customers and two who left in November.
    The current VIPs score R = 5 and no VIP group is named vip_lapsing, so nobody current gets
    the win-back service. (Were every customer billed on the as-of date, R would say nothing:
    all 3, still not lapsing.)"""
    rows = [(f"B{i}", d, str(10 * i), f"B{i}-{d}") for i in range(1, 11) for d in BILL_MONTHS]
    rows += [(f"X{i}", d, "5", f"X{i}-{d}") for i in (1, 2) for d in BILL_MONTHS[:2]]
    src = write_csv(tmp_path / "bills.csv", rows)
    out = tmp_path / "a.parquet"
    invoke(["segment", src, "-o", out, "--as-of", "2025-01-31", "-q"])
    df = pl.read_parquet(out)
    vips = df.filter(pl.col("tier") == "zhixin")
    assert vips.height == 2 and set(vips["r_score"]) == {5}
    assert "vip_lapsing" not in set(vips["vip_group"]) and "vip_winback" not in set(vips["service_level"])


def test_a_column_without_spread_gets_the_middle_score(tmp_path):
    """Every customer bought once, on the as-of date, for the same amount: R, F and M say
    nothing, so everyone scores 3 in each (SPEC §3), a need_attention customer."""
    rows = [(f"E{i}", "2025-01-31", "25", f"E{i}") for i in range(7)]
    src = write_csv(tmp_path / "same.csv", rows)
    df, _ = run_rfm(tmp_path, src)
    assert set(df["rfm_code"]) == {"333"} and set(df["rfm_segment"]) == {"need_attention"}


def test_score_cut_points_are_recorded_and_shown_under_the_segment_summary(tmp_path):
    """The run record holds, for each score, every bin's customers and value range; they equal
    the file's own ranges, and `summary --by rfm_segment` prints them under the segments."""
    src = write_csv(tmp_path / "tx.csv", _random_rows(7, 2000))
    df, _ = run_rfm(tmp_path, src, config=write_config(tmp_path / "k3.toml", "[cluster]\nk = 3\n"))
    meta = json.loads(pq.read_metadata(tmp_path / "rfm.parquet").metadata[b"segcli"])
    assert meta["schema_version"] == 1  # the rfm file's columns did not change
    for score, value in (("r_score", "recency_days"), ("f_score", "frequency"), ("m_score", "monetary")):
        recorded = meta["model"]["scores"][score]
        assert recorded["value"] == value and [b["score"] for b in recorded["bins"]] == [1, 2, 3, 4, 5]
        for b in recorded["bins"]:
            part = df.filter(pl.col(score) == b["score"])
            assert b["customers"] == part.height
            assert (b["min"], b["max"]) == (part[value].min(), part[value].max()), (score, b)
    text = invoke(["summary", tmp_path / "rfm.parquet", "--by", "rfm_segment"]).stdout
    cuts = text.split("score cut points (run record)")[1]
    r5 = next(b for b in meta["model"]["scores"]["r_score"]["bins"] if b["score"] == 5)
    first_row = [line for line in cuts.splitlines() if line.startswith("5 ")][0]
    lo, hi = f"{r5['min']:,}", f"{r5['max']:,}"
    assert first_row.split()[1] == (lo if lo == hi else f"{lo}–{hi}")  # score 5: the most recent
    assert "score cut points" not in invoke(["summary", tmp_path / "rfm.parquet", "--by", "rfm_segment", "--json"]).stdout
