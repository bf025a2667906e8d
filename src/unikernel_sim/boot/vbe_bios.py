"""What GRUB 2.06 learns from the VGA BIOS of QEMU's std VGA (SeaBIOS's Bochs VBE
BIOS) and passes on: the mode list, the VBE controller and mode information
blocks (VESA BIOS Extension 3.0, functions 4F00h and 4F01h), and the mode GRUB
picks for a kernel's framebuffer request.

The mode list is GRUB's own `videoinfo` output on QEMU 7.2 (vbe_modes.txt, the
same file as tests/data/grub_reference/videoinfo_grub-2.06_qemu-7.2.txt). The
blocks' constant fields (far pointers into the VGA ROM at C000h and into GRUB's
real-mode buffer at 6000h, attributes, window layout) are as recorded under
GRUB 2.06 on QEMU 7.2 (framebuffer_grub-2.06_qemu-7.2.txt there); the
per-mode fields are computed from the mode.

GRUB's choice (recorded): a framebuffer tag or Multiboot 1 video request of
W x H x D asks for "WxHxD, then WxH, then auto"; "auto" is the EDID preferred
resolution of QEMU's std VGA, 1280x800, at the greatest depth. A request for
0x0x0 or for a text size such as 80x25 therefore gets 1280x800x32: GRUB gives a
graphics framebuffer to every kernel that has a framebuffer tag, even one that
says it supports EGA text. Only Multiboot 1's mode type 1 (EGA text) gets text.
"""
from __future__ import annotations

import re
import struct
from functools import cache

from unikernel_sim.records import Record

VRAM_SIZE = 16 << 20                       # QEMU std VGA default (vgamem_mb=16)
LFB_BASE = 0xFD000000                      # BAR0 as SeaBIOS assigns it on `pc`
EDID_PREFERRED = (1280, 800)               # QEMU std VGA's EDID preferred mode
MODE_LFB = 0x4000                          # mode number bit 14: use the linear framebuffer
EGA_TEXT_MODE = 0x0003

CONTROL_INFO_SIZE = 512
MODE_INFO_SIZE = 256
CONTROL_HEAD = struct.Struct("<4sHIIIHHIII")   # up to the mode list at offset 0x22
VBE_VERSION_3 = 0x0300
OEM_STRING_PTR = 0xC0005A30                # far pointers into the VGA BIOS ROM (C000h)
VENDOR_NAME_PTR = 0xC0005A44
PRODUCT_NAME_PTR = 0xC0005A57
PRODUCT_REV_PTR = 0xC0005A6B
CAPABILITIES_8BIT_DAC = 0x00000001
MODE_LIST_PTR = 0x60008022                 # 6000:8022, inside GRUB's real-mode copy of this block
MODE_LIST_OFFSET = 0x22
MODE_LIST_END = 0xFFFF
# Function 4F0Ah (protected-mode interface) is not supported by SeaBIOS's VGA BIOS; GRUB
# 2.06 still copies its registers: segment 0xFFFF, offset 0x6000, length 0x4F in every
# Multiboot2 recording (Multiboot 1 recordings show stale stack bytes in the segment).
INTERFACE_SEG, INTERFACE_OFF, INTERFACE_LEN = 0xFFFF, 0x6000, 0x004F

MODE_ATTRIBUTES = 0x00BB                   # supported, TTY, colour, graphics, no VGA window, LFB
WINDOW_A_ATTRIBUTES = 0x07                 # relocatable, readable, writable
WINDOW_KIB = 64
WINDOW_A_SEGMENT = 0xA000
WINDOW_FUNCTION_PTR = 0xC00056E3
CHAR_WIDTH, CHAR_HEIGHT = 8, 16
MEMORY_MODEL_PACKED, MEMORY_MODEL_PLANAR, MEMORY_MODEL_DIRECT = 4, 3, 6
DIRECT_COLOUR_RESERVED_USABLE = 0x02
# Number of image pages: (VRAM - 256 KiB) // (pitch x height) - 1 fits all four recorded
# modes (3, 4, 16, 16); the plain VRAM size does not (it gives 17 for 640x480x24).
IMAGE_PAGE_MEMORY = VRAM_SIZE - (256 << 10)

FRAMEBUFFER_TYPE_INDEXED, FRAMEBUFFER_TYPE_RGB, FRAMEBUFFER_TYPE_EGA_TEXT = 0, 1, 2


class ColourLayout(Record):
    """Bits of each channel in a pixel: (position, size) for red, green, blue, reserved."""

    red: tuple[int, int]
    green: tuple[int, int]
    blue: tuple[int, int]
    reserved: tuple[int, int]


class VbeMode(Record):
    """One mode of the VBE mode list QEMU's VGA BIOS offers (vbe_modes.txt)."""

    number: int
    width: int
    height: int
    bpp: int
    pitch: int
    kind: str                       # "direct", "paletted", "planar" or "text"
    colours: ColourLayout | None    # direct colour only

    @property
    def direct(self) -> bool:
        return self.kind == "direct"

    def __str__(self) -> str:
        return f"VBE mode {self.number:#x} ({self.width}x{self.height}x{self.bpp})"


# Patterns of the mode table's lines, compiled (by re's cache) only when a kernel asks for
# a graphics mode: most boots never read the table.
_LINE = r"^\s*0x([0-9a-f]+)\s+(\d+) x\s+(\d+) x\s+(\d+) \(\s*(\d+)\)\s+(.*?)\s*$"
_MASKS = r"mask: (\d+)/(\d+)/(\d+)/(\d+)\s+pos: (\d+)/(\d+)/(\d+)/(\d+)"


