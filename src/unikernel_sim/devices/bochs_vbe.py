"""The Bochs VBE extension of QEMU's std VGA ("DISPI"): the display registers
kernels program to set a graphics mode themselves, and the 16 MiB of video
memory behind the linear framebuffer at 0xFD000000 (PCI BAR0 of 00:02.0).

Register table (index written to port 0x1CE, value read/written at 0x1CF, 16 bits;
a byte access is taken as the low byte, as QEMU's ports allow):

  0 ID            0xB0C0-0xB0C5: the interface version; a write of another value is ignored
  1 XRES          visible width in pixels (a multiple of 8 once enabled)
  2 YRES          visible height
  3 BPP           4, 8, 15, 16, 24 or 32 (anything else becomes 8 when enabled)
  4 ENABLE        bit 0 enabled, 1 GETCAPS (XRES/YRES/BPP read their maxima),
                  5 8-bit DAC, 6 linear framebuffer, 7 do not clear video memory
  5 BANK          64 KiB bank at 0xA0000 (stored; the banked window is not emulated)
  6 VIRT_WIDTH    line length in pixels (at least XRES)
  7 VIRT_HEIGHT   lines that fit in video memory (computed, read-only)
  8 X_OFFSET      first visible pixel of a line (panning)
  9 Y_OFFSET      first visible line
  10 VIDEO_MEMORY_64K  video memory size in 64 KiB units (read-only)

The recorded values GRUB leaves (tests/data/grub_reference/framebuffer_grub-2.06_
qemu-7.2.txt) are what enabling computes: 1280x800x32 gives VIRT_WIDTH 1280 and
VIRT_HEIGHT 16 MiB / 5120 = 3276. Video memory is plain Unicorn memory, so drawing
costs nothing; the host reads it for a screenshot.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from unicorn import UC_PROT_READ, UC_PROT_WRITE

from unikernel_sim.boot.vbe_bios import LFB_BASE, VRAM_SIZE
from unikernel_sim.devices.device import Device, PortRange

if TYPE_CHECKING:
    from unicorn import Uc

INDEX_PORT, DATA_PORT = 0x1CE, 0x1CF
ID, XRES, YRES, BPP, ENABLE, BANK, VIRT_WIDTH, VIRT_HEIGHT, X_OFFSET, Y_OFFSET, VIDEO_MEMORY_64K = range(11)
REGISTERS = 10                              # 0-9 are stored; 10 is computed
ID_FIRST, ID_LATEST = 0xB0C0, 0xB0C5
ENABLED = 0x01
GETCAPS = 0x02
LFB_ENABLED = 0x40
NO_CLEAR_MEMORY = 0x80
MAX_XRES, MAX_YRES, MAX_BPP = 16000, 12000, 32      # QEMU's limits
VALID_BPP = (4, 8, 15, 16, 24, 32)
DEFAULT_BPP = 8
XRES_ALIGN = 8
MAX_VIRT_HEIGHT = 0xFFFF
CLEAR_CHUNK = 1 << 20


def bytes_per_line(virt_width: int, bpp: int) -> int:
    """Line length in bytes: 4-bit modes pack two pixels per byte."""
    return virt_width // 2 if bpp == 4 else virt_width * ((bpp + 7) // 8)


class BochsVbe(Device):
    name = "bochs-vbe"
    ports = (PortRange(INDEX_PORT, 2),)
    io_width = 2
    saved_fields = ("index", "registers")

    def __init__(self, uc: "Uc", map_memory: Callable[[int, int, int], None]) -> None:
        """map_memory(base, size, perms) maps the framebuffer where snapshots cover it."""
        self.uc = uc
        map_memory(LFB_BASE, VRAM_SIZE, UC_PROT_READ | UC_PROT_WRITE)
        self.index = 0
        self.registers = [0] * REGISTERS
        self.reset()

    def reset(self) -> None:
        self.index = 0
        self.registers = [0] * REGISTERS
        self.registers[ID] = ID_LATEST

    # --- what the screen shows -------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return bool(self.registers[ENABLE] & ENABLED)

    @property
    def mode(self) -> tuple[int, int, int]:
        """(width, height, bits per pixel) of the enabled mode."""
        return self.registers[XRES], self.registers[YRES], self.registers[BPP]

    @property
    def line_bytes(self) -> int:
        return bytes_per_line(self.registers[VIRT_WIDTH], self.registers[BPP])

    def visible_bytes(self) -> bytes:
        """The visible lines from video memory (each VIRT_WIDTH wide, panning applied)."""
        width, height, bpp = self.mode
        start = self.registers[Y_OFFSET] * self.line_bytes + self.registers[X_OFFSET] * bpp // 8
        length = min(height * self.line_bytes, VRAM_SIZE - start)
        return bytes(self.uc.mem_read(LFB_BASE + start, max(0, length)))

    def set_mode(self, width: int, height: int, bpp: int) -> None:
        """Enable a linear-framebuffer mode as the VGA BIOS does for a VBE mode set
        (the boot loader's, at power-on: video memory is still all zeros)."""
        r = self.registers
        r[XRES], r[YRES], r[BPP] = width, height, bpp
        r[VIRT_WIDTH] = r[X_OFFSET] = r[Y_OFFSET] = 0
        r[ENABLE] = ENABLED | LFB_ENABLED
        self._fix_up()

    # --- guest accesses --------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if port == INDEX_PORT:
            return self.index
        return self._read(self.index)

    def io_write(self, port: int, size: int, value: int) -> None:
        if port == INDEX_PORT:
            self.index = value & 0xFFFF
        else:
            self._write(self.index, value & 0xFFFF)

    def _read(self, index: int) -> int:
        if index == VIDEO_MEMORY_64K:
            return VRAM_SIZE >> 16
        if index >= REGISTERS:
            return 0
        if self.registers[ENABLE] & GETCAPS and index in (XRES, YRES, BPP):
            return {XRES: MAX_XRES, YRES: MAX_YRES, BPP: MAX_BPP}[index]
        return self.registers[index]

    def _write(self, index: int, value: int) -> None:
        if index == ID:
            if ID_FIRST <= value <= ID_LATEST:
                self.registers[ID] = value
        elif index in (XRES, YRES, BPP, VIRT_WIDTH, X_OFFSET, Y_OFFSET, BANK):
            self.registers[index] = value
            self._fix_up()
        elif index == ENABLE:
            was_enabled = self.enabled
            self.registers[ENABLE] = value
            self._fix_up()
            if value & ENABLED and not was_enabled and not value & NO_CLEAR_MEMORY:
                self._clear_video_memory()

    def _fix_up(self) -> None:
        """Make the enabled mode consistent, as QEMU does on every register write:
        a valid depth, a resolution within limits and video memory, a line at least
        as wide as the screen, and the number of lines that fit."""
        if not self.enabled:
            return
        r = self.registers
        if r[BPP] not in VALID_BPP:
            r[BPP] = DEFAULT_BPP
        r[XRES] = max(XRES_ALIGN, min(r[XRES], MAX_XRES)) // XRES_ALIGN * XRES_ALIGN
        r[YRES] = max(1, min(r[YRES], MAX_YRES))
        r[VIRT_WIDTH] = max(r[VIRT_WIDTH], r[XRES])
        line = bytes_per_line(r[VIRT_WIDTH], r[BPP])
        if line * r[YRES] > VRAM_SIZE:                       # too wide to fit: fall back to the screen width
            r[VIRT_WIDTH] = r[XRES]
            line = bytes_per_line(r[VIRT_WIDTH], r[BPP])
            r[YRES] = min(r[YRES], VRAM_SIZE // line)
        r[VIRT_HEIGHT] = min(VRAM_SIZE // line, MAX_VIRT_HEIGHT)
        r[X_OFFSET] = min(r[X_OFFSET], r[VIRT_WIDTH] - r[XRES])
        r[Y_OFFSET] = min(r[Y_OFFSET], r[VIRT_HEIGHT] - r[YRES])

    def _clear_video_memory(self) -> None:
        zeros = bytes(CLEAR_CHUNK)
        for offset in range(0, VRAM_SIZE, CLEAR_CHUNK):
            self.uc.mem_write(LFB_BASE + offset, zeros)

    def describe_state(self) -> str:
        if not self.enabled:
            return f"{self.name}: disabled (VGA text)"
        width, height, bpp = self.mode
        return (f"{self.name}: {width}x{height}x{bpp} linear framebuffer at {LFB_BASE:#x}, "
                f"line {self.line_bytes} bytes, offset ({self.registers[X_OFFSET]}, {self.registers[Y_OFFSET]})")
