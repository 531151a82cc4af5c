"""The report's interactive charts as Plotly figures (the optional ``segcli[report]`` extra).

Each builder takes :class:`~segcli.page.results.ReportResults` and a language and returns a
figure as a plain dict (``data`` and ``layout``), which the page hands to ``Plotly.react``.
The numbers plotted are the summary, pareto and diff figures themselves.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from segcli.errors import ConfigError
from segcli.page.results import Migration, ReportResults, matrix_cells
from segcli.page.text import tier_name, tr
from segcli.page.webfont import FONT_STACK
from segcli.plot import CURVE, EQUAL, HEAD, VIP
from segcli.tiers import YUXIN, ZHIXIN

TIER_COLOURS = {ZHIXIN: "#b03a2e", YUXIN: "#5d6d7e", "(new)": "#27ae60", "(departed)": "#aab7b8"}
LINK_COLOURS = {ZHIXIN: "rgba(176,58,46,0.35)", YUXIN: "rgba(93,109,126,0.25)", "(new)": "rgba(39,174,96,0.4)"}
Figure = dict[str, Any]


def plotly_go() -> Any:
    """``plotly.graph_objects``, or exit 78 naming the extra to install."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise ConfigError("the HTML report needs the charting extra, which is not installed",
                          ["pip install 'segcli[report]'  (Plotly; or write Markdown with PNG charts: -o report.md)"]
                          ) from None
    return go


def _layout(title: str, height: int = 420, **more: Any) -> dict[str, Any]:
    return {"title": {"text": title, "font": {"size": 15}}, "height": height, "template": "none",
            "font": {"family": FONT_STACK, "size": 12}, "margin": {"l": 70, "r": 30, "t": 60, "b": 60}, **more}


def _figure(data: list[Any], layout: dict[str, Any]) -> Figure:
    go = plotly_go()
    fig = go.Figure(data=data, layout=layout).to_plotly_json()
    return {"data": fig["data"], "layout": fig["layout"]}


def concentration_figure(r: ReportResults, lang: str) -> Figure:
    """Curve, equality line, the head line, the 知心 limit L and where the 知心 tier ends."""
    go = plotly_go()
    c, zhixin = r.concentration, tier_name(ZHIXIN, r.labels, lang)
    need, need_share = c.need(r.head_share)
    x, y = ([v * 100 for v in vs] for vs in r.curve)
    data = [go.Scatter(x=x, y=y, mode="lines", name=tr("curve", lang), line={"color": CURVE, "width": 2.5}),
            go.Scatter(x=[0, 100], y=[0, 100], mode="lines", name=tr("equal", lang),
                       line={"color": EQUAL, "dash": "dash", "width": 1})]
    shapes = [{"type": "line", "x0": 0, "x1": 100, "y0": r.head_share * 100, "y1": r.head_share * 100,
               "line": {"color": HEAD, "width": 1}},
              {"type": "line", "x0": need_share * 100, "x1": need_share * 100, "y0": 0, "y1": 100,
               "line": {"color": HEAD, "width": 1}}]
    notes = [{"x": need_share * 100, "y": r.head_share * 100, "ax": 60, "ay": 40, "showarrow": True,
              "text": tr("head_note", lang, share=need_share, need=need, head=r.head_share)}]
    if c.customers:
        cap = r.vip_limit / c.customers * 100
        shapes.append({"type": "line", "x0": cap, "x1": cap, "y0": 0, "y1": 100,
                       "line": {"color": VIP, "width": 1.5, "dash": "dot"}})
        notes.append({"x": cap, "y": 12, "xanchor": "left", "showarrow": False,
                      "text": " " + tr("cap_note", lang, zhixin=zhixin, limit=r.vip_limit)})
    if r.vip_end is not None and c.customers:
        pos, at = r.vip_end
        data.append(go.Scatter(x=[pos / c.customers * 100], y=[at * 100], mode="markers",
                               name=tr("end_note", lang, zhixin=zhixin, pos=pos, cum=at),
                               marker={"color": VIP, "size": 11, "symbol": "diamond"}))
    layout = _layout(tr("curve_title", lang, n=c.customers, gini=c.gini), 480, shapes=shapes, annotations=notes,
                     xaxis={"title": {"text": tr("x_curve", lang)}, "range": [0, 100], "gridcolor": "#eee"},
                     yaxis={"title": {"text": tr("y_curve", lang)}, "range": [0, 101], "gridcolor": "#eee"},
                     legend={"x": 0.98, "y": 0.05, "xanchor": "right", "yanchor": "bottom"})
    return _figure(data, layout)


