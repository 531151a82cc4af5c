"""`segcli explain` (SPEC §4, issue 14): for every reason, the figures it states are checked
against the assignments file and its run record, and the revenue it says would reach class A
against an independent Pareto computation (and a re-run with that revenue added)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from helpers_numbers import invoke, minor, reference_pareto, write_config, write_csv
from lifecycle_helpers import (
    CAPACITY_CONFIG,
    GRACE_CONFIG,
    GRACE_ROWS,
    M1,
    TENURE_CONFIG,
    TENURE_ROWS,
    chain,
    segment_run,
)
from segcli.explain import explain
from segcli.io import read_assignments, write_table


def figures(path: Path, *ids: str) -> dict[str, dict]:
    result = explain(path, list(ids))
    assert not result.unknown
    return {e.customer_id: {**e.figures, "reason": e.reason, "lines": e.lines} for e in result.explanations}


def row(path: Path, cid: str) -> dict:
    df, _ = read_assignments(str(path))
    return df.filter(pl.col("customer_id") == cid).row(0, named=True)


@pytest.fixture(scope="module")
def grace_runs(tmp_path_factory):
    return chain(tmp_path_factory.mktemp("grace"), GRACE_ROWS, GRACE_CONFIG)


@pytest.fixture(scope="module")
def capacity_runs(tmp_path_factory):
    return chain(tmp_path_factory.mktemp("capacity"), GRACE_ROWS, GRACE_CONFIG,
                 configs=[GRACE_CONFIG, CAPACITY_CONFIG, CAPACITY_CONFIG])


# --------------------------------------------------------------------------- standard tier reasons


def test_capacity_cut_states_the_limit_the_rank_and_the_last_seated_vip(capacity_runs):
    df, meta, path = capacity_runs[1]
    got = figures(path, "E", "D")
    last = df.filter(pl.col("tier") == "zhixin").sort("monetary")  # C (200, in grace) holds seat 3 of 3
    assert got["E"]["reason"] == "capacity_cut" and got["D"]["reason"] == "capacity_cut"
    assert (got["E"]["limit"], got["E"]["rank"], got["E"]["candidates"]) == (3, 4, 5)
    assert got["D"]["rank"] == 5 and got["E"]["incumbents_first"] is True
    assert got["E"]["last_seated_monetary"] == meta["decision"]["last_seated_monetary"] == last["monetary"][0] == 200.0
    assert got["E"]["monetary"] == 190.0
    assert ("the VIP limit L = 3 (the capacity of 3 seats) cut it: rank 4 of 5 candidates (previous VIPs "
            "seated first); the last seated VIP has monetary 200.00, this customer 190.00.") in got["E"]["lines"][0]


def test_below_head_states_the_revenue_that_reaches_class_a_worked_by_hand(grace_runs, tmp_path):
    """January: class A is A B C E; s1 has 10. Above 190 s1 would rank before E and the revenue
    before it (A B C = 900) stays below 80% of the total; at 190 exactly E (id 'E' < 's1') is
    ahead: 1,090 is not below 80% of 1,330. So s1 needs 190.0001 (180.0001 more)."""
    _, meta, path = grace_runs[0]
    got = figures(path, "s1")["s1"]
    assert got["reason"] == "below_head" and got["class_a_min_monetary"] == 190.0
    assert (got["class_a_monetary_needed"], got["class_a_more_needed"]) == (190.0001, 180.0001)
    assert "Monetary 190.0001 (180.0001 more) would put the customer in class A" in got["lines"][0]
    # the same by re-running segcli with that revenue added, and one minor unit less
    for extra, cls in (("180.0001", "A"), ("180", "B")):
        src = write_csv(tmp_path / f"tx{extra}.csv", [*GRACE_ROWS, ("s1", "2025-01-06", extra, "s1x")])
        df, _, _ = segment_run(tmp_path, src, M1, write_config(tmp_path / "c.toml", GRACE_CONFIG))
        assert df.filter(pl.col("customer_id") == "s1")["pareto_class"][0] == cls, extra


def test_revenue_to_class_a_matches_an_independent_pareto_on_random_data(tmp_path):
    """For customers below the head of a random export, the stated monetary puts them in class A
    by the reference Pareto (tests/helpers_numbers.py), and one minor unit less does not."""
    rng = np.random.default_rng(14)
    rows = [(f"R{c:03d}", "2025-01-20", f"{rng.choice([5, 10, 10, 25, 60, 250]) * rng.integers(1, 9)}.{rng.integers(0, 100):02d}",
             f"o{c}-{j}") for c in range(150) for j in range(int(rng.integers(1, 3)))]
    src = write_csv(tmp_path / "tx.csv", rows)
    df, _, path = segment_run(tmp_path, src, M1, write_config(tmp_path / "c.toml", "[cluster]\nk = 2\n"))
    base = {r["customer_id"]: minor(Decimal(repr(r["monetary"]))) for r in df.iter_rows(named=True)}
    below = df.filter(pl.col("reason") == "below_head")["customer_id"].to_list()[::7]
    assert len(below) >= 10
    for cid, got in figures(path, *below).items():
        needed = minor(Decimal(repr(got["class_a_monetary_needed"])))
        assert reference_pareto({**base, cid: needed}).pareto_class[cid] == "A", cid
        assert reference_pareto({**base, cid: needed - 1}).pareto_class[cid] != "A", cid


def test_inactive_no_purchase_non_positive_and_departed_state_the_file_figures(tmp_path):
    rows = [("V1", "2025-01-20", "500", "v1"), ("I1", "2024-12-01", "200", "i1"), ("S1", "2025-01-25", "20", "s1"),
            ("N1", "2024-11-01", "30", "n1"), ("N1", "2025-01-10", "-50", "n2"), ("R1", "2025-01-15", "-5", "r1"),
            ("X1", "2025-01-02", "15", "x1")]
    cfg = write_config(tmp_path / "c.toml", "[tiers]\nactive_days = 30\nmax_share = 0.5\n")
    _, _, first = segment_run(tmp_path, write_csv(tmp_path / "jan.csv", rows), dt.date(2025, 1, 31), cfg)
    src = write_csv(tmp_path / "feb.csv", [r for r in rows if r[0] != "X1"] + [("S1", "2025-02-03", "1", "s2")])
    _, meta, path = segment_run(tmp_path, src, dt.date(2025, 2, 5), cfg, previous=first)
    got = figures(path, "I1", "R1", "N1", "X1")
    i1 = row(path, "I1")
    assert got["I1"]["reason"] == "inactive" and got["I1"]["active_days"] == meta["decision"]["active_days"] == 30
    assert got["I1"]["last_purchase"] == i1["last_purchase"] == dt.date(2024, 12, 1)
    # Dec 1 + 30 days = Dec 31, the last day with recency <= active_days: inactive from Jan 1
    assert got["I1"]["inactive_since"] == dt.date(2025, 1, 1) and got["I1"]["recency_days"] == i1["recency_days"] == 66
    assert got["R1"]["reason"] == "no_purchase" and got["R1"]["returns_amount"] == row(path, "R1")["returns_amount"] == 5.0
    n1 = row(path, "N1")
    assert got["N1"]["reason"] == "non_positive_revenue" and got["N1"]["monetary"] == n1["monetary"] == -20.0
    assert (got["N1"]["gross_revenue"], got["N1"]["returns_amount"]) == (n1["gross_revenue"], n1["returns_amount"])
    assert got["X1"]["reason"] == "departed" and got["X1"]["previous_as_of"] == meta["previous"]["as_of"] == "2025-01-31"
    assert got["X1"]["previous_tier"] == "yuxin"


# --------------------------------------------------------------------------- VIP reasons


def test_vips_are_told_when_they_lapse_and_whether_they_are_in_grace(grace_runs):
    _, meta, path = grace_runs[1]
    got = figures(path, "A", "C", "D")
    for cid in ("A", "C", "D"):
        r = row(path, cid)
        assert got[cid]["active_until"] == r["last_purchase"] + dt.timedelta(days=meta["decision"]["active_days"])
        assert (got[cid]["at_risk"], got[cid]["grace_until"]) == (r["at_risk"], r["grace_until"])
    assert got["A"]["reason"] == "pareto_head" and got["A"]["active_until"] == dt.date(2026, 1, 10)
    assert got["C"]["reason"] == "in_grace" and got["C"]["grace_until"] == dt.date(2025, 3, 30)
    # back within the band (0.80): for C between 200 and 300, D A B (1,900) are ahead, and
    # 1,900 < 0.8 x (2,150 + y) for y > 225 (the total grows with C's revenue): 225.0001,
    # less than the smallest monetary in class A (B's 300)
    assert (got["C"]["keep_monetary_needed"], got["C"]["keep_more_needed"]) == (225.0001, 25.0001)
    assert "kept in grace until 2025-03-30" in got["C"]["lines"][0] and got["C"]["lines"][-1].startswith("at_risk: yes")
    assert got["D"]["rank"] == 5 and got["D"]["limit"] == 5


def test_min_tenure_states_until_when_it_keeps_the_vip(tmp_path):
    runs = chain(tmp_path, TENURE_ROWS, TENURE_CONFIG)
    got = figures(runs[2][2], "N1")["N1"]
    assert got["reason"] == "min_tenure" and got["tier_since"] == dt.date(2025, 2, 28)
    assert got["min_tenure_days"] == 45 and got["tenure_until"] == dt.date(2025, 4, 14)
    assert got["at_risk"] is True


def test_kept_by_hysteresis_names_the_keep_band(tmp_path):
    """keep_share 0.95 in February: 95% of 2,350 = 2,232.5, and the revenue before C (1,900)
    and E (2,100) is below it."""
    runs = chain(tmp_path, GRACE_ROWS, GRACE_CONFIG.replace("keep_share = 0.80", "keep_share = 0.95"))
    got = figures(runs[1][2], "C", "E")
    assert got["C"]["reason"] == got["E"]["reason"] == "kept_by_hysteresis"
    assert got["C"]["keep_share"] == 0.95 and got["C"]["cum_share"] == row(runs[1][2], "C")["cum_share"]


def test_threshold_selection_states_the_threshold_and_the_seat(tmp_path):
    """method = threshold (300): G1 600 and G2 300 are selected, S1 250 needs 50 more."""
    rows = [("G1", "2025-01-20", "600", "g1"), ("G2", "2025-01-21", "300", "g2"), ("S1", "2025-01-22", "250", "s1"),
            *[(f"s{i}", "2025-01-05", "10", f"s{i}") for i in range(5)]]
    cfg = write_config(tmp_path / "c.toml", '[tiers]\nmethod = "threshold"\nthreshold = 300\nmax_share = 0.5\n')
    _, meta, path = segment_run(tmp_path, write_csv(tmp_path / "tx.csv", rows), M1, cfg)
    got = figures(path, "G1", "G2", "S1")
    assert got["G2"]["reason"] == "selected_by_threshold" and (got["G2"]["rank"], got["G2"]["limit"]) == (2, 4)
    assert got["G1"]["rank"] == 1 and meta["decision"]["limit"] == 4
    assert got["S1"]["reason"] == "below_head"
    assert (got["S1"]["threshold"], got["S1"]["more_needed"]) == (300.0, 50.0)


# --------------------------------------------------------------------------- the command


def test_explain_command_prints_words_and_json_equal_to_the_api(capacity_runs):
    _, _, path = capacity_runs[1]
    text = invoke(["explain", path, "E", "A"]).stdout
    assert text.startswith("E: 遇心 yuxin, reason capacity_cut\n") and "\nA: 知心 zhixin, reason pareto_head\n" in text
    doc = json.loads(invoke(["explain", path, "E", "A", "--json"]).stdout)
    assert doc == json.loads(json.dumps(explain(path, ["E", "A"]).to_dict(), default=str))
    assert [c["customer_id"] for c in doc["customers"]] == ["E", "A"] and doc["unknown"] == []


def test_an_unknown_customer_is_exit_65_naming_it_and_the_others_are_explained(capacity_runs):
    _, _, path = capacity_runs[1]
    result = invoke(["explain", path, "A", "nobody", "E"], ok=False)
    assert result.exit_code == 65
    assert "segcli: error:" in result.stderr and "'nobody'" in result.stderr
    assert "A: 知心 zhixin" in result.stdout and "E: 遇心 yuxin" in result.stdout


def test_explain_has_help_with_an_example():
    result = invoke(["explain", "--help"])
    assert "Example: segcli explain" in result.stdout


def test_a_version_1_file_without_decision_figures_is_still_explained(capacity_runs, tmp_path):
    df, meta, _ = capacity_runs[1]
    old = {k: v for k, v in meta.items() if k not in ("decision", "candidates_cut")} | {"schema_version": 1}
    out = tmp_path / "v1.parquet"
    write_table(df.drop("previous_tier", "tier_since", "at_risk", "grace_until"), str(out), meta=old)
    got = figures(out, "E", "A")
    assert got["E"]["limit"] == 3 and got["E"]["last_seated_monetary"] == 200.0
    assert "at_risk" not in got["A"] and got["A"]["active_until"] == dt.date(2026, 1, 10)
