"""Reading a kernel ELF (32- or 64-bit x86): its header, program and section headers.

Segments are loaded at their physical address (p_paddr, the LMA), as GRUB's
Multiboot2 loader does, so higher-half kernels linked at a virtual address
(VMA) with a low LMA boot. A virtual entry point is translated through the
segment that contains it.
"""
from __future__ import annotations

import struct

from unikernel_sim.errors import ImageError
from unikernel_sim.records import Record

ELF_MAGIC = b"\x7fELF"
PT_LOAD = 1
SHT_SYMTAB = 2
SHT_NOBITS = 8
SHF_ALLOC = 0x2
MACHINES = {"EM_386": 32, "EM_X86_64": 64}


class Segment(Record):
    """A PT_LOAD program header and the bytes it loads."""

    index: int
    paddr: int
    vaddr: int
    filesz: int
    memsz: int
    flags: int
    data: bytes

    @property
    def executable(self) -> bool:
        return bool(self.flags & 0x1)


class Section(Record):
    """One section header, kept raw for the ELF-symbols boot information tag."""

    name: str
    header: bytes        # the on-disk header bytes
    sh_type: int
    sh_flags: int
    sh_addr: int
    sh_offset: int
    sh_size: int
    sh_link: int = 0     # for a symbol table: the index of its string table


class ElfImage(Record):
    """What the loader needs of an ELF file: its header fields, segments and sections."""

    elf_class: int                      # 32 or 64
    machine: str                        # "EM_386" / "EM_X86_64"
    elf_type: str
    entry: int                          # e_entry (virtual)
    segments: list[Segment]
    sections: list[Section]
    section_entry_size: int = 0
    shstrndx: int = 0

    def physical_entry(self) -> int | None:
        """e_entry translated from VMA to LMA, or None if no segment holds it."""
        for seg in self.segments:
            if seg.vaddr <= self.entry < seg.vaddr + max(seg.memsz, 1):
                return self.entry - seg.vaddr + seg.paddr
        return None


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


def read_elf(data: bytes, where: str) -> ElfImage:
    """Parse data as an x86 ELF executable; ImageError on anything else.

    The headers are read with struct as the System V ABI lays them out ("ELF Header",
    "Program Header", "Section Header"): pyelftools and its construct machinery cost
    ~30 ms of start-up, and a boot needs only these tables (the reports still read
    DWARF with pyelftools, diagnostics/debug_info.py; tests compare the two)."""
    if len(data) < 52:
        raise ImageError(f"truncated ELF: {len(data)} bytes is shorter than an ELF header", where=where)
    tables = _check_header_tables(data, where)
    elf_class = 32 * data[EI_CLASS]
    e_type, e_machine = struct.unpack_from("<HH", data, E_TYPE_OFFSET)
    machine = MACHINE_NAMES.get(e_machine, f"e_machine {e_machine}")
    if machine not in MACHINES:
        raise ImageError(f"ELF for machine {machine}, not x86", where=where,
                         hint="unisim boots EM_386 and EM_X86_64 kernels")
    if MACHINES[machine] != elf_class:
        raise ImageError(f"ELF{elf_class} file for {machine} is not a supported combination", where=where)
    elf_type = TYPE_NAMES.get(e_type, f"e_type {e_type}")
    if elf_type not in ("ET_EXEC", "ET_DYN"):
        raise ImageError(f"ELF type {elf_type} is not an executable", where=where,
                         hint="link the kernel (ld), do not boot an object file")
    entry = struct.unpack_from("<I" if elf_class == 32 else "<Q", data, E_ENTRY_OFFSET)[0]
    return ElfImage(
        elf_class=elf_class,
        machine=machine,
        elf_type=elf_type,
        entry=entry,
        segments=_read_segments(data, elf_class, tables.phoff, tables.phentsize, tables.phnum, where),
        sections=_read_sections(data, elf_class, tables.shoff, tables.shentsize, tables.shnum, tables.shstrndx,
                                where),
        section_entry_size=tables.shentsize,
        shstrndx=tables.shstrndx,
    )


E_TYPE_OFFSET = 16                   # e_type, e_machine (Elf32_Half each)
E_ENTRY_OFFSET = 24
EM_386, EM_X86_64 = 3, 62
MACHINE_NAMES = {2: "EM_SPARC", EM_386: "EM_386", 8: "EM_MIPS", 20: "EM_PPC", 21: "EM_PPC64", 22: "EM_S390",
                 40: "EM_ARM", 50: "EM_IA_64", EM_X86_64: "EM_X86_64", 183: "EM_AARCH64", 243: "EM_RISCV"}
TYPE_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
# p_type .. p_align; the 64-bit header moves p_flags second
_PROGRAM_HEADER = {32: ("<8I", ("p_type", "p_offset", "p_vaddr", "p_paddr", "p_filesz", "p_memsz", "p_flags")),
                   64: ("<IIQQQQQQ", ("p_type", "p_flags", "p_offset", "p_vaddr", "p_paddr", "p_filesz",
                                       "p_memsz"))}
_SECTION_HEADER = {32: "<10I", 64: "<IIQQQQIIQQ"}    # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link...


# e_ident[EI_CLASS] -> (header size, struct of e_phoff..e_shstrndx at offset 28/32, entry sizes)
ELFCLASS32, ELFCLASS64 = 1, 2
_HEADER_TABLE_FIELDS = {
    ELFCLASS32: (52, "<IIIHHHHHH", 28, 32, 40),
    ELFCLASS64: (64, "<QQIHHHHHH", 32, 56, 64),
}
EI_CLASS, EI_DATA, ELFDATA2LSB = 4, 5, 1


