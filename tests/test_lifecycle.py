"""The tier lifecycle (SPEC §4, issue 14): grace, minimum tenure, at_risk, the schema-2 columns,
capacity as a hard limit among kept customers, `--previous` of version 1 and 2, the decision
figures in the run record and the summary; hand fixtures over three chained runs, then
property tests on random chained runs."""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from helpers_numbers import invoke, write_config, write_csv
from lifecycle_helpers import (
    CAPACITY_CONFIG,
    GRACE_CONFIG,
    GRACE_ROWS,
    M1,
    M2,
    TENURE_CONFIG,
    TENURE_ROWS,
    chain,
    lifecycle_view,
    segment_run,
)
from segcli.config import load_config
from segcli.io import read_assignments, write_table
from segcli.pipeline import segment
from segcli.schema import OUTPUT_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
SMALL_IDS = [f"s{i}" for i in range(1, 7)]
J31, F28, M30, M31 = "2025-01-31", "2025-02-28", "2025-03-30", "2025-03-31"


def small(previous_tier: str | None, since: str) -> dict[str, tuple]:
    return {s: ("yuxin", "below_head", previous_tier, since, False, None) for s in SMALL_IDS}


@pytest.fixture(scope="module")
def grace_runs(tmp_path_factory):
    return chain(tmp_path_factory.mktemp("grace"), GRACE_ROWS, GRACE_CONFIG)


# --------------------------------------------------------------------------- grace, by hand


def test_first_run_promotes_the_class_a_customers_and_starts_their_tier_since(grace_runs):
    df, meta, _ = grace_runs[0]
    assert tuple(df.columns) == OUTPUT_COLUMNS and meta["schema_version"] == 2
    vip = ("zhixin", "pareto_head", None, J31, False, None)
    assert lifecycle_view(df) == {"A": vip, "B": vip, "C": vip, "E": vip, **small(None, J31)}


def test_a_vip_who_drops_out_of_the_head_while_active_stays_in_grace_at_risk(grace_runs):
    df, meta, _ = grace_runs[1]
    grace = ("zhixin", "in_grace", "zhixin", J31, True, M30)  # Feb 28 + 30 days
    assert lifecycle_view(df) == {
        "A": ("zhixin", "pareto_head", "zhixin", J31, False, None),
        "B": ("zhixin", "pareto_head", "zhixin", J31, False, None),
        "C": grace, "E": grace,
        "D": ("zhixin", "pareto_head", None, F28, False, None),  # promoted: a new customer
        **small("yuxin", J31),
    }
    assert df.filter(pl.col("customer_id").is_in(["C", "E"]))["pareto_class"].to_list() == ["B", "B"]


def test_recovery_inside_grace_clears_it_and_demotion_comes_when_grace_has_ended(grace_runs):
    df, _, _ = grace_runs[2]
    assert lifecycle_view(df) == {
        "A": ("zhixin", "pareto_head", "zhixin", J31, False, None),
        "B": ("zhixin", "pareto_head", "zhixin", J31, False, None),
        "C": ("yuxin", "below_head", "zhixin", M31, False, None),  # Mar 31 >= grace_until Mar 30
        "D": ("zhixin", "pareto_head", "zhixin", F28, False, None),
        "E": ("zhixin", "pareto_head", "zhixin", J31, False, None),  # back in class A: VIP since January
        **small("yuxin", J31),
    }


def test_run_record_and_summary_tell_the_decision(grace_runs, tmp_path):
    _, meta, path = grace_runs[1]
    d = meta["decision"]
    assert {k: d[k] for k in ("limit", "limit_by", "customers", "candidates", "seated", "capacity_cut",
                              "kept_by_hysteresis", "in_grace", "min_tenure", "at_risk", "incumbents_first",
                              "last_seated_monetary", "class_a_min_monetary", "active_days", "grace_days")} == {
        "limit": 5, "limit_by": "max_share", "customers": 11, "candidates": 5, "seated": 5, "capacity_cut": 0,
        "kept_by_hysteresis": 0, "in_grace": 2, "min_tenure": 0, "at_risk": 2, "incumbents_first": True,
        "last_seated_monetary": 1200.0, "class_a_min_monetary": 300.0, "active_days": 365, "grace_days": 30}
    assert d["reasons"] == {"below_head": 6, "in_grace": 2, "pareto_head": 3} and meta["candidates_cut"] == 0
    src = write_csv(tmp_path / "tx.csv", GRACE_ROWS)
    cfg = write_config(tmp_path / "c.toml", GRACE_CONFIG)
    shown = invoke(["segment", src, "--as-of", M2.isoformat(), "-c", cfg, "--previous", grace_runs[0][2]]).stdout
    assert ("VIP limit L = 5 (⌊max_share 0.5 × 11 customers⌋): 5 candidates, 0 cut by the limit; "
            "kept 2 in grace; 2 VIPs at risk") in shown
    by_reason = json.loads(invoke(["summary", path, "--by", "reason", "--json"]).stdout)
    assert {r["reason"]: r["customers"] for r in by_reason} == {"below_head": 6, "in_grace": 2, "pareto_head": 3}
    in_grace = next(r for r in by_reason if r["reason"] == "in_grace")
    assert in_grace["revenue"] == 390.0  # C 200 + E 190


