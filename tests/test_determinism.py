"""Same input, config and as-of date: the same file, bit for bit, whatever the thread count."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import ROOT, SAMPLE


def _segcli(*args: str, threads: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1767225600"}
    return subprocess.run([sys.executable, "-m", "segcli", *args, "--threads", str(threads)],
                          capture_output=True, text=True, env=env, check=False)


def test_two_runs_on_the_sample_give_identical_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for out in (a, b):
        result = _segcli("segment", str(SAMPLE), "-o", str(out), "-q", threads=2)
        assert result.returncode == 0, result.stderr
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.slow
def test_parallel_aggregation_does_not_change_a_bit(tmp_path: Path) -> None:
    """400k rows run through Polars' parallel group-by on 1 and 2 threads, and the input
    shuffled: float sums in a parallel group-by would reorder Pareto ties; exact minor-unit
    sums must not."""
    sys.path.insert(0, str(ROOT / "sample_data"))
    from generate import generate

    tx = generate(400_000, 60_000, seed=7, start=dt.date(2024, 1, 1), end=dt.date(2025, 12, 31))
    src = tmp_path / "tx.parquet"
    tx.write_parquet(src)
    shuffled = tmp_path / "shuffled.parquet"
    tx.sample(fraction=1.0, shuffle=True, seed=3).write_parquet(shuffled)
    outs = []
    for i, (inp, threads) in enumerate(((src, 1), (src, 2), (shuffled, 2))):
        out = tmp_path / f"out{i}.parquet"
        result = _segcli("segment", str(inp), "-o", str(out), "-q", threads=threads)
        assert result.returncode == 0, result.stderr
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    # the shuffled input differs only in its recorded path and size: compare the rows
    first, third = pl.read_parquet(outs[0]), pl.read_parquet(outs[2])
    assert first.equals(third)
    assert first.height > 50_000


def test_customer_buckets_give_the_same_table() -> None:
    """Large exports are aggregated in customer hash buckets; the table must not change."""
    from segcli.config import load_config
    from segcli.loading import load_transactions
    from segcli.pipeline import customer_table

    cfg = load_config(None)
    tx = load_transactions([str(SAMPLE)], cfg)
    whole = customer_table(tx, cfg)
    for parts in (2, 7):
        assert customer_table(tx, cfg, parts=parts).equals(whole)


@pytest.mark.parametrize("analysis", [{}, {"analysis.as_of": "2025-06-30", "analysis.window_days": 200}])
def test_aggregating_in_the_checking_pass_gives_the_same_table(analysis: dict[str, str | int]) -> None:
    """segment/rfm aggregate in the same pass as the checks when the kept rows are known
    before reading; the table must be the one a separate pass over the kept rows gives."""
    from segcli.config import load_config
    from segcli.loading import load_transactions
    from segcli.pipeline import customer_table, rfm_features

    cfg = load_config(None, analysis)
    fused = load_transactions([str(SAMPLE)], cfg, aggregate=rfm_features)
    assert fused.aggregated is not None
    separate = load_transactions([str(SAMPLE)], cfg)
    assert separate.aggregated is None
    assert customer_table(fused, cfg).equals(customer_table(separate, cfg))
    assert fused.counts == separate.counts


def test_a_window_without_as_of_is_aggregated_after_the_checks() -> None:
    """The window then ends at the latest date, known only after the pass."""
    from segcli.config import load_config
    from segcli.loading import load_transactions
    from segcli.pipeline import rfm_features

    cfg = load_config(None, {"analysis.window_days": 200})
    assert load_transactions([str(SAMPLE)], cfg, aggregate=rfm_features).aggregated is None


def test_spilled_buckets_give_the_same_table_and_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Above ROWS_PER_PART the parsed rows are spilled by customer bucket and every step
    reads the spill; results and error reports must be those of the one-pass path."""
    import segcli.loading as loading
    import segcli.pipeline as pipeline
    from segcli.config import load_config
    from segcli.errors import InputDataError

    cfg = load_config(None)
    whole = pipeline.customer_table(loading.load_transactions([str(SAMPLE)], cfg), cfg)
    monkeypatch.setattr(loading, "ROWS_PER_PART", 5_000)
    tx = loading.load_transactions([str(SAMPLE)], cfg)
    assert tx.parts > 1  # sized from the CSV bytes
    assert pipeline.customer_table(tx, cfg).equals(whole)
    bad = tmp_path / "bad.csv"
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    lines[1234] = lines[1234].replace(",CNY,", ",CNY,").replace(lines[1234].split(",")[2], "not-a-date")
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputDataError) as err:
        loading.load_transactions([str(bad)], cfg)
    assert "line 1235: order_time='not-a-date'" in "\n".join(err.value.details)


