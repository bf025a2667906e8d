"""Rendering the VGA text screen to a PNG with the real 8x16 VGA font and the
16-colour CGA palette, as a monitor would show it (blink shown as steady,
bright backgrounds as on hardware with blinking disabled)."""
from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from unikernel_sim.devices.vga_text import COLUMNS, ROWS, VgaText

if TYPE_CHECKING:
    from unikernel_sim.devices.bochs_vbe import BochsVbe

GLYPH_WIDTH = 8
GLYPH_HEIGHT = 16
PALETTE = [  # IBM CGA/EGA default palette (RGB)
    (0x00, 0x00, 0x00), (0x00, 0x00, 0xAA), (0x00, 0xAA, 0x00), (0x00, 0xAA, 0xAA),
    (0xAA, 0x00, 0x00), (0xAA, 0x00, 0xAA), (0xAA, 0x55, 0x00), (0xAA, 0xAA, 0xAA),
    (0x55, 0x55, 0x55), (0x55, 0x55, 0xFF), (0x55, 0xFF, 0x55), (0x55, 0xFF, 0xFF),
    (0xFF, 0x55, 0x55), (0xFF, 0x55, 0xFF), (0xFF, 0xFF, 0x55), (0xFF, 0xFF, 0xFF),
]


def vga_font() -> bytes:
    """256 glyphs x 16 scan lines (fonts/SOURCE.txt says where it comes from)."""
    return resources.files("unikernel_sim.devices").joinpath("fonts/vga8x16.bin").read_bytes()


def glyph_rows(font: bytes, char: int) -> bytes:
    return font[char * GLYPH_HEIGHT:(char + 1) * GLYPH_HEIGHT]


def render_rgb(vga: VgaText) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) of the screen, cursor drawn."""
    font = vga_font()
    width, height = COLUMNS * GLYPH_WIDTH, ROWS * GLYPH_HEIGHT
    pixels = bytearray(width * height * 3)
    cursor = vga.cursor
    cursor_start, cursor_end = vga.cursor_scanlines
    for row, cells in enumerate(vga.cells()):
        for column, (char, attr) in enumerate(cells):
            fg, bg = PALETTE[attr & 0x0F], PALETTE[(attr >> 4) & 0x0F]
            rows = bytearray(glyph_rows(font, char))
            if cursor == (row, column):
                for line in range(cursor_start, min(cursor_end, GLYPH_HEIGHT - 1) + 1):
                    rows[line] = 0xFF
            for line, bits in enumerate(rows):
                y = row * GLYPH_HEIGHT + line
                base = (y * width + column * GLYPH_WIDTH) * 3
                for bit in range(GLYPH_WIDTH):
                    colour = fg if bits & (0x80 >> bit) else bg
                    pixels[base + 3 * bit: base + 3 * bit + 3] = bytes(colour)
    return width, height, bytes(pixels)


def png_bytes(vga: VgaText, vbe: "BochsVbe | None" = None) -> bytes:
    """The screen as a PNG file's bytes: the graphics framebuffer when the Bochs VBE
    display is enabled (ValueError for a paletted mode), the text screen otherwise."""
    import io

    from PIL import Image

    if vbe is not None and vbe.enabled:
        from unikernel_sim.devices.framebuffer_render import framebuffer_rgb

        width, height, rgb = framebuffer_rgb(vbe)
    else:
        width, height, rgb = render_rgb(vga)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(vga: VgaText, path: str, vbe: "BochsVbe | None" = None) -> None:
    with open(path, "wb") as handle:
        handle.write(png_bytes(vga, vbe))
