"""The report as Markdown for a wiki: the same sections and tables as the HTML page, in one
language, with the PNG charts of :mod:`segcli.page.png` as images beside the file."""

from __future__ import annotations

import polars as pl
from tabulate import tabulate

from segcli.config import SERVICE_FIELDS
from segcli.diff import change_counts
from segcli.page.results import LIST_ROWS, ReportResults, headline
from segcli.page.text import column, tier_name, tr
from segcli.report import _display, concentration_tables

TIER_COLUMNS = ("tier", "from_tier", "to_tier")


def md_table(df: pl.DataFrame, r: ReportResults, lang: str) -> str:
    """A GitHub table with ``summary``'s formatting; tiers named by their Chinese labels."""
    rows = []
    for raw, shown in zip(df.iter_rows(), _display(df)):
        rows.append([tier_name(v, r.labels, lang) if c in TIER_COLUMNS and v is not None else s
                     for c, v, s in zip(df.columns, raw, shown)])
    return tabulate(rows, headers=[column(c, lang) for c in df.columns], tablefmt="github", disable_numparse=True)


def page_markdown(r: ReportResults, *, lang: str, images: dict[str, str]) -> str:
    """The Markdown text; ``images`` maps chart names to the PNG file names beside it."""
    z = tier_name("zhixin", r.labels, lang)
    figures = [[tr(h.label, lang, zhixin=z, **(h.values or {})), h.shown,
                tr(h.note, lang, zhixin=z, **(h.values or {})) if h.note else ""] for h in headline(r)]
    s, pareto = r.summaries, concentration_tables(r.concentration)
    out = [f"# {tr('title', lang)}", "",
           f"{tr('as_of', lang)} {r.as_of} · {tr('inputs', lang)}: {', '.join(r.inputs)} · "
           f"{tr('config', lang)} {r.config_hash[:12]}", "",
           tabulate(figures, headers=["", "", ""], tablefmt="github", disable_numparse=True), ""]

    def part(key: str, image: str | None, *tables: pl.DataFrame, **values: object) -> None:
        out.extend([f"## {tr(key, lang, zhixin=z, **values)}", ""])
        if image in images:
            out.extend([f"![{tr(key, lang, zhixin=z)}]({images[image]})", ""])
        for t in tables:
            out.extend([md_table(t, r, lang), ""])

    part("sec_concentration", "concentration", pareto["head"], pareto["top"], pareto["abc"])
    part("sec_tiers", "tiers", s["tier"].drop(*SERVICE_FIELDS, strict=False))
    part("sec_rfm", "rfm", s["rfm_segment"])
    part("sec_clusters", None, s["cluster"])
    part("sec_vip_groups", None, s["vip_group"].drop(*SERVICE_FIELDS, strict=False))
    part("sec_service", None, s["tier"].select("tier", "label", *SERVICE_FIELDS),
         s["vip_group"].select("vip_group", *SERVICE_FIELDS))
    part("sec_reasons", None, s["reason"].select("reason", "customers", "customer_share", "revenue", "revenue_share"))
    if r.migration is not None:
        m = r.migration
        part("sec_migration", "migration", m.diff.matrix)
        part("sec_flow", None, m.flows)
        part("sec_changes", None, change_counts(m.diff))
        cols = ["customer_id", "from_group", "to_group", "from_monetary", "to_monetary", "recency_days", "frequency"]
        for kind, key in (("upgrade", "upgrades"), ("downgrade", "downgrades")):
            rows = m.lists[kind]
            if rows.height:
                out.extend([f"### {tr(key, lang, n=rows.height, k=min(LIST_ROWS, rows.height))}", "",
                            md_table(rows.select([c for c in cols if c in rows.columns]).head(LIST_ROWS), r, lang), ""])
    if r.at_risk is not None:
        part("sec_at_risk", None, r.at_risk.head(LIST_ROWS))
    out.append(tr("footer", lang, version=r.version))
    return "\n".join(out) + "\n"
