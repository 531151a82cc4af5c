"""Nothing lost: a run killed (SIGKILL) in the middle of writing leaves the previous output as
it was, and the next run clears the temporary file it left (SPEC §5, issue 5)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from conftest import ROOT, SAMPLE
from segcli.io import read_assignments


def _segcli(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "segcli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_while_writing_keeps_the_previous_output_and_the_next_run_cleans_up(tmp_path: Path) -> None:
    # 300,000 customers: the Parquet writer takes a few hundred milliseconds, a window the
    # 1 ms poll below cannot miss
    sys.path.insert(0, str(ROOT / "sample_data"))
    from generate import generate

    big = tmp_path / "big.parquet"
    generate(600_000, 300_000, seed=5, start=dt.date(2024, 1, 1), end=dt.date(2025, 12, 31)).write_parquet(big)
    out = tmp_path / "out.parquet"
    first = _segcli("segment", str(SAMPLE), "-o", str(out), "-q")
    assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""
    before = out.read_bytes()

    proc = _segcli("segment", str(big), "-o", str(out), "-q")
    temp = tmp_path / f".out.parquet.segcli-tmp-{proc.pid}"
    deadline = time.monotonic() + 300
    try:
        while not temp.exists():
            assert proc.poll() is None, "the run ended before its temporary file was seen"
            assert time.monotonic() < deadline, "no temporary file appeared"
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert temp.exists(), "the kill should have come in the middle of the write"

    # the previous output: the same bytes, readable, with its run record
    assert out.read_bytes() == before
    df, meta = read_assignments(str(out))
    assert df.height == pl.read_csv(SAMPLE)["customer_id"].n_unique() and meta["schema_version"] == 2

    # the next run removes the dead run's temporary file and writes a complete output
    again = _segcli("segment", str(SAMPLE), "-o", str(out), "-q")
    assert again.wait(timeout=300) == 0
    assert not temp.exists()
    assert not list(tmp_path.glob(".*segcli-tmp*"))
    assert read_assignments(str(out))[0].equals(df)


def test_scratch_folder_of_a_killed_run_is_removed_by_the_next_run(tmp_path: Path) -> None:
    """A non-UTF-8 input is transcoded into a private temporary folder, which a SIGKILL
    leaves behind (it can be as large as the input): the next run that needs one removes it."""
    import tempfile

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = Path(tempfile.gettempdir()) / f"segcli-{dead.pid}-test"
    stale.mkdir()
    (stale / "utf8-0.csv").write_text("a transcoded copy")
    export = tmp_path / "gb.csv"
    export.write_bytes("客户编号,交易日期,实付金额\n张三,2024-03-05,￥88.00\n".encode("gb18030"))
    try:
        run = _segcli("validate", str(export), "-q")
        assert run.wait(timeout=120) == 0
        assert not stale.exists()
    finally:
        import shutil

        shutil.rmtree(stale, ignore_errors=True)
