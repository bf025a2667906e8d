"""`unisim info IMAGE`: what a loader sees in a kernel image."""
from __future__ import annotations

from unikernel_sim.boot import multiboot1 as mb1
from unikernel_sim.boot import multiboot2_header as mbh
from unikernel_sim.boot.elf_image import is_elf, read_elf
from unikernel_sim.boot.input_files import read_input_file
from unikernel_sim.errors import ImageError

INFO_TAG_NAMES = {
    1: "command line", 2: "boot loader name", 3: "modules", 4: "basic memory info", 5: "BIOS boot device",
    6: "memory map", 7: "VBE info", 8: "framebuffer info", 9: "ELF sections", 10: "APM table",
    11: "EFI 32-bit system table", 12: "EFI 64-bit system table", 13: "SMBIOS tables", 14: "ACPI old RSDP",
    15: "ACPI new RSDP", 16: "networking", 17: "EFI memory map", 18: "EFI boot services not terminated",
    19: "EFI 32-bit image handle", 20: "EFI 64-bit image handle", 21: "image load base address",
}


def describe_image(path: str) -> list[str]:
    data = read_input_file(path, "kernel image")
    if not data:
        raise ImageError("kernel image is empty", where=path)
    lines = [f"file: {path} ({len(data)} bytes)"]
    if is_elf(data):
        lines += _describe_elf(data, path)
    else:
        lines.append("format: not ELF (a flat binary needs a Multiboot2 address tag)")
    try:
        offset = mbh.find_header(data, path)
    except ImageError as missing:
        mb1_offset = mb1.find_header(data)
        if mb1_offset is not None:
            return lines + _describe_multiboot1(mb1.parse(data, mb1_offset, path))
        if not is_elf(data):
            raise
        return lines + [f"multiboot: none ({missing.message}); an ELF file without a header boots under "
                        "neither GRUB's multiboot2 nor multiboot command"]
    header = mbh.parse(data, offset, path)
    lines.append(f"multiboot2 header: offset {offset:#x}, architecture {header.architecture} (i386), "
                 f"header_length {header.header_length}, checksum {header.checksum:#010x} (valid)")
    for tag in header.tags:
        lines.append(f"  tag {tag.type} {tag.name}{' (optional)' if tag.optional else ''}, size {tag.size}"
                     f"{_tag_detail(header, tag)}")
    return lines


MB1_FLAG_NAMES = {0: "page-align modules", 1: "memory information", 2: "video mode", 16: "address fields"}


def _describe_multiboot1(header: mb1.Multiboot1Header) -> list[str]:
    named = ", ".join(name for bit, name in MB1_FLAG_NAMES.items() if header.flags & (1 << bit)) or "none"
    lines = [f"multiboot (version 1) header: offset {header.offset:#x}, flags {header.flags:#010x} ({named}), "
             "checksum valid"]
    if header.has_address_fields:
        lines.append(f"  header_addr {header.header_addr:#x}, load_addr {header.load_addr:#x}, "
                     f"load_end_addr {header.load_end_addr:#x}, bss_end_addr {header.bss_end_addr:#x}, "
                     f"entry_addr {header.entry_addr:#x}")
    if header.video is not None:
        mode, width, height, depth = header.video
        lines.append(f"  video: mode type {mode}, {width}x{height}x{depth}")
    return lines


def _describe_elf(data: bytes, path: str) -> list[str]:
    from unikernel_sim.boot.symbols import SymbolTable

    elf = read_elf(data, path)
    entry = elf.physical_entry()
    lines = [
        f"format: ELF{elf.elf_class} {elf.machine} {elf.elf_type}",
        f"entry: {elf.entry:#x}" + (f" (physical {entry:#x})" if entry is not None and entry != elf.entry else ""),
        "segments:",
    ]
    for seg in elf.segments:
        flags = "".join(c if seg.flags & bit else "-" for c, bit in (("r", 4), ("w", 2), ("x", 1)))
        lines.append(f"  LOAD paddr {seg.paddr:#010x} vaddr {seg.vaddr:#x} filesz {seg.filesz:#x} "
                     f"memsz {seg.memsz:#x} {flags}")
    lines.append(f"symbols: {len(SymbolTable.from_elf(elf, data))}")
    return lines


def _tag_detail(header: mbh.Multiboot2Header, tag: mbh.HeaderTag) -> str:
    if tag.type == mbh.TAG_INFORMATION_REQUEST:
        import struct

        types = struct.unpack_from(f"<{len(tag.body) // 4}I", tag.body)
        return ": " + ", ".join(f"{t} ({INFO_TAG_NAMES.get(t, 'unknown')})" for t in types)
    if tag.type == mbh.TAG_ADDRESS and header.address:
        a = header.address
        return (f": header_addr {a.header_addr:#x} load_addr {a.load_addr:#x} "
                f"load_end_addr {a.load_end_addr:#x} bss_end_addr {a.bss_end_addr:#x}")
    if tag.type == mbh.TAG_ENTRY_ADDRESS:
        return f": entry_addr {header.entry_address:#x}"
    if tag.type == mbh.TAG_FRAMEBUFFER and header.framebuffer:
        f = header.framebuffer
        return f": {f.width}x{f.height}x{f.depth}" + (" (text mode)" if f.depth == 0 else "")
    if tag.type == mbh.TAG_CONSOLE_FLAGS:
        return f": flags {header.console_flags:#x}"
    if tag.type == mbh.TAG_RELOCATABLE and header.relocatable:
        r = header.relocatable
        return f": min {r.min_addr:#x} max {r.max_addr:#x} align {r.align:#x} preference {r.preference}"
    return ""


def run_info(path: str) -> int:
    for line in describe_image(path):
        print(line)
    return 0
