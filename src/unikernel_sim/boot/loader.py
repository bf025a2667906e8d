"""Loading a Multiboot2 kernel and its modules into a Machine.

The order follows GRUB: validate the header, load the image (the address tag
wins over ELF program headers when both exist), then modules page-aligned
above the kernel, then the boot information above the modules. Every
placement is claimed in a PhysicalLayout, so overlaps and out-of-RAM
placements are refused before anything runs.
"""
from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Callable

from unikernel_sim.boot import multiboot2_header as mbh
from unikernel_sim.boot.boot_info import (
    BOOT_LOADER_NAME, ElfSectionsInfo, ModuleInfo, build_boot_info,
)
from unikernel_sim.boot.elf_image import SHF_ALLOC, SHT_NOBITS, ElfImage, is_elf, read_elf
from unikernel_sim.boot.input_files import read_input_file
from unikernel_sim.boot.handoff import SCRATCH_SIZE, HandoffStub, enter_multiboot2_state
from unikernel_sim.boot.acpi_tables import acpi_tables
from unikernel_sim.boot.vbe_bios import VbeMode, choose_mode
from unikernel_sim.boot.layout import (
    CONVENTIONAL_END, EXTENDED_START, PAGE, PhysicalLayout, memory_map, top_reserved_base,
)
from unikernel_sim.errors import ImageError, UsageError
from unikernel_sim.records import Record, record_repr

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

from unikernel_sim.version import __version__

LOW_SCRATCH_START = 0x1000          # keep page 0 free: null pointers stay visible
FOUR_GIB = 1 << 32
KERNEL_FILE_ALLOWANCE = 256 << 20    # a kernel file may exceed a small RAM with its debug info


class ModuleSpec(Record):
    """A module to load: its file, its command line, and optionally a fixed address."""

    path: str
    cmdline: str = ""
    address: int | None = None

    @classmethod
    def parse(cls, text: str) -> "ModuleSpec":
        """``FILE[=CMDLINE]`` as the CLI takes it; UsageError when FILE is empty."""
        path, _, cmdline = text.partition("=")
        if not path:
            raise UsageError(f"no file name in {text!r}; give FILE[=CMDLINE]", where="--module")
        return cls(path, cmdline)


class LoadedKernel(Record):
    """A kernel placed in guest memory with its boot information, as the loader left it."""

    path: str
    header: mbh.Multiboot2Header
    elf: ElfImage | None
    entry: int
    boot_info_address: int
    boot_info: bytes
    load_base: int
    modules: list[ModuleInfo]
    layout: PhysicalLayout
    image_data: bytes = b""

    def __repr__(self) -> str:
        """Without image_data: a whole kernel image is no help in a repr."""
        return record_repr(self, hidden=("image_data",))


def load_kernel(
    machine: "Machine",
    path: str,
    *,
    cmdline: str = "",
    modules: list[ModuleSpec] | None = None,
    deadline: float | None = None,
    on_elf: Callable[[ElfImage, bytes], None] | None = None,
) -> LoadedKernel:
    """Load path into machine and put the CPU in the Multiboot2 entry state.
    deadline (time.monotonic()): give up on inputs that are streams still open then.
    on_elf(image, data) runs as soon as an ELF file is parsed, before anything is placed:
    work that needs only the file (the alignment guard's site search) starts there."""
    data = read_input_file(path, "kernel image", limit=max(machine.ram.size, KERNEL_FILE_ALLOWANCE),
                           deadline=deadline)
    if not data:
        raise ImageError("kernel image is empty", where=path)
    elf = read_elf(data, path) if is_elf(data) else None
    if elf is not None and on_elf is not None:
        on_elf(elf, data)
    try:
        header_offset = mbh.find_header(data, path)
    except ImageError as error:
        loaded = _load_multiboot1(machine, path, data, elf, cmdline, modules or [], deadline)
        if loaded is not None:
            return loaded
        if elf is None:
            error.message = f"not an ELF file, and {error.message}"
        raise ImageError(error.message, where=error.where, hint=error.hint) from None
    header = mbh.parse(data, header_offset, path)
    video = _framebuffer_mode(header.framebuffer, header.warnings)

    layout = PhysicalLayout(machine.ram.size, path)
    if header.address is not None:
        entry, load_base, chunks = _plan_address_tag_image(header, data, path, layout, header.warnings)
    elif elf is not None:
        entry, load_base, chunks = _plan_elf_image(elf, path, layout, header.warnings)
    else:
        raise ImageError(
            "not an ELF file, and its Multiboot2 header has no address tag to load it by",
            where=path,
            hint="boot an ELF kernel, or add an address tag (type 2) for a flat binary",
        )
    layout.image_end = layout.highest_end()
    if header.entry_address is not None:
        entry = header.entry_address
    _check_entry(entry, layout, path)

    elf_sections = _place_elf_sections(elf, data, layout, chunks) if elf is not None and header.address is None else None
    module_infos = _place_modules(modules or [], layout, chunks, deadline)
    tables = acpi_tables(top_reserved_base(machine.ram.size))
    chunks.extend(tables.chunks())                  # what the BIOS would have left in RAM
    boot_info = build_boot_info(
        cmdline=cmdline, loader_name=_loader_name(), modules=module_infos,
        memory=memory_map(machine.ram.size), ram_size=machine.ram.size, load_base=load_base,
        elf_sections=elf_sections, rsdp=tables.rsdp, video=video,
    )
    boot_info_address = layout.place(len(boot_info), "boot information", align=PAGE)
    if boot_info_address + len(boot_info) > FOUR_GIB:
        raise ImageError("boot information would lie above 4 GiB", where=path)
    _hand_over(machine, layout, chunks + [(boot_info_address, boot_info)], entry, boot_info_address,
               mbh.BOOTLOADER_MAGIC)
    _set_video_mode(machine, video)
    return LoadedKernel(path, header, elf, entry, boot_info_address, boot_info, load_base,
                        module_infos, layout, data)


