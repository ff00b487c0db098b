"""A glyph atlas for world-space text labels, built once with Pillow (no OpenGL here).

The atlas rasterises printable ASCII and Latin-1 (names such as "Müller" or "Dr. Ibáñez") from a
scalable font into one 8-bit coverage image; :meth:`GlyphAtlas.layout` turns a string into glyph quads
in *line units* (1.0 = the font's line height, ascent + descent) with texture coordinates, which the
renderer scales to metres per label. A character the atlas lacks is drawn as its base letter when it
has one (``ü`` as ``u``, for a font without accents), else as ``?``; either way it is counted.

Font choice, first that works: Pillow's own scalable default font (``ImageFont.load_default(size=)``,
Pillow >= 10.1 with FreeType; it ships inside the wheel), DejaVu Sans from ``fonts-dejavu-core``, and
last Pillow's small bitmap font (readable, but blurry when magnified).
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

#: Characters rasterised into the atlas: printable ASCII and the printable Latin-1 supplement.
CHARSET = "".join(chr(c) for c in range(32, 127)) + "".join(chr(c) for c in range(161, 256))
#: Labels longer than this many characters are cut and end in an ellipsis ("...").
MAX_LABEL_CHARS = 64
_DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
#: Empty texels around each glyph: keeps neighbours out of the bilinear footprint down to mip level 2.
_PAD = 6


@dataclass(frozen=True)
class Glyph:
    """One character in the atlas.

    ``rect``: (x0, y0, x1, y1) of its quad relative to the pen position on the baseline, line units,
    +y up; ``uv``: (u0, v0, u1, v1) texture coordinates of the same corners (v0 at y0); ``advance``:
    pen advance, line units.
    """

    rect: tuple[float, float, float, float]
    uv: tuple[float, float, float, float]
    advance: float


def _load_font(pixel_size: int) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, str]:
    # DejaVu first: it covers all of Latin-1, Pillow's bundled Aileron only ASCII
    if _DEJAVU.is_file():
        try:
            return ImageFont.truetype(str(_DEJAVU), pixel_size), "DejaVu Sans"
        except OSError:
            pass
    try:
        font = ImageFont.load_default(size=pixel_size)
        if isinstance(font, ImageFont.FreeTypeFont):
            return font, "Pillow default ({})".format(" ".join(part or "?" for part in font.getname()))
    except (TypeError, OSError, ImportError):  # Pillow < 10.1, or built without FreeType
        pass
    logger.warning("no scalable font found (Pillow without FreeType, no fonts-dejavu-core): labels use a bitmap font")
    return ImageFont.load_default(), "Pillow bitmap default"


def _available(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, chars: str) -> str:
    """The characters of ``chars`` that ``font`` draws as themselves, not as its missing-glyph box."""
    try:
        tofu = bytes(font.getmask("\ue000"))  # a private-use code point no text font maps
    except (UnicodeEncodeError, ValueError, OSError):
        return "".join(c for c in chars if ord(c) < 128)
    return "".join(c for c in chars if c == " " or bytes(font.getmask(c)) != tofu)


class GlyphAtlas:
    """Coverage atlas and glyph metrics for :data:`CHARSET`, rasterised at ``pixel_size`` px per em.

    Attributes
    ----------
    image
        (H, W) uint8 coverage, row 0 at v = 0 (upload as is: GL's first row is v = 0).
    glyphs
        Character to :class:`Glyph`.
    font_name
        Which font was used.
    missing
        Characters asked for in :meth:`layout` that the atlas lacks (drawn as their base letter or
        ``?``), counted.
    """

    def __init__(self, pixel_size: int = 48, width: int = 1024) -> None:
        font, self.font_name = _load_font(pixel_size)
        try:
            ascent, descent = font.getmetrics()  # type: ignore[union-attr]
        except AttributeError:  # the bitmap font has no metrics: take them from its tallest glyphs
            box = font.getbbox("Ag")
            ascent, descent = -int(box[1]) if box[1] < 0 else int(box[3]), 2
        line_px = float(ascent + descent)
        self.ascent = ascent / line_px
        self.descent = descent / line_px
        self.missing: dict[str, int] = {}
        charset = _available(font, CHARSET)
        boxes: dict[str, tuple[int, int, int, int]] = {}
        for ch in charset:
            try:
                boxes[ch] = tuple(int(v) for v in font.getbbox(ch, anchor="ls"))  # type: ignore[assignment]
            except (TypeError, ValueError):  # the bitmap font takes no anchor: its origin is the top
                left, top, right, bottom = font.getbbox(ch)
                boxes[ch] = (int(left), int(top) - ascent, int(right), int(bottom) - ascent)
        # shelf packing, tallest first so that shelves waste little
        order = sorted(charset, key=lambda c: -(boxes[c][3] - boxes[c][1]))
        x, y, shelf = 0, 0, 0
        places: dict[str, tuple[int, int]] = {}
        for ch in order:
            w = boxes[ch][2] - boxes[ch][0] + 2 * _PAD
            h = boxes[ch][3] - boxes[ch][1] + 2 * _PAD
            if x + w > width:
                x, y, shelf = 0, y + shelf, 0
            places[ch] = (x, y)
            x, shelf = x + w, max(shelf, h)
        height = 1 << max(int(np.ceil(np.log2(max(y + shelf, 1)))), 0)  # power of two: clean mip chain
        atlas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(atlas)
        self.glyphs: dict[str, Glyph] = {}
        for ch in charset:
            left, top, right, bottom = boxes[ch]
            px, py = places[ch]
            if right > left and bottom > top:
                try:
                    draw.text((px + _PAD - left, py + _PAD - top), ch, font=font, fill=255, anchor="ls")
                except (TypeError, ValueError):
                    draw.text((px + _PAD - left, py + _PAD - top - ascent), ch, font=font, fill=255)
            # the quad reaches one texel beyond the ink so that bilinear edges fade instead of cutting
            x0, y0, x1, y1 = left - 1, top - 1, right + 1, bottom + 1
            u0, u1 = (px + _PAD - 1) / width, (px + _PAD + right - left + 1) / width
            v_top, v_bottom = (py + _PAD - 1) / height, (py + _PAD + bottom - top + 1) / height
            try:
                advance = float(font.getlength(ch))
            except AttributeError:
                advance = float(right)
            # image rows grow downward, label y grows upward: the quad's bottom edge samples v_bottom
            self.glyphs[ch] = Glyph(
                rect=(x0 / line_px, -y1 / line_px, x1 / line_px, -y0 / line_px),
                uv=(u0, v_bottom, u1, v_top),
                advance=advance / line_px,
            )
        self.image = np.asarray(atlas, dtype=np.uint8)
        logger.info("glyph atlas: %s at %d px, %d characters in %dx%d", self.font_name, pixel_size, len(charset), width, height)

    @staticmethod
    def clean(text: str) -> str:
        """One line of at most :data:`MAX_LABEL_CHARS` characters: whitespace runs become one space."""
        line = " ".join(str(text).split())
        if len(line) > MAX_LABEL_CHARS:
            line = line[: MAX_LABEL_CHARS - 3].rstrip() + "..."
        return line

    def layout(self, text: str) -> tuple[np.ndarray, float]:
        """Glyph quads of one label, centred horizontally, the line's bottom (descent) at y = 0.

        Returns
        -------
        quads
            (N, 8) float32: x0, y0, x1, y1 (line units, +y up) and u0, v0, u1, v1, one row per
            visible glyph (spaces advance the pen but draw nothing).
        width
            The line's advance width, line units.
        """
        line = self.clean(text)
        rows: list[tuple[float, ...]] = []
        pen = 0.0
        for ch in line:
            g = self.glyphs.get(ch)
            if g is None:
                self.missing[ch] = self.missing.get(ch, 0) + 1
                base = unicodedata.normalize("NFKD", ch)[:1]  # the letter without its accents
                g = self.glyphs.get(base) or self.glyphs["?"]
            if ch != " ":
                x0, y0, x1, y1 = g.rect
                rows.append((pen + x0, y0, pen + x1, y1, *g.uv))
            pen += g.advance
        quads = np.array(rows, dtype=np.float32).reshape(-1, 8)
        quads[:, [0, 2]] -= pen / 2
        quads[:, [1, 3]] += self.descent
        return quads, pen
