"""Runs that would pass silently (SPEC §6): a stale export, a config changed against
--previous, a --previous that is not an earlier run; --strict enforced by the core; and every
shipped config passing a realistic monthly job."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import ROOT, write_csv
from segcli.cli import app
from segcli.config import load_config
from segcli.errors import InputDataError, RunWarning
from segcli.loading import load_transactions
from segcli.pipeline import rfm_table, segment
from segcli.previous import check_run_order

runner = CliRunner()
H = "customer_id,order_date,amount,order_id"
AS_OF = dt.date(2025, 1, 31)


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def record(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(pq.read_metadata(path).metadata[b"segcli"])


def rows_until(last: dt.date, customers: int = 6) -> list[str]:
    """A few purchases per customer, the latest dated ``last``."""
    out = []
    for c in range(customers):
        for k in range(3):
            day = last - dt.timedelta(days=40 * k + 7 * c)
            out.append(f"C{c},{day},{100 + 37 * c + k}.50,O{c}-{k}")
    return out


# --------------------------------------------------------------------------- strict, in the core


def strict_config(*allow: str):  # type: ignore[no-untyped-def]
    return load_config(None, {"analysis.strict": True, "analysis.allow": list(allow)})


@pytest.fixture
def repeated(tmp_path: Path) -> Path:
    """An export with one row repeated (a warning of kind identical_rows)."""
    rows = rows_until(AS_OF)
    return write_csv(tmp_path / "tx.csv", H, [*rows, rows[0]])


def test_segment_itself_raises_under_strict(repeated: Path) -> None:
    with pytest.raises(InputDataError) as err:
        segment([str(repeated)], strict_config())
    assert "1 warning under --strict: nothing written" in err.value.message
    assert err.value.details[0].startswith("[identical_rows] 1 row is identical")
    assert err.value.details[-1] == "to let this through: --allow identical_rows"
    assert segment([str(repeated)], strict_config("identical_rows")).assignments.height == 6


def test_rfm_table_raises_under_strict(repeated: Path) -> None:
    with pytest.raises(InputDataError, match="under --strict"):
        rfm_table([str(repeated)], strict_config())
    assert rfm_table([str(repeated)], strict_config("identical_rows")).table.height == 6


def test_load_transactions_raises_under_strict_for_lifetimes_pareto_and_validate(repeated: Path) -> None:
    """The paths built on load_transactions alone (rfm --style lifetimes, pareto, validate)."""
    with pytest.raises(InputDataError, match="under --strict"):
        load_transactions([str(repeated)], strict_config(), count_identical=True)
    assert load_transactions([str(repeated)], strict_config("identical_rows"), count_identical=True).warnings


@pytest.mark.parametrize("command", [["rfm", "--style", "lifetimes"], ["pareto"], ["validate"]])
def test_every_command_stops_under_strict(repeated: Path, tmp_path: Path, command: list[str]) -> None:
    result = run(*command, repeated, "--strict")
    assert result.exit_code == 65, result.stderr
    assert "--allow identical_rows" in result.stderr
    assert run(*command, repeated, "--strict", "--allow", "identical_rows").exit_code == 0


def test_warnings_found_after_reading_count_under_strict(tmp_path: Path) -> None:
    """A customer of PREV absent now (departed) is found by segment, after reading: strict
    still stops the run, and names it."""
    prev_rows = rows_until(AS_OF - dt.timedelta(days=31), customers=7)
    prev_src = write_csv(tmp_path / "prev.csv", H, prev_rows)
    prev = tmp_path / "prev.parquet"
    assert run("segment", prev_src, "-o", prev, "-q").exit_code == 0
    cfg = strict_config()
    previous = pl.read_parquet(prev)
    # C6 bought only before; the others go on buying
    src = write_csv(tmp_path / "tx.csv", H, [r for r in prev_rows if not r.startswith("C6,")] + rows_until(AS_OF))
    with pytest.raises(InputDataError) as err:
        segment([str(src)], cfg, previous=previous, previous_meta=record(prev))
    assert any(d.startswith("[departed] 1 customer") for d in err.value.details)
    segment([str(src)], strict_config("departed"), previous=previous, previous_meta=record(prev))


# --------------------------------------------------------------------------- stale export


def test_a_stale_export_is_named_with_both_dates_and_the_gap(tmp_path: Path) -> None:
    """The export's latest row is 464 days before --as-of: every customer inactive, no VIP."""
    latest = AS_OF - dt.timedelta(days=464)
    src = write_csv(tmp_path / "tx.csv", H, rows_until(latest))
    out = tmp_path / "a.parquet"
    result = run("segment", src, "--as-of", AS_OF, "-o", out)
    assert result.exit_code == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if "[stale_export]" in x)
    assert f"dated {latest}, 464 days before the as-of date {AS_OF}" in line
    assert "analysis.max_staleness_days = 31" in line
    assert "every customer is inactive" in line and "no VIP" in line
    assert pl.read_parquet(out).filter(pl.col("tier") == "zhixin").height == 0
    assert [w["kind"] for w in record(out)["warnings"]] == ["stale_export"]
    assert run("segment", src, "--as-of", AS_OF, "--strict").exit_code == 65
    assert run("segment", src, "--as-of", AS_OF, "--strict", "--allow", "stale_export").exit_code == 0


