"""Tiers (SPEC §4): who is VIP (zhixin) and why, the VIP limit, reason codes, VIP groups and
service terms, checked against hand-computed answers and a plain-Python re-implementation."""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
from fractions import Fraction

import numpy as np
import polars as pl
import pytest

from helpers_numbers import (
    invoke,
    minor,
    reference_features,
    reference_pareto,
    reference_scores,
    run_segment,
    write_config,
    write_csv,
)

YUXIN_REASONS = {"departed", "no_purchase", "non_positive_revenue", "inactive", "below_head", "capacity_cut"}
ZHIXIN_REASONS = {"pareto_head", "kept_by_hysteresis", "selected_by_cluster", "selected_by_rule",
                  "selected_by_threshold"}
SERVICE_COLUMNS = ("service_level", "first_response_minutes", "resolution_hours", "update_interval_hours",
                   "channel", "goodwill_limit")
DEFAULT_TERMS = {
    "yuxin": ("standard", 120, 72, 24, "contact_centre", 50.0),
    "zhixin": ("vip", 15, 24, 4, "account_manager", 500.0),
}
DEFAULT_GROUP_OVERRIDES = {
    "vip_lapsing": {"service_level": "vip_winback", "channel": "proactive_call", "update_interval_hours": 24},
    "vip_big_ticket": {"goodwill_limit": 1000.0},
}


def reference_tiers(rows, *, active_days=365, capacity=0, max_share=0.20):
    """SPEC §4 default policy, first-match reasons; returns {customer: (tier, reason)}."""
    feats = reference_features(rows)
    x = {c: minor(f.monetary) for c, f in feats.items()}
    classes = reference_pareto(x).pareto_class
    n = len(feats)
    by_share = math.floor(Fraction(str(max_share)) * n)
    limit = min(capacity, by_share) if capacity else by_share
    candidates = sorted(
        (c for c, f in feats.items()
         if f.frequency > 0 and x[c] > 0 and f.recency_days <= active_days and classes[c] == "A"),
        key=lambda c: (-x[c], c.encode()))
    vip = set(candidates[:limit])
    out = {}
    for c, f in feats.items():
        if f.frequency == 0:
            out[c] = ("yuxin", "no_purchase")
        elif x[c] <= 0:
            out[c] = ("yuxin", "non_positive_revenue")
        elif f.recency_days > active_days:
            out[c] = ("yuxin", "inactive")
        elif classes[c] != "A":
            out[c] = ("yuxin", "below_head")
        elif c not in vip:
            out[c] = ("yuxin", "capacity_cut")
        else:
            out[c] = ("zhixin", "pareto_head")
    return out


def expected_terms(tier, vip_group, *, base=DEFAULT_TERMS, groups=DEFAULT_GROUP_OVERRIDES):
    terms = dict(zip(SERVICE_COLUMNS, base[tier]))
    if tier == "zhixin" and vip_group in groups:
        terms.update(groups[vip_group])
    return tuple(terms[k] for k in SERVICE_COLUMNS)


def check_invariants(df: pl.DataFrame) -> None:
    """Every customer exactly one tier, reasons from the closed list, groups only for VIPs."""
    assert df["customer_id"].is_unique().all()
    assert df["customer_id"].to_list() == sorted(df["customer_id"].to_list(), key=str.encode)
    for r in df.iter_rows(named=True):
        assert r["tier"] in ("zhixin", "yuxin"), r
        if r["tier"] == "zhixin":
            assert r["reason"] in ZHIXIN_REASONS, r
            assert r["vip_group"] is not None, r
            assert r["tier_label"] == "知心"
        else:
            assert r["reason"] in YUXIN_REASONS, r
            assert r["vip_group"] is None, r
            assert r["tier_label"] == "遇心"


def tiers_of(df: pl.DataFrame) -> dict[str, tuple[str, str]]:
    return {r["customer_id"]: (r["tier"], r["reason"]) for r in df.iter_rows(named=True)}