def test_without_lifecycle_the_same_data_demotes_at_once(tmp_path):
    """Defaults (grace 0, tenure 0) keep today's tiers: C and E are demoted in February."""
    runs = chain(tmp_path, GRACE_ROWS, "[tiers]\nmax_share = 0.5\nkeep_share = 0.80\n")
    view = lifecycle_view(runs[1][0])
    assert view["C"] == view["E"] == ("yuxin", "below_head", "zhixin", F28, False, None)
    assert runs[1][1]["decision"]["in_grace"] == 0


# --------------------------------------------------------------------------- tenure, capacity, by hand


def test_minimum_tenure_keeps_a_new_vip_and_demotes_an_older_one(tmp_path):
    runs = chain(tmp_path, TENURE_ROWS, TENURE_CONFIG)
    assert lifecycle_view(runs[1][0]) == {
        "P1": ("zhixin", "pareto_head", "zhixin", J31, False, None),
        "P2": ("zhixin", "pareto_head", "zhixin", J31, False, None),
        "N1": ("zhixin", "pareto_head", None, F28, False, None),
        **small("yuxin", J31)}
    assert lifecycle_view(runs[2][0]) == {
        "P1": ("zhixin", "pareto_head", "zhixin", J31, False, None),
        "P2": ("yuxin", "below_head", "zhixin", M31, False, None),  # VIP for 59 days >= 45
        "N1": ("zhixin", "min_tenure", "zhixin", F28, True, None),  # VIP for 31 days < 45
        "Q": ("zhixin", "pareto_head", None, M31, False, None),
        **small("yuxin", J31)}
    assert runs[2][1]["decision"]["min_tenure"] == 1


def test_capacity_cuts_the_lowest_monetary_among_kept_customers(tmp_path):
    runs = chain(tmp_path, GRACE_ROWS, GRACE_CONFIG, configs=[GRACE_CONFIG, CAPACITY_CONFIG, CAPACITY_CONFIG])
    feb, mar = lifecycle_view(runs[1][0]), lifecycle_view(runs[2][0])
    assert feb == {
        "A": ("zhixin", "pareto_head", "zhixin", J31, False, None),
        "B": ("zhixin", "pareto_head", "zhixin", J31, False, None),
        "C": ("zhixin", "in_grace", "zhixin", J31, True, M30),
        "E": ("yuxin", "capacity_cut", "zhixin", F28, False, None),  # seat 4 of L = 3
        "D": ("yuxin", "capacity_cut", None, F28, False, None),      # entrants come after the kept
        **small("yuxin", J31)}
    d = runs[1][1]["decision"]
    assert (d["limit"], d["limit_by"], d["candidates"], d["seated"], d["capacity_cut"], d["last_seated_monetary"]) == (
        3, "capacity", 5, 3, 2, 200.0)
    # March: C's grace has ended; seats A, B (incumbents), then D 1,200 before E 490
    assert mar == {
        "A": ("zhixin", "pareto_head", "zhixin", J31, False, None),
        "B": ("zhixin", "pareto_head", "zhixin", J31, False, None),
        "C": ("yuxin", "below_head", "zhixin", M31, False, None),
        "D": ("zhixin", "pareto_head", "yuxin", M31, False, None),
        "E": ("yuxin", "capacity_cut", "yuxin", F28, False, None),
        **small("yuxin", J31)}
    for df, _, _ in runs:
        assert (df["tier"] == "zhixin").sum() <= 3 or df is runs[0][0]


