"""Start-up (issue 16): what a command loads before it does its work.

Each command runs in a process of its own, as ``segcli`` does, and reports at exit the modules it
imported and the threads it started, so that a rule here fails when an import creeps back in.
Times are measured by ``bench/run.py`` (``segcli-version``, ``segcli-validate-10``), never here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SAMPLE = ROOT / "sample_data" / "transactions.csv"
# runs segcli's entry point; at exit (segcli's own _finish runs the exit handlers) it writes the
# imported modules and the names of the threads started to the file named by argv[1]
PROBE = """
import atexit, json, sys, threading
report, sys.argv = sys.argv[1], ["segcli", *sys.argv[2:]]
started = []
start = threading.Thread.start
def record(thread):
    started.append(thread.name)
    start(thread)
threading.Thread.start = record
atexit.register(lambda: open(report, "w").write(json.dumps({"modules": sorted(sys.modules), "threads": started})))
from segcli.__main__ import main
main()
"""


def run_probe(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str], list[str]]:
    report = tmp_path / "probe.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", PROBE, str(report), *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    seen = json.loads(report.read_text(encoding="utf-8"))
    return proc, set(seen["modules"]), seen["threads"]


@pytest.fixture(scope="module")
def ten_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("startup") / "ten.csv"
    path.write_text("".join(SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)[:11]), encoding="utf-8")
    return path


def test_version_prints_the_cli_line_without_loading_typer_or_polars(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from segcli.cli import app

    proc, modules, _ = run_probe(tmp_path, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == CliRunner().invoke(app, ["--version"]).stdout == "segcli 1.0.0\n"
    assert not {"typer", "polars", "segcli.cli"} & modules


def test_version_with_other_arguments_goes_through_the_cli(tmp_path: Path) -> None:
    proc, modules, _ = run_probe(tmp_path, "--version", "--help")
    assert proc.returncode == 0 and proc.stdout == "segcli 1.0.0\n"
    assert "segcli.cli" in modules


def test_help_loads_neither_the_api_nor_numpy(tmp_path: Path) -> None:
    proc, modules, _ = run_probe(tmp_path, "--help")
    assert proc.returncode == 0 and "Usage: segcli" in proc.stdout
    assert not {"segcli.api", "segcli.pipeline", "numpy", "sklearn", "tabulate"} & modules


@pytest.mark.parametrize("command", [["validate", "-q"], ["validate", "--json"], ["pareto"],
                                     ["rfm", "--style", "lifetimes"]])
def test_commands_that_do_not_cluster_start_no_thread_and_load_no_scikit_learn(tmp_path: Path, ten_rows: Path,
                                                                             command: list[str]) -> None:
    proc, modules, threads = run_probe(tmp_path, command[0], str(ten_rows), *command[1:])
    assert proc.returncode == 0, proc.stderr
    assert "segcli-preload" not in threads
    assert "sklearn" not in modules


def test_segment_clusters_without_scikit_learn(tmp_path: Path) -> None:
    """KMeans is segcli.kmeans (NumPy): segment neither imports scikit-learn (nor SciPy) nor
    starts a thread to preload it."""
    proc, modules, threads = run_probe(tmp_path, "segment", str(SAMPLE), "-q", "-o", str(tmp_path / "a.parquet"))
    assert proc.returncode == 0, proc.stderr
    assert "segcli.kmeans" in modules
    assert "segcli-preload" not in threads
    assert not {"sklearn", "scipy"} & modules
    # reading that file back is table work: no tiers, clustering or NumPy
    proc, modules, _ = run_probe(tmp_path, "summary", str(tmp_path / "a.parquet"), "--by", "tier")
    assert proc.returncode == 0 and "zhixin" in proc.stdout, proc.stderr
    assert not {"numpy", "segcli.tiers", "segcli.api"} & modules