def group_name(by: str, value: Any, r: ReportResults, lang: str) -> str:
    """How a group of a summary is named on a chart: tiers by their Chinese label."""
    if by == "tier":
        return tier_name(value, r.labels, lang)
    if value is None:
        return tr("cluster_none", lang) if by == "cluster" else tr("no_group", lang)
    return str(value)


def share_bars(r: ReportResults, by: str, lang: str, title_key: str) -> Figure:
    """Per group of ``summarize(assignments, by)``: share of customers beside share of revenue."""
    go = plotly_go()
    df = r.summaries[by]
    names = [group_name(by, v, r, lang) for v in df[by].to_list()]
    bars = []
    for col, key, colour in (("customer_share", "share_customers", "#aab7b8"),
                             ("revenue_share", "share_revenue", CURVE)):
        values = [v * 100 for v in df[col].to_list()]
        bars.append(go.Bar(x=names, y=values, name=tr(key, lang), marker={"color": colour},
                           text=[f"{v:.1f}%" for v in values], textposition="outside", cliponaxis=False))
    layout = _layout(tr(title_key, lang, zhixin=tier_name(ZHIXIN, r.labels, lang)), 380, barmode="group",
                     yaxis={"title": {"text": "%"}, "gridcolor": "#eee", "rangemode": "tozero"},
                     xaxis={"type": "category"}, legend={"orientation": "h", "y": -0.15})
    return _figure(bars, layout)


def revenue_tree(r: ReportResults, lang: str) -> Figure:
    """Revenue by tier, the 知心 tier split into its VIP groups (a treemap)."""
    go = plotly_go()
    tiers, groups = r.summaries["tier"], r.summaries["vip_group"]
    ids, parents, labels, values, text = [], [], [], [], []
    for row in tiers.iter_rows(named=True):
        has_groups = row["tier"] == ZHIXIN and groups.height > 0
        ids.append(row["tier"])
        parents.append("")
        labels.append(tier_name(row["tier"], r.labels, lang))
        values.append(0.0 if has_groups else max(row["revenue"], 0.0))  # a split tier is the sum of its groups
        text.append(f"{row['revenue']:,.2f} · {row['revenue_share']:.1%}")
    for row in groups.iter_rows(named=True):
        ids.append(f"{ZHIXIN}/{row['vip_group']}")
        parents.append(ZHIXIN)
        labels.append(row["vip_group"])
        values.append(max(row["revenue"], 0.0))
        text.append(f"{row['revenue']:,.2f} · {row['revenue_share']:.1%}")
    tree = go.Treemap(ids=ids, parents=parents, labels=labels, values=values, text=text, branchvalues="remainder",
                      texttemplate="%{label}<br>%{text}", hoverinfo="label+text", sort=False,
                      marker={"colors": [TIER_COLOURS.get(i.split("/")[0], "#ccc") for i in ids]})
    return _figure([tree], _layout(tr("sec_revenue_tree", lang), 380, margin={"l": 10, "r": 10, "t": 50, "b": 10}))


def rfm_heatmap(r: ReportResults, lang: str) -> Figure:
    """The R x F grid: customers per cell, each cell named by its segment."""
    go = plotly_go()
    grid, bins = r.rfm_grid, r.bins
    rows = list(range(bins, 0, -1))
    z = [grid.filter(pl.col("r_score") == s)["customers"].to_list() for s in rows]
    text = [[f"{seg}<br>{n:,}"
             for seg, n in grid.filter(pl.col("r_score") == s).select("segment", "customers").iter_rows()]
            for s in rows]
    heat = go.Heatmap(z=z, x=[str(f) for f in range(1, bins + 1)], y=[str(s) for s in rows], text=text,
                      texttemplate="%{text}", colorscale="Reds", hoverinfo="text", showscale=False, xgap=2, ygap=2)
    layout = _layout(tr("sec_rfm", lang), 460, xaxis={"title": {"text": tr("f_score", lang)}, "type": "category"},
                     yaxis={"title": {"text": tr("r_score", lang)}, "type": "category", "autorange": "reversed"})
    return _figure([heat], layout)


