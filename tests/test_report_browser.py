"""The HTML report in a real browser (issue 15): headless Chromium with the network blocked
opens the file, every chart renders with the right number of marks and the CLI's numbers, no
console error, no request leaves the page, and the Chinese tier labels are on screen, drawn with
the font the page embeds (also where the machine has no Chinese font)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from report_helpers import ARTIFACTS, CHROMIUM, embedded_font, need_chromium, page_data

pytestmark = pytest.mark.browser

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCAL = ("file://", "data:", "blob:", "about:")  # what does not leave the machine
ZHIXIN_CARD = "#headline .card[data-figure=vip_customers] .label .zh"  # 知心 客户


@pytest.fixture(scope="module")
def browser_page(sample_report: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The sample report opened offline; every request and console message recorded."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    seen: dict[str, list[Any]] = {"requests": [], "blocked": [], "errors": []}
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=ARGS, headless=True, offline=True,
            viewport={"width": 1280, "height": 900}, device_scale_factor=1)

        def block(route: Any) -> None:
            if not route.request.url.startswith(LOCAL):
                seen["blocked"].append(route.request.url)
                route.abort()
            else:
                route.continue_()

        context.route("**/*", block)
        page = context.new_page()
        page.on("request", lambda r: seen["requests"].append(r.url))
        page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: seen["errors"].append(str(e)))
        page.goto(sample_report["page"].as_uri())
        page.wait_for_selector("body[data-charts-ready=zh]", timeout=60_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report-zh.png"), full_page=True)
        yield {**sample_report, "page": page, "page_file": sample_report["page"], "seen": seen,
               "data": page_data(sample_report["html"]), "playwright": pw}
        context.close()


def count(page: Any, selector: str) -> int:
    return int(page.locator(selector).count())


def test_no_request_leaves_the_page_and_no_console_error(browser_page: dict[str, Any]) -> None:
    seen = browser_page["seen"]
    assert seen["blocked"] == []
    assert [u for u in seen["requests"] if not u.startswith(LOCAL)] == []
    assert seen["requests"][0] == browser_page["page"].url
    assert seen["errors"] == []


def test_every_chart_renders_with_its_marks(browser_page: dict[str, Any]) -> None:
    page, data = browser_page["page"], browser_page["data"]
    summary, flows = data["summary"], data["report"]["flows"]
    assert count(page, "#chart-concentration .scatterlayer .trace") == 3  # curve, equality, end of the VIP tier
    assert count(page, "#chart-concentration .shapelayer path") == 3  # head share, head customers, VIP limit
    assert count(page, "#chart-tiers .bars .point") == 2 * len(summary["tier"])
    assert count(page, "#chart-clusters .bars .point") == 2 * len(summary["cluster"])
    assert count(page, "#chart-vip-groups .bars .point") == 2 * len(summary["vip_group"])
    assert count(page, "#chart-revenue-tree .slice") == 1 + len(summary["tier"]) + len(summary["vip_group"])
    assert count(page, "#chart-rfm-grid .hm image") == 1
    assert count(page, "#chart-rfm-grid .heatmaplayer text") == len(data["report"]["rfm_grid"]) == 25
    assert count(page, "#chart-migration .heatmaplayer text") == len(data["diff"]["matrix"])
    nodes = {(f["from_tier"], f["from_group"]) for f in flows}, {(f["to_tier"], f["to_group"]) for f in flows}
    assert count(page, "#chart-flow .sankey-node") == len(nodes[0]) + len(nodes[1])
    assert count(page, "#chart-flow .sankey-link") == len(flows)


def test_the_charts_plot_the_cli_numbers(browser_page: dict[str, Any]) -> None:
    page, docs = browser_page["page"], browser_page["docs"]
    bars = page.evaluate("Array.from(document.getElementById('chart-tiers').data, t => Array.from(t.y))")
    tiers = docs["summary"]["tier"]
    assert bars == [[r["customer_share"] * 100 for r in tiers], [r["revenue_share"] * 100 for r in tiers]]
    grid = page.evaluate("document.getElementById('chart-rfm-grid').data[0].z.map(r => Array.from(r))")
    segments = {r["rfm_segment"]: r["customers"] for r in docs["summary"]["rfm_segment"]}
    cells = browser_page["data"]["report"]["rfm_grid"]
    assert sum(map(sum, grid)) == sum(segments.values())
    for name, customers in segments.items():  # the grid's cells of a segment add up to its summary row
        assert sum(c["customers"] for c in cells if c["segment"] == name) == customers
    flow = page.evaluate("Array.from(document.getElementById('chart-flow').data[0].link.value)")
    assert sum(flow) == sum(m["customers"] for m in docs["diff"]["matrix"])
    head = next(h for h in docs["pareto"]["head"] if h["revenue_share"] == 0.8)
    lines = page.evaluate("document.getElementById('chart-concentration').layout.shapes.map(s => [s.x0, s.y0])")
    assert [head["customer_share"] * 100, 0] in lines and [0, 80.0] in lines


def platform_fonts(page: Any, selector: str) -> list[dict[str, Any]]:
    """The fonts Chromium drew the first element of ``selector`` with (DevTools protocol)."""
    cdp = page.context.new_cdp_session(page)
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    assert node, selector
    cdp.send("CSS.enable")
    fonts: list[dict[str, Any]] = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    cdp.detach()
    return fonts


def drawn_with_the_embedded_font(page: Any, html: str) -> None:
    """知心 in a headline card and on a chart's axis: every glyph from the page's own font."""
    family = embedded_font(html)["name"].getDebugName(1)
    for selector in (ZHIXIN_CARD, "#chart-tiers .xtick text"):
        used = platform_fonts(page, selector)
        assert used and all(f["isCustomFont"] and f["familyName"] == family and f["glyphCount"] > 0
                            for f in used), (selector, used)


def test_chinese_tier_labels_are_shown_and_drawn_with_the_embedded_font(browser_page: dict[str, Any]) -> None:
    page = browser_page["page"]
    ticks = page.locator("#chart-tiers .xtick text").all_text_contents()
    assert ticks == ["知心", "遇心"]
    assert "知心" in page.locator("#chart-revenue-tree").text_content()
    assert page.locator("#headline").inner_text().count("知心") >= 3
    assert page.locator(ZHIXIN_CARD).inner_text() == "知心 客户"
    # which font Chromium drew the labels with: the page's @font-face, not a system font
    drawn_with_the_embedded_font(page, browser_page["html"])


def test_a_machine_without_a_chinese_font_draws_the_labels_with_the_embedded_font(
        browser_page: dict[str, Any], tmp_path: Path) -> None:
    import matplotlib

    conf = tmp_path / "fonts.conf"  # fontconfig that knows matplotlib's DejaVu fonts and nothing else
    conf.write_text(f"<?xml version=\"1.0\"?><fontconfig><dir>{matplotlib.get_data_path()}/fonts/ttf</dir>"
                    f"<cachedir>{tmp_path / 'cache'}</cachedir></fontconfig>", encoding="utf-8")
    browser = browser_page["playwright"].chromium.launch(
        executable_path=CHROMIUM, args=ARGS, headless=True, env={**os.environ, "FONTCONFIG_FILE": str(conf)})
    try:
        page = browser.new_context(offline=True).new_page()
        page.set_content('<p lang="zh-CN" style="font-family:sans-serif">知心</p>')  # the machine's own fonts
        assert all(not f["isCustomFont"] and f["familyName"].startswith("DejaVu") for f in platform_fonts(page, "p"))
        page.goto(browser_page["page_file"].as_uri())
        page.wait_for_selector("body[data-charts-ready=zh]", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "report-zh-no-system-cjk-font.png"))
        drawn_with_the_embedded_font(page, browser_page["html"])
    finally:
        browser.close()


def test_the_page_switches_to_english_and_keeps_the_chinese_tier_labels(browser_page: dict[str, Any]) -> None:
    page = browser_page["page"]
    page.click("#lang-switch")
    page.wait_for_selector("body[data-charts-ready=en]", timeout=30_000)
    try:
        assert page.locator("#concentration h2").inner_text() == "Revenue concentration"
        assert page.locator("#chart-tiers .xtick text").all_text_contents() == ["知心 VIP", "遇心 standard"]
        assert "Revenue concentration" in page.locator("#chart-concentration .gtitle").text_content()
        page.screenshot(path=str(ARTIFACTS / "report-en.png"), full_page=True)
        assert browser_page["seen"]["errors"] == []
    finally:
        page.click("#lang-switch")
        page.wait_for_selector("body[data-charts-ready=zh]", timeout=30_000)
    assert page.locator("#concentration h2").inner_text() == "收入集中度"
