"""Money that stays exact (SPEC §3, §5, §6): sums that cannot wrap around, one Pareto head
rule for the classes and the head sizes, money columns rounded to ``amount_scale`` and, with
``output.money = "decimal"``, written as exact decimals.

Every expected number comes from Python ``int`` / ``decimal`` / ``fractions`` arithmetic on
the input rows (tests/helpers_numbers.py), not from segcli.
"""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from helpers_numbers import (
    HEAD_SHARES,
    invoke,
    reference_features,
    reference_pareto,
    run_pareto_json,
    run_rfm,
    write_config,
    write_csv,
)

# issue 9 item 2: with amount_scale = 8 these summed to a negative total revenue
ISSUE_ROWS = [("A", "2025-01-10", "60000000000", "o1"), ("B", "2025-01-11", "50000000000", "o2"),
              ("C", "2025-01-12", "1000", "o3")]
MONEY = ("monetary", "gross_revenue", "returns_amount", "avg_order_value", "goodwill_limit")


def _units(value: Decimal, scale: int) -> int:
    q = value.scaleb(scale)
    assert q == q.to_integral_value()
    return int(q)


def _exact(rows: list[tuple[str, str, str, str]]) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    """Per customer (net, gross, returns) as exact decimals (each row its own order here)."""
    out: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
    for cid, _day, amount, _order in rows:
        a = Decimal(amount)
        out[cid][0] += a
        out[cid][1 if a > 0 else 2] += abs(a)
    return {c: (v[0], v[1], v[2]) for c, v in out.items()}


# --------------------------------------------------------------------------- overflow (item 2)


@pytest.mark.parametrize("command", ["segment", "rfm", "pareto", "validate"])
def test_money_sums_beyond_int64_stop_with_the_total_and_a_lower_scale(tmp_path: Path, command: str) -> None:
    """110,000,001,000 at amount_scale 8 is 1.1e19 units, past 2^63: exit 65 naming the total
    and the largest scale at which it is exact, and nothing written."""
    src = write_csv(tmp_path / "tx.csv", ISSUE_ROWS)
    cfg = write_config(tmp_path / "s8.toml", "[input]\namount_scale = 8\n")
    out = tmp_path / "out.parquet"
    args = [command, str(src), "-c", str(cfg), "--as-of", "2025-01-31"]
    if command in ("segment", "rfm"):
        args += ["-o", str(out)]
    result = invoke(args, ok=False)
    assert result.exit_code == 65, result.stderr
    first, *details = result.stderr.splitlines()
    assert first.startswith("segcli: error: ") and "money sums would overflow" in first
    assert "110,000,001,000.00000000" in first and "amount_scale = 8" in first
    assert "lower [input] amount_scale to 7" in "\n".join(details)
    assert not out.exists()


def test_the_bound_is_the_int64_range_exactly() -> None:
    from segcli.errors import InputDataError
    from segcli.rfm import INT64_MAX, check_money_range

    check_money_range(2**63 - 1, 1, 4, "x.csv")  # the largest sum that fits
    with pytest.raises(InputDataError) as err:
        check_money_range(2**63, 1, 4, "x.csv")
    assert INT64_MAX == 2**63 - 1 and "amount_scale to 3" in err.value.details[0]


def test_the_issue_amounts_are_exact_at_the_suggested_scale(tmp_path: Path) -> None:
    """The same customers (and one with a large return) at amount_scale 7: every money sum,
    the cumulative shares and the classes equal exact integer arithmetic."""
    rows = [*ISSUE_ROWS, ("D", "2025-01-13", "5000000000.1234567", "o4"),
            ("D", "2025-01-14", "-2000000000.7654321", "o5")]
    src = write_csv(tmp_path / "tx.csv", rows)
    cfg = write_config(tmp_path / "s7.toml", "[input]\namount_scale = 7\n")
    df, _ = run_rfm(tmp_path, src, config=cfg)
    exact = _exact(rows)
    got = {r["customer_id"]: r for r in df.iter_rows(named=True)}
    for cid, (net, gross, returns) in exact.items():
        # each float is the correctly rounded exact decimal
        assert (got[cid]["monetary"], got[cid]["gross_revenue"], got[cid]["returns_amount"]) == (
            float(net), float(gross), float(returns)), cid
    ref = reference_pareto({c: _units(v[0], 7) for c, v in exact.items()})
    assert dict(zip(df["customer_id"], df["pareto_class"])) == ref.pareto_class == {
        "A": "A", "B": "A", "C": "C", "D": "C"}
    for cid, share in ref.cum_share.items():
        assert 0 < got[cid]["cum_share"] == pytest.approx(share, rel=1e-15)
    doc = run_pareto_json(src, config=cfg)
    total = sum(max(v[0], Decimal(0)) for v in exact.values())
    assert doc["total_revenue"] == float(total) and doc["gini"] == pytest.approx(ref.gini, rel=1e-12)
    assert {h["revenue_share"]: h["customers"] for h in doc["head"]} == {s: ref.head[s][0] for s in HEAD_SHARES}
    assert {a["pareto_class"]: a["customers"] for a in doc["abc"]} == {"A": 2, "B": 0, "C": 2}