# --------------------------------------------------------------------------- the VIP limit


# Four class-A customers tied at 100 (ids in byte order: A4 < B2 < a3 < b1) and six small ones.
TIE_ROWS = [(cid, "2025-01-20", "100.00", f"o-{cid}") for cid in ("b1", "a3", "B2", "A4")] + [
    (f"s{i}", "2025-01-21", "5.00", f"o-s{i}") for i in range(1, 7)]


@pytest.mark.parametrize(
    ("capacity", "max_share", "vips"),
    [
        (2, 0.5, ["A4", "B2"]),               # L = min(2, 5) = 2: capacity cuts a tie, by byte order
        (3, 0.5, ["A4", "B2", "a3"]),
        (4, 0.5, ["A4", "B2", "a3", "b1"]),   # capacity exactly reached: nobody cut
        (9, 0.5, ["A4", "B2", "a3", "b1"]),   # more seats than candidates
        (0, 0.2, ["A4", "B2"]),               # no capacity: L = floor(0.2 * 10) = 2
        (0, 0.35, ["A4", "B2", "a3"]),        # floor(3.5) = 3
        (5, 0.1, ["A4"]),                     # L = min(5, 1) = 1
        (0, 0.05, []),                        # floor(0.5) = 0: no VIP at all, every candidate cut
    ],
)
def test_vip_limit_and_ties_at_the_cut_broken_by_customer_id(tmp_path, capacity, max_share, vips):
    src = write_csv(tmp_path / "tx.csv", TIE_ROWS)
    cfg = write_config(tmp_path / "c.toml", f"[tiers]\ncapacity = {capacity}\nmax_share = {max_share}\n")
    df, _ = run_segment(tmp_path, src, config=cfg)
    check_invariants(df)
    got = tiers_of(df)
    assert sorted((c for c, (t, _) in got.items() if t == "zhixin"), key=str.encode) == vips
    for cid in ("A4", "B2", "a3", "b1"):
        assert got[cid] == (("zhixin", "pareto_head") if cid in vips else ("yuxin", "capacity_cut")), cid
    for i in range(1, 7):
        assert got[f"s{i}"] == ("yuxin", "below_head")
    assert got == reference_tiers(TIE_ROWS, capacity=capacity, max_share=max_share)


def test_vip_limit_uses_exact_share_of_customers(tmp_path):
    """floor(0.29 * 100) is 29; in floats 0.29 * 100 = 28.999999999999996."""
    rows = [(f"c{i:03d}", "2025-01-20", "10.00", f"o{i}") for i in range(100)]
    src = write_csv(tmp_path / "tx.csv", rows)
    cfg = write_config(tmp_path / "c.toml", "[tiers]\nmax_share = 0.29\n")
    df, _ = run_segment(tmp_path, src, config=cfg)
    check_invariants(df)
    got = tiers_of(df)
    # all equal: class A = the first 80 by id; VIP = the first 29 of them
    assert sorted(c for c, (t, _) in got.items() if t == "zhixin") == [f"c{i:03d}" for i in range(29)]
    assert sum(1 for t, r in got.values() if r == "capacity_cut") == 80 - 29
    assert sum(1 for t, r in got.values() if r == "below_head") == 20
    assert got == reference_tiers(rows, max_share=0.29)


def test_active_means_recency_at_most_active_days(tmp_path):
    """active_days = 30 at as-of 2025-01-31: bought on 1 Jan (30 days) is active, 31 Dec is not."""
    rows = [("e30", "2025-01-01", "100", "a"), ("e31", "2024-12-31", "100", "b"),
            ("e00", "2025-01-31", "100", "c")] + [(f"s{i}", "2025-01-20", "1", f"s{i}") for i in range(7)]
    src = write_csv(tmp_path / "tx.csv", rows)
    cfg = write_config(tmp_path / "c.toml", "[tiers]\nactive_days = 30\nmax_share = 0.5\n")
    df, _ = run_segment(tmp_path, src, config=cfg)
    check_invariants(df)
    got = tiers_of(df)
    assert got["e30"] == ("zhixin", "pareto_head")
    assert got["e00"] == ("zhixin", "pareto_head")
    assert got["e31"] == ("yuxin", "inactive")
    assert got == reference_tiers(rows, active_days=30, max_share=0.5)


