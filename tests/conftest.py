"""Shared fixtures: a stable terminal, golden files, small transaction files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
SAMPLE = ROOT / "sample_data" / "transactions.csv"

os.environ["COLUMNS"] = "120"
os.environ["NO_COLOR"] = "1"
os.environ["SOURCE_DATE_EPOCH"] = "1767225600"  # 2026-01-01: stable created_at in metadata


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/* from the current output")


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """``golden("name.txt", text)`` compares ``text`` with tests/golden/name.txt (or rewrites it)."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if request.config.getoption("--update-golden") or not path.exists():
            if not request.config.getoption("--update-golden") and os.environ.get("CI"):
                pytest.fail(f"golden file {path} is missing; run pytest --update-golden and commit it")
            path.write_text(text, encoding="utf-8")
        assert text == path.read_text(encoding="utf-8"), f"output differs from {path} (pytest --update-golden rewrites it)"

    return check


def write_csv(path: Path, header: str, rows: list[str], encoding: str = "utf-8") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding=encoding)
    return path


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    """Five customers, hand-checkable: C1 big and recent, C5 only a return."""
    return write_csv(tmp_path / "tx.csv", "customer_id,order_date,amount,order_id", [
        "C1,2025-01-10,500.00,O1",
        "C1,2025-01-20,300.00,O2",
        "C2,2025-01-05,120.00,O3",
        "C3,2024-02-01,60.00,O4",
        "C4,2025-01-25,15.50,O5",
        "C5,2025-01-26,-20.00,O6",
    ])


pytest_plugins = ["report_helpers"]  # segcli report: the sample_report fixture, once per session