def test_at_risk_marks_a_vip_who_lapses_within_warn_days(tmp_path):
    """No --previous. As of 2025-01-31, active_days 365, warn_days 30: a VIP whose last purchase
    is 336 days old would be 366 days old in 30 days (inactive): at risk; 335 days: not."""
    rows = [("W1", "2024-02-20", "500", "w1"), ("W2", "2024-03-05", "500", "w2"), ("W3", "2024-03-02", "500", "w3"),
            ("W4", "2024-03-01", "500", "w4"), *[(f"s{i}", "2025-01-05", "10", f"s{i}") for i in range(6)]]
    src = write_csv(tmp_path / "tx.csv", rows)
    df, meta, _ = segment_run(tmp_path, src, M1, write_config(tmp_path / "c.toml", "[tiers]\nmax_share = 0.5\n"))
    got = {r["customer_id"]: (r["tier"], r["recency_days"], r["at_risk"]) for r in df.iter_rows(named=True)
           if r["customer_id"].startswith("W")}
    assert got == {"W1": ("zhixin", 346, True), "W2": ("zhixin", 332, False), "W3": ("zhixin", 335, False),
                   "W4": ("zhixin", 336, True)}
    assert df.filter(pl.col("tier") == "yuxin")["at_risk"].sum() == 0 and meta["decision"]["at_risk"] == 2
    assert df["previous_tier"].null_count() == df.height and df["grace_until"].null_count() == df.height
    assert set(df["tier_since"]) == {M1}


# --------------------------------------------------------------------------- --previous of version 1 and 2


def _as_version_1(path: Path, out: str) -> str:
    df, meta = read_assignments(str(path))
    meta = {k: v for k, v in meta.items() if k not in ("decision", "candidates_cut")} | {"schema_version": 1}
    write_table(df.drop("previous_tier", "tier_since", "at_risk", "grace_until"), out, meta=meta)
    return out


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_version_1_previous_file_counts_tier_since_from_its_as_of(grace_runs, tmp_path, suffix):
    """A v1 file has no lifecycle columns: each row's tier_since is PREV's as-of, and no grace
    runs yet; February then equals the chain from the version-2 file."""
    v1 = _as_version_1(grace_runs[0][2], str(tmp_path / f"v1{suffix}"))
    src = write_csv(tmp_path / "tx.csv", GRACE_ROWS)
    df, meta, _ = segment_run(tmp_path, src, M2, write_config(tmp_path / "c.toml", GRACE_CONFIG), previous=Path(v1))
    assert_frame_equal(df, grace_runs[1][0])
    assert meta["schema_version"] == 2


def test_a_previous_file_repeating_a_customer_is_a_data_error(grace_runs, tmp_path):
    df, meta, _ = grace_runs[0]
    bad = str(tmp_path / "twice.parquet")
    write_table(pl.concat([df, df.head(1)]), bad, meta=meta)
    src = write_csv(tmp_path / "tx.csv", GRACE_ROWS)
    result = invoke(["segment", src, "--as-of", M2.isoformat(), "--previous", bad, "-o", tmp_path / "o.parquet"],
                    ok=False)
    assert result.exit_code == 65 and "repeat a customer id" in result.stderr and "'A'" in result.stderr


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_chains_through_csv_and_jsonl_give_the_parquet_chain(grace_runs, tmp_path, suffix):
    runs = chain(tmp_path, GRACE_ROWS, GRACE_CONFIG, suffix=suffix)
    for (df, _, _), (want, _, _) in zip(runs, grace_runs):
        assert lifecycle_view(df) == lifecycle_view(want)


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_ready_config_loads_and_its_segment_map_covers_the_grid(config):
    cfg = load_config(config)  # the map check runs at load time (exit 78 otherwise)
    assert cfg.rfm.segments and cfg.tiers.lifecycle.warn_days >= 0


def test_ready_lifecycle_profiles_have_grace_and_tenure():
    for name in ("retail_lifecycle.toml", "private_bank.toml"):
        lc = load_config(ROOT / "configs" / name).tiers.lifecycle
        assert lc.grace_days > 0 and lc.min_tenure_days > 0, name
    assert load_config(None).tiers.lifecycle == type(lc)(grace_days=0, min_tenure_days=0, warn_days=30)


@pytest.mark.parametrize(("text", "key"), [
    ("[tiers.lifecycle]\ngrace = 30\n", "tiers.lifecycle.grace"),
    ("[tiers.lifecycle]\ngrace_days = -1\n", "tiers.lifecycle.grace_days"),
    ("[tiers.lifecycle]\nmin_tenure_days = 1.5\n", "tiers.lifecycle.min_tenure_days"),
    ("[tiers.lifecycle]\nwarn_days = 4000\n", "tiers.lifecycle.warn_days"),
    ("[service.zhixin]\ngoodwill_share = 11\n", "service.zhixin.goodwill_share"),
    ("[service.yuxin]\ngoodwill_min = -1\n", "service.yuxin.goodwill_min"),
    ("[service.zhixin]\ngoodwill_min = 30\ngoodwill_max = 20\n", "service.zhixin.goodwill_max"),
    ("[service.groups.vip_core]\ngoodwill_cap = 20\n", "service.groups.vip_core.goodwill_cap"),
])
def test_a_bad_lifecycle_or_goodwill_key_is_a_config_error_naming_it(tmp_path, text, key):
    src = write_csv(tmp_path / "tx.csv", GRACE_ROWS)
    result = invoke(["segment", src, "-c", write_config(tmp_path / "c.toml", text)], ok=False)
    assert result.exit_code == 78 and key in result.stderr


