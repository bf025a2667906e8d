"""VGA in 80x25 text mode: the screen is plain guest RAM at 0xB8000 (read after
a slice, never hooked per write), the CRT controller's cursor and start-address
registers at 0x3D4/0x3D5, and the status/index registers kernels touch.

  0x3D4/0x3D5  CRTC index/data: 0x0A cursor start (bit 5 = cursor off),
               0x0B cursor end, 0x0C/0x0D start address, 0x0E/0x0F cursor location
  0x3DA        input status 1: bit 0 display disabled, bit 3 vertical retrace (60 Hz);
               reading resets the attribute controller's index/data flip-flop
  0x3C0/0x3C1  attribute controller; 0x3C4/0x3C5 sequencer; 0x3CE/0x3CF graphics
  0x3C2/0x3CC  miscellaneous output (write/read)

Each cell is a character byte (code page 437) and an attribute byte: bits 0-3
foreground, 4-6 background, 7 blink (or bright background).
"""
from __future__ import annotations

from functools import cache
from typing import Callable

from unikernel_sim.devices.device import Device, PortRange

TEXT_BASE = 0xB8000
COLUMNS = 80
ROWS = 25
CRTC_INDEX, CRTC_DATA = 0x3D4, 0x3D5
INPUT_STATUS = 0x3DA
ATTR_INDEX, ATTR_READ = 0x3C0, 0x3C1
MISC_WRITE, MISC_READ = 0x3C2, 0x3CC
SEQ_INDEX, SEQ_DATA = 0x3C4, 0x3C5
GFX_INDEX, GFX_DATA = 0x3CE, 0x3CF
CURSOR_START, CURSOR_END = 0x0A, 0x0B
START_HIGH, START_LOW = 0x0C, 0x0D
CURSOR_HIGH, CURSOR_LOW = 0x0E, 0x0F
CURSOR_DISABLE = 0x20
FRAME_NS = 16_683_350              # 59.94 Hz
RETRACE_NS = 1_430_000
STATUS_RETRACE = 0x08
STATUS_DISPLAY_OFF = 0x01
MISC_POWER_ON = 0x67               # colour, 0x3Dx addresses, RAM enabled
PORTS = (ATTR_INDEX, ATTR_READ, MISC_WRITE, SEQ_INDEX, SEQ_DATA, MISC_READ, GFX_INDEX, GFX_DATA,
         CRTC_INDEX, CRTC_DATA, INPUT_STATUS)


@cache
def cp437_table() -> tuple[str, ...]:
    """Code page 437 as the VGA's character generator draws it, glyphs below 32
    included. Built at the first rendering, not at import (~0.4 ms of every start:
    256 decodes and the codec's module)."""
    table = [bytes([i]).decode("cp437") for i in range(256)]
    glyphs_below_32 = " ☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼"
    table[:32] = list(glyphs_below_32)
    table[0] = " "
    table[127] = "⌂"
    return tuple(table)


class VgaText(Device):
    name = "vga"
    ports = tuple(PortRange(port) for port in PORTS)
    saved_fields = ("crtc", "crtc_index", "seq", "seq_index", "gfx", "gfx_index", "attr", "attr_index", "attr_flip",
                    "misc")

    def __init__(self, read_ram: Callable[[int, int], bytes], now: Callable[[], int]) -> None:
        self.read_ram = read_ram
        self.now = now
        self.crtc = bytearray(0x19)
        self.crtc[CURSOR_START] = 0x0D
        self.crtc[CURSOR_END] = 0x0E
        self.crtc_index = 0
        self.seq = bytearray(5)
        self.seq_index = 0
        self.gfx = bytearray(9)
        self.gfx_index = 0
        self.attr = bytearray(0x15)
        self.attr_index = 0
        self.attr_flip = False
        self.misc = MISC_POWER_ON

    # --- screen contents -----------------------------------------------------------
    @property
    def start_address(self) -> int:
        return (self.crtc[START_HIGH] << 8) | self.crtc[START_LOW]

    def raw(self) -> bytes:
        return self.read_ram(TEXT_BASE + 2 * self.start_address, COLUMNS * ROWS * 2)

    def cells(self) -> list[list[tuple[int, int]]]:
        """(character byte, attribute byte) for each of the 25 x 80 cells."""
        data = self.raw()
        return [[(data[2 * (r * COLUMNS + c)], data[2 * (r * COLUMNS + c) + 1]) for c in range(COLUMNS)]
                for r in range(ROWS)]

    def text(self) -> str:
        """The screen as 25 lines of text (trailing blanks stripped), code page 437 decoded."""
        data = self.raw()
        glyphs = cp437_table()
        lines = ["".join(glyphs[data[2 * (r * COLUMNS + c)]] for c in range(COLUMNS)).rstrip()
                 for r in range(ROWS)]
        return "\n".join(lines)

    @property
    def cursor(self) -> tuple[int, int] | None:
        """(row, column) of the hardware cursor, or None when it is switched off."""
        if self.crtc[CURSOR_START] & CURSOR_DISABLE:
            return None
        position = ((self.crtc[CURSOR_HIGH] << 8) | self.crtc[CURSOR_LOW]) - self.start_address
        if not 0 <= position < COLUMNS * ROWS:
            return None
        return divmod(position, COLUMNS)

    @property
    def cursor_scanlines(self) -> tuple[int, int]:
        return self.crtc[CURSOR_START] & 0x1F, self.crtc[CURSOR_END] & 0x1F

    # --- I/O ------------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if port == CRTC_INDEX:
            return self.crtc_index
        if port == CRTC_DATA:
            return self.crtc[self.crtc_index] if self.crtc_index < len(self.crtc) else 0xFF
        if port == INPUT_STATUS:
            self.attr_flip = False
            phase = self.now() % FRAME_NS
            return (STATUS_RETRACE | STATUS_DISPLAY_OFF) if phase >= FRAME_NS - RETRACE_NS else 0
        if port == MISC_READ:
            return self.misc
        if port == SEQ_INDEX:
            return self.seq_index
        if port == SEQ_DATA:
            return self.seq[self.seq_index] if self.seq_index < len(self.seq) else 0xFF
        if port == GFX_INDEX:
            return self.gfx_index
        if port == GFX_DATA:
            return self.gfx[self.gfx_index] if self.gfx_index < len(self.gfx) else 0xFF
        if port == ATTR_INDEX:
            return self.attr_index
        if port == ATTR_READ:
            return self.attr[self.attr_index & 0x1F] if (self.attr_index & 0x1F) < len(self.attr) else 0xFF
        return 0xFF

    def io_write(self, port: int, size: int, value: int) -> None:
        value &= 0xFF
        if port == CRTC_INDEX:
            self.crtc_index = value
        elif port == CRTC_DATA:
            if self.crtc_index < len(self.crtc):
                self.crtc[self.crtc_index] = value
        elif port == MISC_WRITE:
            self.misc = value
        elif port == SEQ_INDEX:
            self.seq_index = value
        elif port == SEQ_DATA and self.seq_index < len(self.seq):
            self.seq[self.seq_index] = value
        elif port == GFX_INDEX:
            self.gfx_index = value
        elif port == GFX_DATA and self.gfx_index < len(self.gfx):
            self.gfx[self.gfx_index] = value
        elif port == ATTR_INDEX:
            if not self.attr_flip:
                self.attr_index = value
            elif (self.attr_index & 0x1F) < len(self.attr):
                self.attr[self.attr_index & 0x1F] = value
            self.attr_flip = not self.attr_flip