class _AddressFields(Record):
    """Multiboot 1's address fields in the shape of Multiboot2's address tag."""

    offset: int
    address: mbh.AddressTag
    entry_address: int


def _load_multiboot1(machine: "Machine", path: str, data: bytes, elf: ElfImage | None,
                     cmdline: str, modules: list[ModuleSpec], deadline: float | None) -> LoadedKernel | None:
    """Multiboot 1 (specification 0.6.96, section 3): the address fields when flag 16 is set
    (as GRUB, even for an ELF file), the ELF program headers otherwise; EAX = 0x2BADB002 and
    EBX = the information structure, in low memory as GRUB puts it. None when data has no
    Multiboot 1 header either (its module is imported only for such a kernel)."""
    from unikernel_sim.boot import multiboot1 as mb1

    header_offset = mb1.find_header(data)
    if header_offset is None:
        return None
    header = mb1.parse(data, header_offset, path)
    layout = PhysicalLayout(machine.ram.size, path)
    if header.has_address_fields:
        fields = _AddressFields(header.offset, mbh.AddressTag(header.header_addr, header.load_addr,
                                                               header.load_end_addr, header.bss_end_addr),
                                header.entry_addr)
        entry, load_base, chunks = _plan_address_tag_image(fields, data, path, layout, header.warnings)
    elif elf is not None:
        entry, load_base, chunks = _plan_elf_image(elf, path, layout, header.warnings)
    else:
        raise ImageError("not an ELF file, and its Multiboot header has no address fields (flag 16) to load it by",
                         where=path, hint="boot an ELF kernel, or set flag 16 and the address fields")
    layout.image_end = layout.highest_end()
    _check_entry(entry, layout, path)
    sections = None
    if elf is not None and not header.has_address_fields:
        info = _place_elf_sections(elf, data, layout, chunks)
        if info is not None:
            sections = (len(info.headers), info.entry_size, info.shndx, b"".join(info.headers))
    module_infos = _place_modules(modules, layout, chunks, deadline)
    chunks.extend(acpi_tables(top_reserved_base(machine.ram.size)).chunks())
    memory = memory_map(machine.ram.size)
    mb1_modules = [mb1.Multiboot1Module(m.start, m.end, os.fsencode(m.cmdline)) for m in module_infos]

    video = choose_mode(*header.video[1:]) if header.wants_graphics else None

    def info_at(base: int) -> bytes:
        return mb1.build_info(base=base, cmdline=os.fsencode(cmdline), loader_name=_loader_name().encode(),
                              modules=mb1_modules, memory=memory, elf_sections=sections, video=video)

    size = len(info_at(0))                          # the pointers' values do not change the size
    base = layout.place(size, "Multiboot information", above=mb1.INFO_BASE, below=CONVENTIONAL_END)
    boot_info = info_at(base)
    _hand_over(machine, layout, chunks + [(base, boot_info)], entry, base, mb1.BOOTLOADER_MAGIC)
    _set_video_mode(machine, video)
    return LoadedKernel(path, header, elf, entry, base, boot_info, load_base, module_infos, layout, data)


