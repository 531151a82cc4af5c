"""Shared by the report tests: the optional pieces (skip locally, fail in CI) and one run of
the report on the sample data beside the CLI documents it must equal."""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import ROOT, SAMPLE
from segcli.cli import app

CHROMIUM = "/usr/bin/chromium"
REQUIRED = os.environ.get("SEGCLI_REQUIRE_EXTRAS") == "1"  # set by .ci/run: a missing piece fails
ARTIFACTS = Path(os.environ.get("SEGCLI_TEST_ARTIFACTS", ROOT / "out" / "test-artifacts"))


def need(what: str, present: bool, hint: str) -> None:
    """Skip (locally) or fail (``SEGCLI_REQUIRE_EXTRAS=1``, as in CI) when ``what`` is missing."""
    if present:
        return
    message = f"{what} is not installed: {hint}"
    if REQUIRED:
        pytest.fail(f"{message} (SEGCLI_REQUIRE_EXTRAS=1: required)")
    pytest.skip(message)


def need_module(name: str, hint: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        need(f"the Python package {name}", False, hint)
        raise


def need_plotly() -> None:
    need_module("plotly", "pip install -e '.[report]'  (make report-deps)")


def need_chromium() -> None:
    need_module("playwright.sync_api", "pip install -e '.[browser]'  (make report-deps)")
    need("Chromium", Path(CHROMIUM).exists() or shutil.which("chromium") is not None,
         "apt-get install chromium  (make report-deps)")


def run(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.stderr
    return result


class Tables(HTMLParser):
    """``<table data-source=...>`` of a page -> rows of cell texts (the English span where a
    cell is bilingual), and the headline cards' ``data-value``."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[list[str]]]] = {}
        self.cards: dict[str, Any] = {}
        self._rows: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("data-source"):
            self._rows = []
            self.tables.setdefault(str(a["data-source"]), []).append(self._rows)
        elif a.get("data-figure") and a.get("data-value") is not None:
            self.cards[str(a["data-figure"])] = json.loads(str(a["data-value"]))
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell = []
        elif tag == "span" and self._cell is not None:
            self._skip += a.get("class") == "zh"

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._rows = None
        elif tag in ("td", "th") and self._cell is not None and self._rows is not None:
            self._rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "span" and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._skip:
            self._cell.append(data)


class Shown(HTMLParser):
    """The text a page shows: its text nodes outside ``<script>`` and ``<style>``, and every
    string of the charts' figures (``<script id="segcli-figures">``: titles, ticks, labels)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.figures: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._in = "figures" if dict(attrs).get("id") == "segcli-figures" else tag

    def handle_endtag(self, tag: str) -> None:
        if self._in == "figures" and tag == "script":
            self.parts.extend(strings(json.loads("".join(self.figures).replace("<\\/", "</"))))
        if tag in ("script", "style"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in is None:
            self.parts.append(data)
        elif self._in == "figures":
            self.figures.append(data)


def strings(value: Any) -> list[str]:
    """Every string in a JSON document, keys aside."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def shown_text(page: str) -> str:
    parser = Shown()
    parser.feed(page)
    return "".join(parser.parts)


FONT_URL = re.compile(r"url\(data:font/woff;base64,([A-Za-z0-9+/=]+)\)")


def embedded_font(page: str) -> Any:
    """The page's one ``@font-face`` font, decoded (a fontTools ``TTFont``)."""
    from fontTools.ttLib import TTFont

    assert page.count("@font-face") == 1 and len(FONT_URL.findall(page)) == 1
    return TTFont(io.BytesIO(base64.b64decode(FONT_URL.findall(page)[0])))


def page_data(text: str) -> dict[str, Any]:
    """The documents embedded in a page (``<script id="segcli-data">``)."""
    start = text.index('<script type="application/json" id="segcli-data">')
    body = text[text.index(">", start) + 1:text.index("</script>", start)]
    return json.loads(body.replace("<\\/", "</"))


@pytest.fixture(scope="session")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sample's December report against November, and the CLI documents of the same run."""
    need_plotly()
    d = tmp_path_factory.mktemp("report")
    prev, curr, page = d / "2025-11.parquet", d / "2025-12.parquet", d / "report.html"
    run("segment", str(SAMPLE), "--as-of", "2025-11-30", "-o", str(prev), "-q")
    run("segment", str(SAMPLE), "--previous", str(prev), "-o", str(curr), "-q")
    run("report", str(SAMPLE), "--previous", str(prev), "-o", str(page), "--lang", "zh", "-q")
    docs = {
        "summary": {by: json.loads(run("summary", str(curr), "--by", by, "--json").stdout)
                    for by in ("tier", "vip_group", "cluster", "rfm_segment")},
        "pareto": json.loads(run("pareto", str(SAMPLE), "--json", "-q").stdout),
        "diff": json.loads(run("diff", str(prev), str(curr), "--json").stdout),
    }
    return {"dir": d, "prev": prev, "curr": curr, "page": page, "html": page.read_text(encoding="utf-8"), "docs": docs}
