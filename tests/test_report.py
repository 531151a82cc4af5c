"""segcli report (issue 15): every number on the page is the summary/pareto/diff --json one;
Markdown with PNG charts that really show Chinese; the optional pieces fail clearly."""

from __future__ import annotations

import dataclasses
import json
import struct
import sys
import unicodedata
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

from conftest import SAMPLE
from report_helpers import FONT_URL, Tables, embedded_font, need, need_plotly, page_data, run, shown_text
from segcli import fonts
from segcli.cli import app
from segcli.config import load_config
from segcli.diff import tier_diff, tier_flows
from segcli.errors import ConfigError
from segcli.io import read_assignments
from segcli.page.results import build_results
from segcli.page.webfont import PAGE_FAMILY
from segcli.pipeline import segment


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_report_embeds_exactly_the_summary_pareto_and_diff_json_documents(sample_report: dict[str, Any]) -> None:
    data, docs = page_data(sample_report["html"]), sample_report["docs"]
    assert data["pareto"] == docs["pareto"]
    for by, records in docs["summary"].items():
        assert data["summary"][by] == records, by
    assert data["diff"]["matrix"] == docs["diff"]["matrix"]
    assert data["diff"]["counts"] == docs["diff"]["counts"]
    assert data["diff"]["upgrades"] == docs["diff"]["upgrades"][:20]
    assert data["diff"]["downgrades"] == docs["diff"]["downgrades"][:20]


def test_headline_figures_are_the_cli_figures(sample_report: dict[str, Any]) -> None:
    page = Tables()
    page.feed(sample_report["html"])
    pareto, tiers = sample_report["docs"]["pareto"], {r["tier"]: r for r in sample_report["docs"]["summary"]["tier"]}
    curr, _ = read_assignments(str(sample_report["curr"]))
    head = next(h for h in pareto["head"] if h["revenue_share"] == 0.8)
    assert page.cards == {
        "customers": pareto["customers"], "total_revenue": pareto["total_revenue"],
        "head_customer_share": head["customer_share"], "gini": pareto["gini"],
        "vip_customers": tiers["zhixin"]["customers"], "vip_revenue_share": tiers["zhixin"]["revenue_share"],
        "vip_limit": int(0.2 * pareto["customers"]),
        "candidates_cut": curr.filter(pl.col("reason") == "capacity_cut").height,
        "at_risk": curr.filter((pl.col("tier") == "zhixin") & pl.col("at_risk")).height,  # schema 2
    }
    # what a reader sees in the cards is those numbers
    html = sample_report["html"]
    for shown in (f'{pareto["customers"]:,}', f'{pareto["total_revenue"]:,.2f}', f'{pareto["gini"]:.4f}',
                  f'{tiers["zhixin"]["revenue_share"]:.1%}'):
        assert f'<div class="value">{shown}</div>' in html


@pytest.mark.parametrize("source,by", [("summary.tier", "tier"), ("summary.vip_group", "vip_group"),
                                       ("summary.cluster", "cluster"), ("summary.rfm_segment", "rfm_segment")])
def test_table_cells_show_the_summary_json_numbers(sample_report: dict[str, Any], source: str, by: str) -> None:
    page = Tables()
    page.feed(sample_report["html"])
    table = page.tables[source][0]
    header, rows = table[0], table[1:]
    records = sample_report["docs"]["summary"][by]
    assert len(rows) == len(records)
    shown = {"customers": lambda v: f"{v:,}", "revenue": lambda v: f"{v:,.2f}",
             "cust_share": lambda v: f"{v:.1%}", "rev_share": lambda v: f"{v:.1%}"}
    keys = {"customers": "customers", "revenue": "revenue", "cust_share": "customer_share", "rev_share": "revenue_share"}
    for row, record in zip(rows, records):
        for name, fmt in shown.items():
            assert row[header.index(name)] == fmt(record[keys[name]]), (by, name, record[by])


def test_migration_tables_show_the_diff_json_numbers(sample_report: dict[str, Any]) -> None:
    page = Tables()
    page.feed(sample_report["html"])
    counts = page.tables["diff.counts"][0]
    assert {row[0]: int(row[1].replace(",", "")) for row in counts[1:]} == sample_report["docs"]["diff"]["counts"]
    matrix = page.tables["diff.matrix"][0][1:]
    assert [int(r[2].replace(",", "")) for r in matrix] == [m["customers"] for m in sample_report["docs"]["diff"]["matrix"]]
    assert [r[3] for r in matrix] == [f'{m["revenue"]:,.2f}' for m in sample_report["docs"]["diff"]["matrix"]]


