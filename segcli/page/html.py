"""The self-contained HTML report: ``page_html(results) -> str``, a pure function.

One file with everything inline (Plotly's JavaScript, the styles, the data): it opens
offline, and its Content-Security-Policy forbids any request, so a chart that tried to load
something would fail loudly instead of phoning out. The page is bilingual: every text is
written in Chinese and English and a button switches which one shows; tiers are always named
with their Chinese labels (知心, 遇心).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import polars as pl

from segcli.config import SERVICE_FIELDS
from segcli.diff import change_count_map, change_counts
from segcli.page.charts import all_figures, group_name
from segcli.page.results import LIST_ROWS, ReportResults, headline
from segcli.page.text import LANGS, column, tier_name, tr
from segcli.page.webfont import FONT_STACK, PAGE_FAMILY, font_face
from segcli.report import _display, concentration_document, concentration_tables, to_records

CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:")
STYLE = """
body{font-family:FONT_STACK;margin:0 auto;max-width:1180px;padding:16px 24px;color:#222;background:#fff}
html[data-lang=zh] .en,html[data-lang=en] .zh{display:none}
header{display:flex;justify-content:space-between;align-items:baseline;border-bottom:2px solid #b03a2e}
header p{color:#555;margin:4px 0}
button#lang-switch{font-family:inherit;font-size:14px;padding:4px 12px;cursor:pointer}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:10px;margin:16px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:10px}
.card .label{color:#555;font-size:13px}.card .value{font-size:22px;font-weight:600;margin:4px 0}
.card .note{color:#777;font-size:12px}
section{margin:22px 0}h2{font-size:18px;border-left:4px solid #b03a2e;padding-left:8px}
.chart{width:100%;min-height:300px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:14px}
footer{color:#777;font-size:12px;border-top:1px solid #ddd;padding-top:8px}
""".replace("FONT_STACK", FONT_STACK)
SCRIPT = """
(function () {
  var figs = JSON.parse(document.getElementById('segcli-figures').textContent);
  var config = {displaylogo: false, responsive: true, showLink: false};
  var root = document.documentElement;
  function draw(lang) {
    root.setAttribute('data-lang', lang);
    root.setAttribute('lang', lang === 'zh' ? 'zh-CN' : 'en');
    document.body.removeAttribute('data-charts-ready');
    var drawn = Object.keys(figs).map(function (id) {
      return Plotly.react(id, figs[id][lang].data, figs[id][lang].layout, config);
    });
    return Promise.all(drawn).then(function () { document.body.setAttribute('data-charts-ready', lang); });
  }
  document.getElementById('lang-switch').addEventListener('click', function () {
    draw(root.getAttribute('data-lang') === 'zh' ? 'en' : 'zh');
  });
  // the embedded font first (Plotly measures its labels when it draws them)
  var loaded = document.fonts ? document.fonts.load("12px 'PAGE_FAMILY'") : Promise.resolve();
  loaded.catch(function () {}).then(function () { draw(root.getAttribute('data-lang')); });
})();
""".replace("PAGE_FAMILY", PAGE_FAMILY)


def span(lang: str, text: str) -> str:
    return f'<span class="{lang}">{html.escape(text)}</span>'


def bi(key: str, **values: Any) -> str:
    """A text in both languages; CSS shows the page's one."""
    return "".join(span(lang, tr(key, lang, **values)) for lang in LANGS)


def bi_tier(tier: str, r: ReportResults) -> str:
    return "".join(span(lang, tier_name(tier, r.labels, lang)) for lang in LANGS)


def headline_cards(r: ReportResults) -> str:
    """The headline figures as cards; ``data-value`` holds the raw number (the tests read it)."""
    cards = []
    for h in headline(r):
        values = {**(h.values or {}), "zhixin": None}
        label = note = ""
        for lang in LANGS:
            values["zhixin"] = tier_name("zhixin", r.labels, lang)
            label += span(lang, tr(h.label, lang, **values))
            note += span(lang, tr(h.note, lang, **values)) if h.note else ""
        cards.append(f'<div class="card" data-figure="{h.name}" data-value="{html.escape(json.dumps(h.value))}">'
                     f'<div class="label">{label}</div><div class="value">{html.escape(h.shown)}</div>'
                     f'<div class="note">{note}</div></div>')
    return f'<section id="headline" class="cards">{"".join(cards)}</section>'


def table(df: pl.DataFrame, r: ReportResults, source: str, *, tier_cols: tuple[str, ...] = ()) -> str:
    """A table with the terminal's formatting (``summary``'s), headers in both languages;
    ``data-source`` names the document its rows come from."""
    head = "".join(f"<th>{''.join(span(lang, column(c, lang)) for lang in LANGS)}</th>" for c in df.columns)
    body = []
    for raw, shown in zip(df.iter_rows(), _display(df)):
        cells = []
        for name, value, text in zip(df.columns, raw, shown):
            if name in tier_cols and value is not None:
                cells.append(f"<td>{bi_tier(value, r)}</td>")
            elif name in ("vip_group", "cluster") and value is None:
                cells.append(f"<td>{''.join(span(lang, group_name(name, None, r, lang)) for lang in LANGS)}</td>")
            else:
                cells.append(f"<td>{html.escape(str(text))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table data-source="{source}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def section(sid: str, title: str, *parts: str) -> str:
    return f'<section id="{sid}"><h2>{title}</h2>{"".join(parts)}</section>'


def chart(cid: str) -> str:
    return f'<div class="chart" id="{cid}"></div>'




def body_sections(r: ReportResults) -> list[str]:
    """The page below the headline: every chart with the table it is drawn from."""
    s, pareto = r.summaries, concentration_tables(r.concentration)
    tier_only = s["tier"].drop(*SERVICE_FIELDS, strict=False)
    parts = [
        section("concentration", bi("sec_concentration"), chart("chart-concentration"),
                '<div class="pair">' + table(pareto["head"], r, "pareto.head") + table(pareto["top"], r, "pareto.top")
                + table(pareto["abc"], r, "pareto.abc") + "</div>"),
        section("tiers", bi("sec_tiers"), '<div class="pair">' + chart("chart-tiers") + chart("chart-revenue-tree")
                + "</div>", table(tier_only, r, "summary.tier", tier_cols=("tier",))),
        section("rfm", bi("sec_rfm"), chart("chart-rfm-grid"), table(s["rfm_segment"], r, "summary.rfm_segment")),
        section("clusters", bi("sec_clusters"), chart("chart-clusters"), table(s["cluster"], r, "summary.cluster")),
        section("vip-groups", bi("sec_vip_groups"),
                chart("chart-vip-groups"), table(s["vip_group"].drop(*SERVICE_FIELDS, strict=False), r,
                                                 "summary.vip_group")),
        section("service", bi("sec_service"),
                table(s["tier"].select("tier", "label", *SERVICE_FIELDS), r, "summary.tier", tier_cols=("tier",)),
                table(s["vip_group"].select("vip_group", *SERVICE_FIELDS), r, "summary.vip_group")),
        section("reasons", bi("sec_reasons"),
                table(s["reason"].select("reason", "customers", "customer_share", "revenue", "revenue_share"), r,
                      "summary.reason")),
    ]
    return parts + migration_sections(r) + at_risk_section(r)


def migration_sections(r: ReportResults) -> list[str]:
    """With a previous run: the matrix, the flows, the counts and the first moves of each way."""
    m = r.migration
    if m is None:
        return []
    tiers = ("from_tier", "to_tier")
    cols = ["customer_id", "from_group", "to_group", "from_monetary", "to_monetary", "recency_days", "frequency"]
    lists = []
    for kind, key in (("upgrade", "upgrades"), ("downgrade", "downgrades")):
        rows = m.lists[kind]
        if rows.height:
            lists.append(f"<h3>{bi(key, n=rows.height, k=min(LIST_ROWS, rows.height))}</h3>"
                         + table(rows.select([c for c in cols if c in rows.columns]).head(LIST_ROWS), r, f"diff.{key}"))
    return [
        section("migration", bi("sec_migration"), f"<p>{bi('previous')}: {html.escape(m.previous)}</p>",
                '<div class="pair">' + chart("chart-migration")
                + table(m.diff.matrix, r, "diff.matrix", tier_cols=tiers) + "</div>"),
        section("flow", bi("sec_flow"), chart("chart-flow"),
                table(m.flows, r, "report.flows", tier_cols=tiers)),
        section("changes", bi("sec_changes"), table(change_counts(m.diff), r, "diff.counts"), *lists),
    ]


def at_risk_section(r: ReportResults) -> list[str]:
    """VIPs flagged ``at_risk`` (assignments schema v2); nothing before the column exists."""
    if r.at_risk is None:
        return []
    z = "".join(span(lang, tr("sec_at_risk", lang, zhixin=tier_name("zhixin", r.labels, lang))) for lang in LANGS)
    if r.at_risk.height == 0:
        return [section("at-risk", z, f"<p>{bi('at_risk_none')}</p>")]
    count = f'<p data-figure="at_risk" data-value="{r.at_risk.height}">{r.at_risk.height:,}</p>'
    return [section("at-risk", z, count, table(r.at_risk.head(LIST_ROWS), r, "report.at_risk"))]


def documents(r: ReportResults) -> dict[str, Any]:
    """The figures the page shows, as ``summary --json``, ``pareto --json`` and ``diff --json``
    give them, embedded in the page for anyone (and the tests) to check against."""
    docs: dict[str, Any] = {
        "as_of": r.as_of, "inputs": r.inputs, "config_hash": r.config_hash,
        "pareto": concentration_document(r.concentration),
        "summary": {by: to_records(df) for by, df in r.summaries.items()},
        "report": {"head_share": r.head_share, "vip_limit": r.vip_limit, "candidates_cut": r.cut[0],
                   "candidates_cut_source": r.cut[1], "vip_end": r.vip_end, "rfm_grid": to_records(r.rfm_grid)},
        "diff": None,
    }
    if r.migration is not None:
        m = r.migration
        docs["diff"] = {"previous": m.previous, "matrix": to_records(m.diff.matrix),
                        **change_count_map(m.diff),
                        **{f"{k}s": to_records(m.lists[k].head(LIST_ROWS)) for k in ("upgrade", "downgrade")}}
        docs["report"]["flows"] = to_records(m.flows)
    if r.at_risk is not None:
        docs["report"]["at_risk"] = {"customers": r.at_risk.height, "first": to_records(r.at_risk.head(LIST_ROWS))}
    return docs


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no ``</`` to end it early)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).replace("</", "<\\/")


def page_html(r: ReportResults, *, lang: str = "zh", font: Path | None = None) -> str:
    """The whole page as one string: the same results (and font) give the same bytes.

    Parameters
    ----------
    r:
        What to show (:func:`segcli.page.results.build_results`).
    lang:
        The language the page opens in (``zh`` or ``en``); a button switches.
    font:
        A font with Chinese glyphs (:func:`segcli.fonts.find_cjk_font`): the page embeds the
        part of it that its texts use. Without one the page relies on the reader's fonts.
    """
    figures = {lang_: all_figures(r, lang_) for lang_ in LANGS}  # exit 78 here without the extra
    from plotly.offline import get_plotlyjs

    by_chart = {cid: {lang_: figures[lang_][cid] for lang_ in LANGS} for cid in figures[LANGS[0]]}
    title = f"segcli · {tr('title', 'zh')} / {tr('title', 'en')} · {r.as_of}"
    header = (f'<header><div><h1>{bi("title")}</h1><p>{bi("as_of")} {html.escape(r.as_of)} · {bi("inputs")}: '
              f'{html.escape(", ".join(r.inputs))} · {bi("config")} {r.config_hash[:12]}</p></div>'
              f'<button id="lang-switch" type="button">{bi("switch")}</button></header>')
    body = [
        "<body>", header, headline_cards(r), *body_sections(r),
        f'<footer>{bi("footer", version=r.version)}</footer>',
        f'<script type="application/json" id="segcli-data">{_script_json(documents(r))}</script>',
        f'<script type="application/json" id="segcli-figures">{_script_json(by_chart)}</script>',
    ]
    # every character the page shows (texts, tables, the charts' labels in both languages)
    fonts = font_face(font, title + "".join(body)) if font is not None else ""
    return "\n".join([
        "<!DOCTYPE html>",
        f'<html lang="{"zh-CN" if lang == "zh" else "en"}" data-lang="{lang}">',
        f'<head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{fonts}{STYLE}</style></head>",
        *body,
        f"<script>{get_plotlyjs()}</script>",
        f"<script>{SCRIPT}</script>",
        "</body></html>",
        "",
    ])