def test_run_record_tier_revenue_is_the_exact_sum(tmp_path: Path) -> None:
    rows = [*ISSUE_ROWS, ("D", "2025-01-13", "0.0000001", "o4"), ("E", "2025-01-14", "1234567.8912345", "o5")]
    src = write_csv(tmp_path / "tx.csv", rows)
    cfg = write_config(tmp_path / "s7.toml", "[input]\namount_scale = 7\n[tiers]\nmax_share = 0.5\n")
    out = tmp_path / "a.parquet"
    invoke(["segment", str(src), "-c", str(cfg), "--as-of", "2025-01-31", "-o", str(out), "-q"])
    df = pl.read_parquet(out)
    record = json.loads(pq.read_metadata(out).metadata[b"segcli"])
    exact = _exact(rows)
    for tier, info in record["tiers"].items():
        members = df.filter(pl.col("tier") == tier)["customer_id"].to_list()
        assert info["revenue"] == float(sum(exact[c][0] for c in members)), tier


# --------------------------------------------------------------------------- one head rule (item 3)


def _pareto_classes_and_heads(tmp_path: Path, amounts: list[int], head_share: float):  # type: ignore[no-untyped-def]
    rows = [(f"k{i:03d}", "2025-01-20", str(a), f"o{i}") for i, a in enumerate(amounts)]
    src = write_csv(tmp_path / "tx.csv", rows)
    cfg = write_config(tmp_path / "h.toml", f"[pareto]\nhead_share = {head_share}\n[cluster]\nk = 2\n")
    df, _ = run_rfm(tmp_path, src, config=cfg)
    doc = run_pareto_json(src, config=cfg)
    return df, {h["revenue_share"]: h["customers"] for h in doc["head"]}, rows


def _reference_head(amounts: list[int], share: float) -> int:
    """The smallest prefix (biggest first) whose revenue reaches ``share`` of the total."""
    x = sorted(amounts, reverse=True)
    line, cum = Fraction(str(share)) * sum(x), 0
    for k, v in enumerate(x, start=1):
        cum += v
        if cum >= line:
            return k
    return len(x)


def test_head_size_and_class_a_agree_on_large_revenues(tmp_path: Path) -> None:
    """Tens of billions at amount_scale 4: cumulative units times the share's denominator
    (10,000 for 0.8333) pass 2^63. Class A, the reported head and the exact prefix agree."""
    amounts = [40_000_000_000, 30_000_000_000, 20_000_000_000, 9_000_000_000, 5_000_000_000, 1_000_000_000]
    df, heads, _ = _pareto_classes_and_heads(tmp_path, amounts, 0.8333)
    want = _reference_head(amounts, 0.8333)
    assert want == 3  # 90e9 of 105e9 reaches 83.33%; 70e9 does not
    assert df.filter(pl.col("pareto_class") == "A").height == want
    assert heads[0.8333] == want
    for share in HEAD_SHARES:
        assert heads[share] == _reference_head(amounts, share), share


def test_random_large_revenues_give_one_head_everywhere(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    amounts = [int(v) for v in rng.integers(10**9, 9 * 10**10, 40)]
    df, heads, rows = _pareto_classes_and_heads(tmp_path, amounts, 0.8333)
    ref = reference_pareto({c: _units(Decimal(a), 4) for c, _d, a, _o in rows}, head_share=0.8333)
    assert dict(zip(df["customer_id"], df["pareto_class"])) == ref.pareto_class
    assert heads[0.8333] == _reference_head(amounts, 0.8333) == sum(v == "A" for v in ref.pareto_class.values())


# --------------------------------------------------------------------------- money columns (SPEC §5)


def _rounded(value: Decimal, scale: int = 4) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-scale), ROUND_HALF_EVEN)


# amounts chosen so that float sums show noise and means need rounding
MONEY_ROWS = [
    ("m1", "2025-01-10", "0.1", "a"), ("m1", "2025-01-11", "0.2", "b"), ("m1", "2025-01-12", "0.0001", "c"),
    ("m2", "2025-01-10", "123456789012.3456", "d"), ("m2", "2025-01-11", "0.0003", "e"),
    ("m2", "2025-01-12", "-7.0001", "e"),  # a return in order e
    ("m3", "2025-01-15", "10", "f"), ("m3", "2025-01-16", "10", "g"), ("m3", "2025-01-17", "0.0001", "h"),
    ("m4", "2025-01-20", "-5.5", "i"),  # a return alone: no purchase, no mean
    ("m5", "2025-01-21", "0.00005", "j"), ("m5", "2025-01-22", "0.00015", "k"),  # rounded on input
]