def migration_heatmap(m: Migration, r: ReportResults, lang: str) -> Figure:
    """The from-tier x to-tier matrix of ``diff``: customers (and their revenue) per cell."""
    go = plotly_go()
    froms, tos, cell = matrix_cells(m.diff.matrix)
    z = [[cell.get((a, b), (0, 0.0))[0] for b in tos] for a in froms]
    text = [[f"{cell[(a, b)][0]:,}<br>{cell[(a, b)][1]:,.2f}" if (a, b) in cell else "" for b in tos] for a in froms]
    heat = go.Heatmap(z=z, x=[tier_name(t, r.labels, lang) for t in tos],
                      y=[tier_name(t, r.labels, lang) for t in froms],
                      text=text, texttemplate="%{text}", colorscale="Blues", showscale=False, hoverinfo="text",
                      xgap=2, ygap=2)
    layout = _layout(tr("sec_migration", lang), 360, xaxis={"title": {"text": tr("to", lang)}, "side": "top"},
                     yaxis={"title": {"text": tr("from", lang)}, "autorange": "reversed"},
                     margin={"l": 110, "r": 30, "t": 90, "b": 30})
    return _figure([heat], layout)


def flow_sankey(m: Migration, r: ReportResults, lang: str) -> Figure:
    """Customers moving between (tier, VIP group) of the previous run and of this one."""
    go = plotly_go()

    def node(side: str, tier: str, group: str | None) -> str:
        name = tier_name(tier, r.labels, lang)
        return f"{tr(side, lang)} · {name}" + (f" · {group}" if group else "")

    rows = list(m.flows.iter_rows(named=True))
    names = list(dict.fromkeys([node("from", x["from_tier"], x["from_group"]) for x in rows]
                               + [node("to", x["to_tier"], x["to_group"]) for x in rows]))
    tiers = {node(s, x[f"{s}_tier"], x[f"{s}_group"]): x[f"{s}_tier"] for x in rows for s in ("from", "to")}
    index = {n: i for i, n in enumerate(names)}
    link = {"source": [index[node("from", x["from_tier"], x["from_group"])] for x in rows],
            "target": [index[node("to", x["to_tier"], x["to_group"])] for x in rows],
            "value": [x["customers"] for x in rows],
            "customdata": [f"{x['revenue']:,.2f}" for x in rows],
            "color": [LINK_COLOURS.get(x["from_tier"], "rgba(150,150,150,0.3)") for x in rows],
            "hovertemplate": "%{source.label} → %{target.label}: %{value:,}<br>%{customdata}<extra></extra>"}
    sankey = go.Sankey(arrangement="fixed", node={"label": names, "pad": 12,
                                                    "color": [TIER_COLOURS.get(tiers[n], "#ccc") for n in names]},
                       link=link, valueformat=",d")
    return _figure([sankey], _layout(tr("sec_flow", lang), 520))


def all_figures(r: ReportResults, lang: str) -> dict[str, Figure]:
    """Every chart of the page by its element id (fixed ids: the same page for the same data)."""
    figs = {
        "chart-concentration": concentration_figure(r, lang),
        "chart-tiers": share_bars(r, "tier", lang, "sec_tiers"),
        "chart-revenue-tree": revenue_tree(r, lang),
        "chart-rfm-grid": rfm_heatmap(r, lang),
        "chart-clusters": share_bars(r, "cluster", lang, "sec_clusters"),
        "chart-vip-groups": share_bars(r, "vip_group", lang, "sec_vip_groups"),
    }
    if r.migration is not None:
        figs["chart-migration"] = migration_heatmap(r.migration, r, lang)
        figs["chart-flow"] = flow_sankey(r.migration, r, lang)
    return figs
