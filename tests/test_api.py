"""The Python API (SPEC §7): `--json` of every command equals the API result's document();
frames (Polars, pandas, PyArrow) go through the same call as files; the API raises, never
prints or exits; `analysis.strict` holds at every entry point; stage figures on a small
in-memory frame match independent computations (tests/helpers_numbers.py)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

import segcli
from conftest import ROOT, SAMPLE, write_csv
from helpers_numbers import minor, reference_features, reference_pareto
from segcli.cli import app
from segcli.errors import InputDataError, SegcliError, UsageError
from segcli.report import to_records

runner = CliRunner()
H = "customer_id,order_date,amount,order_id"
ROWS = [  # (customer, date, amount, order): returns, a free order, a customer with only a return
    ("C01", "2025-01-10", "500.00", "O1"), ("C01", "2025-01-20", "300.00", "O2"), ("C01", "2025-01-20", "-50.00", "O2"),
    ("C02", "2025-01-05", "120.00", "O3"), ("C03", "2024-02-01", "60.00", "O4"), ("C04", "2025-01-25", "15.50", "O5"),
    ("C04", "2025-01-26", "0.00", "O6"), ("C05", "2025-01-26", "-20.00", "O7"), ("C06", "2024-12-31", "80.00", "O8"),
    ("C07", "2025-01-31", "45.25", "O9"), ("C08", "2024-07-04", "210.00", "O10"),
]
AS_OF = dt.date(2025, 1, 31)


def run(*args: Any) -> Any:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.stderr
    return result


def as_json(doc: Any) -> Any:
    """A document as it reads back from the JSON the CLI prints."""
    return json.loads(json.dumps(doc, ensure_ascii=False, default=str))


@pytest.fixture(scope="module")
def tx_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("api") / "tx.csv", H, [",".join(r) for r in ROWS])


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return pl.DataFrame(ROWS, schema=["customer_id", "order_date", "amount", "order_id"], orient="row")


# --------------------------------------------------------------------------- --json equals the API


def test_segment_json_is_the_api_document(tx_csv: Path) -> None:
    cli = json.loads(run("segment", tx_csv, "--json").stdout)
    assert cli == as_json(segcli.segment(tx_csv).document())


def test_segment_json_with_previous_is_the_api_document(tx_csv: Path, tmp_path: Path) -> None:
    prev = tmp_path / "prev.parquet"
    run("segment", tx_csv, "--as-of", "2025-01-26", "-o", prev, "-q")
    cli = json.loads(run("segment", tx_csv, "--previous", prev, "--json").stdout)
    result = segcli.segment(tx_csv, previous=prev)
    assert cli == as_json(result.document())
    assert result.previous is not None and result.previous.height == pl.read_parquet(prev).height


def test_rfm_json_is_the_api_document(tx_csv: Path) -> None:
    assert json.loads(run("rfm", tx_csv, "--json").stdout) == as_json(segcli.rfm(tx_csv).document())


@pytest.mark.parametrize("freq", ["D", "W"])
def test_lifetimes_json_is_the_api_document(tx_csv: Path, freq: str) -> None:
    cli = json.loads(run("rfm", tx_csv, "--style", "lifetimes", "--freq", freq, "--json").stdout)
    assert cli == as_json(segcli.lifetimes_summary(tx_csv, freq=freq).document())


def test_pareto_json_is_the_api_document(tx_csv: Path) -> None:
    assert json.loads(run("pareto", tx_csv, "--json").stdout) == as_json(segcli.pareto(tx_csv).document())


def test_validate_json_is_the_api_document(tx_csv: Path) -> None:
    assert json.loads(run("validate", tx_csv, "--json").stdout) == as_json(segcli.validate(tx_csv).document())


@pytest.mark.parametrize("by", ["tier", "vip_group", "rfm_segment", "cluster"])
def test_summary_json_is_the_api_summary(tx_csv: Path, tmp_path: Path, by: str) -> None:
    out = tmp_path / "a.parquet"
    run("segment", tx_csv, "-o", out, "-q")
    cli = json.loads(run("summary", out, "--by", by, "--json").stdout)
    assert cli == as_json(to_records(segcli.segment(tx_csv).summary(by)))


def test_diff_json_is_the_api_document(tx_csv: Path, tmp_path: Path) -> None:
    prev, curr = tmp_path / "p.parquet", tmp_path / "c.parquet"
    run("segment", tx_csv, "--as-of", "2025-01-20", "-o", prev, "-q")
    run("segment", tx_csv, "--previous", prev, "-o", curr, "-q")
    result = segcli.diff(prev, curr)
    assert json.loads(run("diff", prev, curr, "--json").stdout) == as_json(result.document())
    moves = tmp_path / "moves.csv"
    run("diff", prev, curr, "-o", moves, "-q")
    assert pl.read_csv(moves, schema_overrides={"customer_id": pl.String}).height == result.table.height


def test_explain_json_is_the_api_document(tx_csv: Path, tmp_path: Path) -> None:
    prev, curr = tmp_path / "p.parquet", tmp_path / "c.parquet"
    run("segment", tx_csv, "--as-of", "2025-01-20", "-o", prev, "-q")
    run("segment", tx_csv, "--previous", prev, "-o", curr, "-q")
    ids = ["C01", "C04", "C05", "C03"]
    result = segcli.explain(curr, ids)
    assert json.loads(run("explain", curr, *ids, "--json").stdout) == as_json(result.document())
    assert [e.customer_id for e in result.explanations] == ids and result.unknown == []
    # one id as a string; a frame with its run record explains as the file does
    assert segcli.explain(curr, "C01").document()["customers"] == result.document()["customers"][:1]
    df, record = pl.read_parquet(curr), segcli.segment(tx_csv, previous=prev).record
    assert segcli.explain(df, ids, record=record).document()["customers"][0]["lines"] == \
        result.document()["customers"][0]["lines"]
    # an unknown id: the API returns it, the CLI explains the others and exits 65
    assert segcli.explain(curr, ["C01", "nobody"]).unknown == ["nobody"]
    cli = runner.invoke(app, ["explain", str(curr), "C01", "nobody", "--json"])
    assert cli.exit_code == 65
    assert json.loads(cli.stdout) == as_json(segcli.explain(curr, ["C01", "nobody"]).document())


# --------------------------------------------------------------------------- frames are inputs too


def test_polars_pandas_and_pyarrow_frames_give_the_assignments_of_the_file(tx_csv: Path, frame: pl.DataFrame) -> None:
    from_file = segcli.segment(tx_csv).assignments
    for data in (frame, frame.lazy(), frame.to_pandas(), frame.to_arrow()):
        result = segcli.segment(data)
        assert result.assignments.equals(from_file), type(data)
        assert result.record["inputs"][0]["path"] == "<DataFrame>"


def test_typed_frame_columns_are_read_like_text(frame: pl.DataFrame, tx_csv: Path) -> None:
    typed = frame.with_columns(pl.col("order_date").str.to_date(), pl.col("amount").cast(pl.Float64))
    assert segcli.rfm(typed).table.equals(segcli.rfm(tx_csv).table)
    pandas = pd.DataFrame({"customer_id": ["A", "B"], "order_date": pd.to_datetime(["2025-01-02", "2025-01-03"]),
                           "amount": [10.5, 20.0]})
    assert segcli.rfm(pandas).table["monetary"].to_list() == [10.5, 20.0]


def test_a_bad_row_in_a_frame_is_named_by_its_row(frame: pl.DataFrame) -> None:
    bad = frame.with_columns(amount=pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("abc")).otherwise("amount"))
    with pytest.raises(InputDataError) as caught:
        segcli.segment(bad)
    assert caught.value.message.startswith("<DataFrame>: 1 of 11 rows are invalid")
    assert "    row 4: amount='abc'" in caught.value.details


def test_read_transactions_on_a_frame_keeps_what_it_scans(frame: pl.DataFrame) -> None:
    tx = segcli.read_transactions(frame, as_of="2025-01-26")
    assert tx.as_of == dt.date(2025, 1, 26)
    assert tx.counts["rows_after_as_of"] == 1 and tx.tx.collect().height == 10


def test_a_previous_frame_is_the_previous_file(tx_csv: Path, tmp_path: Path) -> None:
    prev = tmp_path / "prev.parquet"
    run("segment", tx_csv, "--as-of", "2025-01-20", "-o", prev, "-q")
    df, record = pl.read_parquet(prev), json.loads(pl.read_parquet_metadata(prev)["segcli"])
    from_file = segcli.segment(tx_csv, previous=prev)
    from_frame = segcli.segment(tx_csv, previous=df, previous_record=record)
    assert from_frame.assignments.equals(from_file.assignments)
    assert from_frame.warnings == from_file.warnings


def test_inputs_of_another_kind_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="inputs must be a path"):
        segcli.segment(42)


def test_a_frame_arrow_cannot_hold_is_a_data_error() -> None:
    mixed = pd.DataFrame({"customer_id": ["A", 1], "order_date": ["2025-01-01", "2025-01-02"], "amount": [1, 2]})
    with pytest.raises(InputDataError, match="^<DataFrame>: cannot read the pandas table"):
        segcli.rfm(mixed)


def test_config_as_a_path_and_keyword_options(tx_csv: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[tiers]\nmax_share = 1.0\n", encoding="utf-8")
    result = segcli.segment(tx_csv, cfg, as_of=dt.date(2025, 1, 26))
    assert result.record["as_of"] == "2025-01-26" and result.config.tiers.max_share == 1.0
    assert result.record["config"]["analysis"]["as_of"] == "2025-01-26"  # recorded like --as-of
    assert result.config.hash == segcli.load_config(cfg, {"analysis.as_of": "2025-01-26"}).hash


# --------------------------------------------------------------------------- raises, never prints or exits


def test_the_api_prints_nothing(tx_csv: Path, capfd: pytest.CaptureFixture[str]) -> None:
    segcli.segment(tx_csv).summary()
    segcli.rfm(tx_csv)
    segcli.pareto(tx_csv)
    segcli.lifetimes_summary(tx_csv)
    assert capfd.readouterr() == ("", "")


def test_errors_are_segcli_errors_with_exit_codes(tmp_path: Path) -> None:
    with pytest.raises(SegcliError) as missing:
        segcli.segment(tmp_path / "nope.csv")
    assert missing.value.exit_code == 66
    with pytest.raises(UsageError):
        segcli.lifetimes_summary(tmp_path / "nope.csv", freq="M")


@pytest.mark.parametrize("call", ["read_transactions", "validate", "segment", "rfm", "pareto", "lifetimes_summary"])
def test_strict_stops_every_entry_point(tmp_path: Path, call: str) -> None:
    repeated = write_csv(tmp_path / "r.csv", H, ["A,2025-01-02,10,O1", "A,2025-01-02,10,O1", "B,2025-01-03,5,O2"])
    strict = segcli.load_config(None, {"analysis.strict": True})
    with pytest.raises(InputDataError, match="under --strict"):
        getattr(segcli, call)(repeated, strict)
    allowed = segcli.load_config(None, {"analysis.strict": True, "analysis.allow+": ["identical_rows"]})
    getattr(segcli, call)(repeated, allowed)


def test_a_reversed_diff_raises_unless_forced(tx_csv: Path, tmp_path: Path) -> None:
    early, late = tmp_path / "e.parquet", tmp_path / "l.parquet"
    run("segment", tx_csv, "--as-of", "2025-01-20", "-o", early, "-q")
    run("segment", tx_csv, "-o", late, "-q")
    with pytest.raises(InputDataError, match="is not earlier than"):
        segcli.diff(late, early)
    forced = segcli.diff(late, early, force=True)
    assert [w.kind for w in forced.warnings] == ["forced"]


# --------------------------------------------------------------------------- stage figures on a frame


def test_rfm_features_of_a_frame_match_the_reference(frame: pl.DataFrame) -> None:
    ref = reference_features(ROWS, AS_OF)
    table = segcli.rfm(frame, as_of=AS_OF).table
    assert table["customer_id"].to_list() == sorted(ref)
    for row in table.iter_rows(named=True):
        f = ref[row["customer_id"]]
        assert (row["frequency"], row["recency_days"], row["first_purchase"], row["last_purchase"]) == (
            f.frequency, f.recency_days, f.first_purchase, f.last_purchase)
        assert Decimal(str(row["monetary"])) == f.monetary and Decimal(str(row["returns_amount"])) == f.returns_amount
        assert row["avg_order_value"] == f.avg_order_value


def test_pareto_of_a_frame_matches_the_reference(frame: pl.DataFrame) -> None:
    ref = reference_pareto({c: minor(f.monetary) for c, f in reference_features(ROWS, AS_OF).items()})
    result = segcli.pareto(frame, as_of=AS_OF)
    got = {r["customer_id"]: (r["cum_share"], r["pareto_class"]) for r in result.table.iter_rows(named=True)}
    assert got == {c: (pytest.approx(ref.cum_share[c], abs=1e-15), ref.pareto_class[c]) for c in ref.order}
    assert {k: v for k, v in result.concentration.head.items() if k in ref.head} == ref.head
    assert result.concentration.gini == pytest.approx(ref.gini)


def test_every_customer_of_a_frame_gets_one_tier(frame: pl.DataFrame) -> None:
    df = segcli.segment(frame).assignments
    assert df["customer_id"].is_unique().all() and set(df["tier"]) <= {"zhixin", "yuxin"}
    # L = floor(20% of 8 customers) = 1: the biggest of class A
    assert df.filter(pl.col("tier") == "zhixin").select("customer_id", "reason").rows() == [("C01", "pareto_head")]


# --------------------------------------------------------------------------- the package


def test_import_segcli_stays_light_and_names_the_api() -> None:
    code = "import sys, segcli; print('polars' in sys.modules, sorted(set(segcli.__all__) - set(dir(segcli))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False []"
    assert (ROOT / "segcli" / "py.typed").exists()
    assert segcli.segment.__module__ == "segcli.api"


def test_no_global_settings_change_on_import_or_chart(tmp_path: Path) -> None:
    import matplotlib
    import tabulate

    before = (tabulate.WIDE_CHARS_MODE, tabulate.PRESERVE_WHITESPACE, tabulate.MIN_PADDING)
    rc = dict(matplotlib.rcParams)
    import segcli.report  # noqa: F401

    run("pareto", SAMPLE, "--plot", tmp_path / "p.svg", "-q")
    assert before == (tabulate.WIDE_CHARS_MODE, tabulate.PRESERVE_WHITESPACE, tabulate.MIN_PADDING)
    assert dict(matplotlib.rcParams) == rc


def test_config_operators_are_those_of_the_one_table() -> None:
    import typing

    from segcli.config import Op
    from segcli.rules import COMPARISONS

    assert set(typing.get_args(Op)) <= set(COMPARISONS)
    assert COMPARISONS["<="](1, 2) and not COMPARISONS["!="](3, 3)
