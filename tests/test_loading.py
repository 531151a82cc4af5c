"""The named steps of :func:`segcli.loading.load_transactions` on hand-made files: each
count checked against the rows written here."""

from __future__ import annotations

from pathlib import Path

from segcli.config import load_config
from segcli.loading import RULE_COLUMNS, check_passes, check_tables, open_inputs, plan_parse
from segcli.parse import RULES

H = "customer_id,order_date,amount\n"


def _counts(path: Path, **overrides: object):  # type: ignore[no-untyped-def]
    cfg = load_config(None, overrides or None)
    opened = open_inputs([str(path)], cfg)
    plan = plan_parse(opened, cfg, count_identical=None, memory_limit=None, fusable=False)
    return plan, check_passes(opened, plan, cfg, None)


def test_check_counts_are_named_by_the_rule_they_count(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    # 1 good row; 1 empty id; 2 bad dates; 2 bad amounts (one row breaks both date and amount)
    f.write_text(H + "C1,2024-03-05,10\n,2024-03-05,1\nC3,2024-02-30,2\nC4,2024-03-01,ten\nC5,never,x\n")
    _, checked = _counts(f)
    src_stats, _, _ = check_tables(checked.groups, dedupe=False)
    row = src_stats.row(0, named=True)
    assert RULE_COLUMNS == ("bad_customer_id", "bad_date", "bad_amount") == tuple(f"bad_{r}" for _, r, _ in RULES)
    assert (row["bad_customer_id"], row["bad_date"], row["bad_amount"]) == (1, 2, 2)
    assert (row["rows"], row["invalid"]) == (5, 4)


def test_a_total_marker_above_the_last_row_is_counted_again_as_a_row(tmp_path: Path) -> None:
    """check_passes re-runs the pass when a total marker is not its file's last row: only the
    trailing one (line 5) is a total row; the one on line 3 stays a row."""
    f = tmp_path / "x.csv"
    f.write_text(H + "C1,2024-03-05,10\nTotal,2024-03-05,3\nC2,2024-03-06,5\nTotal,,18\n")
    plan, checked = _counts(f)
    assert checked.totals == {0: 5}
    src_stats, days, _ = check_tables(checked.groups, dedupe=False)
    assert int(src_stats["rows"].sum()) == 3 and int(days["rows"].sum()) == 3
    assert plan.parts == 1 and not plan.fuse and checked.aggregated is None


def test_a_date_format_the_sample_missed_widens_the_plan(tmp_path: Path) -> None:
    """The sample (the first 2,000 rows) is ISO; later rows are day-first: the plan is widened
    and every row parses, as first-match-wins over the configured formats would parse it."""
    f = tmp_path / "x.csv"
    rows = [f"C{i % 7},2024-03-{1 + i % 28:02d},1" for i in range(2100)] + ["C1,15/04/2024,2", "C2,16/04/2024,3"]
    f.write_text(H + "\n".join(rows) + "\n")
    plan, checked = _counts(f, **{"input.date_formats": ["%Y-%m-%d", "%d/%m/%Y"]})
    assert plan.plans[0].formats == ("%Y-%m-%d",)  # what the sample chose
    src_stats, days, _ = check_tables(checked.groups, dedupe=False)
    assert int(src_stats["invalid"].sum()) == 0 and int(src_stats["rows"].sum()) == 2102
    assert str(days["date"].max()) == "2024-04-16"