def _check_entry(entry: int, layout: PhysicalLayout, path: str) -> None:
    if not any(p.start <= entry < p.end for p in layout.placements):
        raise ImageError(f"entry point {entry:#x} is not inside the loaded image", where=path)


def _hand_over(machine: "Machine", layout: PhysicalLayout, chunks: Chunks, entry: int, boot_info_address: int,
               magic: int) -> None:
    """Place the hand-off stub, write everything into RAM, and run the stub into the
    32-bit entry state with EAX = magic and EBX = the boot information."""
    scratch = _place_scratch(layout)
    for address, blob in chunks:
        machine.ram.write(address, blob)
    stub = HandoffStub(scratch)
    machine.ram.write(scratch, stub.image())
    machine.uc.ctl_flush_tb()
    enter_multiboot2_state(machine.uc, stub, entry, boot_info_address, magic, machine.run_to)


def _loader_name() -> str:
    return f"{BOOT_LOADER_NAME} {__version__}"


def _framebuffer_mode(request: mbh.FramebufferRequest | None, warnings: list[str]) -> VbeMode | None:
    """The graphics mode GRUB sets for a framebuffer tag (vbe_bios.choose_mode), or
    None for the EGA text console (no tag). A size GRUB cannot set is a warning."""
    if request is None:
        return None
    mode = choose_mode(request.width, request.height, request.depth)
    asked = (request.width, request.height, request.depth)
    if any(asked) and asked != (mode.width, mode.height, mode.bpp) and not (
            request.depth == 0 and (request.width, request.height) == (mode.width, mode.height)):
        warnings.append(f"framebuffer tag asks for {request.width}x{request.height}x{request.depth}, which the "
                        f"VBE BIOS does not offer; GRUB sets {mode.width}x{mode.height}x{mode.bpp} instead")
    return mode


def _set_video_mode(machine: "Machine", mode: VbeMode | None) -> None:
    """Leave the display as the loader's VBE mode set did."""
    if mode is not None:
        machine.board.vbe.set_mode(mode.width, mode.height, mode.bpp)


Chunks = list[tuple[int, bytes]]


def _plan_elf_image(elf: ElfImage, path: str, layout: PhysicalLayout,
                    warnings: list[str]) -> tuple[int, int, Chunks]:
    chunks: Chunks = []
    for seg in elf.segments:
        name = f"ELF segment {seg.index}"
        layout.claim(seg.paddr, seg.memsz, name, anywhere_below_1mib=True)
        chunks.extend(_outside_legacy_hole(seg.paddr, seg.data + b"\0" * (seg.memsz - seg.filesz), name, warnings))
    entry = elf.physical_entry()
    if entry is None:
        raise ImageError(f"ELF entry point {elf.entry:#x} is not inside any loadable segment", where=path)
    return entry, _load_base(min(seg.paddr for seg in elf.segments)), chunks


def _load_base(lowest: int) -> int:
    """Tag 21's value: the lowest load address rounded down to a page, as GRUB 2.06
    reported it for segments at 0x500 (0) and 0x9FC00 (0x9F000) (recorded)."""
    return lowest & ~(PAGE - 1)


def _outside_legacy_hole(address: int, blob: bytes, name: str, warnings: list[str]) -> Chunks:
    """The parts of a kernel chunk a PC keeps. GRUB 2.06 copies a segment into
    0xA0000-0xFFFFF without complaint, but there the PC has VGA memory and the
    write-protected video and system BIOS; on QEMU the kernel then reads 0xFFFFFFFF,
    the VGA ROM, zeros or BIOS code instead of its bytes (recorded with probes at
    0xA0000, 0xC0000, 0xE0000 and 0xFF000). So those bytes are dropped, with a warning."""
    end = address + len(blob)
    if end <= CONVENTIONAL_END or address >= EXTENDED_START:
        return [(address, blob)]
    lost_from, lost_to = max(address, CONVENTIONAL_END), min(end, EXTENDED_START)
    warnings.append(f"{name} puts {lost_to - lost_from} bytes at {lost_from:#x}..{lost_to:#x}, where a PC has VGA "
                    "memory and BIOS ROM: GRUB copies them, but on QEMU they do not arrive (dropped here too)")
    kept = []
    if address < CONVENTIONAL_END:
        kept.append((address, blob[:CONVENTIONAL_END - address]))
    if end > EXTENDED_START:
        kept.append((EXTENDED_START, blob[EXTENDED_START - address:]))
    return kept