# --------------------------------------------------------------------------- reasons, first match

# as-of 2025-01-31, active_days = 30, max_share = 0.5 (L = floor(4.5) = 4), no capacity.
REASON_ROWS = [
    ("V1", "2025-01-20", "500.00", "v1"),          # A, active                -> zhixin pareto_head
    ("I1", "2024-12-01", "200.00", "i1"),          # A but 61 days ago        -> inactive
    ("V2", "2025-01-30", "150.00", "v2"),          # A (700 before it < 708)  -> zhixin pareto_head
    ("S1", "2025-01-25", "20.00", "s1"),           # not A                    -> below_head
    ("S2", "2025-01-25", "5.00", "s2"),            # not A                    -> below_head
    ("S2", "2025-01-25", "5.00", "s2b"),           #   two orders: S2 alone holds the best F (the
                                                   #   others' single order does not get f = 5)
    ("N1", "2024-11-01", "30.00", "n1"),           # purchase, then a bigger return, and inactive:
    ("N1", "2025-01-10", "-50.00", "n2"),          #   non_positive_revenue comes first
    ("R1", "2025-01-15", "-5.00", "r1"),           # only a return: no_purchase comes first
    ("Z1", "2025-01-22", "0.00", "z1"),            # a free order only: monetary 0 -> non_positive_revenue
    ("I2", "2024-06-01", "5.00", "i2"),            # small and inactive: inactive before below_head
]
REASON_CONFIG = """
[tiers]
active_days = 30
max_share = 0.5

[service.yuxin]
goodwill_limit = 20.0
channel = "web"

[service.zhixin]
first_response_minutes = 5

[service.groups.vip_big_ticket]
goodwill_limit = 2000.0

[service.groups.vip_core]
channel = "key_account"
resolution_hours = 12
"""
EXPECTED_REASONS = {
    "V1": ("zhixin", "pareto_head"),
    "V2": ("zhixin", "pareto_head"),
    "I1": ("yuxin", "inactive"),
    "S1": ("yuxin", "below_head"),
    "S2": ("yuxin", "below_head"),
    "N1": ("yuxin", "non_positive_revenue"),
    "R1": ("yuxin", "no_purchase"),
    "Z1": ("yuxin", "non_positive_revenue"),
    "I2": ("yuxin", "inactive"),
}


@pytest.fixture(scope="module")
def reason_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tier_reasons")
    src = write_csv(tmp / "tx.csv", REASON_ROWS)
    cfg = write_config(tmp / "c.toml", REASON_CONFIG)
    df, result = run_segment(tmp, src, config=cfg, extra=["--json"])
    return df, json.loads(result.stdout)


def test_reasons_follow_spec_first_match_order(reason_run):
    df, _ = reason_run
    check_invariants(df)
    assert tiers_of(df) == EXPECTED_REASONS


def test_reason_literals_agree_with_reference():
    assert reference_tiers(REASON_ROWS, active_days=30, max_share=0.5) == EXPECTED_REASONS


def test_inactive_class_a_customer_is_not_vip(reason_run):
    df, _ = reason_run
    row = df.filter(pl.col("customer_id") == "I1").row(0, named=True)
    assert row["pareto_class"] == "A" and row["recency_days"] == 61
    assert (row["tier"], row["reason"], row["vip_group"]) == ("yuxin", "inactive", None)


def test_non_positive_revenue_is_never_vip(reason_run):
    df, _ = reason_run
    bad = df.filter(pl.col("monetary") <= 0)
    assert sorted(bad["customer_id"]) == ["N1", "R1", "Z1"]
    assert set(bad["tier"]) == {"yuxin"}