# --------------------------------------------------------------------------- properties

CUSTOMERS = [f"K{i:02d}" for i in range(10)]
START = dt.date(2025, 1, 1)
AS_OFS = [dt.date(2025, 1, 31), dt.date(2025, 2, 28), dt.date(2025, 3, 31), dt.date(2025, 4, 30)]

transactions = st.lists(st.tuples(st.sampled_from(CUSTOMERS), st.integers(0, 119), st.integers(-3_000, 90_000)),
                        min_size=15, max_size=80)
policies = st.fixed_dictionaries({
    "grace_days": st.sampled_from([0, 20, 30, 45, 90]), "min_tenure_days": st.sampled_from([0, 0, 40, 90]),
    "capacity": st.sampled_from([0, 1, 2, 3]), "max_share": st.sampled_from([0.2, 0.35, 0.5]),
    "keep_share": st.sampled_from([0.8, 0.9]), "active_days": st.sampled_from([30, 60, 365]),
    "incumbents_first": st.booleans(), "window_days": st.sampled_from([0, 40, 60])})


def _chained(rows: list[tuple[str, int, int]], p: dict) -> list[pl.DataFrame]:
    lines = ["customer_id,order_date,amount,order_id"]
    lines += [f"{c},{START + dt.timedelta(days=d)},{a / 100:.2f},o{i}" for i, (c, d, a) in enumerate(rows)]
    out: list[pl.DataFrame] = []
    with tempfile.TemporaryDirectory() as folder:
        src = Path(folder) / "tx.csv"
        src.write_text("\n".join(lines) + "\n", encoding="utf-8")
        meta = None
        for as_of in AS_OFS:
            first = as_of - dt.timedelta(days=p["window_days"] or 10**4)
            if not any(first < START + dt.timedelta(days=d) <= as_of for _, d, _ in rows):
                continue
            run_cfg = load_config(None, {**_policy_overrides(p), "analysis.as_of": as_of.isoformat()})
            seg = segment([str(src)], run_cfg, previous=out[-1] if out else None, previous_meta=meta, force=True)
            out.append(seg.assignments)
            meta = seg.record
    return out


def _policy_overrides(p: dict) -> dict:
    return {"tiers.max_share": p["max_share"], "tiers.capacity": p["capacity"], "tiers.keep_share": p["keep_share"],
            "tiers.active_days": p["active_days"], "tiers.incumbents_first": p["incumbents_first"], "cluster.k": 2,
            "tiers.lifecycle.grace_days": p["grace_days"], "tiers.lifecycle.min_tenure_days": p["min_tenure_days"],
            "analysis.window_days": p["window_days"]}  # a window: revenue leaves, VIPs drop out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transactions, policies)
def test_chained_runs_keep_the_limit_and_never_demote_without_warning(rows, p):
    runs = _chained(rows, p)
    for i, df in enumerate(runs):
        present = df.filter(pl.col("reason") != "departed")
        by_share = math.floor(Fraction(str(p["max_share"])) * present.height)
        limit = min(p["capacity"], by_share) if p["capacity"] else by_share
        assert (df["tier"] == "zhixin").sum() <= limit  # capacity is a hard limit, kept customers included
        assert df.filter(pl.col("tier") == "yuxin")["at_risk"].sum() == 0
        assert df.filter(pl.col("reason") == "in_grace")["at_risk"].all()
        if i == 0:
            continue
        moved = df.join(runs[i - 1].select("customer_id", prev_tier="tier", prev_at_risk="at_risk"),
                        on="customer_id", how="inner")
        assert (moved["previous_tier"] == moved["prev_tier"]).all()
        if p["grace_days"]:
            # a VIP still active with positive revenue is never demoted by the head in the run
            # their lapse begins: they were at risk (in grace or kept by tenure) in the run before
            demoted = moved.filter((pl.col("prev_tier") == "zhixin") & (pl.col("reason") == "below_head"))
            assert demoted["prev_at_risk"].all(), demoted.select("customer_id", "prev_at_risk").to_dicts()
        # tier_since moves exactly when the tier changes
        changed = moved.filter(pl.col("tier") != pl.col("prev_tier"))
        assert (changed["tier_since"] == changed["as_of"]).all()