def _plan_address_tag_image(header: mbh.Multiboot2Header, data: bytes, path: str,
                            layout: PhysicalLayout, warnings: list[str]) -> tuple[int, int, Chunks]:
    """The a.out kludge (section 3.1.5): load a flat file by the address tag."""
    tag = header.address
    assert tag is not None
    if tag.load_addr > tag.header_addr:
        raise ImageError("address tag: load_addr lies above header_addr", where=path)
    file_start = header.offset - (tag.header_addr - tag.load_addr)
    if file_start < 0:
        raise ImageError("address tag: load_addr would start before the beginning of the file", where=path)
    if tag.load_end_addr == 0:
        load_size = len(data) - file_start
    else:
        if tag.load_end_addr < tag.load_addr:
            raise ImageError("address tag: load_end_addr lies below load_addr", where=path)
        load_size = tag.load_end_addr - tag.load_addr
    if file_start + load_size > len(data):
        raise ImageError(
            f"address tag asks for {load_size} bytes from file offset {file_start:#x}, "
            f"but the file has {len(data)}",
            where=path,
            hint="the file looks truncated",
        )
    bss_end = tag.bss_end_addr or tag.load_addr + load_size
    if bss_end < tag.load_addr + load_size:
        raise ImageError("address tag: bss_end_addr lies below the end of the loaded data", where=path)
    total = bss_end - tag.load_addr
    name = "kernel image (address tag)"
    layout.claim(tag.load_addr, total, name, anywhere_below_1mib=True)
    blob = bytes(data[file_start:file_start + load_size]) + b"\0" * (total - load_size)
    entry = header.entry_address if header.entry_address is not None else tag.load_addr
    return entry, _load_base(tag.load_addr), _outside_legacy_hole(tag.load_addr, blob, name, warnings)


def _place_elf_sections(elf: ElfImage, data: bytes, layout: PhysicalLayout, chunks: Chunks) -> ElfSectionsInfo | None:
    """Section headers for tag 9; non-allocated sections are loaded too, as GRUB does:
    packed one after another from the end of the image, each at its own sh_addralign
    (GRUB 2.06 on QEMU put a probe's .comment, .symtab, .strtab and .shstrtab at
    0x102390, 0x1023b8, 0x102448, 0x10248d: tests/data/grub_reference), so the
    first module lands on the page after them."""
    if not elf.sections:
        return None
    headers = []
    addr_offset, addr_format = (16, "<Q") if elf.elf_class == 64 else (12, "<I")
    align_offset, align_format = (48, "<Q") if elf.elf_class == 64 else (32, "<I")
    for section in elf.sections:
        header = bytearray(section.header)
        if (section.sh_size and section.sh_addr == 0 and not section.sh_flags & SHF_ALLOC
                and section.sh_type != SHT_NOBITS and section.sh_type != 0):
            contents = bytes(data[section.sh_offset:section.sh_offset + section.sh_size])
            alignment = max(1, struct.unpack_from(align_format, header, align_offset)[0])
            if alignment & (alignment - 1) or alignment > PAGE:
                alignment = PAGE                 # not a power of two, or absurd: a page, as before
            address = layout.place(len(contents), f"ELF section {section.name or '?'}", align=alignment,
                                   above=layout.highest_end())
            chunks.append((address, contents))
            struct.pack_into(addr_format, header, addr_offset, address)
        headers.append(bytes(header))
    return ElfSectionsInfo(elf.section_entry_size, elf.shstrndx, headers)


def _place_modules(specs: list[ModuleSpec], layout: PhysicalLayout, chunks: Chunks,
                   deadline: float | None) -> list[ModuleInfo]:
    infos = []
    for spec in specs:
        data = read_input_file(spec.path, "module", limit=layout.ram_size, deadline=deadline)
        name = f"module {spec.path}"
        if spec.address is not None:
            layout.claim(spec.address, len(data), name)
            start = spec.address
        else:
            start = layout.place(len(data), name, align=PAGE)
        if start + len(data) > FOUR_GIB:
            raise ImageError("module would lie above 4 GiB", where=spec.path)
        chunks.append((start, data))
        infos.append(ModuleInfo(start, start + len(data), spec.cmdline))
    return infos


def _place_scratch(layout: PhysicalLayout) -> int:
    """The hand-off stub's page tables, GDT and code: low memory when free."""
    try:
        return layout.place(SCRATCH_SIZE, "hand-off stub", above=LOW_SCRATCH_START,
                            below=CONVENTIONAL_END)
    except ImageError:
        return layout.place(SCRATCH_SIZE, "hand-off stub", below=1 << 30)
