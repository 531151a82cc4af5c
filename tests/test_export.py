"""The CRM hand-off (SPEC §9, issue 13): `segcli export ASSIGNMENTS --profile NAME -o DIR`.

Expectations are written here from the targets' documentation (header names, tier values,
limits, request shapes) and computed from the test's own data in plain Python, never taken
from segcli's output.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from conftest import SAMPLE
from segcli.cli import app
from segcli.export import load_profiles
from segcli.export import swap as swap_module
from segcli.io import read_assignments
from segcli.schema import OUTPUT_COLUMNS

runner = CliRunner()
AS_OF = dt.date(2025, 12, 31)
BOM = b"\xef\xbb\xbf"


def run(*args: str):
    return runner.invoke(app, list(args))


# What each target expects, from its documentation (see the issue and README): the header of
# every column in order, the tier's value there, the record files' stem, the request body.
TARGETS: dict[str, dict[str, Any]] = {
    "generic": {"stem": "customers", "tier": {"zhixin": "zhixin", "yuxin": "yuxin"},
                "headers": ["customer_id", "tier", "tier_label", "vip_group", "service_level",
                            "first_response_minutes", "resolution_hours", "update_interval_hours", "channel",
                            "goodwill_limit", "tier_since", "as_of"]},
    "salesforce": {"stem": "accounts", "tier": {"zhixin": "VIP", "yuxin": "Standard"},
                   "headers": ["Customer_ID__c", "Service_Tier__c", "Service_Tier_Label__c", "VIP_Group__c",
                               "Service_Level__c", "Tier_Since__c"]},
    "zendesk": {"stem": "users", "tier": {"zhixin": "tier_zhixin", "yuxin": "tier_yuxin"},
                "headers": ["external_id", "tags", "user_fields.service_tier_label", "user_fields.vip_group",
                            "user_fields.service_level", "user_fields.tier_since"]},
    "hubspot": {"stem": "companies", "tier": {"zhixin": "zhixin", "yuxin": "yuxin"},
                "headers": ["segcli_customer_id", "service_tier", "service_tier_label", "vip_group",
                            "service_level", "tier_since"]},
    "dynamics": {"stem": "accounts", "tier": {"zhixin": "1", "yuxin": "2"},
                 "headers": ["accountnumber", "accountcategorycode", "new_servicetierlabel", "new_vipgroup",
                             "new_servicelevel", "new_tiersince"]},
    "freshdesk": {"stem": "companies", "tier": {"zhixin": "VIP", "yuxin": "Standard"},
                  "headers": ["Name", "Service tier", "Service tier label", "VIP group", "Service level",
                              "Tier since"]},
}
PROFILES = list(TARGETS)

# service terms of the synthetic data, per VIP group (None = the standard tier)
TERMS: dict[str | None, tuple[str, int, int, int, str, float]] = {
    None: ("standard", 120, 72, 24, "contact_centre", 50.0),
    "vip_loyal": ("vip", 15, 24, 4, "account_manager", 500.0),
    "vip_lapsing": ("vip_winback", 15, 24, 24, "proactive_call", 500.0),
    "vip_big_ticket": ("vip", 15, 24, 4, "account_manager", 1000.0),
}
TERM_COLUMNS = ("service_level", "first_response_minutes", "resolution_hours", "update_interval_hours", "channel",
                "goodwill_limit")
TRICKY_IDS = ["ACME, Inc.", 'say "hi"', "line\nbreak", "客户-甲", "C,\"x\"\n2"]


def synthetic(n: int, *, v2: bool = False, seed: int = 7, as_of: dt.date = AS_OF) -> list[dict[str, Any]]:
    """An assignments table as plain Python rows: ``n`` customers plus ids that need quoting."""
    rng = random.Random(seed)
    rows = []
    for cid in sorted([f"C{i:06d}" for i in range(n)] + TRICKY_IDS):
        vip = rng.random() < 0.2
        group = rng.choice(["vip_loyal", "vip_lapsing", "vip_big_ticket"]) if vip else None
        row: dict[str, Any] = {"customer_id": cid, "tier": "zhixin" if vip else "yuxin",
                               "tier_label": "知心" if vip else "遇心", "vip_group": group,
                               "reason": "pareto_head" if vip else "below_head",
                               **dict(zip(TERM_COLUMNS, TERMS[group], strict=True)),
                               "recency_days": rng.randint(0, 400), "frequency": rng.randint(1, 30),
                               "monetary": round(rng.uniform(1, 9000), 2), "gross_revenue": 0.0, "returns_amount": 0.0,
                               "avg_order_value": 1.0, "first_purchase": dt.date(2024, 1, 2),
                               "last_purchase": dt.date(2025, 12, 1), "r_score": 3, "f_score": 3, "m_score": 3,
                               "rfm_code": "333", "rfm_segment": "need_attention", "cluster": 1, "cum_share": 0.5,
                               "pareto_class": "A" if vip else "C", "as_of": as_of}
        if v2:
            row.update(previous_tier=row["tier"], tier_since=as_of - dt.timedelta(days=rng.randint(0, 300)),
                       at_risk=rng.random() < 0.1, grace_until=None)
        rows.append(row)
    return rows


def write_assignments(rows: list[dict[str, Any]], path: Path) -> Path:
    schema = {"grace_until": pl.Date, "previous_tier": pl.String, "vip_group": pl.String}
    df = pl.DataFrame(rows, schema_overrides={k: v for k, v in schema.items() if k in rows[0]}, infer_schema_length=None)
    df.write_parquet(path)
    return path


def expected_record(row: dict[str, Any], profile: str) -> list[str]:
    """A record as the target's CSV holds it (text), from the target's rules above."""
    since = (row.get("tier_since") or row["as_of"]).isoformat()
    tier_value = TARGETS[profile]["tier"][row["tier"]]
    group = row["vip_group"] or ""
    if profile == "generic":
        return [row["customer_id"], tier_value, row["tier_label"], group,
                *(str(row[c]) for c in TERM_COLUMNS), since, row["as_of"].isoformat()]
    return [row["customer_id"], tier_value, row["tier_label"], group, row["service_level"], since]


def read_folder(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def csv_files(folder: Path) -> list[Path]:
    return [folder / f["path"] for f in read_folder(folder)["files"] if f["kind"] == "records"]


def parse_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    raw = path.read_bytes()
    assert not raw.startswith(BOM), f"{path.name} starts with a BOM"
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    return rows[0], rows[1:]


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "export.toml"
    path.write_text(text, encoding="utf-8")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    rows = synthetic(3000)
    return write_assignments(rows, tmp_path_factory.mktemp("big") / "big.parquet"), rows


# ------------------------------------------------------------------ records and their files


def test_default_profiles_carry_the_limits_the_targets_document() -> None:
    p = load_profiles()
    # Salesforce Bulk API 2.0: 150 MB per upload after base64, so at most 100 MB of CSV;
    # Data Loader: loads of up to 5 million records
    assert (p["salesforce"].max_rows, p["salesforce"].max_bytes) == (5_000_000, 100_000_000)
    # Zendesk data importer: 1 GB, 500,000 rows with the header, 200 columns; users API: 100 a request
    assert (p["zendesk"].max_rows, p["zendesk"].max_bytes, p["zendesk"].max_columns) == (499_999, 1_000_000_000, 200)
    zb = p["zendesk"].body
    assert zb is not None and (zb.batch_size, zb.wrapper, zb.shape) == (100, "users", "objects")
    assert zb.endpoint == "POST /api/v2/users/create_or_update_many"
    # HubSpot import: 1,048,576 rows (the header included), 512 MB; batch upsert: 100 inputs
    assert (p["hubspot"].max_rows, p["hubspot"].max_bytes) == (1_048_575, 512_000_000)
    hb = p["hubspot"].body
    assert hb is not None and (hb.batch_size, hb.wrapper, hb.shape) == (100, "inputs", "upsert")
    assert hb.endpoint == "POST /crm/v3/objects/companies/batch/upsert"
    # Dynamics 365 Import Data wizard: 8 MB per file; accountcategorycode 1 Preferred Customer, 2 Standard
    assert p["dynamics"].max_bytes == 8_000_000
    assert p["dynamics"].tier_values == {"zhixin": 1, "yuxin": 2} and p["dynamics"].fields[0][0] == "accountcategorycode"
    assert p["zendesk"].tier_values == {"zhixin": "tier_zhixin", "yuxin": "tier_yuxin"}
    assert p["generic"].body is None and p["salesforce"].body is None and p["freshdesk"].body is None


LIMITS = {"rows": (700, 0), "bytes": (0, 25_000), "both": (450, 30_000)}


@pytest.mark.parametrize("limit", list(LIMITS))
@pytest.mark.parametrize("profile", PROFILES)
def test_records_have_the_targets_headers_and_values_split_within_its_limits(
        tmp_path: Path, big: tuple[Path, list[dict[str, Any]]], profile: str, limit: str) -> None:
    path, rows = big
    max_rows, max_bytes = LIMITS[limit]
    cfg = config_file(tmp_path, f"[export.{profile}]\nmax_rows = {max_rows}\nmax_bytes = {max_bytes}\n")
    out = tmp_path / "crm"
    result = run("export", str(path), "--profile", profile, "-o", str(out), "-c", str(cfg))
    assert result.exit_code == 0, result.stderr
    files = csv_files(out)
    assert [f.name for f in files] == [f"{TARGETS[profile]['stem']}-{i:04d}.csv" for i in range(1, len(files) + 1)]
    assert len(files) > 3
    records: list[list[str]] = []
    for i, f in enumerate(files):
        header, body = parse_csv(f)
        assert header == TARGETS[profile]["headers"]
        size = f.stat().st_size
        if max_rows:
            assert len(body) <= max_rows
        if max_bytes:
            assert size <= max_bytes
        if i < len(files) - 1:  # a file is closed only when the next record would not fit
            assert (max_rows and len(body) == max_rows) or (max_bytes and size > max_bytes - 200)
        records += body
    assert records == [expected_record(r, profile) for r in rows]
    manifest = read_folder(out)
    for entry in manifest["files"]:
        assert entry["sha256"] == sha256(out / entry["path"]) and entry["bytes"] == (out / entry["path"]).stat().st_size
    assert sum(e["rows"] for e in manifest["files"] if e["kind"] == "records") == len(rows) == manifest["records"]


def test_dates_are_iso_and_every_file_is_utf8_without_bom(tmp_path: Path, big: tuple[Path, list[dict[str, Any]]]) -> None:
    out = tmp_path / "crm"
    assert run("export", str(big[0]), "--profile", "zendesk", "-o", str(out)).exit_code == 0
    for f in sorted(out.iterdir()):
        raw = f.read_bytes()
        assert not raw.startswith(BOM)
        raw.decode("utf-8")
    _header, body = parse_csv(csv_files(out)[0])
    assert all(dt.date.fromisoformat(r[-1]) == AS_OF for r in body)


def test_a_record_too_big_for_max_bytes_is_a_config_error_and_the_previous_export_stays(
        tmp_path: Path, big: tuple[Path, list[dict[str, Any]]]) -> None:
    out = tmp_path / "crm"
    assert run("export", str(big[0]), "--profile", "generic", "-o", str(out)).exit_code == 0
    before = snapshot(out)
    cfg = config_file(tmp_path, "[export.generic]\nmax_bytes = 200\n")
    result = run("export", str(big[0]), "--profile", "generic", "-o", str(out), "-c", str(cfg))
    assert result.exit_code == 78
    assert "export.generic.max_bytes" in result.stderr
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir() if "segcli" in p.name] == []


# ------------------------------------------------------------------ JSONL request bodies


def expected_item(row: dict[str, Any], profile: str) -> dict[str, Any]:
    since = row["as_of"].isoformat()
    tier = TARGETS[profile]["tier"][row["tier"]]
    if profile == "zendesk":  # a user of POST /api/v2/users/create_or_update_many
        return {"external_id": row["customer_id"], "tags": [tier],
                "user_fields": {"service_tier_label": row["tier_label"], "vip_group": row["vip_group"],
                                "service_level": row["service_level"], "tier_since": since}}
    # HubSpot batch upsert: {"idProperty", "id", "properties"}; "" clears a property
    return {"idProperty": "segcli_customer_id", "id": row["customer_id"],
            "properties": {"service_tier": tier, "service_tier_label": row["tier_label"],
                           "vip_group": row["vip_group"] or "", "service_level": row["service_level"],
                           "tier_since": since}}


@pytest.mark.parametrize(("profile", "wrapper"), [("zendesk", "users"), ("hubspot", "inputs")])
def test_jsonl_bodies_have_the_documented_shape_and_at_most_100_objects(
        tmp_path: Path, big: tuple[Path, list[dict[str, Any]]], profile: str, wrapper: str) -> None:
    path, rows = big
    out = tmp_path / "crm"
    assert run("export", str(path), "--profile", profile, "-o", str(out)).exit_code == 0
    raw = (out / "requests.jsonl").read_bytes()
    assert not raw.startswith(BOM)
    bodies = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    assert all(list(b) == [wrapper] for b in bodies)
    sizes = [len(b[wrapper]) for b in bodies]
    assert sizes == [100] * (len(rows) // 100) + ([len(rows) % 100] if len(rows) % 100 else [])
    items = [item for b in bodies for item in b[wrapper]]
    assert items == [expected_item(r, profile) for r in rows]
    entry = next(f for f in read_folder(out)["files"] if f["kind"] == "requests")
    assert (entry["rows"], entry["records"], entry["batch_size"]) == (len(bodies), len(rows), 100)


def test_batch_size_and_fields_are_config_data(tmp_path: Path, big: tuple[Path, list[dict[str, Any]]]) -> None:
    """A user's [export.NAME] changes the batch size, and a `fields` table replaces the default."""
    path, rows = big
    cfg = config_file(tmp_path, '[export.zendesk]\nkey = "email_or_id"\n[export.zendesk.body]\nbatch_size = 7\n'
                                '[export.zendesk.fields]\ntags = "tier_value"\n"organization_fields.tier" = "tier"\n'
                                '[export.zendesk.tier_values]\nzhixin = "vip_customer"\n')
    out = tmp_path / "crm"
    result = run("export", str(path), "--profile", "zendesk", "-o", str(out), "-c", str(cfg))
    assert result.exit_code == 0, result.stderr
    header, body = parse_csv(csv_files(out)[0])
    assert header == ["email_or_id", "tags", "organization_fields.tier"]
    assert body[0] == [rows[0]["customer_id"], {"zhixin": "vip_customer", "yuxin": "tier_yuxin"}[rows[0]["tier"]],
                       rows[0]["tier"]]
    bodies = [json.loads(line) for line in (out / "requests.jsonl").read_text(encoding="utf-8").splitlines()]
    assert max(len(b["users"]) for b in bodies) == 7 and len(bodies) == -(-len(rows) // 7)
    assert bodies[0]["users"][0]["organization_fields"] == {"tier": rows[0]["tier"]}


# ------------------------------------------------------------------ policy and manifest


def test_policy_lists_terms_per_tier_and_vip_group_in_the_targets_words(
        tmp_path: Path, big: tuple[Path, list[dict[str, Any]]]) -> None:
    path, rows = big
    out = tmp_path / "crm"
    assert run("export", str(path), "--profile", "salesforce", "-o", str(out)).exit_code == 0
    doc = json.loads((out / "policy.json").read_text(encoding="utf-8"))
    assert doc["fields"]["tier"] == "Service_Tier__c" and doc["fields"]["key"] == "Customer_ID__c"
    got = {(t["tier"], t["value"], g["vip_group"]): (g["customers"], tuple(g[c] for c in TERM_COLUMNS), g["targets"])
           for t in doc["tiers"] for g in t["groups"]}
    counts: dict[tuple[str, str | None], int] = {}
    for r in rows:
        counts[(r["tier"], r["vip_group"])] = counts.get((r["tier"], r["vip_group"]), 0) + 1
    expected = {}
    for (tier, group), n in counts.items():
        terms = TERMS[group]
        targets = [{"term": "first_response_minutes", "name": "First Response milestone", "minutes": terms[1]},
                   {"term": "resolution_hours", "name": "Case Resolution milestone", "minutes": terms[2] * 60},
                   {"term": "update_interval_hours", "name": "Case Update milestone (recurring)", "minutes": terms[3] * 60}]
        expected[(tier, TARGETS["salesforce"]["tier"][tier], group)] = (n, terms, targets)
    assert got == expected
    assert [t["tier"] for t in doc["tiers"]] == ["zhixin", "yuxin"]
    md = (out / "policy.md").read_text(encoding="utf-8")
    assert "| zhixin | 知心 | `VIP` | `vip_lapsing` |" in md and "| 24 h = 1,440 min |" in md
    assert "Case Update milestone (recurring)" in md


def test_manifest_is_written_last_and_records_the_run(tmp_path: Path, big: tuple[Path, list[dict[str, Any]]],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path, rows = big
    out = tmp_path / "crm"
    result = run("export", str(path), "--profile", "hubspot", "-o", str(out), "--json")
    assert result.exit_code == 0
    manifest = read_folder(out)
    assert json.loads(result.stdout) == manifest
    assert manifest["tool"] == "segcli" and manifest["kind"] == "export"
    assert manifest["profile"]["name"] == "hubspot" and len(manifest["profile"]["hash"]) == 64
    assert manifest["as_of"] == "2025-12-31" and manifest["assignments"]["sha256"] == sha256(path)
    assert len(manifest["config_hash"]) == 64 and manifest["changes_from"] is None
    assert sorted(f["path"] for f in manifest["files"]) == sorted(p.name for p in out.iterdir() if p.name != "manifest.json")
    assert manifest["created_at"] == "2026-01-01T00:00:00+00:00"  # SOURCE_DATE_EPOCH (conftest)
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert run("export", str(path), "--profile", "hubspot", "-o", str(out)).exit_code == 0
    assert "created_at" not in read_folder(out)


def test_same_input_gives_the_same_bytes(tmp_path: Path, big: tuple[Path, list[dict[str, Any]]],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    for name in ("one", "two"):
        assert run("export", str(big[0]), "--profile", "zendesk", "-o", str(tmp_path / name)).exit_code == 0
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")


def test_generic_csv_reads_back_as_the_assignments_columns_it_carries(tmp_path: Path, months: dict[str, Path]) -> None:
    out = tmp_path / "crm"
    assert run("export", str(months["dec"]), "--profile", "generic", "-o", str(out)).exit_code == 0
    assignments, _ = read_assignments(str(months["dec"]))
    header, _ = parse_csv(csv_files(out)[0])
    carried = [c for c in header if c in OUTPUT_COLUMNS]
    assert len(carried) >= 11
    back = pl.read_csv(csv_files(out)[0], schema_overrides=dict(assignments.select(carried).schema)).select(carried)
    assert back.equals(assignments.select(carried))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_csv_and_jsonl_assignments_export_like_parquet(tmp_path: Path, months: dict[str, Path], suffix: str) -> None:
    df = pl.read_parquet(months["dec"])
    other = tmp_path / f"dec{suffix}"
    df.write_csv(other) if suffix == ".csv" else df.write_ndjson(other)
    for name, source in (("a", months["dec"]), ("b", other)):
        result = run("export", str(source), "--profile", "zendesk", "-o", str(tmp_path / name))
        assert result.exit_code == 0, result.stderr
    for name in ("users-0001.csv", "requests.jsonl", "policy.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


# ------------------------------------------------------------------ --changes-from


@pytest.fixture(scope="module")
def months(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two monthly runs over a rolling year of the sample: customers come, go, move."""
    folder = tmp_path_factory.mktemp("months")
    paths = {k: folder / f"{k}.parquet" for k in ("nov", "dec", "dec_alone")}
    common = [str(SAMPLE), "--window-days", "365", "-q"]
    for args in (["--as-of", "2025-11-30", "-o", str(paths["nov"])],
                 ["-o", str(paths["dec"]), "--previous", str(paths["nov"])],
                 ["-o", str(paths["dec_alone"])]):
        result = run("segment", *common, *args)
        assert result.exit_code == 0, result.stderr
    return paths


def diff_moves(tmp_path: Path, prev: Path, curr: Path) -> pl.DataFrame:
    moves = tmp_path / "moves.csv"
    assert run("diff", str(prev), str(curr), "-o", str(moves)).exit_code == 0
    return pl.read_csv(moves, schema_overrides={"customer_id": pl.String})


@pytest.mark.parametrize("curr", ["dec", "dec_alone"], ids=["with-previous", "without-previous"])
@pytest.mark.parametrize("profile", PROFILES)
def test_changes_from_exports_the_customers_segcli_diff_reports(tmp_path: Path, months: dict[str, Path],
                                                                 profile: str, curr: str) -> None:
    out = tmp_path / "crm"
    result = run("export", str(months[curr]), "--profile", profile, "-o", str(out),
                 "--changes-from", str(months["nov"]))
    assert result.exit_code == 0, result.stderr
    back = {v: k for k, v in TARGETS[profile]["tier"].items()}
    exported = set()
    # schema 2: tier_since moves only with the tier (a group change keeps November's date)
    since = {c: d.isoformat() for c, d in pl.read_parquet(months[curr]).select("customer_id", "tier_since").iter_rows()}
    for f in csv_files(out):
        header, body = parse_csv(f)
        for record in body:
            exported.add((record[0], back[record[1]]))
            assert record[header.index(TARGETS[profile]["headers"][-1 if profile != "generic" else -2])] == since.get(
                record[0], "2025-12-31")
    moves = diff_moves(tmp_path, months["nov"], months[curr])
    # a departed customer is handed over as a move to standard
    assert exported == {(r["customer_id"], r["to_tier"] or "yuxin") for r in moves.iter_rows(named=True)}
    manifest = read_folder(out)
    departed = moves.filter(pl.col("change") == "departed").height
    assert manifest["records"] == moves.height and manifest["departed"] == departed > 0
    assert manifest["changes_from"]["file"] == "nov.parquet"


def test_changes_from_a_v1_run_to_a_v2_run(tmp_path: Path) -> None:
    """Move-in dates come from tier_since when the file has it (schema version 2)."""
    def row(cid: str, tier: str, group: str | None, as_of: dt.date, reason: str = "", **v2: Any) -> dict[str, Any]:
        r = synthetic(1, as_of=as_of)[0] | {"customer_id": cid, "tier": tier, "vip_group": group,
                                            "tier_label": "知心" if tier == "zhixin" else "遇心",
                                            "reason": reason or ("pareto_head" if tier == "zhixin" else "below_head")}
        r.update(dict(zip(TERM_COLUMNS, TERMS[group], strict=True)))
        return r | v2

    nov, dec = dt.date(2025, 11, 30), AS_OF
    prev = [row("A", "zhixin", "vip_loyal", nov), row("B", "yuxin", None, nov), row("C", "zhixin", "vip_loyal", nov),
            row("D", "zhixin", "vip_loyal", nov), row("E", "yuxin", None, nov), row("G", "yuxin", None, nov, "departed"),
            row("H", "zhixin", "vip_loyal", nov)]
    since = {"previous_tier": "zhixin", "grace_until": None}
    curr = [row("A", "zhixin", "vip_loyal", dec, tier_since=dt.date(2025, 3, 31), at_risk=False, **since),
            row("B", "zhixin", "vip_big_ticket", dec, tier_since=dec, at_risk=False, **since | {"previous_tier": "yuxin"}),
            row("C", "zhixin", "vip_lapsing", dec, tier_since=dt.date(2025, 6, 30), at_risk=True, **since),
            row("E", "yuxin", None, dec, "departed", tier_since=dec, at_risk=False, **since | {"previous_tier": "yuxin"}),
            row("F", "yuxin", None, dec, tier_since=dec, at_risk=False, **since | {"previous_tier": None}),
            row("H", "zhixin", "vip_loyal", dec, tier_since=dt.date(2025, 1, 31), at_risk=True, **since)]
    p, c = write_assignments(prev, tmp_path / "nov.parquet"), write_assignments(curr, tmp_path / "dec.parquet")
    cfg = config_file(tmp_path, '[export.risk]\n[export.risk.fields]\ntier = "tier_value"\nat_risk = "at_risk"\n'
                                'moved_in = "tier_since"\n')
    out = tmp_path / "crm"
    result = run("export", str(c), "--profile", "salesforce", "-o", str(out), "--changes-from", str(p), "-c", str(cfg))
    assert result.exit_code == 0, result.stderr
    _header, body = parse_csv(csv_files(out)[0])
    assert body == [
        ["B", "VIP", "知心", "vip_big_ticket", "vip", "2025-12-31"],  # upgrade
        ["C", "VIP", "知心", "vip_lapsing", "vip_winback", "2025-06-30"],  # group change, VIP since June
        ["D", "Standard", "遇心", "", "standard", "2025-12-31"],  # absent now: a move to standard
        ["E", "Standard", "遇心", "", "standard", "2025-12-31"],  # written as departed
        ["F", "Standard", "遇心", "", "standard", "2025-12-31"],  # new
    ]
    # a profile that carries at_risk also sends the VIPs whose flag changed (H), never G
    result = run("export", str(c), "--profile", "risk", "-o", str(out), "--changes-from", str(p), "-c", str(cfg))
    assert result.exit_code == 0, result.stderr
    header, body = parse_csv(csv_files(out)[0])
    assert header == ["customer_id", "tier", "at_risk", "moved_in"]
    # A's at_risk was unknown in the version-1 run: it goes out once, like H whose flag changed
    assert [r[0] for r in body] == ["A", "B", "C", "D", "E", "F", "H"]
    assert body[-1] == ["H", "zhixin", "true", "2025-01-31"]


def test_no_changes_still_writes_a_header_only_file(tmp_path: Path, big: tuple[Path, list[dict[str, Any]]]) -> None:
    prev = write_assignments(synthetic(3000, as_of=dt.date(2025, 11, 30)), tmp_path / "nov.parquet")
    out = tmp_path / "crm"
    result = run("export", str(big[0]), "--profile", "dynamics", "-o", str(out), "--changes-from", str(prev))
    assert result.exit_code == 0, result.stderr
    header, body = parse_csv(csv_files(out)[0])
    assert header == TARGETS["dynamics"]["headers"] and body == []
    assert "0 changed customers" in result.stdout


def test_reversed_runs_are_exit_65_unless_force(tmp_path: Path, months: dict[str, Path]) -> None:
    out = tmp_path / "crm"
    result = run("export", str(months["nov"]), "--profile", "generic", "-o", str(out), "--changes-from", str(months["dec"]))
    assert result.exit_code == 65 and "not earlier" in result.stderr and not out.exists()
    assert run("export", str(months["nov"]), "--profile", "generic", "-o", str(out), "--changes-from",
               str(months["dec"]), "--force").exit_code == 0


# ------------------------------------------------------------------ errors and the output folder


def test_exit_codes(tmp_path: Path, big: tuple[Path, list[dict[str, Any]]]) -> None:
    path = str(big[0])
    out = str(tmp_path / "crm")
    missing = run("export", str(tmp_path / "nope.parquet"), "--profile", "generic", "-o", out)
    assert missing.exit_code == 66 and missing.stderr.startswith("segcli: error: ")
    not_assignments = run("export", str(SAMPLE), "--profile", "generic", "-o", out)
    assert not_assignments.exit_code == 65 and "not a segcli assignments file" in not_assignments.stderr
    assert run("export", path, "--profile", "generic", "-o", str(tmp_path / "no" / "crm")).exit_code == 73
    unknown = run("export", path, "--profile", "sap", "-o", out)
    assert unknown.exit_code == 2 and "salesforce" in unknown.stderr
    assert run("export", path, "-o", out).exit_code == 2  # --profile is required
    assert not Path(out).exists()


@pytest.mark.parametrize(("toml", "key"), [
    ("[export.zendesk]\nmax_rows = -1\n", "export.zendesk.max_rows"),
    ("[export.zendesk]\nbatch = 5\n", "export.zendesk.batch"),
    ("[export.zendesk.body]\nbatch_size = 0\n", "export.zendesk.body.batch_size"),
    ("[export.hubspot.fields]\nservice_tier = \"tier_name\"\n", "export.hubspot.fields.service_tier"),
    ("[export.dynamics.tier_values]\nzhixin = \"1\"\n", "export.dynamics.tier_values"),
    ("[export.zendesk]\nmax_columns = 3\n", "export.zendesk.fields"),
])
def test_bad_profile_config_is_exit_78_naming_the_key(tmp_path: Path, big: tuple[Path, list[dict[str, Any]]],
                                                      toml: str, key: str) -> None:
    cfg = config_file(tmp_path, toml)
    result = run("export", str(big[0]), "--profile", "generic", "-o", str(tmp_path / "crm"), "-c", str(cfg))
    assert result.exit_code == 78 and key in result.stderr, result.stderr
    # every command loads the same config: the key is named there too
    shown = run("config", "show", "-c", str(cfg))
    assert shown.exit_code == 78 and key in shown.stderr


def test_a_valid_export_section_is_accepted_by_every_command(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, "[export.salesforce]\nmax_rows = 10\n")
    result = run("config", "show", "-c", str(cfg), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["export"] == {"salesforce": {"max_rows": 10}}


def test_an_output_that_is_not_an_earlier_export_is_refused_unless_force(
        tmp_path: Path, big: tuple[Path, list[dict[str, Any]]]) -> None:
    path = str(big[0])
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    result = run("export", path, "--profile", "generic", "-o", str(folder))
    assert result.exit_code == 73 and "did not write" in result.stderr
    assert (folder / "notes.txt").read_text() == "mine"
    a_file = tmp_path / "file.csv"
    a_file.write_text("x")
    assert run("export", path, "--profile", "generic", "-o", str(a_file)).exit_code == 73
    assert a_file.read_text() == "x"
    assert run("export", path, "--profile", "generic", "-o", str(folder), "--force").exit_code == 0
    assert not (folder / "notes.txt").exists() and (folder / "manifest.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("export", path, "--profile", "generic", "-o", str(empty)).exit_code == 0


def test_an_output_holding_the_input_is_a_usage_error(tmp_path: Path) -> None:
    path = write_assignments(synthetic(10), tmp_path / "a.parquet")
    result = run("export", str(path), "--profile", "generic", "-o", str(tmp_path), "--force")
    assert result.exit_code == 2 and path.exists()


def test_a_new_export_replaces_the_old_folder_whole(tmp_path: Path, big: tuple[Path, list[dict[str, Any]]]) -> None:
    out = tmp_path / "crm"
    cfg = config_file(tmp_path, "[export.generic]\nmax_rows = 100\n")
    assert run("export", str(big[0]), "--profile", "generic", "-o", str(out), "-c", str(cfg)).exit_code == 0
    assert len(csv_files(out)) == 31
    assert run("export", str(big[0]), "--profile", "generic", "-o", str(out)).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["customers-0001.csv", "manifest.json", "policy.json", "policy.md"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_without_rename_exchange_the_fallback_swap_works_and_a_set_aside_folder_comes_back(
        tmp_path: Path, big: tuple[Path, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swap_module, "_exchange", lambda a, b: False)
    out = tmp_path / "crm"
    for profile in ("generic", "zendesk"):
        assert run("export", str(big[0]), "--profile", profile, "-o", str(out)).exit_code == 0
    assert read_folder(out)["profile"]["name"] == "zendesk"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # a run killed between its two renames left DIR aside: the next run puts it back first
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    aside = tmp_path / f".crm.segcli-old-{dead.pid}"
    before = snapshot(out)
    out.rename(aside)
    swap_module.recover(out)
    assert snapshot(out) == before and not aside.exists()


def test_rename_exchange_swaps_two_folders() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a", Path(tmp) / "b"
        a.mkdir()
        b.mkdir()
        (a / "x").write_text("a")
        (b / "x").write_text("b")
        if not swap_module._exchange(a, b):
            pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
        assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_during_export_leaves_the_previous_folder_intact(tmp_path: Path) -> None:
    n = 300_000
    ids = pl.Series([f"C{i:07d}" for i in range(n)])
    vip = pl.Series(range(n)) % 5 == 0
    big = pl.DataFrame({"customer_id": ids}).with_columns(
        tier=pl.when(vip).then(pl.lit("zhixin")).otherwise(pl.lit("yuxin")),
        tier_label=pl.when(vip).then(pl.lit("知心")).otherwise(pl.lit("遇心")),
        vip_group=pl.when(vip).then(pl.lit("vip_loyal")), reason=pl.lit("below_head"),
        service_level=pl.lit("standard"), first_response_minutes=pl.lit(120), resolution_hours=pl.lit(72),
        update_interval_hours=pl.lit(24), channel=pl.lit("contact_centre"), goodwill_limit=pl.lit(50.0),
        as_of=pl.lit(AS_OF))
    big.write_parquet(tmp_path / "big.parquet")
    small = write_assignments(synthetic(100), tmp_path / "small.parquet")
    cfg = config_file(tmp_path, "[export.generic]\nmax_rows = 2000\n")
    out = tmp_path / "crm"

    def export(path: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "segcli", "export", str(path), "--profile", "generic",
                                 "-o", str(out), "-c", str(cfg), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    first = export(small)
    assert first.wait(timeout=300) == 0
    before = snapshot(out)
    proc = export(tmp_path / "big.parquet")
    temp = tmp_path / f".crm.segcli-tmp-{proc.pid}"
    deadline = time.monotonic() + 300
    try:
        while not (temp.exists() and any(temp.glob("*.csv"))):
            assert proc.poll() is None, "the export ended before its temporary folder was seen"
            assert time.monotonic() < deadline
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert temp.exists() and not (temp / "manifest.json").exists(), "the kill should come in the middle of the write"
    assert snapshot(out) == before
    again = export(tmp_path / "big.parquet")
    assert again.wait(timeout=300) == 0
    assert not temp.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert read_folder(out)["records"] == n


def test_export_help_has_an_example() -> None:
    result = run("export", "--help")
    assert result.exit_code == 0 and "Example: segcli export" in result.stdout
