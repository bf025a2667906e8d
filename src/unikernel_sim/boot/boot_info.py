"""The Multiboot2 boot information structure (specification section 3.6).

Built in the order GRUB emits its tags (see build_boot_info). Every tag starts 8-byte aligned; total_size counts the fixed
part, all tags with their padding, and the end tag.
"""
from __future__ import annotations

import os
import struct

from unikernel_sim.boot.bios_tables import apm_tag_payload, boot_device_payload
from unikernel_sim.boot.layout import MemoryRegion, basic_memory_kib
from unikernel_sim.boot.vbe_bios import MODE_LFB, VbeMode, control_info, framebuffer_fields, interface_fields, mode_info
from unikernel_sim.records import Record

TAG_END = 0
TAG_CMDLINE = 1
TAG_BOOT_LOADER_NAME = 2
TAG_MODULE = 3
TAG_BASIC_MEMINFO = 4
TAG_BOOTDEV = 5
TAG_MMAP = 6
TAG_VBE = 7
TAG_FRAMEBUFFER = 8
TAG_ELF_SECTIONS = 9
TAG_APM = 10
TAG_ACPI_OLD = 14
TAG_LOAD_BASE_ADDR = 21

MMAP_ENTRY_SIZE = 24
MMAP_ENTRY_VERSION = 0
FRAMEBUFFER_TYPE_EGA_TEXT = 2
EGA_TEXT_ADDRESS = 0xB8000
EGA_TEXT_COLUMNS = 80
EGA_TEXT_ROWS = 25
EGA_TEXT_BPP = 16                       # a character byte and an attribute byte
BOOT_LOADER_NAME = "unikernel_sim"


class ModuleInfo(Record):
    """A loaded module as the module tag (type 3) describes it."""

    start: int
    end: int               # one past the last byte, as GRUB sets mod_end
    cmdline: str


class ElfSectionsInfo(Record):
    """What the ELF-symbols tag (type 9) carries: the section headers with sh_addr where they were placed."""

    entry_size: int
    shndx: int
    headers: list[bytes]   # section headers, sh_addr already patched


def _tag(tag_type: int, body: bytes) -> bytes:
    data = struct.pack("<II", tag_type, 8 + len(body)) + body
    return data + b"\0" * (-len(data) % 8)


def _string(text: str | bytes) -> bytes:
    """A NUL-terminated string as GRUB passes it: the bytes given, unchanged. A str
    from the command line is re-encoded the way the OS decoded it (UTF-8 with
    surrogateescape), so bytes that are not UTF-8 reach the guest as they were."""
    data = text if isinstance(text, bytes) else os.fsencode(text)
    return data + b"\0"


def build_boot_info(
    *,
    cmdline: str,
    loader_name: str,
    modules: list[ModuleInfo],
    memory: list[MemoryRegion],
    ram_size: int,
    load_base: int,
    elf_sections: ElfSectionsInfo | None,
    rsdp: bytes | None = None,
    video: VbeMode | None = None,
) -> bytes:
    """The tags in the order GRUB 2.06 writes them (multiboot_mbi2.c; recorded on
    QEMU in tests/data/grub_reference): load base, command line, loader name, APM,
    modules, memory map, ELF sections, basic memory, boot device, [VBE], framebuffer,
    ACPI 1.0 RSDP. video: the graphics mode set for a framebuffer tag (tags 7 and 8
    describe it), or None for the EGA text console (tag 8 only)."""
    tags = [
        _tag(TAG_LOAD_BASE_ADDR, struct.pack("<I", load_base)),
        _tag(TAG_CMDLINE, _string(cmdline)),
        _tag(TAG_BOOT_LOADER_NAME, _string(loader_name)),
        _tag(TAG_APM, apm_tag_payload()),
    ]
    for module in modules:
        tags.append(_tag(TAG_MODULE, struct.pack("<II", module.start, module.end) + _string(module.cmdline)))
    entries = b"".join(struct.pack("<QQII", r.base, r.length, r.type, 0) for r in memory)
    tags.append(_tag(TAG_MMAP, struct.pack("<II", MMAP_ENTRY_SIZE, MMAP_ENTRY_VERSION) + entries))
    if elf_sections is not None:
        header = struct.pack("<III", len(elf_sections.headers), elf_sections.entry_size, elf_sections.shndx)
        tags.append(_tag(TAG_ELF_SECTIONS, header + b"".join(elf_sections.headers)))
    tags.append(_tag(TAG_BASIC_MEMINFO, struct.pack("<II", *basic_memory_kib(memory))))
    tags.append(_tag(TAG_BOOTDEV, boot_device_payload()))
    if video is None:
        tags.append(_tag(TAG_FRAMEBUFFER, struct.pack(
            "<QIIIBBH", EGA_TEXT_ADDRESS, EGA_TEXT_COLUMNS * 2, EGA_TEXT_COLUMNS, EGA_TEXT_ROWS,
            EGA_TEXT_BPP, FRAMEBUFFER_TYPE_EGA_TEXT, 0)))
    else:
        tags.append(_tag(TAG_VBE, interface_fields(video.number | MODE_LFB) + control_info() + mode_info(video)))
        fields, colours = framebuffer_fields(video)
        tags.append(_tag(TAG_FRAMEBUFFER, fields + struct.pack("<H", 0) + colours))
    if rsdp is not None:
        tags.append(_tag(TAG_ACPI_OLD, rsdp))
    tags.append(struct.pack("<II", TAG_END, 8))
    body = b"".join(tags)
    return struct.pack("<II", 8 + len(body), 0) + body
