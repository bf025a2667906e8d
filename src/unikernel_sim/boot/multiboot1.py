"""Multiboot 1 (specification 0.6.96): the header, and the information structure
as GRUB 2.06's `multiboot` command fills it on QEMU's PC (recorded with a probe:
tests/data/grub_reference/grub-2.06_qemu-7.2_512M_multiboot1.txt).

GRUB puts the structure and everything it points at in low memory (0x10000 on
QEMU); so does unisim. Fields GRUB fills: memory (0), boot device (1), command
line (2), modules (3), ELF section headers (5), memory map (6), loader name (9),
VBE (11: the controller and mode information blocks, after the ELF section headers)
and framebuffer (12). A video request (flag 2) with mode type 0 gets the graphics
mode GRUB sets (boot/vbe_bios.py); no request, or mode type 1, the EGA text console.
"""
from __future__ import annotations

import struct

from unikernel_sim.boot.layout import MemoryRegion, basic_memory_kib
from unikernel_sim.boot.vbe_bios import (
    EGA_TEXT_MODE, MODE_LFB, VbeMode, control_info, framebuffer_fields, interface_fields, mode_info, text_mode_info,
)
from unikernel_sim.errors import ImageError
from unikernel_sim.records import Record, record_equal, record_repr

HEADER_MAGIC = 0x1BADB002
BOOTLOADER_MAGIC = 0x2BADB002
SEARCH_LIMIT = 8192                     # section 3.1.1: within the first 8192 bytes, 32-bit aligned
HEADER_ALIGN = 4
FLAG_PAGE_ALIGN_MODULES = 1 << 0
FLAG_MEMORY_INFO = 1 << 1
FLAG_VIDEO_MODE = 1 << 2
FLAG_ADDRESS_FIELDS = 1 << 16
REQUIRED_FLAGS_SUPPORTED = FLAG_PAGE_ALIGN_MODULES | FLAG_MEMORY_INFO | FLAG_VIDEO_MODE
REQUIRED_FLAGS_MASK = 0xFFFF            # bits 0-15: a loader must refuse what it does not know

INFO_MEMORY, INFO_BOOT_DEVICE, INFO_CMDLINE, INFO_MODS = 1 << 0, 1 << 1, 1 << 2, 1 << 3
INFO_ELF_SECTIONS, INFO_MMAP, INFO_LOADER_NAME, INFO_VBE, INFO_FRAMEBUFFER = 1 << 5, 1 << 6, 1 << 9, 1 << 11, 1 << 12
INFO_SIZE = 116                         # the specification's table (section 3.3)
# GRUB's structure is multiboot.h's C struct: the colour-info union holds a u32 (the palette
# address), so it starts at 112, not at the table's 110, and the structure takes 120 bytes
# (recorded: the command line GRUB put right after it is at base + 0x78).
GRUB_INFO_SIZE = 120
INFO_BASE = 0x10000                     # where GRUB put it on QEMU
BOOT_DEVICE_CDROM = 0xE0FFFFFF          # drive 0xE0, no partitions (the recorded CD boot)
FRAMEBUFFER_TYPE_EGA_TEXT = 2
EGA_TEXT_COLUMNS, EGA_TEXT_ROWS, EGA_TEXT_ADDRESS, EGA_TEXT_BPP = 80, 25, 0xB8000, 16
VIDEO_MODE_TYPE_TEXT = 1


class Multiboot1Header:
    """A parsed Multiboot 1 header (spec 3.1.1) and what its flags ask of the loader."""

    protocol = "multiboot1"

    def __init__(self, offset: int, flags: int) -> None:
        self.offset = offset
        self.flags = flags
        self.header_addr = 0
        self.load_addr = 0
        self.load_end_addr = 0
        self.bss_end_addr = 0
        self.entry_addr = 0
        self.video: tuple[int, int, int, int] | None = None      # mode_type, width, height, depth
        self.warnings: list[str] = []

    def __repr__(self) -> str:
        return record_repr(self)

    def __eq__(self, other: object) -> bool:
        return record_equal(self, other)

    @property
    def has_address_fields(self) -> bool:
        return bool(self.flags & FLAG_ADDRESS_FIELDS)

    @property
    def wants_graphics(self) -> bool:
        """A video request (flag 2) for a linear graphics mode (type 0); type 1 is EGA text."""
        return self.video is not None and self.video[0] != VIDEO_MODE_TYPE_TEXT