@pytest.mark.parametrize(("gap", "extra", "warned"), [
    (31, [], False), (32, [], True), (400, ["-c", "STALE500"], False), (32, ["--no-as-of"], False)])
def test_staleness_is_measured_from_an_explicit_as_of_only(tmp_path: Path, gap: int, extra: list[str],
                                                           warned: bool) -> None:
    src = write_csv(tmp_path / "tx.csv", H, rows_until(AS_OF - dt.timedelta(days=gap)))
    cfg = tmp_path / "c.toml"
    cfg.write_text("[analysis]\nmax_staleness_days = 500\n", encoding="utf-8")
    args = ["validate", src, *(["--as-of", AS_OF] if "--no-as-of" not in extra else [])]
    args += [str(cfg) if a == "STALE500" else a for a in extra if a != "--no-as-of"]
    result = run(*args)
    assert result.exit_code == 0, result.stderr
    assert ("[stale_export]" in result.stderr) is warned


# --------------------------------------------------------------------------- --previous


@pytest.fixture
def monthly(tmp_path: Path) -> tuple[Path, Path]:
    """January's run (as of 2025-01-31) and an export that goes on to the end of February."""
    src = write_csv(tmp_path / "tx.csv", H, rows_until(AS_OF) + rows_until(dt.date(2025, 2, 28)))
    prev = tmp_path / "jan.parquet"
    assert run("segment", src, "--as-of", AS_OF, "-o", prev, "-q").exit_code == 0
    return src, prev


def test_a_config_change_against_previous_names_the_keys(monthly: tuple[Path, Path], tmp_path: Path) -> None:
    src, prev = monthly
    cfg = tmp_path / "c.toml"
    cfg.write_text("[tiers]\nmax_share = 0.1\n[pareto]\nhead_share = 0.7\n", encoding="utf-8")
    out = tmp_path / "feb.parquet"
    result = run("segment", src, "-c", cfg, "--as-of", "2025-02-28", "--previous", prev, "-o", out)
    assert result.exit_code == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if "[config_changed]" in x)
    assert "pareto.head_share 0.8 -> 0.7; tiers.max_share 0.2 -> 0.1" in line
    assert "analysis.as_of" not in line  # the run's own date is no config change
    assert "config_changed" in [w["kind"] for w in record(out)["warnings"]]
    assert run("segment", src, "-c", cfg, "--as-of", "2025-02-28", "--previous", prev, "--strict",
               "--allow", "departed").exit_code == 65


def test_the_same_config_a_month_later_is_no_change(monthly: tuple[Path, Path], tmp_path: Path) -> None:
    src, prev = monthly
    result = run("segment", src, "--as-of", "2025-02-28", "--previous", prev, "-o", tmp_path / "feb.parquet")
    assert result.exit_code == 0, result.stderr
    assert "[config_changed]" not in result.stderr


