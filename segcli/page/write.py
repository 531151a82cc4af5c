"""Writing a report: ``.html`` (one page) or ``.md`` (Markdown and its PNG charts beside it)."""

from __future__ import annotations

from pathlib import Path

from segcli.errors import UsageError
from segcli.io import atomic_path
from segcli.page.results import ReportResults

KINDS = {".html": "html", ".htm": "html", ".md": "md"}


def report_kind(path: str) -> str:
    """``html`` or ``md`` from the output's suffix; anything else is a usage error."""
    kind = KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise UsageError(f"-o {path}: a report is .html (one page) or .md (Markdown with PNG charts)")
    return kind


def chart_path(path: str, name: str) -> Path:
    """``report.md`` -> ``report.concentration.png`` beside it."""
    p = Path(path)
    return p.with_name(f"{p.stem}.{name}.png")


def write_report(r: ReportResults, path: str, *, lang: str, font: Path | None) -> list[str]:
    """Write the report (atomically, each file whole or not at all); return the paths written.

    ``font`` (a file with Chinese glyphs): the HTML page embeds a subset of it (without one it
    relies on the reader's fonts); Markdown's PNG charts need it.
    """
    if report_kind(path) == "html":
        from segcli.page.html import page_html

        text = page_html(r, lang=lang, font=font)
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return [path]
    from segcli.page.markdown import page_markdown
    from segcli.page.png import png_charts

    if font is None:
        raise UsageError("a Markdown report needs a font with Chinese glyphs for its charts (--font)")
    written = []
    images = {}
    for name, data in png_charts(r, lang=lang, font=font).items():
        target = chart_path(path, name)
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
        images[name] = target.name
        written.append(str(target))
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(page_markdown(r, lang=lang, images=images), encoding="utf-8")
    return [path, *written]
