"""A font with Chinese glyphs for charts drawn to PNG/SVG and for the HTML page, which embeds
a subset of it (知心, 遇心 must not be tofu boxes).

Found through fontconfig (``fc-list :lang=zh``), else among the fonts matplotlib knows, or
given as a file (``--font``). A font is taken only when it has a glyph for every character
that the charts write, so that a missing glyph is caught before anything is drawn.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from segcli.errors import ConfigError

# the default tier labels; callers add every other text they draw (``text=``)
CHART_CHARS = "知心遇"
# names that fontconfig-less systems give their CJK fonts, for the matplotlib fallback scan
CJK_NAME_HINTS = ("cjk", "wqy", "wenquanyi", "hei", "song", "ming", "kai", "fallback", "noto sans sc", "yahei",
                  "pingfang", "sarasa", "source han", "arphic", "uming", "ukai")
NO_PAGE_FONT = ("no font with Chinese glyphs found to embed in the HTML page: the page relies on the reader's "
                "fonts, and where the reader has no Chinese font its Chinese labels (知心, 遇心) show as boxes; "
                "to embed one: apt-get install fonts-wqy-microhei (Debian/Ubuntu) and run again, "
                "or name a font file with --font PATH")
INSTALL_HINT = "install one (Debian/Ubuntu: apt-get install fonts-wqy-microhei), or name a font file with --font PATH"


def missing_glyphs(path: Path, text: str) -> list[str]:
    """Characters of ``text`` (spaces aside) that the font file has no glyph for."""
    from matplotlib.ft2font import FT2Font

    try:
        charmap = FT2Font(str(path)).get_charmap()
    except (OSError, RuntimeError, ValueError):
        return sorted(set(text) - {" "})
    return sorted({c for c in text if not c.isspace() and ord(c) not in charmap})


def _fontconfig_candidates() -> list[Path]:
    """Font files fontconfig says cover Chinese; [] when fontconfig is not installed."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return []
    try:
        out = subprocess.run([fc_list, ":lang=zh", "file"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [Path(line.strip().rstrip(":")) for line in out.stdout.splitlines() if line.strip()]


def _matplotlib_candidates() -> list[Path]:
    from matplotlib import font_manager

    return [Path(f.fname) for f in font_manager.fontManager.ttflist
            if any(h in f.name.lower() or h in Path(f.fname).name.lower() for h in CJK_NAME_HINTS)]


def _rank(path: Path) -> tuple[int, str]:
    """Sans-serif (黑体) faces first, then by path: the same font on every run."""
    name = path.name.lower()
    return (0 if any(h in name for h in ("sans", "hei", "microhei")) else 1, str(path))


def find_cjk_font(font: str | None = None, *, text: str = "") -> Path:
    """The font file to draw Chinese labels with.

    Parameters
    ----------
    font:
        A font file given by the user (``--font``); checked, never replaced.
    text:
        Every other text the charts will write (labels, titles, the config's tier labels).

    Raises
    ------
    ConfigError
        (exit 78) when ``font`` is missing or lacks a glyph, or when no font is found.
    """
    needed = CHART_CHARS + text
    if font is not None:
        path = Path(font)
        if not path.is_file():
            raise ConfigError(f"--font {font}: no such font file")
        missing = missing_glyphs(path, needed)
        if missing:
            raise ConfigError(f"--font {font}: no glyph for {''.join(missing[:8])} (the labels would be tofu boxes)",
                              [INSTALL_HINT])
        return path
    seen = dict.fromkeys(sorted(_fontconfig_candidates(), key=_rank) + sorted(_matplotlib_candidates(), key=_rank))
    for path in seen:
        if path.is_file() and not missing_glyphs(path, needed):
            return path
    raise ConfigError("no font with Chinese glyphs found for the PNG charts",
                      ["looked for fonts fontconfig lists for :lang=zh and among matplotlib's fonts", INSTALL_HINT])


def find_page_font(font: str | None, *, text: str = "") -> tuple[Path | None, str | None]:
    """The font the HTML page embeds a subset of, or ``None`` and the sentence to warn with
    (the page is still written). ``font`` (``--font``) is checked as by :func:`find_cjk_font`.
    """
    if font is not None:
        return find_cjk_font(font, text=text), None
    try:
        return find_cjk_font(None, text=text), None
    except ConfigError:
        return None, NO_PAGE_FONT


def use_font(path: Path) -> str:
    """Register the font file with matplotlib and return its family name."""
    from matplotlib import font_manager

    font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name()