@pytest.mark.parametrize("as_of", ["2025-01-31", "2025-01-15"])
def test_a_previous_run_not_earlier_stops_unless_forced(monthly: tuple[Path, Path], tmp_path: Path,
                                                       as_of: str) -> None:
    src, prev = monthly
    out = tmp_path / "out.parquet"
    result = run("segment", src, "--as-of", as_of, "--previous", prev, "-o", out)
    assert result.exit_code == 65
    assert result.stderr.splitlines()[0] == (f"segcli: error: the previous run (as of 2025-01-31) is not earlier "
                                             f"than this run (as of {as_of})")
    assert "--force" in result.stderr and not out.exists()
    forced = run("segment", src, "--as-of", as_of, "--previous", prev, "-o", out, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "segcli: warning: [forced] --force: the previous run (as of 2025-01-31)" in forced.stderr


def test_check_run_order_is_the_shared_rule() -> None:
    jan, feb = dt.date(2025, 1, 31), dt.date(2025, 2, 28)
    assert check_run_order(jan, feb, False) is None
    for prev, curr in ((feb, jan), (jan, jan)):
        with pytest.raises(InputDataError, match="is not earlier than"):
            check_run_order(prev, curr, False)
    warning = check_run_order(feb, jan, True, prev_name="a.parquet", curr_name="b.parquet")
    assert warning == RunWarning("forced", "--force: a.parquet (as of 2025-02-28) is not earlier than b.parquet "
                                           "(as of 2025-01-31)")


# --------------------------------------------------------------------------- shipped configs


@pytest.fixture(scope="module")
def export() -> pl.DataFrame:
    """Three years of line items pulled on 3 January (rows after the month end), with
    returns, free items and line items repeated in every column."""
    sys.path.insert(0, str(ROOT / "sample_data"))
    from generate import generate

    tx = generate(24_000, 2_500, seed=5, start=dt.date(2023, 1, 1), end=dt.date(2026, 1, 3))
    repeats = tx.filter(pl.col("amount") > 0).gather_every(97)  # a second identical item in the order
    return pl.concat([tx, repeats]).sort("order_time", "order_id")


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_config_runs_a_monthly_job(tmp_path: Path, export: pl.DataFrame, config: Path) -> None:
    """November's run, then December's with --previous, on the config's own settings
    (strict included, with its own column names): both exit 0."""
    columns = load_config(config).input.columns
    renames = {"customer_id": columns.customer_id, "order_time": columns.date, "amount": columns.amount,
               "order_id": columns.order_id}
    src = tmp_path / "export.csv"
    export.rename({k: v for k, v in renames.items() if v}).write_csv(src, datetime_format="%Y-%m-%d %H:%M:%S")
    nov, dec = tmp_path / "nov.parquet", tmp_path / "dec.parquet"
    first = run("segment", src, "-c", config, "--as-of", "2025-11-30", "-o", nov)
    assert first.exit_code == 0, first.stderr
    second = run("segment", src, "-c", config, "--as-of", "2025-12-31", "--previous", nov, "-o", dec)
    assert second.exit_code == 0, second.stderr
    rows = record(dec)["rows"]
    assert rows["rows_identical"] and rows["rows_after_as_of"] and rows["rows_returns"]  # realistic
    if load_config(config).analysis.strict:
        assert "[outside_window]" in second.stderr  # the config's own window: allowed, still said


def test_the_readme_recipe_makes_the_default_config_strict_for_a_monthly_job(tmp_path: Path,
                                                                            export: pl.DataFrame) -> None:
    src = tmp_path / "export.csv"
    export.write_csv(src, datetime_format="%Y-%m-%d %H:%M:%S")
    nov, dec = tmp_path / "nov.parquet", tmp_path / "dec.parquet"
    recipe = ["--strict", "--allow", "identical_rows", "--allow", "after_as_of"]
    assert run("segment", src, "--as-of", "2025-11-30", "-o", nov, *recipe).exit_code == 0
    result = run("segment", src, "--as-of", "2025-12-31", "--previous", nov, "-o", dec, *recipe)
    assert result.exit_code == 0, result.stderr
    assert run("segment", src, "--as-of", "2025-12-31", "--previous", nov, "-o", dec, "--strict").exit_code == 65
