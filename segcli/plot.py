"""The concentration (Lorenz-style) chart of ``segcli pareto --plot FILE`` (png, svg, html)
and of the report's PNG charts: the curve, the head line and the 知心 VIP limit."""

from __future__ import annotations

import contextlib
import html
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segcli.errors import UsageError
from segcli.io import atomic_path
from segcli.page.text import tier_name, tr
from segcli.pareto import Concentration

PLOT_FORMATS = (".png", ".svg", ".html")
MAX_POINTS = 2000  # a curve of 10 million customers draws the same with 2,000 points
CURVE, EQUAL, HEAD, VIP = "#b03a2e", "#999999", "#2e86c1", "#7d3c98"


def plot_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_FORMATS:
        raise UsageError(f"--plot {path}: use a .png, .svg or .html file")
    return suffix


def curve_points(cum_share: np.ndarray) -> tuple[list[float], list[float]]:
    """(share of customers, cumulative share of revenue), biggest customers first, from the
    customers' ``cum_share`` (the pipeline's exact shares); at most ``MAX_POINTS`` points."""
    cum = np.concatenate([[0.0], np.sort(np.asarray(cum_share, dtype=np.float64))])
    n = len(cum) - 1
    if n == 0:
        return [0.0, 1.0], [0.0, 0.0]
    share = np.arange(n + 1) / n
    if n + 1 > MAX_POINTS:
        idx = np.unique(np.linspace(0, n, MAX_POINTS).round().astype(np.int64))
        share, cum = share[idx], cum[idx]
    return share.tolist(), cum.tolist()


@dataclass(frozen=True)
class CurveMarks:
    """What the chart marks besides the curve; every figure as ``pareto`` reports it."""

    c: Concentration
    head_share: float
    vip_limit: int | None  # L = min(capacity, floor(max_share * N))
    labels: dict[str, str] = field(default_factory=dict)  # tier -> label (知心, 遇心)
    vip_end: tuple[int, float] | None = None  # (position, cum_share) of the last VIP

    @property
    def need(self) -> tuple[int, float]:
        return self.c.need(self.head_share)


def text(key: str, lang: str, **values: Any) -> str:
    """A label in ``zh``, ``en``, ``ascii`` (no CJK) or ``both`` (Chinese / English)."""
    if lang == "both":
        return f"{tr(key, 'zh', **values)} / {tr(key, 'en', **values)}"
    return tr(key, lang, **values)


def draw_concentration(ax: Any, curve: tuple[list[float], list[float]], m: CurveMarks, lang: str) -> None:
    """Curve, equality line, head line (horizontal at the head share, vertical where it is
    reached), the 知心 limit L and where the 知心 tier ends, labelled in ``lang``."""
    zhixin = tier_name("zhixin", m.labels, "en" if lang == "both" else lang)
    share, cum = (np.asarray(v) * 100 for v in curve)
    need, need_share = m.need
    ax.plot(share, cum, color=CURVE, linewidth=2, label=text("curve", lang))
    ax.plot([0, 100], [0, 100], color=EQUAL, linestyle="--", linewidth=1, label=text("equal", lang))
    ax.axhline(m.head_share * 100, color=HEAD, linewidth=1)
    ax.axvline(need_share * 100, color=HEAD, linewidth=1,
               label=text("head_note", lang, share=need_share, need=need, head=m.head_share))
    if m.vip_limit is not None and m.c.customers:
        ax.axvline(m.vip_limit / m.c.customers * 100, color=VIP, linestyle="--", linewidth=1.5,
                   label=text("cap_note", lang, zhixin=zhixin, limit=m.vip_limit))
    if m.vip_end is not None and m.c.customers:
        pos, at = m.vip_end
        ax.plot([pos / m.c.customers * 100], [at * 100], marker="o", color=VIP, linestyle="none",
                label=text("end_note", lang, zhixin=zhixin, pos=pos, cum=at))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 101)
    ax.set_xlabel(text("x_curve", lang))
    ax.set_ylabel(text("y_curve", lang))
    ax.set_title(text("curve_title", lang, n=m.c.customers, gini=m.c.gini))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")


def figure_bytes(fig: Any, suffix: str) -> bytes:
    """A matplotlib figure as PNG or SVG bytes, without dates or tool versions (stable files)."""
    buf = io.BytesIO()
    if suffix == ".png":
        fig.savefig(buf, format="png", metadata={"Software": None})
    else:
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return buf.getvalue()


@contextlib.contextmanager
def chart_style(font: Path | None) -> Iterator[None]:
    """matplotlib's settings for the charts drawn and saved inside the block, and for nothing
    else in the process: stable SVG ids (same data, same file) and ``font`` (Chinese glyphs)
    first when given."""
    import matplotlib

    settings: dict[Any, Any] = {"svg.hashsalt": "segcli"}
    if font is not None:
        from segcli.fonts import use_font

        settings["font.family"] = [use_font(font), "DejaVu Sans"]
    with matplotlib.rc_context(settings):
        yield


def new_figure(width: float, height: float, dpi: int) -> tuple[Any, Any]:
    """A figure of ``width`` x ``height`` inches and its axes, without pyplot: no figure
    manager to close, no backend chosen for the whole process (saving uses Agg)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    return fig, fig.subplots()


def write_plot(curve: tuple[list[float], list[float]], marks: CurveMarks, path: str, *,
               font: Path | None) -> None:
    """Draw the chart and write it atomically; the format follows the file's suffix.

    With ``font`` (a file with Chinese glyphs) the labels are Chinese / English; without
    one they are English only and the tiers are named ``zhixin``/``yuxin`` (no tofu boxes).
    """
    suffix = plot_format(path)
    lang = "both" if font is not None else "ascii"
    with chart_style(font):
        fig, ax = new_figure(8, 5.5, 110)
        draw_concentration(ax, curve, marks, lang)
        fig.tight_layout()
        data = figure_bytes(fig, suffix)
    if suffix == ".html":
        c = marks.c
        need, need_share = marks.need
        svg = data.decode("utf-8")
        svg = svg[svg.index("<svg"):]
        title = html.escape(f"segcli pareto: {c.customers:,} customers")
        data = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n"
                f"<body>\n<h1>{title}</h1>\n<p>{need_share:.1%} of customers hold {marks.head_share:.0%} of net "
                f"revenue; Gini {c.gini:.3f}.</p>\n{svg}\n</body></html>\n").encode()
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)
