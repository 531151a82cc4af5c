"""Pareto numbers (SPEC §3): cum_share, ABC classes, Gini, head sizes and top shares, checked
against hand-computed values and an exact re-implementation (fractions / numpy)."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal

import numpy as np
import polars as pl
import pytest

from helpers_numbers import (
    HEAD_SHARES,
    TOP_SHARES,
    invoke,
    minor,
    reference_features,
    reference_pareto,
    run_pareto_json,
    run_rfm,
    write_config,
    write_csv,
)

# monetary: c1 50, c2 30, c3 10, c4 5, c5 5, c6 0 (a free order), c0 -20 (clipped to 0).
# c5 comes before c4 in the file: ties are broken by customer id, not by file order.
ROWS = [
    ("c1", "2025-01-10", "50.00", "o1"),
    ("c2", "2025-01-11", "20.00", "o2"),
    ("c2", "2025-01-12", "10.00", "o3"),
    ("c3", "2025-01-12", "10.00", "o4"),
    ("c5", "2025-01-13", "5.00", "o5"),
    ("c4", "2025-01-14", "5.00", "o6"),
    ("c6", "2025-01-14", "0.00", "o7"),
    ("c0", "2025-01-15", "10.00", "o8"),
    ("c0", "2025-01-16", "-30.00", "o9"),
]
# Sorted: c1 50 (cum 50), c2 30 (cum 80 = exactly 80% -> A, it crosses), c3 10 (cum 90,
# 80 before it -> B), c4 5 (cum 95, 90 before -> B), c5 5 (95 before: not below 95% -> C),
# then the zeros by id: c0 (clipped), c6.
EXPECTED_ORDER = ["c1", "c2", "c3", "c4", "c5", "c0", "c6"]
EXPECTED_CUM = {"c1": 0.5, "c2": 0.8, "c3": 0.9, "c4": 0.95, "c5": 1.0, "c0": 1.0, "c6": 1.0}
EXPECTED_CLASS = {"c1": "A", "c2": "A", "c3": "B", "c4": "B", "c5": "C", "c0": "C", "c6": "C"}
# Gini over x ascending [0, 0, 5, 5, 10, 30, 50], N = 7:
# sum (2i - 8) x_i = -2*5 + 0*5 + 2*10 + 4*30 + 6*50 = 430;  430 / (7 * 100)
EXPECTED_GINI = 430 / 700
# customers needed to reach 50/80/90/95% of 100: 1, 2, 3, 4
EXPECTED_HEAD = {0.5: (1, 1 / 7), 0.8: (2, 2 / 7), 0.9: (3, 3 / 7), 0.95: (4, 4 / 7)}
# top p%: ceil(p * 7) = 1, 1, 1, 2, 4 customers -> 50, 50, 50, 80, 95% of revenue
EXPECTED_TOP = {0.01: (1, 0.5), 0.05: (1, 0.5), 0.1: (1, 0.5), 0.2: (2, 0.8), 0.5: (4, 0.95)}
EXPECTED_ABC = {"A": (2, 0.8), "B": (2, 0.15), "C": (3, 0.05)}


@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pareto_fixture")
    src = write_csv(tmp / "tx.csv", ROWS)
    df, _ = run_rfm(tmp, src)
    doc = run_pareto_json(src)
    return src, df, doc


def test_cum_share_and_class_match_hand_computed_values(fixture_files):
    _, df, _ = fixture_files
    got = {r["customer_id"]: (r["cum_share"], r["pareto_class"]) for r in df.iter_rows(named=True)}
    assert set(got) == set(EXPECTED_CLASS)
    for cid in EXPECTED_CLASS:
        assert got[cid][0] == pytest.approx(EXPECTED_CUM[cid], abs=1e-12), cid
        assert got[cid][1] == EXPECTED_CLASS[cid], cid


def test_customer_landing_exactly_on_80_percent_is_a_and_the_next_is_not(fixture_files):
    _, df, _ = fixture_files
    cls = dict(zip(df["customer_id"], df["pareto_class"]))
    assert cls["c2"] == "A" and cls["c3"] == "B"


def test_tie_at_the_b_line_is_broken_by_customer_id(fixture_files):
    _, df, _ = fixture_files
    cls = dict(zip(df["customer_id"], df["pareto_class"]))
    assert (cls["c4"], cls["c5"]) == ("B", "C")  # c5 is first in the file, c4 first by id


def test_negative_monetary_is_clipped_to_zero_in_pareto(fixture_files):
    _, df, _ = fixture_files
    row = df.filter(pl.col("customer_id") == "c0").row(0, named=True)
    assert row["monetary"] == -20.0
    assert row["cum_share"] == pytest.approx(1.0) and row["pareto_class"] == "C"


def test_hand_values_agree_with_the_exact_reference():
    ref = reference_pareto({c: minor(f.monetary) for c, f in reference_features(ROWS).items()})
    assert ref.order == EXPECTED_ORDER
    assert ref.pareto_class == EXPECTED_CLASS
    assert ref.cum_share == pytest.approx(EXPECTED_CUM)
    assert ref.gini == pytest.approx(EXPECTED_GINI)
    for got, want in ((ref.head, EXPECTED_HEAD), (ref.top, EXPECTED_TOP), (ref.abc, EXPECTED_ABC)):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key]), key


def test_pareto_json_matches_hand_computed_figures(fixture_files):
    _, _, doc = fixture_files
    assert doc["customers"] == 7
    assert doc["total_revenue"] == 100.0
    assert doc["gini"] == pytest.approx(EXPECTED_GINI, rel=1e-12)
    assert [h["revenue_share"] for h in doc["head"]] == list(HEAD_SHARES)
    for h in doc["head"]:
        need, share = EXPECTED_HEAD[h["revenue_share"]]
        assert h["customers"] == need, h
        assert h["customer_share"] == pytest.approx(share, rel=1e-12), h
    assert [t["top_customer_share"] for t in doc["top"]] == list(TOP_SHARES)
    for t in doc["top"]:
        k, share = EXPECTED_TOP[t["top_customer_share"]]
        assert t["customers"] == k, t
        assert t["revenue_share"] == pytest.approx(share, rel=1e-12), t
    abc = {a["pareto_class"]: (a["customers"], a["revenue_share"]) for a in doc["abc"]}
    assert set(abc) == {"A", "B", "C"}
    for c, (n, share) in EXPECTED_ABC.items():
        assert abc[c][0] == n and abc[c][1] == pytest.approx(share, rel=1e-12), c


def test_abc_counts_in_json_equal_the_classes_written_by_rfm(fixture_files):
    _, df, doc = fixture_files
    counts = df.group_by("pareto_class").len()
    written = dict(zip(counts["pareto_class"], counts["len"]))
    assert {a["pareto_class"]: a["customers"] for a in doc["abc"] if a["customers"]} == written


def test_shares_that_float_sums_miss_are_classed_exactly(tmp_path):
    """0.7 + 0.1 is 0.7999999999999999 in floats: the customer landing on 80% must be A,
    the next one B; 0.95 is likewise reached exactly."""
    rows = [("x1", "2025-01-10", "0.7", "a"), ("x2", "2025-01-10", "0.1", "b"),
            ("x3", "2025-01-10", "0.1", "c"), ("x4", "2025-01-10", "0.05", "d"),
            ("x5", "2025-01-10", "0.05", "e")]
    src = write_csv(tmp_path / "tx.csv", rows)
    df, _ = run_rfm(tmp_path, src)
    assert dict(zip(df["customer_id"], df["pareto_class"])) == {"x1": "A", "x2": "A", "x3": "B", "x4": "B",
                                                                "x5": "C"}
    doc = run_pareto_json(src)
    head = {h["revenue_share"]: h["customers"] for h in doc["head"]}
    assert head == {0.5: 1, 0.8: 2, 0.9: 3, 0.95: 4}
    assert doc["total_revenue"] == 1.0


def test_custom_head_and_b_shares_from_config(tmp_path):
    src = write_csv(tmp_path / "tx.csv", ROWS)
    cfg = write_config(tmp_path / "c.toml", "[pareto]\nhead_share = 0.5\nb_share = 0.9\n")
    df, _ = run_rfm(tmp_path, src, config=cfg)
    ref = reference_pareto({c: minor(f.monetary) for c, f in reference_features(ROWS).items()},
                           head_share=0.5, b_share=0.9)
    # c1 reaches 50% exactly (A); c2 and c3 take it to 90% (B); the rest C
    assert ref.pareto_class == {"c1": "A", "c2": "B", "c3": "B", "c4": "C", "c5": "C", "c0": "C", "c6": "C"}
    assert dict(zip(df["customer_id"], df["pareto_class"])) == ref.pareto_class


def test_no_positive_revenue_means_no_head(tmp_path):
    rows = [("n1", "2025-01-10", "0", "a"), ("n2", "2025-01-10", "10", "b"), ("n2", "2025-01-11", "-15", "c")]
    src = write_csv(tmp_path / "tx.csv", rows)
    df, _ = run_rfm(tmp_path, src)
    assert df["pareto_class"].to_list() == ["C", "C"]
    doc = run_pareto_json(src)
    assert doc["customers"] == 2 and doc["total_revenue"] == 0.0


# --------------------------------------------------------------------------- random, 5,000 customers


def _random_rows(seed: int, n: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    rows = []
    start = dt.date(2024, 6, 1)
    for c in range(n):
        cid = f"p{c:05d}" if c % 3 else f"P{c:05d}"  # mixed case: byte order matters for ties
        for j in range(int(rng.integers(1, 3))):
            day = start + dt.timedelta(days=int(rng.integers(0, 244)))
            # log-normal revenue rounded to cents, with many exact ties
            if rng.random() < 0.3:
                amount = Decimal(str(rng.choice(["10", "25", "99.9", "0"])))
            else:
                amount = Decimal(str(round(float(np.exp(rng.normal(3.5, 1.2))), 2)))
            rows.append((cid, day.isoformat(), str(amount), f"{cid}-{j}"))
        if rng.random() < 0.03:
            rows.append((cid, "2025-01-20", "-500", f"{cid}-r"))
    return rows


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pareto_random")
    rows = _random_rows(11, 5000)
    src = write_csv(tmp / "tx.csv", rows)
    cfg = write_config(tmp / "k3.toml", "[cluster]\nk = 3\n")  # clusters are not under test here
    df, _ = run_rfm(tmp, src, config=cfg)
    doc = run_pareto_json(src, config=cfg)
    x = {c: minor(f.monetary) for c, f in reference_features(rows).items()}
    return df, doc, reference_pareto(x), x


def test_random_cum_share_and_classes_match_reference(random_run):
    df, _, ref, _ = random_run
    assert df.height == 5000
    got_cls = dict(zip(df["customer_id"], df["pareto_class"]))
    assert got_cls == ref.pareto_class
    got_cum = np.array([c for c in df.sort("customer_id")["cum_share"]])
    want_cum = np.array([ref.cum_share[c] for c in sorted(ref.cum_share)])
    np.testing.assert_allclose(got_cum, want_cum, rtol=1e-12, atol=0)


def test_random_pareto_json_matches_numpy_reimplementation(random_run):
    _, doc, ref, x = random_run
    # an independent numpy computation of the same figures, in float
    v = np.sort(np.clip(np.array(list(x.values()), dtype=np.float64), 0, None))  # ascending
    n, total = len(v), v.sum()
    i = np.arange(1, n + 1)
    gini_np = float(((2 * i - n - 1) * v).sum() / (n * total))
    desc = v[::-1]
    cum = np.cumsum(desc)
    assert doc["customers"] == n
    assert doc["total_revenue"] == pytest.approx(ref.total_minor / 10**4, rel=1e-15)
    assert doc["gini"] == pytest.approx(gini_np, rel=1e-9)
    assert doc["gini"] == pytest.approx(ref.gini, rel=1e-12)
    for h in doc["head"]:
        need = int(np.argmax(cum >= h["revenue_share"] * total - 1e-6)) + 1
        assert h["customers"] == need == ref.head[h["revenue_share"]][0], h
        assert h["customer_share"] == pytest.approx(need / n, rel=1e-12)
    for t in doc["top"]:
        k = math.ceil(round(t["top_customer_share"] * n, 9))
        assert t["customers"] == k == ref.top[t["top_customer_share"]][0], t
        assert t["revenue_share"] == pytest.approx(cum[k - 1] / total, rel=1e-9)
    abc = {a["pareto_class"]: (a["customers"], a["revenue_share"]) for a in doc["abc"]}
    for c in "ABC":
        assert abc[c][0] == ref.abc[c][0], c
        assert abc[c][1] == pytest.approx(ref.abc[c][1], rel=1e-12, abs=1e-15), c


def test_class_a_is_the_smallest_head_reaching_80_percent(random_run):
    _, doc, ref, _ = random_run
    n_a = ref.abc["A"][0]
    assert n_a == ref.head[0.8][0]
    assert {a["pareto_class"]: a["customers"] for a in doc["abc"]}["A"] == n_a


# --------------------------------------------------------------------------- segment prints the same


def test_segment_json_pareto_figures_are_exact(tmp_path):
    """The segment summary's Pareto section agrees with the exact computation, also for
    amounts whose float x 10^4 is not an integer (0.57 * 10000 = 5699.999...)."""
    rows = [("a", "2025-01-10", "0.57", "1"), ("b", "2025-01-11", "0.29", "2"), ("c", "2025-01-12", "1.15", "3"),
            ("d", "2025-01-12", "2.01", "4"), ("e", "2025-01-13", "0.58", "5")]
    src = write_csv(tmp_path / "tx.csv", rows)
    doc = json.loads(invoke(["segment", str(src), "--json", "--as-of", "2025-01-31"]).stdout)["pareto"]
    ref = reference_pareto({c: minor(f.monetary) for c, f in reference_features(rows).items()})
    assert ref.total_minor == 46000
    assert doc["customers"] == 5
    assert doc["total_revenue"] == 4.6
    assert doc["gini"] == pytest.approx(ref.gini, rel=1e-12)
    for h in doc["head"]:
        assert (h["customers"], h["customer_share"]) == pytest.approx(ref.head[h["revenue_share"]]), h
    for t in doc["top"]:
        assert (t["customers"], t["revenue_share"]) == pytest.approx(ref.top[t["top_customer_share"]]), t
    for a in doc["abc"]:
        assert (a["customers"], a["revenue_share"]) == pytest.approx(ref.abc[a["pareto_class"]]), a


def test_concentration_placed_by_rank_equals_sorted() -> None:
    """The pipeline passes pareto_rank so the customers are not sorted twice."""
    from segcli.pareto import concentration

    rng = np.random.default_rng(5)
    x = rng.integers(-500, 10_000, 2_000) * rng.integers(0, 2, 2_000)  # ties at 0 and negatives
    rank = np.empty(len(x), dtype=np.int64)
    rank[np.argsort(-np.clip(x, 0, None), kind="stable")] = np.arange(1, len(x) + 1)
    classes = np.where(rank <= 300, "A", "C")
    assert concentration(x, classes, 2, rank=rank) == concentration(x, classes, 2)