def test_vip_groups_are_named_by_profile(reason_run):
    """Two distinct VIP rows: k = min(3, 2) = 2, one customer per group, so each group's
    median profile is the customer's own; named by the first rule that holds."""
    df, _ = reason_run
    scores = reference_scores(reference_features(REASON_ROWS))
    feats = reference_features(REASON_ROWS)
    vips = ["V1", "V2"]
    aov = {c: float(feats[c].monetary / feats[c].frequency) for c in vips}
    tier_median_aov = statistics.median(aov.values())
    names = {}
    for c in sorted(vips, key=lambda c: -feats[c].monetary):  # group order: highest revenue first
        r, f, _m = scores[c]
        name = ("vip_lapsing" if r <= 2 else "vip_loyal" if f >= 4
                else "vip_big_ticket" if aov[c] >= tier_median_aov else "vip_core")
        names[c] = name if name not in names.values() else f"{name}_2"
    # by hand: V1 r=3 f=1 aov 500 >= 325 -> big ticket; V2 r=5 f=1 aov 150 -> core
    assert names == {"V1": "vip_big_ticket", "V2": "vip_core"}
    assert dict(zip(df["customer_id"], df["vip_group"])) == {
        "V1": "vip_big_ticket", "V2": "vip_core", **{c: None for c in EXPECTED_REASONS if c not in vips}}


def test_service_terms_follow_tier_and_group_overrides(reason_run):
    df, _ = reason_run
    base = {"yuxin": ("standard", 120, 72, 24, "web", 20.0), "zhixin": ("vip", 5, 24, 4, "account_manager", 500.0)}
    groups = {**DEFAULT_GROUP_OVERRIDES, "vip_big_ticket": {"goodwill_limit": 2000.0},
              "vip_core": {"channel": "key_account", "resolution_hours": 12}}
    for r in df.iter_rows(named=True):
        got = tuple(r[k] for k in SERVICE_COLUMNS)
        assert got == expected_terms(r["tier"], r["vip_group"], base=base, groups=groups), r
    by_id = {r["customer_id"]: tuple(r[k] for k in SERVICE_COLUMNS) for r in df.iter_rows(named=True)}
    assert by_id["V1"] == ("vip", 5, 24, 4, "account_manager", 2000.0)
    assert by_id["V2"] == ("vip", 5, 12, 4, "key_account", 500.0)
    assert by_id["S1"] == ("standard", 120, 72, 24, "web", 20.0)


def test_printed_tier_summary_matches_independent_figures(reason_run):
    _, doc = reason_run
    feats = reference_features(REASON_ROWS)
    n = len(feats)
    total = sum(float(f.monetary) for f in feats.values())
    tiers = {t["tier"]: t for t in doc["tiers"]}
    assert set(tiers) == {"zhixin", "yuxin"}
    for tier in ("zhixin", "yuxin"):
        members = [c for c, (t, _) in EXPECTED_REASONS.items() if t == tier]
        revenue = sum(float(feats[c].monetary) for c in members)
        recencies = [feats[c].recency_days for c in members if feats[c].recency_days is not None]
        row = tiers[tier]
        assert row["customers"] == len(members)
        assert row["customer_share"] == pytest.approx(len(members) / n)
        assert row["revenue"] == pytest.approx(revenue, abs=1e-9)
        assert row["revenue_share"] == pytest.approx(revenue / total)
        assert row["mean_recency_days"] == pytest.approx(statistics.mean(recencies))
        assert row["median_recency_days"] == pytest.approx(statistics.median(recencies))
        assert row["mean_frequency"] == pytest.approx(statistics.mean(feats[c].frequency for c in members))
        assert row["mean_monetary"] == pytest.approx(revenue / len(members))
    assert doc["customers"] == 9 and doc["as_of"] == "2025-01-31"
    rows = doc["rows"]
    assert (rows["rows_read"], rows["rows_used"], rows["rows_after_as_of"]) == (11, 11, 0)
    assert (rows["rows_returns"], rows["rows_zero_amount"]) == (2, 1)
    # zhixin: V1 + V2 = 650 of 860 net revenue (N1 -20, R1 -5 count in the total)
    assert tiers["zhixin"]["revenue"] == 650.0 and total == 860.0


