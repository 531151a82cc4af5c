"""The report's charts as PNG files for Markdown (matplotlib, with a font that has Chinese
glyphs): the concentration curve, tiers, the R x F grid and the migration matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from segcli.page.results import ReportResults, matrix_cells
from segcli.page.text import tier_name, tr
from segcli.plot import CURVE, CurveMarks, chart_style, draw_concentration, figure_bytes, new_figure

WIDTH, HEIGHT, DPI = 10, 6, 100  # every PNG is 1000 x 600 pixels
PNG_SIZE = (WIDTH * DPI, HEIGHT * DPI)


def _concentration(ax: Any, r: ReportResults, lang: str) -> None:
    marks = CurveMarks(r.concentration, r.head_share, r.vip_limit, r.labels, r.vip_end)
    draw_concentration(ax, r.curve, marks, lang)


def _tiers(ax: Any, r: ReportResults, lang: str) -> None:
    """Share of customers beside share of revenue, per tier (summary --by tier)."""
    df = r.summaries["tier"]
    names = [tier_name(t, r.labels, lang) for t in df["tier"].to_list()]
    x = np.arange(len(names))
    for offset, col, key, colour in ((-0.2, "customer_share", "share_customers", "#aab7b8"),
                                     (0.2, "revenue_share", "share_revenue", CURVE)):
        values = [v * 100 for v in df[col].to_list()]
        bars = ax.bar(x + offset, values, width=0.4, label=tr(key, lang), color=colour)
        ax.bar_label(bars, labels=[f"{v:.1f}%" for v in values])
    ax.set_xticks(x, names)
    ax.set_ylabel("%")
    ax.set_ylim(0, 110)
    ax.set_title(tr("sec_tiers", lang))
    ax.legend()


def _heatmap(ax: Any, z: np.ndarray, text: list[list[str]], xs: list[str], ys: list[str], cmap: str) -> None:
    ax.imshow(z, cmap=cmap, aspect="auto")
    high = z.max() if z.size else 0
    for i, row in enumerate(text):
        for j, cell in enumerate(row):
            ax.text(j, i, cell, ha="center", va="center", fontsize=9,
                    color="white" if high and z[i, j] > 0.6 * high else "black")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)


def _rfm(ax: Any, r: ReportResults, lang: str) -> None:
    """Customers per R x F cell, named by segment (R 5 at the top, F 1 on the left)."""
    rows = list(range(r.bins, 0, -1))
    cells = [r.rfm_grid.filter(pl.col("r_score") == s) for s in rows]
    z = np.array([c["customers"].to_list() for c in cells])
    text = [[f"{seg}\n{n:,}" for seg, n in c.select("segment", "customers").iter_rows()] for c in cells]
    _heatmap(ax, z, text, [str(f) for f in range(1, r.bins + 1)], [str(s) for s in rows], "Reds")
    ax.set_xlabel(tr("f_score", lang))
    ax.set_ylabel(tr("r_score", lang))
    ax.set_title(tr("sec_rfm", lang))


def _migration(ax: Any, r: ReportResults, lang: str) -> None:
    """The diff matrix: customers and revenue from each tier of the previous run to each now."""
    assert r.migration is not None
    froms, tos, cell = matrix_cells(r.migration.diff.matrix)
    z = np.array([[cell.get((a, b), (0, 0.0))[0] for b in tos] for a in froms])
    text = [[f"{cell[(a, b)][0]:,}\n{cell[(a, b)][1]:,.2f}" if (a, b) in cell else "" for b in tos] for a in froms]
    _heatmap(ax, z, text, [tier_name(t, r.labels, lang) for t in tos], [tier_name(t, r.labels, lang) for t in froms],
             "Blues")
    ax.set_xlabel(tr("to", lang))
    ax.set_ylabel(tr("from", lang))
    ax.set_title(tr("sec_migration", lang))


CHARTS = {"concentration": _concentration, "tiers": _tiers, "rfm": _rfm, "migration": _migration}


def png_charts(r: ReportResults, *, lang: str, font: Path) -> dict[str, bytes]:
    """Each chart name -> its PNG (``PNG_SIZE`` pixels), drawn with ``font`` for the Chinese."""
    out = {}
    with chart_style(font):
        for name, draw in CHARTS.items():
            if name == "migration" and r.migration is None:
                continue
            fig, ax = new_figure(WIDTH, HEIGHT, DPI)
            draw(ax, r, lang)
            fig.tight_layout()
            out[name] = figure_bytes(fig, ".png")
    return out
