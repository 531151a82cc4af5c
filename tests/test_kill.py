"""Nothing lost: a run killed (SIGKILL) in the middle of writing leaves the previous output as
it was, and the next run clears the temporary file it left (SPEC §5, issue 5)."""

from __future__ import annotations

import datetime as dt
import json
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
    (stale / ".segcli-run").write_text(json.dumps({"tool": "segcli", "pid": dead.pid, "start": ""}))
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


def _segcli_killed_at_rename(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    """segcli that SIGKILLs itself when it is about to rename a file into ``target``: a kill
    at the worst moment, between the renames of one output set."""
    patch = f"""
import os, signal
_replace = os.replace
def replace(src, dst, *a, **k):
    if os.path.basename(dst) == {target!r}:
        os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *a, **k)
os.replace = replace
from segcli.__main__ import main
main()
"""
    return subprocess.run([sys.executable, "-c", patch, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("killed_at", ["out.csv.rejects.csv", "out.csv"], ids=["first-rename", "last-rename"])
def test_kill_between_the_renames_of_an_output_set_is_detected(tmp_path: Path, killed_at: str) -> None:
    """A CSV, its ``.meta.json`` and its rejects file are one set: all are written in full
    first, then renamed, sidecars first and the CSV last. A kill before the last rename
    leaves the old CSV whole; a sidecar that then records another CSV is refused (65)."""
    export = tmp_path / "tx.csv"
    export.write_text("customer_id,order_date,amount\nC1,2025-01-10,500\nC2,2025-01-11,oops\n"
                      "C3,2025-01-12,30\nC4,2025-01-19,40\n")
    out = tmp_path / "out.csv"
    common = ["segment", str(export), "-o", str(out), "--max-invalid", "1", "-q"]
    assert subprocess.run([sys.executable, "-m", "segcli", *common], capture_output=True).returncode == 0
    before = {p.name: p.read_bytes() for p in tmp_path.glob("out.csv*")}
    assert sorted(before) == ["out.csv", "out.csv.meta.json", "out.csv.rejects.csv"]

    killed = _segcli_killed_at_rename(killed_at, *common, "--as-of", "2025-01-15")
    assert killed.returncode == -signal.SIGKILL
    assert out.read_bytes() == before["out.csv"]  # the CSV is last month's, whole
    record = subprocess.run([sys.executable, "-m", "segcli", "summary", str(out), "--record"],
                            capture_output=True, text=True)
    if killed_at == "out.csv.rejects.csv":  # nothing renamed yet: the old set, consistent
        assert {p.name: p.read_bytes() for p in tmp_path.glob("out.csv*")} == before
        assert record.returncode == 0 and json.loads(record.stdout)["as_of"] == "2025-01-19"
    else:  # new sidecars beside the old CSV: detected, never read as its record
        assert json.loads((tmp_path / "out.csv.meta.json").read_text())["as_of"] == "2025-01-15"
        assert record.returncode == 65
        assert record.stderr.startswith(f"segcli: error: {out}.meta.json: this run record does not belong to {out}")
        again = subprocess.run([sys.executable, "-m", "segcli", "segment", str(export), "--max-invalid", "1",
                                "--previous", str(out), "-o", str(tmp_path / "next.csv")],
                               capture_output=True, text=True)
        assert again.returncode == 65 and "does not belong" in again.stderr

    # the next run clears the killed run's temporary files and writes a consistent set
    assert subprocess.run([sys.executable, "-m", "segcli", *common], capture_output=True).returncode == 0
    assert not list(tmp_path.glob(".*segcli-tmp*"))
    assert {p.name: p.read_bytes() for p in tmp_path.glob("out.csv*")} == before


def _scratch_of(tmp: Path, pid: int) -> Path | None:
    for folder in tmp.glob(f"segcli-{pid}-*"):
        if (folder / ".segcli-run").exists():
            return folder
    return None


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs POSIX signals")
def test_sigterm_while_reading_stdin_removes_the_scratch_folder_and_exits_143(tmp_path: Path) -> None:
    """SIGTERM (cron, systemd, timeout) cleans up as Ctrl-C does: here the copy of standard
    input in the run's scratch folder, while segcli waits for more input."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "segcli", "validate", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "TMPDIR": str(tmp)})
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(b"customer_id,order_date,amount\nC1,2025-01-10,5.00\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 120
    while (_scratch_of(tmp, proc.pid) is None or not list(tmp.glob("segcli-*/stream-*.csv"))):
        assert proc.poll() is None and time.monotonic() < deadline, "no scratch folder appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert proc.stderr.read().decode() == "segcli: terminated (SIGTERM): temporary files removed\n"
    assert list(tmp.iterdir()) == []
    proc.stdin.close()


@pytest.fixture(scope="module")
def big_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(ROOT / "sample_data"))
    from generate import generate

    big = tmp_path_factory.mktemp("big") / "big.parquet"
    generate(600_000, 300_000, seed=5, start=dt.date(2024, 1, 1), end=dt.date(2025, 12, 31)).write_parquet(big)
    return big


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs POSIX signals")
@pytest.mark.parametrize("moment", ["spilling buckets", "writing the output"])
def test_sigterm_mid_run_removes_temporary_files_and_keeps_the_previous_output(
        tmp_path: Path, big_export: Path, moment: str) -> None:
    """SIGTERM during the bucket spill (in TMPDIR) or while the output's temporary file is
    written: exit 143 promptly, the previous output as it was, no temporary file left."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out.parquet"
    assert _segcli("segment", str(SAMPLE), "-o", str(out), "-q").wait(timeout=300) == 0
    before = out.read_bytes()
    # small buckets, so that the 600,000 rows are spilled; SIGTERM blocked before Polars starts
    patch = ("import segcli.__main__ as m; m._install_sigterm(); import segcli.loading as p; "
             "p.ROWS_PER_PART = 100_000; m.main()")
    proc = subprocess.Popen([sys.executable, "-c", patch, "segment", str(big_export), "-o", str(out), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "TMPDIR": str(tmp)})
    temp = tmp_path / f".out.parquet.segcli-tmp-{proc.pid}"
    deadline = time.monotonic() + 300
    try:
        while not (temp.exists() if moment == "writing the output" else list(tmp.glob("segcli-*/buckets-*/*"))):
            assert proc.poll() is None, f"the run ended before {moment}: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, f"never saw {moment}"
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert out.read_bytes() == before
    assert not temp.exists() and not list(tmp_path.glob(".*segcli-tmp*"))
    assert list(tmp.iterdir()) == []