def test_memory_limit_sizes_the_buckets_and_keeps_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """memory_limit (bytes, --memory-limit) -> rows per bucket = limit / BYTES_PER_ROW."""
    import segcli.loading as loading
    import segcli.pipeline as pipeline
    from segcli.config import load_config

    cfg = load_config(None)
    whole = pipeline.customer_table(loading.load_transactions([str(SAMPLE)], cfg), cfg)
    monkeypatch.setattr(loading, "MIN_ROWS_PER_PART", 1)
    limit = 2 * 2**20  # 2 MiB / 200 B = 10,485 rows a bucket
    assert loading.rows_per_part(limit) == 2 * 2**20 // loading.BYTES_PER_ROW
    tx = loading.load_transactions([str(SAMPLE)], cfg, aggregate=pipeline.rfm_features, memory_limit=limit)
    lines = SAMPLE.read_bytes().count(b"\n")
    estimate = loading.estimate_rows(SAMPLE)  # from the first MiB of the 2.7 MB sample
    assert abs(estimate - lines) < 0.02 * lines
    assert tx.parts == -(-estimate // loading.rows_per_part(limit))
    assert tx.parts > 1 and tx.aggregated is None
    assert pipeline.customer_table(tx, cfg).equals(whole)


def test_memory_limit_does_not_leak_into_later_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--memory-limit is a parameter of one call: a later call in the same process (a
    notebook, a long-lived service) runs with its own setting, and the environment is
    left as it was. SEGCLI_MEMORY_LIMIT is only the CLI option's default."""
    from typer.testing import CliRunner

    import segcli.loading as loading
    from segcli.cli import MEMORY_LIMIT_ENV, app
    from segcli.config import load_config

    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    monkeypatch.setattr(loading, "MIN_ROWS_PER_PART", 1)
    result = CliRunner().invoke(app, ["validate", str(SAMPLE), "--memory-limit", "2M", "-q"])
    assert result.exit_code == 0, result.stderr
    assert MEMORY_LIMIT_ENV not in os.environ
    tx = loading.load_transactions([str(SAMPLE)], load_config(None))
    assert tx.parts == 1  # not the 2 MiB buckets of the earlier call
    # the environment variable still works as the option's default, read by the CLI
    parts: list[int] = []
    real = loading.load_transactions

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = real(*args, **kwargs)
        parts.append(out.parts)
        return out

    monkeypatch.setattr("segcli.engines.load_transactions", spy)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "2M")
    result = CliRunner().invoke(app, ["validate", str(SAMPLE), "-q"])
    assert result.exit_code == 0, result.stderr
    assert parts and parts[0] > 1


@pytest.mark.parametrize(("text", "size"), [("8G", 8 * 2**30), ("512m", 512 * 2**20), ("4GiB", 4 * 2**30),
                                            ("1.5G", int(1.5 * 2**30)), ("2000000", 2_000_000), ("64KB", 65536)])
def test_sizes_parse(text: str, size: int) -> None:
    from segcli.loading import parse_size

    assert parse_size(text) == size


def test_a_bad_memory_limit_is_a_usage_error() -> None:
    result = _segcli("validate", str(SAMPLE), "--memory-limit", "lots", threads=1)
    assert result.returncode == 2  # SPEC: usage error
    assert "--memory-limit 'lots'" in result.stderr


def test_source_date_epoch_is_read_by_the_api_and_the_cli_not_the_core(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SOURCE_DATE_EPOCH dates the run record (reproducible files): the CLI and the API's
    default read it; the core takes the time as a parameter and never reads it."""
    from typer.testing import CliRunner

    import segcli
    from segcli.api import record_time
    from segcli.cli import app
    from segcli.config import load_config
    from segcli.errors import UsageError
    from segcli.pipeline import rfm_table

    small = tmp_path / "x.csv"
    small.write_text("customer_id,order_date,amount\nC1,2024-03-05,10\nC2,2024-03-04,5\n", encoding="utf-8")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    epoch = dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert record_time() == epoch == dt.datetime.fromtimestamp(1700000000, dt.UTC)
    assert record_time({}) is None and record_time({"SOURCE_DATE_EPOCH": ""}) is None
    assert segcli.rfm(small).record["created_at"] == "2023-11-14T22:13:20+00:00"
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["rfm", str(small), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.stderr
    assert '"created_at": "2023-11-14T22:13:20+00:00"' in (tmp_path / "out.csv.meta.json").read_text()
    # the core: the time given, else now (the environment variable is ignored)
    given = dt.datetime(2020, 2, 29, 12, 0, 1, tzinfo=dt.UTC)
    assert rfm_table([str(small)], load_config(None), created_at=given).record["created_at"] == given.isoformat()
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    now = dt.datetime.fromisoformat(rfm_table([str(small)], load_config(None)).record["created_at"])
    assert before <= now <= dt.datetime.now(dt.UTC)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "soon")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH='soon' is not an integer"):
        segcli.rfm(small)