class HeaderTables(Record):
    """The ELF header's fields that locate the program and section header tables."""

    phoff: int
    shoff: int
    flags: int
    ehsize: int
    phentsize: int
    phnum: int
    shentsize: int
    shnum: int
    shstrndx: int


def _check_header_tables(data: bytes, where: str) -> HeaderTables:
    """The ELF header's table fields (System V ABI, "ELF Header"), checked against
    the file before the readers below follow them: a rejection names the field and
    its value."""
    elf_class, encoding = data[EI_CLASS], data[EI_DATA]
    if elf_class not in _HEADER_TABLE_FIELDS:
        raise ImageError(f"ELF e_ident[EI_CLASS] is {elf_class}, neither 1 (32-bit) nor 2 (64-bit)", where=where)
    if encoding != ELFDATA2LSB:
        raise ImageError(f"ELF e_ident[EI_DATA] is {encoding}, not 1 (little-endian) as x86 needs", where=where)
    header_size, layout, offset, ph_size, sh_size = _HEADER_TABLE_FIELDS[elf_class]
    if len(data) < header_size:
        raise ImageError(f"truncated ELF: {len(data)} bytes is shorter than an ELF{32 * elf_class} header",
                         where=where)
    tables = HeaderTables(*struct.unpack_from(layout, data, offset))
    phoff, shoff, phentsize, phnum = tables.phoff, tables.shoff, tables.phentsize, tables.phnum
    shentsize, shnum, shstrndx = tables.shentsize, tables.shnum, tables.shstrndx
    size = len(data)
    if phnum == 0:
        raise ImageError("ELF e_phnum is 0: no program headers, so nothing to load", where=where)
    if phentsize != ph_size:
        raise ImageError(f"ELF e_phentsize is {phentsize}, not {ph_size}", where=where)
    if phoff + phnum * phentsize > size:
        raise ImageError(f"ELF e_phoff {phoff:#x} with e_phnum {phnum} puts the program headers past the end "
                         f"of the file ({size:#x} bytes)", where=where, hint="the file looks truncated or corrupt")
    if shnum == 0 or shoff == 0:
        return tables
    if shentsize != sh_size:
        raise ImageError(f"ELF e_shentsize is {shentsize}, not {sh_size}", where=where)
    if shoff + shnum * shentsize > size:
        raise ImageError(f"ELF e_shoff {shoff:#x} with e_shnum {shnum} puts the section headers past the end "
                         f"of the file ({size:#x} bytes)", where=where, hint="the file looks truncated or corrupt")
    if shstrndx >= shnum:
        raise ImageError(f"ELF e_shstrndx {shstrndx} is not below e_shnum {shnum}", where=where)
    return tables


def _read_segments(data: bytes, elf_class: int, phoff: int, phentsize: int, phnum: int,
                   where: str) -> list[Segment]:
    layout, names = _PROGRAM_HEADER[elf_class]
    segments = []
    for index in range(phnum):
        seg = dict(zip(names, struct.unpack_from(layout, data, phoff + index * phentsize)))
        if seg["p_type"] != PT_LOAD or seg["p_memsz"] == 0:
            continue
        offset, filesz, memsz = seg["p_offset"], seg["p_filesz"], seg["p_memsz"]
        if offset + filesz > len(data):
            raise ImageError(
                f"truncated ELF: segment {index} (p_offset {offset:#x}, p_filesz {filesz:#x}) needs file bytes "
                f"{offset:#x}..{offset + filesz:#x} but the file has {len(data):#x}",
                where=where,
            )
        if filesz > memsz:
            raise ImageError(f"ELF segment {index} has p_filesz {filesz:#x} > p_memsz {memsz:#x}", where=where)
        segments.append(Segment(index, seg["p_paddr"], seg["p_vaddr"], filesz, memsz,
                                seg["p_flags"], bytes(data[offset:offset + filesz])))
    if not segments:
        raise ImageError("ELF has no loadable (PT_LOAD) segment", where=where)
    return segments


def _read_sections(data: bytes, elf_class: int, shoff: int, shentsize: int, shnum: int, shstrndx: int,
                   where: str) -> list[Section]:
    if shnum == 0 or shoff == 0:
        return []
    layout = _SECTION_HEADER[elf_class]
    headers = [struct.unpack_from(layout, data, shoff + index * shentsize) for index in range(shnum)]
    names_offset, names_size = headers[shstrndx][4], headers[shstrndx][5]
    if headers[shstrndx][1] == SHT_NOBITS or names_offset + names_size > len(data):
        raise ImageError(f"ELF section name table (section {shstrndx}, offset {names_offset:#x}, size "
                         f"{names_size:#x}) lies past the end of the file ({len(data):#x} bytes)", where=where,
                         hint="the file looks truncated or corrupt")
    names = data[names_offset:names_offset + names_size]
    sections = []
    for index, (sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, *_rest) in enumerate(headers):
        if sh_name >= max(len(names), 1) and sh_name:
            raise ImageError(f"ELF section {index}'s name offset {sh_name:#x} is past the section name table "
                             f"({len(names):#x} bytes)", where=where, hint="the file looks truncated or corrupt")
        end = names.find(b"\0", sh_name)
        name = names[sh_name:end if end >= 0 else len(names)].decode("latin-1")
        header = bytes(data[shoff + index * shentsize: shoff + (index + 1) * shentsize])
        sections.append(Section(name, header, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link))
    return sections
