"""The page's own font: a subset of a CJK font, embedded as a base64 ``@font-face`` (SPEC §10).

The page names the tiers 知心 / 遇心; a reader without a Chinese font would see boxes, so the
page carries the glyphs it uses. :func:`font_face` subsets the font to the characters of the
page (every text it shows in both languages, the charts' labels and data included, and the
ASCII range that Plotly's tick labels and numbers are drawn from) and returns the CSS rule.

Format: WOFF (zlib, in the standard library). Measured on the sample page with --previous
(WenQuanYi Micro Hei, about 240 characters, 400 glyphs): TTF 68.4 kB base64, WOFF 45.2 kB, WOFF2
36.3 kB. WOFF2 would save 9 kB of a 5 MB page at the cost of a compiled dependency (brotli), so
it is not used.

The bytes are deterministic: fontTools subsets the same font to the same glyph set the same
way, the font is loaded without recalculating ``head.modified`` (it keeps the source font's
dates, never the time of the run), and FontForge's timestamp table (``FFTM``) is dropped.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

# the family the page's styles and the charts ask for first; defined only by the page's @font-face
PAGE_FAMILY = "segcli CJK"
FALLBACKS = ("'Noto Sans CJK SC', 'Source Han Sans SC', 'PingFang SC', 'Microsoft YaHei', "
             "'WenQuanYi Micro Hei', 'Droid Sans Fallback', sans-serif")
FONT_STACK = f"'{PAGE_FAMILY}', {FALLBACKS}"
# what Plotly draws beyond the page's strings: ASCII (ticks, numbers, SI suffixes), − and µ
DRAWN_CHARS = "".join(chr(c) for c in range(0x20, 0x7F)) + "\u2212\u00b5"
# name records kept: names and version (0-6) and the licence (13, 14), in English
NAME_IDS = [0, 1, 2, 3, 4, 5, 6, 13, 14]


def page_chars(text: str) -> str:
    """The characters to keep: those of ``text`` that are drawn (no control characters), and
    :data:`DRAWN_CHARS`; sorted, so that the same page gives the same font."""
    return "".join(sorted({c for c in text if c.isprintable()} | set(DRAWN_CHARS)))


@contextlib.contextmanager
def _quiet_fonttools() -> Iterator[None]:
    """fontTools logs tables it drops ("FFTM NOT subset"); the core does not print."""
    log = logging.getLogger("fontTools")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def subset_font(path: Path, chars: str) -> bytes:
    """``path`` (TTF, OTF or the first face of a collection) cut down to the glyphs of ``chars``,
    as WOFF bytes; characters the font lacks are left to the reader's fonts."""
    from fontTools import subset

    options = subset.Options()
    options.flavor = "woff"
    options.font_number = 0  # a .ttc/.otc: its first face, the one fontconfig and matplotlib name
    options.name_IDs = NAME_IDS
    options.drop_tables = [*options.drop_tables, "FFTM"]
    options.recalc_timestamp = False
    with _quiet_fonttools():
        font = subset.load_font(str(path), options)
        try:
            subsetter = subset.Subsetter(options)
            subsetter.populate(unicodes=[ord(c) for c in chars])
            subsetter.subset(font)
            out = io.BytesIO()
            subset.save_font(font, out, options)
        finally:
            font.close()
    return out.getvalue()


def font_face(path: Path, text: str) -> str:
    """The ``@font-face`` rule of :data:`PAGE_FAMILY`: ``path`` subset to the characters of
    ``text``, inline as a ``data:`` URL (the page's Content-Security-Policy allows only those)."""
    data = base64.b64encode(subset_font(path, page_chars(text))).decode("ascii")
    return (f"@font-face{{font-family:'{PAGE_FAMILY}';font-style:normal;font-weight:400;font-display:block;"
            f"src:url(data:font/woff;base64,{data}) format('woff')}}")
