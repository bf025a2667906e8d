"""`unisim info IMAGE`: what a loader sees in a kernel image; `unisim info --acpi`:
the ACPI tables a guest finds."""
from __future__ import annotations

import struct

from unikernel_sim.boot import multiboot1 as mb1
from unikernel_sim.boot import multiboot2_header as mbh
from unikernel_sim.boot.elf_image import is_elf, read_elf
from unikernel_sim.boot.input_files import read_input_file
from unikernel_sim.errors import ImageError, UsageError

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


def run_info(path: str | None, *, acpi: bool = False, memory_mb: int = 512) -> int:
    """`unisim info IMAGE` and/or `unisim info --acpi`; UsageError when given neither."""
    if path is None and not acpi:
        raise UsageError("nothing to describe", where="info", hint="give a kernel image, or --acpi")
    lines = describe_image(path) if path is not None else []
    if acpi:
        lines += describe_acpi(memory_mb << 20)
    for line in lines:
        print(line)
    return 0


def describe_acpi(ram_size: int) -> list[str]:
    """The tables as a guest finds them, decoded field by field from their bytes (the
    ACPI 6.5 layouts), one line per table and per MADT record."""
    from unikernel_sim.boot.acpi_tables import acpi_tables
    from unikernel_sim.boot.layout import top_reserved_base

    tables = acpi_tables(top_reserved_base(ram_size))
    rsdp = tables.rsdp
    lines = [f"RSDP at {tables.rsdp_address:#x}: revision {rsdp[15]}, OEM {rsdp[9:15].decode()!r}, "
             f"RSDT at {struct.unpack_from('<I', rsdp, 16)[0]:#x}"]
    for address, data in tables.tables:
        signature = data[:4].decode()
        if signature == "FACS":
            lines.append(f"FACS at {address:#x}: {len(data)} bytes")
            continue
        length, revision, checksum = struct.unpack_from("<IBB", data, 4)
        valid = "valid" if sum(data) % 256 == 0 else "BAD"
        lines.append(f"{signature} at {address:#x}: {length} bytes, revision {revision}, checksum {valid}, "
                     f"OEM {data[10:16].decode()!r} {data[16:24].decode()!r}")
        lines += ["  " + line for line in _acpi_table_fields(signature, data)]
    return lines


def _acpi_table_fields(signature: str, data: bytes) -> list[str]:
    if signature == "RSDT":
        return ["entries " + ", ".join(f"{p:#x}" for (p,) in struct.iter_unpack("<I", data[36:]))]
    if signature == "FACP":
        facs, dsdt, _, _, sci, smi, enable, disable = struct.unpack_from("<IIBBHIBB", data, 36)
        pm1a_event, _, pm1a_control, _, _, pm_timer, gpe0 = struct.unpack_from("<IIIIIII", data, 56)
        return [f"FACS {facs:#x}, DSDT {dsdt:#x}, SCI IRQ {sci}, SMI command {smi:#x} (enable {enable:#x}, "
                f"disable {disable:#x})",
                f"PM1a event {pm1a_event:#x}, PM1a control {pm1a_control:#x}, PM timer {pm_timer:#x}, "
                f"GPE0 {gpe0:#x}, century index {data[108]:#x}, flags {struct.unpack_from('<I', data, 112)[0]:#x}"]
    if signature == "APIC":
        return _madt_records(data)
    if signature == "HPET":
        block, address = struct.unpack_from("<I", data, 36)[0], struct.unpack_from("<Q", data, 44)[0]
        return [f"event timer block {block:#x}, registers at {address:#x}"]
    if signature == "DSDT":
        found = [name for name in ("_S3_", "_S4_", "_S5_") if name.encode() in data]
        return [f"sleep packages {', '.join(found)}"]
    return []


def _madt_records(data: bytes) -> list[str]:
    lapic, flags = struct.unpack_from("<II", data, 36)
    lines = [f"local APIC at {lapic:#x}, flags {flags:#x}"]
    offset = 44
    while offset + 2 <= len(data):
        kind, length = data[offset], data[offset + 1]
        body = data[offset + 2:offset + length]
        if kind == 0:
            lines.append(f"processor {body[0]}: APIC ID {body[1]}, flags {struct.unpack_from('<I', body, 2)[0]:#x}")
        elif kind == 1:
            ioapic_id, _, address, gsi = struct.unpack("<BBII", body)
            lines.append(f"I/O APIC {ioapic_id} at {address:#x}, GSI base {gsi}")
        elif kind == 2:
            bus, irq, gsi, inti = struct.unpack("<BBIH", body)
            lines.append(f"override: ISA IRQ {irq} -> GSI {gsi}, flags {inti:#06x}")
        elif kind == 4:
            processor, inti, lint = struct.unpack("<BHB", body)
            lines.append(f"local APIC NMI: processor {processor:#x}, LINT{lint}, flags {inti:#06x}")
        else:
            lines.append(f"record type {kind}, {length} bytes")
        offset += max(length, 2)
    return lines
