"""sessionbox's stand-in for the PyPI package japanize-matplotlib.

The real package bundles the IPAexGothic font; sessionbox ships Debian's fonts-noto-cjk
instead, so this module points matplotlib at "Noto Sans CJK JP". The public API is the same:
importing the module japanizes matplotlib, and `japanize()` does it again (for example after
`plt.rcdefaults()`).
"""

import os

import matplotlib
from matplotlib import font_manager

__version__ = "1.1.3+sessionbox"

FONT_NAME = "Noto Sans CJK JP"
FONTS_DIR = "/usr/share/fonts/opentype/noto"


def get_font_ttf_path():
    """Path of the Japanese font file."""
    return font_manager.findfont(FONT_NAME, fallback_to_default=False)


def get_font_path():
    """Directory holding the Japanese font file."""
    try:
        return os.path.dirname(get_font_ttf_path())
    except ValueError:
        return FONTS_DIR


def japanize():
    """Render Japanese text with Noto Sans CJK JP.

    With matplotlib >= 3.6 Latin text keeps DejaVu Sans and only the glyphs it lacks come from
    the Japanese font; older versions use the Japanese font for all text.
    """
    if not any(f.name == FONT_NAME for f in font_manager.fontManager.ttflist):
        for path in font_manager.findSystemFonts(fontpaths=[FONTS_DIR]):
            font_manager.fontManager.addfont(path)
    version = tuple(int(p) for p in matplotlib.__version__.split(".")[:2] if p.isdigit())
    family = ["DejaVu Sans", FONT_NAME] if version >= (3, 6) else [FONT_NAME]
    matplotlib.rc("font", family=family)
    matplotlib.rc("axes", unicode_minus=False)


japanize()
