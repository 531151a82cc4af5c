"""Service operations (issue 4): hysteresis, capacity, selection methods, departed customers,
the shrink guard and tier diffs, on fixtures where the right answer is obvious."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import SAMPLE, write_csv
from segcli.cli import app

runner = CliRunner()
# Net revenue per customer; one order each, all recent. Total 1000:
# A 500 | B 200 | C 150 -> cumulative before C is 700 < 800: A, B, C are Pareto class A.
# D 100: before D is 850 >= 800 (not class A) but < 900 = keep_share line (kept if VIP before).
# E 50: before E is 950 >= 900: out even for an incumbent.
AMOUNTS = {"A": 500, "B": 200, "C": 150, "D": 100, "E": 50}


def run(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def five(tmp_path: Path) -> Path:
    rows = [f"{c},2025-03-{10 + i:02d},{a}.00,O{i}" for i, (c, a) in enumerate(AMOUNTS.items())]
    return write_csv(tmp_path / "five.csv", "customer_id,order_date,amount,order_id", rows)


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.toml"
    path.write_text(text, encoding="utf-8")
    return path


def previous(tmp_path: Path, vips: list[str], others: list[str] = (), monetary: float = 200.0) -> Path:
    ids = [*vips, *others]
    df = pl.DataFrame({
        "customer_id": ids,
        "tier": ["zhixin"] * len(vips) + ["yuxin"] * len(others),
        "vip_group": ["vip_core"] * len(vips) + [None] * len(others),
        "reason": ["pareto_head"] * len(vips) + ["below_head"] * len(others),
        "monetary": [monetary] * len(ids),
    })
    path = tmp_path / "prev.parquet"
    df.write_parquet(path)
    return path


def segment(tmp_path: Path, *args: str) -> pl.DataFrame:
    out = tmp_path / "out.parquet"
    result = run("segment", *args, "-o", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    return pl.read_parquet(out)


def tiers(df: pl.DataFrame) -> dict[str, tuple[str, str]]:
    return {r["customer_id"]: (r["tier"], r["reason"]) for r in df.iter_rows(named=True)}


NO_CAP = "[tiers]\nmax_share = 1.0\n"


def test_without_previous_only_the_head_is_vip(tmp_path: Path, five: Path) -> None:
    got = tiers(segment(tmp_path, str(five), "-c", str(config(tmp_path, NO_CAP))))
    assert got == {"A": ("zhixin", "pareto_head"), "B": ("zhixin", "pareto_head"), "C": ("zhixin", "pareto_head"),
                   "D": ("yuxin", "below_head"), "E": ("yuxin", "below_head")}


def test_incumbent_between_entry_and_keep_line_is_kept_by_hysteresis(tmp_path: Path, five: Path) -> None:
    prev = previous(tmp_path, vips=["D", "E"], others=["A", "B", "C"])
    got = tiers(segment(tmp_path, str(five), "-c", str(config(tmp_path, NO_CAP)), "--previous", str(prev)))
    assert got["D"] == ("zhixin", "kept_by_hysteresis")  # below entry, inside keep_share
    assert got["E"] == ("yuxin", "below_head")  # outside keep_share even as an incumbent
    assert got["A"] == ("zhixin", "pareto_head")


def test_capacity_cut_is_by_monetary_then_incumbents_first_when_configured(tmp_path: Path, five: Path) -> None:
    prev = previous(tmp_path, vips=["C", "D"], others=["A", "B", "E"])
    plain = tiers(segment(tmp_path, str(five), "-c", str(config(
        tmp_path, "[tiers]\ncapacity = 2\nmax_share = 1.0\nincumbents_first = false\n")), "--previous", str(prev)))
    assert [c for c, (t, _) in plain.items() if t == "zhixin"] == ["A", "B"]
    assert plain["C"] == ("yuxin", "capacity_cut") and plain["D"] == ("yuxin", "capacity_cut")
    first = tiers(segment(tmp_path, str(five), "-c", str(config(  # the default
        tmp_path, "[tiers]\ncapacity = 2\nmax_share = 1.0\n")), "--previous", str(prev)))
    assert [c for c, (t, _) in first.items() if t == "zhixin"] == ["C", "D"]
    assert first["A"] == ("yuxin", "capacity_cut")


def test_capacity_exactly_reached_and_ties_cut_by_customer_id(tmp_path: Path) -> None:
    # four equal customers holding 80% + one small: all four are class A, capacity 3
    f = write_csv(tmp_path / "t.csv", "customer_id,order_date,amount",
                  ["K4,2025-03-01,100", "K2,2025-03-01,100", "K3,2025-03-01,100", "K1,2025-03-01,100",
                   "K5,2025-03-01,1"])
    got = tiers(segment(tmp_path, str(f), "-c", str(config(tmp_path, "[tiers]\ncapacity = 3\nmax_share = 1.0\n"))))
    assert [c for c, (t, _) in got.items() if t == "zhixin"] == ["K1", "K2", "K3"]
    assert got["K4"] == ("yuxin", "capacity_cut")


def test_departed_rows_do_not_buy_extra_vip_seats(tmp_path: Path, five: Path) -> None:
    # 5 customers in the data + 5 departed: L = floor(0.2 * 5) = 1, not floor(0.2 * 10) = 2
    prev = previous(tmp_path, vips=["G1", "G2"], others=["G3", "G4", "G5"], monetary=1.0)
    got = tiers(segment(tmp_path, str(five), "--previous", str(prev)))
    assert [c for c, (t, _) in got.items() if t == "zhixin"] == ["A"]
    assert sum(1 for t, r in got.values() if r == "departed") == 5


def test_customer_in_previous_but_absent_is_written_as_departed(tmp_path: Path, five: Path) -> None:
    prev = previous(tmp_path, vips=["A", "GONE"], others=["B", "C", "D", "E"], monetary=100.0)
    out = tmp_path / "o.parquet"
    result = run("segment", str(five), "--previous", str(prev), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert "1 customer of the previous run absent from the data" in result.stderr and "GONE" in result.stderr
    df = pl.read_parquet(out)
    gone = df.filter(pl.col("customer_id") == "GONE").row(0, named=True)
    assert (gone["tier"], gone["reason"], gone["service_level"]) == ("yuxin", "departed", "standard")
    assert gone["monetary"] is None
    meta = json.loads(pl.read_parquet_metadata(out)["segcli"])
    assert meta["previous"]["departed"] == ["GONE"]


def test_shrunk_export_stops_the_run_unless_forced(tmp_path: Path, five: Path) -> None:
    prev = previous(tmp_path, vips=["A"], others=[f"X{i}" for i in range(9)], monetary=300.0)
    out = tmp_path / "o.parquet"
    result = run("segment", str(five), "--previous", str(prev), "-o", str(out))
    assert result.exit_code == 65
    assert "shrank by more than guard.max_drop (20%)" in result.stderr
    assert "customers fell from 10 to 5 (50.0%)" in result.stderr
    assert not out.exists()
    forced = run("segment", str(five), "--previous", str(prev), "-o", str(out), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "--force: customers fell from 10 to 5" in forced.stderr


def test_threshold_method(tmp_path: Path, five: Path) -> None:
    got = tiers(segment(tmp_path, str(five), "-c", str(config(
        tmp_path, '[tiers]\nmethod = "threshold"\nthreshold = 150\nmax_share = 1.0\n'))))
    assert {c for c, (t, _) in got.items() if t == "zhixin"} == {"A", "B", "C"}  # 150 is "at or above"
    assert got["C"] == ("zhixin", "selected_by_threshold")


def test_rule_method(tmp_path: Path, five: Path) -> None:
    cfg = config(tmp_path, '[tiers]\nmethod = "rule"\nrule = "monetary >= 100 and not customer_id in [\\"B\\"]"\n'
                           'max_share = 1.0\n')
    got = tiers(segment(tmp_path, str(five), "-c", str(cfg)))
    assert {c for c, (t, _) in got.items() if t == "zhixin"} == {"A", "C", "D"}
    assert got["D"] == ("zhixin", "selected_by_rule")


@pytest.mark.parametrize("rule,bad", [("__import__('os')", "not allowed"), ("monetary > 'x' or", "cannot parse"),
                                      ("revenue > 5", "unknown column"), ("monetary.real > 1", "not allowed")])
def test_bad_rule_is_a_config_error(tmp_path: Path, five: Path, rule: str, bad: str) -> None:
    cfg = config(tmp_path, f'[tiers]\nmethod = "rule"\nrule = "{rule}"\n'.replace("'", "\\\""))
    result = run("segment", str(five), "-c", str(cfg))
    assert result.exit_code == 78
    assert "tiers.rule" in result.stderr and bad in result.stderr


def test_cluster_method_takes_whole_top_clusters_within_the_limit(tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    cfg = config(tmp_path, '[tiers]\nmethod = "cluster"\n')
    assert run("segment", str(SAMPLE), "-c", str(cfg), "-o", str(out), "-q").exit_code == 0
    df = pl.read_parquet(out)
    vip = df.filter(pl.col("tier") == "zhixin")
    assert set(vip["reason"].unique()) == {"selected_by_cluster"}
    assert vip.height <= int(0.2 * df.height)
    eligible = df.filter((pl.col("frequency") > 0) & (pl.col("monetary") > 0) & (pl.col("recency_days") <= 365))
    # every eligible member of the chosen clusters is VIP, and nobody else
    chosen = set(vip["cluster"].unique())
    assert chosen == {0}
    assert vip.height == eligible.filter(pl.col("cluster").is_in(list(chosen))).height


def test_previous_equal_to_own_output_changes_nothing(tmp_path: Path) -> None:
    first = tmp_path / "first.parquet"
    assert run("segment", str(SAMPLE), "-o", str(first), "-q").exit_code == 0
    second = tmp_path / "second.parquet"
    # the same as-of date is no earlier run (SPEC §6): it takes --force
    assert run("segment", str(SAMPLE), "--previous", str(first), "-o", str(second), "-q").exit_code == 65
    assert run("segment", str(SAMPLE), "--previous", str(first), "-o", str(second), "-q", "--force").exit_code == 0
    a, b = pl.read_parquet(first), pl.read_parquet(second)
    assert a.select("customer_id", "tier").equals(b.select("customer_id", "tier"))
    # the same as-of date twice is not a PREV -> CURR order: diff needs --force (SPEC §6)
    assert run("diff", str(first), str(second)).exit_code == 65
    assert run("diff", str(first), str(second), "--force").stdout.startswith("no changes")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amounts=st.lists(st.integers(1, 10_000), min_size=2, max_size=40), capacity=st.integers(1, 10),
       share=st.sampled_from([0.05, 0.2, 0.5, 1.0]))
def test_vip_count_never_exceeds_capacity_or_share(tmp_path: Path, amounts: list[int], capacity: int, share: float) -> None:
    f = write_csv(tmp_path / "h.csv", "customer_id,order_date,amount",
                  [f"H{i:03d},2025-03-01,{a}" for i, a in enumerate(amounts)])
    cfg = config(tmp_path, f"[tiers]\ncapacity = {capacity}\nmax_share = {share}\n")
    df = segment(tmp_path, str(f), "-c", str(cfg))
    vip = df.filter(pl.col("tier") == "zhixin").height
    assert vip <= min(capacity, int(share * len(amounts) + 1e-9))
    assert df.height == len(amounts) and df["tier"].is_in(["zhixin", "yuxin"]).all()


def test_diff_golden_and_outputs(tmp_path: Path, five: Path, golden) -> None:
    prev = tmp_path / "p.parquet"
    assert run("segment", str(five), "-c", str(config(tmp_path, NO_CAP)), "-o", str(prev), "-q").exit_code == 0
    later = write_csv(tmp_path / "later.csv", "customer_id,order_date,amount,order_id", [
        "A,2025-04-01,10.00,P1", "B,2025-04-02,20.00,P2", "D,2025-04-03,900.00,P3", "N,2025-04-04,5.00,P4"])
    curr = tmp_path / "c.parquet"
    assert run("segment", str(later), "-c", str(config(tmp_path, NO_CAP)), "-o", str(curr), "-q").exit_code == 0
    result = run("diff", str(prev), str(curr), "--format", "github")
    assert result.exit_code == 0
    golden("diff_small_github.txt", result.stdout.replace(str(tmp_path), "TMP"))
    doc = json.loads(run("diff", str(prev), str(curr), "--json").stdout)
    assert doc["counts"]["new"] == 1 and doc["counts"]["departed"] == 2  # N new; C and E gone
    assert [u["customer_id"] for u in doc["upgrades"]] == ["D"]
    moves = tmp_path / "moves.csv"
    assert run("diff", str(prev), str(curr), "-o", str(moves)).exit_code == 0
    table = pl.read_csv(moves)
    assert table.columns == ["customer_id", "from_tier", "to_tier", "from_group", "to_group", "change", "reason",
                             "tier_label", "service_level", "first_response_minutes", "resolution_hours",
                             "update_interval_hours", "channel", "goodwill_limit", "terms_changed"]
    assert set(table["change"]) <= {"upgrade", "downgrade", "group_change", "new", "departed"}
    assert "D" in table.filter(pl.col("change") == "upgrade")["customer_id"].to_list()