# --------------------------------------------------------------------------- random data


def _random_rows(seed: int, n: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n):
        cid = f"{'abAB'[c % 4]}{c:04d}"
        for j in range(int(rng.choice([1, 1, 2, 3]))):
            day = dt.date(2024, 9, 1) + dt.timedelta(days=int(rng.integers(0, 153)))
            amount = str(rng.choice(["20", "50", "50", "120", "300", "0"]))
            rows.append((cid, day.isoformat(), amount, f"{cid}-{j}"))
        if rng.random() < 0.05:
            rows.append((cid, "2025-01-30", "-400", f"{cid}-r"))
    return rows


@pytest.mark.parametrize(("capacity", "active_days"), [(15, 60), (0, 90)])
def test_random_tiers_match_reference(tmp_path, capacity, active_days):
    rows = _random_rows(3 + capacity, 400)
    src = write_csv(tmp_path / "tx.csv", rows)
    cfg = write_config(tmp_path / "c.toml",
                       f"[tiers]\ncapacity = {capacity}\nactive_days = {active_days}\n[cluster]\nk = 3\n")
    df, _ = run_segment(tmp_path, src, config=cfg)
    check_invariants(df)
    want = reference_tiers(rows, capacity=capacity, active_days=active_days)
    got = tiers_of(df)
    diff = {c: (got.get(c), want[c]) for c in want if got.get(c) != want[c]}
    assert not diff, list(diff.items())[:10]
    n_vip = sum(1 for t, _ in got.values() if t == "zhixin")
    assert n_vip == min(capacity or 10**9, math.floor(0.2 * 400),
                        sum(1 for t, r in want.values() if r in ("pareto_head", "capacity_cut")))
    assert len({r for _, r in got.values()}) >= 4  # the data exercises several reasons
    for r in df.iter_rows(named=True):
        base_group = r["vip_group"]
        if base_group is not None and base_group not in DEFAULT_GROUP_OVERRIDES:
            stem, _, suffix = base_group.rpartition("_")
            if suffix.isdigit():
                base_group = stem
        assert tuple(r[k] for k in SERVICE_COLUMNS) == expected_terms(r["tier"], base_group), r


def test_repeated_group_names_are_numbered_in_revenue_order(tmp_path):
    """Three distinct VIPs -> three one-customer groups. Tier median avg_order_value = 200:
    300 and 200 are both big-ticket (the second becomes vip_big_ticket_2), 150 is core;
    all recent (r >= 4) and single-order (f = 3, the middle score of an all-equal column), so
    no lapsing/loyal name applies."""
    rows = [("g300", "2025-01-30", "300", "a"), ("g200", "2025-01-29", "200", "b"), ("g150", "2025-01-28", "150", "c")]
    rows += [(f"s{i}", "2025-01-10", "1", f"s{i}") for i in range(7)]
    src = write_csv(tmp_path / "tx.csv", rows)
    cfg = write_config(tmp_path / "c.toml", "[tiers]\nmax_share = 0.3\n")
    df, _ = run_segment(tmp_path, src, config=cfg)
    check_invariants(df)
    scores = reference_scores(reference_features(rows))
    # everyone bought once: F says nothing, every customer gets the middle score 3 (SPEC §3)
    assert all(scores[c][0] >= 4 and scores[c][1] == 3 for c in ("g300", "g200", "g150"))
    groups = {c: g for c, g in zip(df["customer_id"], df["vip_group"]) if g is not None}
    assert groups == {"g300": "vip_big_ticket", "g200": "vip_big_ticket_2", "g150": "vip_core"}
    terms = {r["customer_id"]: r["goodwill_limit"] for r in df.iter_rows(named=True)}
    assert terms["g300"] == 1000.0 and terms["g150"] == 500.0