def test_flows_between_groups_add_up_to_the_diff_matrix(sample_report: dict[str, Any]) -> None:
    d = tier_diff(read_assignments(str(sample_report["prev"]))[0], read_assignments(str(sample_report["curr"]))[0])
    summed = (tier_flows(d).group_by("from_tier", "to_tier").agg(pl.col("customers").sum())
              .sort("from_tier", "to_tier", descending=True))
    assert summed.to_dicts() == d.matrix.select("from_tier", "to_tier", "customers").to_dicts()
    assert page_data(sample_report["html"])["report"]["flows"] == \
        [{k: v for k, v in r.items()} for r in tier_flows(d).to_dicts()]


def test_gini_head_and_vip_revenue_match_an_independent_pandas_computation(sample_report: dict[str, Any]) -> None:
    tx = pd.read_csv(SAMPLE)
    per_customer = tx.groupby("customer_id")["amount"].sum().clip(lower=0).sort_values()
    x = per_customer.to_numpy()
    n = len(x)
    gini = ((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (n * x.sum())
    cum = np.cumsum(x[::-1]) / x.sum()
    need_80 = int(np.argmax(cum >= 0.8 - 1e-12)) + 1
    cards = Tables()
    cards.feed(sample_report["html"])
    assert cards.cards["customers"] == n
    assert cards.cards["gini"] == pytest.approx(gini, abs=1e-9)
    assert cards.cards["total_revenue"] == pytest.approx(x.sum(), abs=1e-6)
    assert cards.cards["head_customer_share"] == pytest.approx(need_80 / n)
    curr, _ = read_assignments(str(sample_report["curr"]))
    vip_ids = set(curr.filter(pl.col("tier") == "zhixin")["customer_id"].to_list())
    net = tx.groupby("customer_id")["amount"].sum()
    assert cards.cards["vip_revenue_share"] == pytest.approx(net[net.index.isin(vip_ids)].sum() / net.sum(), abs=1e-12)


def test_the_page_is_one_offline_file_with_chinese_tier_labels(sample_report: dict[str, Any]) -> None:
    html = sample_report["html"]
    assert "知心" in html and "遇心" in html
    assert "default-src 'none'" in html  # the page itself forbids every request
    from plotly.offline import get_plotlyjs

    assert f"<script>{get_plotlyjs()}</script>" in html  # plotly.js inline, whole
    ours = html.replace(get_plotlyjs(), "")  # (its code names URLs it never loads for these chart types)
    ours = FONT_URL.sub("", ours)  # the one url(): the embedded font, a data: URL
    for remote in ("https://", "http://", "src=", "<link", "@import", "url("):
        assert remote not in ours, remote
    for chart in ("chart-concentration", "chart-tiers", "chart-revenue-tree", "chart-rfm-grid", "chart-clusters",
                  "chart-vip-groups", "chart-migration", "chart-flow"):
        assert f'<div class="chart" id="{chart}"></div>' in html


def test_the_same_run_gives_the_same_page_byte_for_byte(tmp_path: Path, small_csv: Path) -> None:
    need_plotly()
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    run("report", str(small_csv), "-o", str(a), "-q")
    run("report", str(small_csv), "-o", str(b), "-q")
    assert a.read_bytes() == b.read_bytes()
    try:  # the embedded font's bytes too, whenever there is a font to embed
        fonts.find_cjk_font(None)
        assert a.read_text(encoding="utf-8").count("@font-face") == 1
    except ConfigError:
        pass
    assert 'id="at-risk"' in a.read_text(encoding="utf-8")  # schema 2: the at_risk column is there


def test_at_risk_vips_are_listed_once_the_assignments_have_the_column(small_csv: Path) -> None:
    need_plotly()
    from segcli.page.html import page_html

    cfg = load_config(None)
    seg = segment([str(small_csv)], cfg)
    flagged = seg.assignments.with_columns(at_risk=pl.col("customer_id") == "C1")
    results = build_results(dataclasses.replace(seg, assignments=flagged), inputs=[str(small_csv)])
    assert results.at_risk is not None and results.at_risk["customer_id"].to_list() == ["C1"]
    page = page_html(results)
    assert 'id="at-risk"' in page and 'data-figure="at_risk" data-value="1"' in page
    assert page_data(page)["report"]["at_risk"]["customers"] == 1


def test_candidates_cut_by_the_limit_are_the_capacity_cut_rows(tmp_path: Path, small_csv: Path) -> None:
    need_plotly()
    config = tmp_path / "cap.toml"
    config.write_text("[tiers]\ncapacity = 1\nmax_share = 1.0\nkeep_share = 0.99\n[pareto]\nhead_share = 0.95\n", encoding="utf-8")
    out, page = tmp_path / "a.csv", tmp_path / "r.html"
    run("segment", str(small_csv), "-c", str(config), "-o", str(out), "-q")
    run("report", str(small_csv), "-c", str(config), "-o", str(page), "-q")
    cut = pl.read_csv(out).filter(pl.col("reason") == "capacity_cut").height
    assert cut >= 1
    report = page_data(page.read_text(encoding="utf-8"))["report"]
    assert (report["candidates_cut"], report["candidates_cut_source"]) == (cut, "run record")  # issue 14 records it
    assert report["vip_limit"] == 1


def test_html_report_without_the_charting_extra_is_exit_78(tmp_path: Path, small_csv: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    out = tmp_path / "r.html"
    result = invoke("report", str(small_csv), "-o", str(out))
    assert result.exit_code == 78
    assert result.stderr.startswith("segcli: error: the HTML report needs the charting extra")
    assert "pip install 'segcli[report]'" in result.stderr
    assert not out.exists()


def test_report_to_another_suffix_is_a_usage_error(tmp_path: Path, small_csv: Path) -> None:
    result = invoke("report", str(small_csv), "-o", str(tmp_path / "r.pdf"))
    assert result.exit_code == 2
    assert "a report is .html" in result.stderr


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def cjk_font() -> Path:
    try:
        return fonts.find_cjk_font(None, text="知心遇心")
    except Exception:  # noqa: BLE001 - reported by need()
        need("a font with Chinese glyphs", False, "apt-get install fonts-wqy-microhei  (make report-deps)")
        raise


def test_markdown_report_has_tables_and_png_charts_of_the_stated_size(tmp_path: Path) -> None:
    cjk_font()
    prev, md = tmp_path / "prev.parquet", tmp_path / "report.md"
    run("segment", str(SAMPLE), "--as-of", "2025-11-30", "-o", str(prev), "-q")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run("report", str(SAMPLE), "--previous", str(prev), "-o", str(md))
    assert not [w for w in caught if "missing from" in str(w.message)], "a glyph was drawn as a tofu box"
    text = md.read_text(encoding="utf-8")
    for chart in ("concentration", "tiers", "rfm", "migration"):
        png = tmp_path / f"report.{chart}.png"
        assert f"](report.{chart}.png)" in text
        assert png_size(png) == (1000, 600)
    assert "| 知心 " in text and "| 遇心 " in text
    assert "segcli: wrote" in result.stderr


def glyph(font: Path, char: str) -> np.ndarray:
    """``char`` drawn alone with ``font``: a bitmap (the pixel check for tofu)."""
    from matplotlib.ft2font import FT2Font

    face = FT2Font(str(font))
    face.set_size(48, 72)
    face.set_text(char, 0.0)
    face.draw_glyphs_to_bitmap()
    return np.asarray(face.get_image())


def test_the_chart_font_draws_real_chinese_glyphs_not_tofu() -> None:
    font = cjk_font()
    import matplotlib

    latin = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    drawn = {c: glyph(font, c) for c in "知心遇"}
    with pytest.warns(UserWarning, match="missing from font"):  # what a tofu box looks like to matplotlib
        tofu = {c: glyph(latin, c) for c in "知心遇"}
    # a font without the glyph draws the same box for every character; a real one does not
    assert all(np.array_equal(tofu["知"], t) for t in tofu.values())
    assert not np.array_equal(drawn["知"], drawn["心"]) and not np.array_equal(drawn["心"], drawn["遇"])
    assert all(drawn[c].sum() > 0 for c in drawn)
    assert fonts.missing_glyphs(font, "知心遇心") == []


def test_markdown_without_any_chinese_font_says_so_with_exit_78(tmp_path: Path, small_csv: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fonts, "_fontconfig_candidates", lambda: [])
    monkeypatch.setattr(fonts, "_matplotlib_candidates", lambda: [])
    result = invoke("report", str(small_csv), "-o", str(tmp_path / "r.md"))
    assert result.exit_code == 78
    assert result.stderr.startswith("segcli: error: no font with Chinese glyphs found for the PNG charts")
    assert "--font" in result.stderr
    assert not (tmp_path / "r.md").exists()


@pytest.mark.parametrize("suffix", [".md", ".html"])
def test_a_font_without_chinese_glyphs_is_refused(tmp_path: Path, small_csv: Path, suffix: str) -> None:
    import matplotlib

    if suffix == ".html":
        need_plotly()  # without the extra, the page is refused for that first (same exit 78)

    latin = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    result = invoke("report", str(small_csv), "-o", str(tmp_path / f"r{suffix}"), "--font", str(latin))
    assert result.exit_code == 78
    assert "no glyph for" in result.stderr and "tofu" in result.stderr
    assert not (tmp_path / f"r{suffix}").exists()


def cjk(text: str) -> set[str]:
    """The CJK characters of ``text``: ideographs and full-width punctuation such as （）：，"""
    return {c for c in text if unicodedata.east_asian_width(c) in ("W", "F")}


def test_the_page_embeds_one_subset_font_with_a_glyph_for_every_chinese_character_it_shows(
        sample_report: dict[str, Any]) -> None:
    from fontTools.ttLib import TTFont

    source = TTFont(cjk_font(), fontNumber=0, lazy=True)  # the font fontconfig finds, as the CLI did
    page = sample_report["html"]
    font = embedded_font(page)  # exactly one @font-face, a data: URL
    shown = cjk(shown_text(page))  # the page's text nodes and its charts' strings, both languages
    assert {"知", "心", "遇", "客", "户", "收", "入"} <= shown and len(shown) > 80
    cmap = font.getBestCmap()
    assert sorted(c for c in shown if ord(c) not in cmap) == []
    # a subset, not the whole font
    assert font["maxp"].numGlyphs < source["maxp"].numGlyphs / 20
    assert len(cmap) < len(source.getBestCmap()) / 20
    # the source font's names and dates, never the time of the run
    assert font["name"].getDebugName(6) == source["name"].getDebugName(6)
    assert font["head"].modified == source["head"].modified and "FFTM" not in font
    # the page's styles and every chart ask for it first
    assert f"@font-face{{font-family:'{PAGE_FAMILY}';" in page
    assert f"body{{font-family:'{PAGE_FAMILY}'," in page
    figures = json.loads(page.split('id="segcli-figures">', 1)[1].split("</script>", 1)[0].replace("<\\/", "</"))
    families = {f[lang]["layout"]["font"]["family"] for f in figures.values() for lang in ("zh", "en")}
    assert len(families) == 1 and families.pop().startswith(f"'{PAGE_FAMILY}', ")


def test_html_report_embeds_the_font_given_with_font(tmp_path: Path, small_csv: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    need_plotly()
    from fontTools.ttLib import TTFont

    source = cjk_font()
    monkeypatch.setattr(fonts, "_fontconfig_candidates", lambda: [])  # only --font can give one
    monkeypatch.setattr(fonts, "_matplotlib_candidates", lambda: [])
    out = tmp_path / "r.html"
    result = invoke("report", str(small_csv), "-o", str(out), "--font", str(source))
    assert result.exit_code == 0, result.stderr
    assert "warning: no font" not in result.stderr
    font = embedded_font(out.read_text(encoding="utf-8"))
    assert font["name"].getDebugName(6) == TTFont(source, fontNumber=0, lazy=True)["name"].getDebugName(6)


def test_html_report_without_any_chinese_font_is_written_with_a_warning(tmp_path: Path, small_csv: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    need_plotly()
    monkeypatch.setattr(fonts, "_fontconfig_candidates", lambda: [])
    monkeypatch.setattr(fonts, "_matplotlib_candidates", lambda: [])
    out = tmp_path / "r.html"
    result = invoke("report", str(small_csv), "-o", str(out))
    assert result.exit_code == 0
    assert "segcli: warning: no font with Chinese glyphs found to embed in the HTML page" in result.stderr
    assert "relies on the reader's fonts" in result.stderr
    assert "apt-get install fonts-wqy-microhei" in result.stderr and "--font PATH" in result.stderr
    page = out.read_text(encoding="utf-8")
    assert "@font-face" not in page and "知心" in page
    assert "warning" not in invoke("report", str(small_csv), "-o", str(out), "-q").stderr


def test_pareto_plot_names_the_vip_limit_in_chinese(tmp_path: Path, small_csv: Path) -> None:
    font = cjk_font()
    from segcli.pareto import concentration
    from segcli.plot import CurveMarks, chart_style, draw_concentration, new_figure

    c = concentration(np.array([500, 300, 200]), np.array(["A", "A", "B"]), 0)
    with chart_style(font):
        _fig, ax = new_figure(8, 5.5, 110)
        draw_concentration(ax, ([0, 1 / 3, 2 / 3, 1], [0, 0.5, 0.8, 1]), CurveMarks(c, 0.8, 1, {"zhixin": "知心"}),
                           "both")
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("知心 VIP 名额上限 L = 1" in t for t in legend)
    assert any(t.startswith("客户（按净收入从高到低） / customers") for t in legend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert invoke("pareto", str(small_csv), "--plot", str(tmp_path / "p.png")).exit_code == 0
    assert not [w for w in caught if "missing from" in str(w.message)]


def test_pareto_plot_without_a_chinese_font_warns_and_keeps_to_english(tmp_path: Path, small_csv: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fonts, "_fontconfig_candidates", lambda: [])
    monkeypatch.setattr(fonts, "_matplotlib_candidates", lambda: [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke("pareto", str(small_csv), "--plot", str(tmp_path / "p.png"))
    assert result.exit_code == 0
    assert "segcli: warning: no font with Chinese glyphs found" in result.stderr
    assert not [w for w in caught if "missing from" in str(w.message)]


def test_report_has_help_with_an_example() -> None:
    result = invoke("report", "--help")
    assert result.exit_code == 0
    assert "Example: segcli report" in result.stdout