def _parse_mode(line: str) -> VbeMode | None:
    match = re.match(_LINE, line)
    if match is None:
        return None
    number, width, height, bpp, pitch = (int(match.group(1), 16), *map(int, match.groups()[1:5]))
    description = match.group(6)
    colours = None
    if description.startswith("Direct color"):
        m = re.search(_MASKS, description)
        assert m is not None, line
        sizes, positions = list(map(int, m.groups()[:4])), list(map(int, m.groups()[4:]))
        colours = ColourLayout(*zip(positions, sizes))
        kind = "direct"
    elif "Planar" in description:
        kind = "planar"
    elif description.startswith("Paletted"):
        kind = "paletted"
    else:
        kind = "text"
    return VbeMode(number, width, height, bpp, pitch, kind, colours)


@cache
def vbe_modes() -> tuple[VbeMode, ...]:
    """Every mode the VGA BIOS lists, in its order (the order of the mode list)."""
    from importlib import resources

    text = resources.files("unikernel_sim.boot").joinpath("vbe_modes.txt").read_text()
    return tuple(mode for mode in map(_parse_mode, text.splitlines()) if mode is not None)


def choose_mode(width: int, height: int, depth: int) -> VbeMode:
    """The direct-colour mode GRUB 2.06 sets for a request of width x height x depth
    (0 = no preference): exact match, else that resolution at the greatest depth,
    else the EDID preferred resolution at the greatest depth."""
    direct = [mode for mode in vbe_modes() if mode.direct]
    if width and height and depth:
        for mode in direct:
            if (mode.width, mode.height, mode.bpp) == (width, height, depth):
                return mode
    for w, h in ((width, height), EDID_PREFERRED):
        same_size = [mode for mode in direct if (mode.width, mode.height) == (w, h)]
        if same_size:
            return max(same_size, key=lambda mode: mode.bpp)
    raise AssertionError("the EDID preferred mode is in the mode list")


def control_info() -> bytes:
    """The 512-byte VBE controller information block (function 4F00h) as GRUB copies it."""
    head = CONTROL_HEAD.pack(b"VESA", VBE_VERSION_3, OEM_STRING_PTR, CAPABILITIES_8BIT_DAC, MODE_LIST_PTR,
                             VRAM_SIZE >> 16, 0, VENDOR_NAME_PTR, PRODUCT_NAME_PTR, PRODUCT_REV_PTR)
    numbers = [mode.number for mode in vbe_modes()] + [MODE_LIST_END]
    block = head + struct.pack(f"<{len(numbers)}H", *numbers)
    return block.ljust(CONTROL_INFO_SIZE, b"\0")


def mode_info(mode: VbeMode) -> bytes:
    """The 256-byte VBE mode information block (function 4F01h) for a direct-colour mode."""
    assert mode.colours is not None
    c = mode.colours
    colour_fields = (c.red[1], c.red[0], c.green[1], c.green[0], c.blue[1], c.blue[0],
                     c.reserved[1], c.reserved[0])
    pages = IMAGE_PAGE_MEMORY // (mode.pitch * mode.height) - 1
    block = struct.pack(
        "<HBBHHHHIHHHBBBBBBBBB", MODE_ATTRIBUTES, WINDOW_A_ATTRIBUTES, 0, WINDOW_KIB, WINDOW_KIB,
        WINDOW_A_SEGMENT, 0, WINDOW_FUNCTION_PTR, mode.pitch, mode.width, mode.height, CHAR_WIDTH,
        CHAR_HEIGHT, 1, mode.bpp, 1, MEMORY_MODEL_DIRECT, 0, pages, 1)
    block += bytes(colour_fields)
    block += bytes([DIRECT_COLOUR_RESERVED_USABLE if c.reserved[1] else 0])
    block += struct.pack("<IIH", LFB_BASE, 0, 0)                     # PhysBasePtr, off-screen memory
    block += struct.pack("<HBB", mode.pitch, 0, 0) + bytes(colour_fields) + struct.pack("<I", 0)
    return block.ljust(MODE_INFO_SIZE, b"\0")


def text_mode_info(columns: int, rows: int) -> bytes:
    """What GRUB hands over as mode information in EGA text mode: the size only."""
    block = bytearray(MODE_INFO_SIZE)
    struct.pack_into("<HH", block, 0x12, columns, rows)
    return bytes(block)


def interface_fields(mode_number: int) -> bytes:
    """vbe_mode, vbe_interface_seg, vbe_interface_off, vbe_interface_len."""
    return struct.pack("<HHHH", mode_number, INTERFACE_SEG, INTERFACE_OFF, INTERFACE_LEN)


def framebuffer_fields(mode: VbeMode) -> bytes:
    """framebuffer_addr, pitch, width, height, bpp, type, then the RGB colour info
    (red position, red size, green..., blue...): the layout Multiboot 1's fields
    and Multiboot2's tag 8 share (after which tag 8 has a reserved u16 first)."""
    c = mode.colours
    assert c is not None
    return (struct.pack("<QIIIBB", LFB_BASE, mode.pitch, mode.width, mode.height, mode.bpp, FRAMEBUFFER_TYPE_RGB),
            bytes((c.red[0], c.red[1], c.green[0], c.green[1], c.blue[0], c.blue[1])))
