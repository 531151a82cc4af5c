"""The concentration (Lorenz-style) chart of ``segcli pareto --plot FILE`` (png, svg, html)."""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np

from segcli.errors import UsageError
from segcli.io import atomic_path
from segcli.pareto import Concentration

PLOT_FORMATS = (".png", ".svg", ".html")
MAX_POINTS = 2000  # a curve of 10 million customers draws the same with 2,000 points


def plot_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_FORMATS:
        raise UsageError(f"--plot {path}: use a .png, .svg or .html file")
    return suffix


def concentration_curve(x_minor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of customers, cumulative share of revenue), biggest customers first."""
    x = np.sort(np.clip(np.asarray(x_minor, dtype=np.int64), 0, None))[::-1]
    n, total = len(x), int(x.sum())
    if n == 0 or total == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 0.0])
    cum = np.concatenate([[0], np.cumsum(x)]) / total
    share = np.arange(n + 1) / n
    if n + 1 > MAX_POINTS:
        idx = np.unique(np.linspace(0, n, MAX_POINTS).round().astype(np.int64))
        share, cum = share[idx], cum[idx]
    return share, cum


def write_plot(x_minor: np.ndarray, c: Concentration, path: str, *, head_share: float) -> None:
    """Draw the chart and write it atomically; the format follows the file's suffix."""
    suffix = plot_format(path)
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "segcli"  # stable ids: same data, same file
    import matplotlib.pyplot as plt

    share, cum = concentration_curve(x_minor)
    need, need_share = c.head.get(head_share, (0, 0.0))
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    ax.plot(share * 100, cum * 100, color="#b03a2e", linewidth=2, label="customers by net revenue, biggest first")
    ax.plot([0, 100], [0, 100], color="#999999", linestyle="--", linewidth=1, label="every customer equal")
    ax.axhline(head_share * 100, color="#2e86c1", linewidth=1)
    ax.axvline(need_share * 100, color="#2e86c1", linewidth=1)
    ax.annotate(f"{need_share:.1%} of customers ({need:,})\nhold {head_share:.0%} of revenue",
                xy=(need_share * 100, head_share * 100), xytext=(need_share * 100 + 8, head_share * 100 - 22),
                arrowprops={"arrowstyle": "->", "color": "#2e86c1"})
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 101)
    ax.set_xlabel("share of customers (%)")
    ax.set_ylabel("cumulative share of net revenue (%)")
    ax.set_title(f"Revenue concentration: {c.customers:,} customers, Gini {c.gini:.3f}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    if suffix == ".png":
        fig.savefig(buf, format="png", metadata={"Software": None})
        data = buf.getvalue()
    else:
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        data = buf.getvalue()
        if suffix == ".html":
            svg = data.decode("utf-8")
            svg = svg[svg.index("<svg"):]
            title = html.escape(f"segcli pareto: {c.customers:,} customers")
            data = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n"
                    f"<body>\n<h1>{title}</h1>\n<p>{need_share:.1%} of customers hold {head_share:.0%} of net "
                    f"revenue; Gini {c.gini:.3f}.</p>\n{svg}\n</body></html>\n").encode("utf-8")
    plt.close(fig)
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)