def find_header(data: bytes) -> int | None:
    """Offset of a valid Multiboot 1 header in the first 8192 bytes, or None."""
    for offset in range(0, min(len(data), SEARCH_LIMIT) - 11, HEADER_ALIGN):
        magic, flags, checksum = struct.unpack_from("<III", data, offset)
        if magic == HEADER_MAGIC and (magic + flags + checksum) & 0xFFFFFFFF == 0:
            return offset
    return None


def parse(data: bytes, offset: int, where: str) -> Multiboot1Header:
    """The header at offset; ImageError for required flags a loader cannot honour."""
    _, flags, _ = struct.unpack_from("<III", data, offset)
    unknown = flags & REQUIRED_FLAGS_MASK & ~REQUIRED_FLAGS_SUPPORTED
    if unknown:
        raise ImageError(f"Multiboot header at {offset:#x} requires unknown feature bits {unknown:#x}",
                         where=where, hint="bits 0-15 of the flags are requirements (specification 3.1.2)")
    header = Multiboot1Header(offset, flags)
    if flags & FLAG_ADDRESS_FIELDS:
        if offset + 32 > len(data):
            raise ImageError("Multiboot header's address fields run past the end of the file", where=where)
        (header.header_addr, header.load_addr, header.load_end_addr, header.bss_end_addr,
         header.entry_addr) = struct.unpack_from("<IIIII", data, offset + 12)
    if flags & FLAG_VIDEO_MODE and offset + 48 <= len(data):
        header.video = struct.unpack_from("<IIII", data, offset + 32)
    return header


class Multiboot1Module(Record):
    """A module as the Multiboot 1 module list describes it."""

    start: int
    end: int
    cmdline: bytes


def build_info(*, base: int, cmdline: bytes, loader_name: bytes, modules: list[Multiboot1Module],
               memory: list[MemoryRegion], elf_sections: tuple[int, int, int, bytes] | None,
               video: VbeMode | None = None) -> bytes:
    """The structure (section 3.3) at base, followed by what its pointers point at, in
    GRUB's order: command line, loader name, module command lines, the module list,
    the memory map, the ELF section headers, the VBE controller and mode information.
    elf_sections: (count, entry size, string-table index, headers). video: the graphics
    mode set, or None for EGA text."""
    tail = bytearray()

    def put(blob: bytes, align: int = 4) -> int:
        while (GRUB_INFO_SIZE + len(tail)) % align:
            tail.append(0)
        address = base + GRUB_INFO_SIZE + len(tail)
        tail.extend(blob)
        return address

    flags = INFO_MEMORY | INFO_BOOT_DEVICE | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER_NAME
    flags |= INFO_VBE | INFO_FRAMEBUFFER
    cmdline_address = put(cmdline + b"\0")
    loader_address = put(loader_name + b"\0")
    module_entries = b"".join(struct.pack("<IIII", m.start, m.end, put(m.cmdline + b"\0"), 0) for m in modules)
    mods_address = put(module_entries)
    mmap = b"".join(struct.pack("<IQQI", 20, r.base, r.length, r.type) for r in memory)
    mmap_address = put(mmap)
    syms = struct.pack("<IIII", 0, 0, 0, 0)
    if elf_sections is not None:
        count, entry_size, shndx, headers = elf_sections
        syms = struct.pack("<IIII", count, entry_size, put(headers), shndx)
        flags |= INFO_ELF_SECTIONS
    vbe_control_address = put(control_info())
    vbe_mode_address = put(mode_info(video) if video is not None else text_mode_info(EGA_TEXT_COLUMNS, EGA_TEXT_ROWS))
    mem_lower_kib, mem_upper_kib = basic_memory_kib(memory)
    info = struct.pack("<IIIIII", flags, mem_lower_kib, mem_upper_kib, BOOT_DEVICE_CDROM, cmdline_address,
                       len(modules))
    info += struct.pack("<I", mods_address) + syms
    info += struct.pack("<IIIIIII", len(mmap), mmap_address, 0, 0, 0, loader_address, 0)
    info += struct.pack("<II", vbe_control_address, vbe_mode_address)
    if video is None:
        info += interface_fields(EGA_TEXT_MODE)
        info += struct.pack("<QIIIBB", EGA_TEXT_ADDRESS, EGA_TEXT_COLUMNS * 2, EGA_TEXT_COLUMNS, EGA_TEXT_ROWS,
                            EGA_TEXT_BPP, FRAMEBUFFER_TYPE_EGA_TEXT)
        colours = bytes(6)
    else:
        fields, colours = framebuffer_fields(video)
        info += interface_fields(video.number | MODE_LFB) + fields
    info += bytes(2) + colours + bytes(2)                  # colour info at 112 (see GRUB_INFO_SIZE)
    assert len(info) == GRUB_INFO_SIZE
    return info + bytes(tail)