# --------------------------------------------------------------------------- goodwill that fits (issue 14)

GOODWILL_CONFIG = """
[tiers]
method = "threshold"
threshold = 400
max_share = 0.5

[vip_groups]
k = 1                     # one group, named by rules that never hold: the fallback vip_core

[[vip_groups.names]]
name = "vip_lapsing"
metric = "r_score"
op = "<"
value = 0

[[vip_groups.names]]
name = "vip_big_ticket"
metric = "avg_order_value"
op = ">"
value = 1e12

[service.yuxin]
goodwill_share = 0.2
goodwill_min = 5.0
goodwill_max = 50.0

[service.zhixin]
goodwill_share = 0.5
goodwill_min = 20.0
goodwill_max = 500.0

[service.groups.vip_core]
goodwill_max = 1000.0
"""


def test_goodwill_as_a_share_of_the_customers_own_order_value_within_bounds(tmp_path):
    """VIP (vip_core): 50% of avg_order_value within 20..1000 (the group raises the tier's 500);
    standard: 20% within 5..50; without purchase: the minimum. Worked by hand."""
    rows = [("G1", "2025-01-20", "3000", "g1"),                                        # 1,500 -> 1,000
            ("G2", "2025-01-21", "400", "g2a"), ("G2", "2025-01-22", "433.33", "g2b"),  # aov 416.665 -> 208.3325
            *[("G3", f"2025-01-{d:02d}", "35", f"g3-{d}") for d in range(1, 13)],      # aov 35 -> 17.5 -> 20
            ("S1", "2025-01-10", "60", "s1"),                                           # 12
            ("S2", "2025-01-10", "10", "s2"),                                           # 2 -> 5
            ("S3", "2025-01-10", "300", "s3"),                                          # 60 -> 50
            ("R1", "2025-01-15", "-5", "r1")]                                           # no purchase -> 5
    src = write_csv(tmp_path / "tx.csv", rows)
    df, _ = run_segment(tmp_path, src, config=write_config(tmp_path / "c.toml", GOODWILL_CONFIG))
    got = {r["customer_id"]: (r["tier"], r["vip_group"], r["goodwill_limit"]) for r in df.iter_rows(named=True)}
    assert got == {"G1": ("zhixin", "vip_core", 1000.0), "G2": ("zhixin", "vip_core", 208.3325),
                   "G3": ("zhixin", "vip_core", 20.0), "S1": ("yuxin", None, 12.0), "S2": ("yuxin", None, 5.0),
                   "S3": ("yuxin", None, 50.0), "R1": ("yuxin", None, 5.0)}
    # the export's policy gives the range per tier and group, not one row per amount
    invoke(["export", tmp_path / "assignments.parquet", "--profile", "generic", "-o", tmp_path / "crm", "-q"])
    policy = json.loads((tmp_path / "crm" / "policy.json").read_text(encoding="utf-8"))
    groups = {(t["tier"], g["vip_group"]): g for t in policy["tiers"] for g in t["groups"]}
    assert sorted(groups) == [("yuxin", None), ("zhixin", "vip_core")]
    assert (groups[("zhixin", "vip_core")]["goodwill_limit"], groups[("zhixin", "vip_core")]["goodwill_limit_max"]) == (
        20.0, 1000.0)
    assert "| 20.00–1,000.00 (by customer) |" in (tmp_path / "crm" / "policy.md").read_text(encoding="utf-8")


def test_fixed_goodwill_stays_the_default(tmp_path):
    src = write_csv(tmp_path / "tx.csv", TIE_ROWS)
    df, _ = run_segment(tmp_path, src)
    assert set(zip(df["tier"], df["goodwill_limit"])) <= {("zhixin", 500.0), ("zhixin", 1000.0), ("yuxin", 50.0)}