def _expected_money() -> dict[str, dict[str, Decimal | None]]:
    ref = reference_features(MONEY_ROWS)
    out = {}
    for cid, f in ref.items():
        scaled = {"monetary": f.monetary, "gross_revenue": f.gross_revenue, "returns_amount": f.returns_amount}
        out[cid] = {k: _rounded(v) for k, v in scaled.items()}
        out[cid]["avg_order_value"] = _rounded(f.monetary / f.frequency) if f.frequency else None
    return out


def test_money_columns_are_the_rounded_decimals_as_floats(tmp_path: Path) -> None:
    """Default float64: each value is the float nearest to the exact decimal rounded to
    amount_scale places: 0.3001, not 0.30010000000000003; a mean is money too."""
    src = write_csv(tmp_path / "tx.csv", MONEY_ROWS)
    df, _ = run_rfm(tmp_path, src, extra=["-q"])
    want = _expected_money()
    assert want["m3"]["avg_order_value"] == Decimal("6.6667")  # 20.0001 / 3
    for row in df.iter_rows(named=True):
        for col, value in want[row["customer_id"]].items():
            assert row[col] == (None if value is None else float(value)), (row["customer_id"], col)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_decimal_money_is_exact_in_every_format(tmp_path: Path, suffix: str) -> None:
    """output.money = "decimal": Parquet decimal128(38, amount_scale), CSV and JSONL the same
    decimal text (JSON numbers); the values equal the exact sums of the input rows."""
    src = write_csv(tmp_path / "tx.csv", MONEY_ROWS)
    cfg = write_config(tmp_path / "d.toml", '[output]\nmoney = "decimal"\n[service.zhixin]\ngoodwill_limit = 333.33335\n')
    out = tmp_path / f"a{suffix}"
    invoke(["segment", str(src), "-c", str(cfg), "--as-of", "2025-01-31", "-o", str(out), "-q"])
    if suffix == ".parquet":
        table = pq.read_table(out)
        for col in MONEY:
            assert str(table.schema.field(col).type) == "decimal128(38, 4)", col
        rows = table.to_pylist()
    elif suffix == ".csv":
        rows = pl.read_csv(out, infer_schema=False).to_dicts()
        rows = [{k: (Decimal(v) if k in MONEY and v is not None else v) for k, v in r.items()} for r in rows]
    else:
        lines = out.read_text(encoding="utf-8").splitlines()
        assert '"monetary":123456789005.3458,' in next(line for line in lines if '"m2"' in line)
        rows = [json.loads(line, parse_float=Decimal) for line in lines]
    want = _expected_money()
    assert want["m2"]["monetary"] == Decimal("123456789005.3458")  # beyond what a float keeps exactly
    for row in rows:
        for col, value in want[row["customer_id"]].items():
            got = row[col]
            assert got == value and (got is None or str(got) == str(value)), (row["customer_id"], col, got)
        goodwill = {"zhixin": Decimal("333.3334"), "yuxin": Decimal("50.0000")}[row["tier"]]  # half-even
        assert row["goodwill_limit"] == goodwill and str(row["goodwill_limit"]) == str(goodwill)


def test_decimal_outputs_read_back_like_float_ones(tmp_path: Path) -> None:
    """summary, diff and --previous read a decimal file as they read a float one."""
    src = write_csv(tmp_path / "tx.csv", MONEY_ROWS)
    dec = write_config(tmp_path / "d.toml", '[output]\nmoney = "decimal"\n')
    f_out, d_out = tmp_path / "f.parquet", tmp_path / "d.parquet"
    invoke(["segment", str(src), "--as-of", "2025-01-31", "-o", str(f_out), "-q"])
    invoke(["segment", str(src), "-c", str(dec), "--as-of", "2025-01-31", "-o", str(d_out), "-q"])
    assert invoke(["summary", str(d_out)]).stdout == invoke(["summary", str(f_out)]).stdout
    assert invoke(["summary", str(d_out), "--json"]).stdout == invoke(["summary", str(f_out), "--json"]).stdout
    assert json.loads(invoke(["diff", str(f_out), str(d_out), "--json", "--force"]).stdout)["counts"]
    later = tmp_path / "later.parquet"
    invoke(["segment", str(src), "-c", str(dec), "--as-of", "2025-02-01", "--previous", str(d_out),
            "-o", str(later), "-q"])
