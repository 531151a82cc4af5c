"""Commands, options and what they print (issue 9): rules, usage errors, --json types,
lifetimes records and periods, diff kinds and help texts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner
from wcwidth import wcswidth

from conftest import write_csv
from segcli.cli import app

runner = CliRunner()
H = "customer_id,order_date,amount,order_id"


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def config(tmp_path: Path, text: str, name: str = "cfg.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- tier rules (item 6)


def test_rule_operators_inside_quoted_values_are_left_as_written(tmp_path: Path) -> None:
    # "A and B" is what "A&&B" became when && was replaced everywhere in the rule text
    src = write_csv(tmp_path / "tx.csv", H, ["A&&B,2025-03-01,10.00,O1", "A and B,2025-03-01,20.00,O2",
                                             "X||Y,2025-03-01,30.00,O3", "X or Y,2025-03-01,40.00,O4",
                                             "Z,2025-03-01,50.00,O5"])
    cfg = config(tmp_path, "[tiers]\nmethod = \"rule\"\nmax_share = 1.0\n"
                           "rule = 'customer_id == \"A&&B\" || customer_id == \"X||Y\" || (monetary > 45 && frequency >= 1)'\n")
    out = tmp_path / "out.csv"
    result = run("segment", src, "-c", cfg, "-o", out, "-q")
    assert result.exit_code == 0, result.stderr
    df = pl.read_csv(out)
    assert sorted(df.filter(pl.col("tier") == "zhixin")["customer_id"]) == ["A&&B", "X||Y", "Z"]


# --------------------------------------------------------------------------- lifetimes run record (item 5)


def test_lifetimes_file_has_a_full_run_record_that_config_show_reads(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "tx.csv", H, ["A,2025-03-01,10.00,O1", "A,2025-03-05,20.00,O2",
                                             "B,2025-03-02,5.00,O3"])
    cfg = config(tmp_path, "[analysis]\nmax_staleness_days = 40\n")
    for name in ("lt.parquet", "lt.csv"):
        out = tmp_path / name
        result = run("rfm", src, "--style", "lifetimes", "--freq", "W", "-c", cfg, "-o", out, "-q")
        assert result.exit_code == 0, result.stderr
        meta = (json.loads(pl.read_parquet_metadata(out)["segcli"]) if name.endswith(".parquet")
                else json.loads((tmp_path / "lt.csv.meta.json").read_text(encoding="utf-8")))
        assert {"schema_version", "tool", "version", "as_of", "config_hash", "config", "inputs", "rows",
                "warnings", "created_at", "style", "freq"} <= set(meta), sorted(meta)
        assert (meta["tool"], meta["style"], meta["freq"], meta["as_of"]) == ("segcli", "lifetimes", "W", "2025-03-05")
        assert meta["created_at"] == "2026-01-01T00:00:00+00:00"  # SOURCE_DATE_EPOCH (conftest)
        shown = run("config", "show", "--from", out, "--json")
        assert shown.exit_code == 0, shown.stderr
        assert json.loads(shown.stdout)["analysis"]["max_staleness_days"] == 40
        assert json.loads(shown.stdout) == meta["config"]


# --------------------------------------------------------------------------- departed rows in the summary (item 14)

NO_CAP = "[tiers]\nmax_share = 1.0\n"


def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    """PREV: A 500, B 200, C 100, D 50, E 20; CURR: A, B, C, D again (D now 10), E absent."""
    cfg = config(tmp_path, NO_CAP)
    prev_csv = write_csv(tmp_path / "p.csv", H, ["A,2025-03-01,500,O1", "B,2025-03-02,200,O2", "C,2025-03-03,100,O3",
                                                 "D,2025-03-04,50,O4", "E,2025-03-05,20,O5"])
    curr_csv = write_csv(tmp_path / "c.csv", H, ["A,2025-04-01,500,P1", "B,2025-04-02,200,P2", "C,2025-04-03,100,P3",
                                                 "D,2025-04-03,10,P4"])
    prev, curr = tmp_path / "p.parquet", tmp_path / "c.parquet"
    assert run("segment", prev_csv, "-c", cfg, "-o", prev, "-q").exit_code == 0
    result = run("segment", curr_csv, "-c", cfg, "-o", curr, "-q", "--previous", prev, "--force")
    assert result.exit_code == 0, result.stderr
    return prev, curr


def test_summary_leaves_departed_rows_out_of_the_figures_and_counts_them_on_their_own_line(tmp_path: Path) -> None:
    _prev, curr = two_runs(tmp_path)
    assert pl.read_parquet(curr).filter(pl.col("reason") == "departed")["customer_id"].to_list() == ["E"]
    tiers = {t["tier"]: t for t in json.loads(run("summary", curr, "--json").stdout)}
    # the data holds 4 customers: A and B are VIP (80% head of 810), C (100) and D (10) standard
    assert tiers["yuxin"]["customers"] == 2 and tiers["yuxin"]["customer_share"] == 0.5
    assert tiers["yuxin"]["mean_monetary"] == 55.0 and tiers["yuxin"]["revenue"] == 110.0
    assert tiers["zhixin"]["customer_share"] == 0.5
    gone = tiers["yuxin (departed)"]
    assert gone["customers"] == 1 and gone["label"] == "遇心"
    assert gone["first_response_minutes"] == 120 and gone["service_level"] == "standard"
    assert all(gone[k] is None for k in ("customer_share", "revenue", "revenue_share", "mean_monetary",
                                         "mean_recency_days", "mean_frequency"))
    table = run("summary", curr).stdout
    assert [line.split()[0:2] for line in table.splitlines()[2:]] == [["zhixin", "知心"], ["yuxin", "遇心"],
                                                                     ["yuxin", "(departed)"]]


def test_segment_json_counts_departed_rows_apart(tmp_path: Path) -> None:
    prev, _curr = two_runs(tmp_path)
    result = run("segment", tmp_path / "c.csv", "-c", tmp_path / "cfg.toml", "--previous", prev, "--force", "--json")
    doc = json.loads(result.stdout)
    assert (doc["customers"], doc["departed"]) == (4, 1)
    assert [t["tier"] for t in doc["tiers"]] == ["zhixin", "yuxin", "yuxin (departed)"]
    assert doc["tiers"][1]["mean_monetary"] == 55.0


# --------------------------------------------------------------------------- numbers are numbers (SPEC §5)

TERMS = ("first_response_minutes", "resolution_hours", "update_interval_hours", "goodwill_limit")


def numeric_strings(doc: object, path: str = "") -> list[str]:
    """Every string value in a JSON document that reads as a number (a number sent as text)."""
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in numeric_strings(v, f"{path}.{k}")]
    if isinstance(doc, list):
        return [p for v in doc for p in numeric_strings(v, f"{path}[]")]
    if isinstance(doc, str):
        try:
            float(doc)
        except ValueError:
            return []
        return [f"{path}={doc!r}"]
    return []


def test_every_json_document_and_jsonl_file_gives_numbers_as_numbers(tmp_path: Path) -> None:
    from conftest import SAMPLE

    prev, curr = two_runs(tmp_path)
    assignments = tmp_path / "a.parquet"
    assert run("segment", SAMPLE, "-o", assignments, "-q").exit_code == 0
    docs = {}
    for name, args in {
        "segment": ["segment", SAMPLE, "--json"], "rfm": ["rfm", SAMPLE, "--json"],
        "lifetimes": ["rfm", SAMPLE, "--style", "lifetimes", "--json"], "pareto": ["pareto", SAMPLE, "--json"],
        "summary": ["summary", assignments, "--json"], "groups": ["summary", assignments, "--by", "vip_group", "--json"],
        "diff": ["diff", prev, curr, "--json"], "validate": ["validate", SAMPLE, "--json"],
    }.items():
        result = run(*args)
        assert result.exit_code == 0, (name, result.stderr)
        docs[name] = json.loads(result.stdout)
        assert numeric_strings(docs[name]) == [], name
    for row in docs["segment"]["tiers"] + docs["segment"]["vip_groups"] + docs["summary"] + docs["groups"]:
        assert all(isinstance(row[t], (int, float)) for t in TERMS), row
    jsonl = tmp_path / "a.jsonl"
    assert run("segment", SAMPLE, "-o", jsonl, "-q").exit_code == 0
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    # rfm_code is a code ("545"), not a quantity: it stays text, as in every output format
    assert [p for r in rows for p in numeric_strings(r) if not p.startswith(".rfm_code=")] == []
    assert all(isinstance(r["first_response_minutes"], int) and isinstance(r["goodwill_limit"], float)
               and isinstance(r["monetary"], float) and isinstance(r["frequency"], int) for r in rows)


def test_a_tier_whose_groups_differ_gives_its_terms_as_low_high(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pl.DataFrame({
        "customer_id": ["A", "B", "C"], "tier": ["zhixin", "zhixin", "yuxin"], "tier_label": ["知心", "知心", "遇心"],
        "vip_group": ["vip_core", "vip_lapsing", None], "reason": ["pareto_head", "pareto_head", "below_head"],
        "service_level": ["vip", "vip_winback", "standard"], "first_response_minutes": [15, 15, 120],
        "resolution_hours": [24, 24, 72], "update_interval_hours": [4, 24, 24], "channel": ["am", "call", "cc"],
        "goodwill_limit": [500.0, 1000.0, 50.0], "recency_days": [1, 2, 3], "frequency": [1, 1, 1],
        "monetary": [100.0, 50.0, 10.0],
    }).write_parquet(path)
    tiers = {t["tier"]: t for t in json.loads(run("summary", path, "--json").stdout)}
    assert tiers["zhixin"]["update_interval_hours"] == [4, 24] and tiers["zhixin"]["goodwill_limit"] == [500.0, 1000.0]
    assert tiers["zhixin"]["first_response_minutes"] == 15 and tiers["yuxin"]["update_interval_hours"] == 24
    assert "4-24" in run("summary", path).stdout
    assert "500.0-1000.0" in run("summary", path, "--format", "csv").stdout


def test_jsonl_writes_decimal_money_as_json_numbers(tmp_path: Path) -> None:
    from decimal import Decimal

    from segcli.io import write_table

    out = tmp_path / "x.jsonl"
    df = pl.DataFrame({"customer_id": ["A"], "monetary": [Decimal("12.3400")]}, schema={
        "customer_id": pl.String, "monetary": pl.Decimal(38, 4)})
    write_table(df, str(out), meta=None)
    assert json.loads(out.read_text(encoding="utf-8")) == {"customer_id": "A", "monetary": 12.34}


# --------------------------------------------------------------------------- usage errors and help (SPEC §2)

HELP_COMMANDS = [[], ["segment"], ["rfm"], ["pareto"], ["summary"], ["diff"], ["validate"], ["config"],
                 ["config", "init"], ["config", "show"], ["config", "schema"], ["export"], ["report"]]


def segcli(*args: str, columns: int = 120) -> subprocess.CompletedProcess[str]:
    """The installed entry point in a child process, as a shell user meets it."""
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "segcli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize(("args", "what", "command"), [
    (["segment"], "missing argument 'INPUT'", "segcli segment"),
    (["segment", "x.csv", "--bogus"], "no such option: --bogus", "segcli segment"),
    (["rfm", "x.csv", "--freq", "X"], "invalid value for '--freq': 'X' is not one of 'D', 'W'", "segcli rfm"),
    (["config", "show", "--from"], "option '--from' requires an argument", "segcli config show"),
    (["nosuch"], "no such command 'nosuch'", "segcli"),
    (["segment", "x.csv", "--max-invalid", "1.5"],
     "--max-invalid: 1.5 is neither a row count (a whole number) nor a share (below 1)", "segcli segment"),
    (["summary", "a.parquet", "--format", "nope"],
     "invalid value for '--format': 'nope' is not a table format; formats: csv, json, asciidoc", "segcli summary"),
])
def test_usage_errors_are_one_error_line_and_a_help_hint(args: list[str], what: str, command: str) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.stderr
    first, hint = result.stderr.splitlines()
    assert first.startswith(f"segcli: error: {what}"), first
    assert hint == f"  see '{command} --help'"
    assert result.stdout == ""


def test_bad_integer_is_a_usage_error_in_a_real_process() -> None:
    result = segcli("segment", "x.csv", "--threads", "many")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("segcli: error: invalid value for '--threads': ")
    assert lines[1] == "  see 'segcli segment --help'"
    assert "╭" not in result.stderr and "Usage:" not in result.stderr


def test_an_unknown_format_stops_before_any_work(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "tx.csv", H, ["A,2025-03-01,10.00,O1"])
    for cmd in (["segment", src], ["rfm", src], ["pareto", src], ["validate", src]):
        result = run(*cmd, "--format", "githb")
        assert result.exit_code == 2 and result.stdout == "", cmd
        assert "'githb' is not a table format; formats: csv, json," in result.stderr
        assert "github" in result.stderr and "psql" in result.stderr


def test_preview_with_max_invalid_says_where_rejects_would_go(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "tx.csv", H, ["A,2025-03-01,10.00,O1", "B,2025-03-02,abc,O2", "C,2025-03-03,5,O3"])
    preview = run("segment", src, "--max-invalid", "1")
    assert preview.exit_code == 0, preview.stderr
    assert ("segcli: warning: [invalid_rows] 1 invalid row skipped (within --max-invalid 1); "
            "with -o OUT they would go to OUT.rejects.csv") in preview.stderr.splitlines()
    assert "written to the rejects file" not in preview.stderr
    check = run("validate", src, "--max-invalid", "1")
    assert "segcli segment -o OUT would write them to OUT.rejects.csv" in check.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tx.csv"]  # nothing written
    out = tmp_path / "out.parquet"
    written = run("segment", src, "--max-invalid", "1", "-o", out)
    assert "written to the rejects file" in written.stderr and (tmp_path / "out.parquet.rejects.csv").exists()


@pytest.mark.parametrize("cmd", HELP_COMMANDS, ids=lambda c: " ".join(c) or "segcli")
def test_help_fits_80_columns_names_values_plainly_and_has_an_example(cmd: list[str]) -> None:
    result = segcli(*cmd, "--help", columns=80)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "Example: segcli" in text
    assert not re.search(r"<(bool|str|int|float|path|list\[)", text), text
    assert "{" not in text.split("\n", 1)[0], text  # the usage line: INPUT..., not {inputs}...
    assert not any(ch in text for ch in "╭│╰"), text
    assert [line for line in text.splitlines() if wcswidth(line) > 80] == []  # 知心 takes 4 columns


# --------------------------------------------------------------------------- diff (items 17b, diff -o, reversed runs)

TERMS_VIP = {"service_level": "vip", "first_response_minutes": 15, "resolution_hours": 24,
             "update_interval_hours": 4, "channel": "account_manager", "goodwill_limit": 500.0}
TERMS_WINBACK = {**TERMS_VIP, "service_level": "vip_winback", "update_interval_hours": 24,
                 "channel": "proactive_call"}


def assignments(path: Path, as_of: str, rows: list[tuple[str, str, str | None, str, dict]]) -> Path:
    """A small assignments file as segment writes it: (customer, tier, group, reason, terms)."""
    pl.DataFrame([{"customer_id": c, "tier": t, "tier_label": "知心" if t == "zhixin" else "遇心", "vip_group": g,
                   "reason": r, **terms, "monetary": 100.0, "as_of": as_of} for c, t, g, r, terms in rows],
                 ).with_columns(pl.col("as_of").str.to_date()).write_parquet(path)
    return path


def test_diff_counts_customers_already_departed_in_prev(tmp_path: Path) -> None:
    _prev, curr = two_runs(tmp_path)  # E departed in CURR
    later_csv = write_csv(tmp_path / "l.csv", H, ["A,2025-05-01,500,Q1", "B,2025-05-02,200,Q2", "C,2025-05-03,100,Q3",
                                                  "D,2025-05-03,10,Q4"])
    later = tmp_path / "l.parquet"
    assert run("segment", later_csv, "-c", tmp_path / "cfg.toml", "-o", later, "-q", "--previous", curr).exit_code == 0
    doc = json.loads(run("diff", curr, later, "--json").stdout)
    assert doc["counts"]["still_departed"] == 1 and doc["still_departed"] == ["E"]
    assert sum(doc["counts"].values()) == 5  # every customer of either file counted once
    text = run("diff", curr, later).stdout
    assert "no changes: 4 customers in the same tier and group; 1 still departed" in text
    moves = tmp_path / "moves.csv"
    assert run("diff", curr, later, "-o", moves).exit_code == 0
    assert pl.read_csv(moves).height == 0  # nothing for a CRM to do about E


def test_diff_output_writes_a_departed_vip_as_the_assignments_file_does(tmp_path: Path) -> None:
    cfg = config(tmp_path, NO_CAP + '[tiers.labels]\nyuxin = "标准"\n[service.yuxin]\nfirst_response_minutes = 240\n')
    prev_csv = write_csv(tmp_path / "p.csv", H, ["A,2025-03-01,500,O1", "B,2025-03-02,100,O2", "C,2025-03-02,50,O3"])
    curr_csv = write_csv(tmp_path / "c.csv", H, ["B,2025-04-02,100,P2", "C,2025-04-02,50,P3"])
    prev, with_prev, without = tmp_path / "p.parquet", tmp_path / "c1.csv", tmp_path / "c2.parquet"
    assert run("segment", prev_csv, "-c", cfg, "-o", prev, "-q").exit_code == 0
    assert pl.read_parquet(prev).filter(pl.col("customer_id") == "A")["tier"].item() == "zhixin"
    # CURR made with --previous has A's departed row; without it, only its run record's config says
    assert run("segment", curr_csv, "-c", cfg, "-o", with_prev, "-q", "--previous", prev, "--force").exit_code == 0
    assert run("segment", curr_csv, "-c", cfg, "-o", without, "-q").exit_code == 0
    for curr in (with_prev, without):
        moves = tmp_path / f"moves-{curr.stem}.csv"
        assert run("diff", prev, curr, "-o", moves).exit_code == 0
        row = pl.read_csv(moves).filter(pl.col("customer_id") == "A").row(0, named=True)
        assert (row["change"], row["from_tier"], row["to_tier"], row["reason"], row["tier_label"]) == (
            "departed", "zhixin", "yuxin", "departed", "标准")
        assert (row["service_level"], row["first_response_minutes"], row["resolution_hours"], row["goodwill_limit"],
                row["terms_changed"]) == ("standard", 240, 72, 50.0, True)


def test_group_changes_with_the_same_terms_are_marked_and_left_out_on_request(tmp_path: Path) -> None:
    prev = assignments(tmp_path / "p.parquet", "2025-01-31", [
        ("A", "zhixin", "vip_core", "pareto_head", TERMS_VIP), ("B", "zhixin", "vip_core", "pareto_head", TERMS_VIP),
        ("C", "zhixin", "vip_core", "pareto_head", TERMS_VIP)])
    curr = assignments(tmp_path / "c.parquet", "2025-02-28", [
        ("A", "zhixin", "vip_loyal", "pareto_head", TERMS_VIP),  # another group, the same terms
        ("B", "zhixin", "vip_lapsing", "pareto_head", TERMS_WINBACK),  # another group and other terms
        ("C", "zhixin", "vip_core", "pareto_head", TERMS_VIP)])
    moves = tmp_path / "moves.csv"
    assert run("diff", prev, curr, "-o", moves).exit_code == 0
    got = {r["customer_id"]: (r["change"], r["terms_changed"]) for r in pl.read_csv(moves).iter_rows(named=True)}
    assert got == {"A": ("group_change", False), "B": ("group_change", True)}
    assert run("diff", prev, curr, "-o", moves, "--tier-changes-only").exit_code == 0
    assert pl.read_csv(moves)["customer_id"].to_list() == ["B"]
    doc = json.loads(run("diff", prev, curr, "--json").stdout)
    assert doc["counts"]["group_change"] == 2 and doc["terms_changed"]["group_change"] == 1


def test_diff_with_the_files_reversed_stops_unless_forced(tmp_path: Path) -> None:
    prev = assignments(tmp_path / "p.parquet", "2025-01-31", [("A", "zhixin", "vip_core", "pareto_head", TERMS_VIP)])
    curr = assignments(tmp_path / "c.parquet", "2025-02-28", [("A", "yuxin", None, "below_head", TERMS_VIP)])
    result = run("diff", curr, prev)
    assert result.exit_code == 65 and result.stdout == ""
    assert result.stderr.splitlines() == [
        # the one run-order rule of segcli.previous, with diff's own hint
        f"segcli: error: {curr} (as of 2025-02-28) is not earlier than {prev} (as of 2025-01-31)",
        "  give the earlier run first: segcli diff PREV CURR, or pass --force"]
    assert run("diff", prev, prev).exit_code == 65  # the same as-of is not earlier either
    forced = run("diff", curr, prev, "--force")
    assert forced.exit_code == 0
    assert forced.stderr.startswith(f"segcli: warning: [forced] --force: {curr} (as of 2025-02-28) is not earlier")
    assert run("diff", prev, curr).exit_code == 0
