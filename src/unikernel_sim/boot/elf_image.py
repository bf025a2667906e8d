"""Reading a kernel ELF (32- or 64-bit x86) with pyelftools.

Segments are loaded at their physical address (p_paddr, the LMA), as GRUB's
Multiboot2 loader does, so higher-half kernels linked at a virtual address
(VMA) with a low LMA boot. A virtual entry point is translated through the
segment that contains it.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

from unikernel_sim.errors import ImageError

ELF_MAGIC = b"\x7fELF"
PT_LOAD = 1
SHT_SYMTAB = 2
SHT_NOBITS = 8
SHF_ALLOC = 0x2
MACHINES = {"EM_386": 32, "EM_X86_64": 64}


@dataclass
class Segment:
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


@dataclass
class Section:
    """One section header, kept raw for the ELF-symbols boot information tag."""

    name: str
    header: bytes        # the on-disk header bytes
    sh_type: int
    sh_flags: int
    sh_addr: int
    sh_offset: int
    sh_size: int
    sh_link: int = 0     # for a symbol table: the index of its string table


@dataclass
class ElfImage:
    elf_class: int                      # 32 or 64
    machine: str                        # "EM_386" / "EM_X86_64"
    elf_type: str
    entry: int                          # e_entry (virtual)
    segments: list[Segment]
    sections: list[Section] = field(default_factory=list)
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
    """Parse data as an x86 ELF executable; ImageError on anything else."""
    from elftools.elf.elffile import ELFFile

    if len(data) < 52:
        raise ImageError(f"truncated ELF: {len(data)} bytes is shorter than an ELF header", where=where)
    _check_header_tables(data, where)
    try:
        elf = ELFFile(io.BytesIO(data))
        machine = elf["e_machine"]
        if machine not in MACHINES:
            raise ImageError(
                f"ELF for machine {machine}, not x86",
                where=where,
                hint="unisim boots EM_386 and EM_X86_64 kernels",
            )
        if MACHINES[machine] != elf.elfclass:
            raise ImageError(f"ELF{elf.elfclass} file for {machine} is not a supported combination", where=where)
        if elf["e_type"] not in ("ET_EXEC", "ET_DYN"):
            raise ImageError(f"ELF type {elf['e_type']} is not an executable", where=where,
                             hint="link the kernel (ld), do not boot an object file")
        segments = _read_segments(elf, data, where)
        sections = _read_sections(elf, data, where)
        return ElfImage(
            elf_class=elf.elfclass,
            machine=machine,
            elf_type=elf["e_type"],
            entry=elf["e_entry"],
            segments=segments,
            sections=sections,
            section_entry_size=elf["e_shentsize"],
            shstrndx=elf["e_shstrndx"],
        )
    except ImageError:
        raise
    except Exception as error:  # noqa: BLE001 - pyelftools/construct raise anything on corrupt input
        raise ImageError(f"malformed ELF: the parser stopped with {type(error).__name__}: {error}"[:300],
                         where=where, hint="check e_shoff/e_phoff and the section table (readelf -a)") from None


# e_ident[EI_CLASS] -> (header size, struct of e_phoff..e_shstrndx at offset 28/32, entry sizes)
ELFCLASS32, ELFCLASS64 = 1, 2
_HEADER_TABLE_FIELDS = {
    ELFCLASS32: (52, "<IIIHHHHHH", 28, 32, 40),
    ELFCLASS64: (64, "<QQIHHHHHH", 32, 56, 64),
}
EI_CLASS, EI_DATA, ELFDATA2LSB = 4, 5, 1


def _check_header_tables(data: bytes, where: str) -> None:
    """The ELF header's table fields (System V ABI, "ELF Header"), checked against
    the file before pyelftools follows them: a rejection names the field and its
    value instead of a parser's "expected 4, found 1"."""
    elf_class, encoding = data[EI_CLASS], data[EI_DATA]
    if elf_class not in _HEADER_TABLE_FIELDS:
        raise ImageError(f"ELF e_ident[EI_CLASS] is {elf_class}, neither 1 (32-bit) nor 2 (64-bit)", where=where)
    if encoding != ELFDATA2LSB:
        raise ImageError(f"ELF e_ident[EI_DATA] is {encoding}, not 1 (little-endian) as x86 needs", where=where)
    header_size, layout, offset, ph_size, sh_size = _HEADER_TABLE_FIELDS[elf_class]
    if len(data) < header_size:
        raise ImageError(f"truncated ELF: {len(data)} bytes is shorter than an ELF{32 * elf_class} header",
                         where=where)
    (phoff, shoff, _flags, _ehsize, phentsize, phnum, shentsize, shnum,
     shstrndx) = struct.unpack_from(layout, data, offset)
    size = len(data)
    if phnum == 0:
        raise ImageError("ELF e_phnum is 0: no program headers, so nothing to load", where=where)
    if phentsize != ph_size:
        raise ImageError(f"ELF e_phentsize is {phentsize}, not {ph_size}", where=where)
    if phoff + phnum * phentsize > size:
        raise ImageError(f"ELF e_phoff {phoff:#x} with e_phnum {phnum} puts the program headers past the end "
                         f"of the file ({size:#x} bytes)", where=where, hint="the file looks truncated or corrupt")
    if shnum == 0 or shoff == 0:
        return
    if shentsize != sh_size:
        raise ImageError(f"ELF e_shentsize is {shentsize}, not {sh_size}", where=where)
    if shoff + shnum * shentsize > size:
        raise ImageError(f"ELF e_shoff {shoff:#x} with e_shnum {shnum} puts the section headers past the end "
                         f"of the file ({size:#x} bytes)", where=where, hint="the file looks truncated or corrupt")
    if shstrndx >= shnum:
        raise ImageError(f"ELF e_shstrndx {shstrndx} is not below e_shnum {shnum}", where=where)


def _read_segments(elf, data: bytes, where: str) -> list[Segment]:
    segments = []
    for index, seg in enumerate(elf.iter_segments()):
        if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
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


def _read_sections(elf, data: bytes, where: str) -> list[Section]:
    count, entsize, start = elf["e_shnum"], elf["e_shentsize"], elf["e_shoff"]
    if count == 0 or start == 0:
        return []
    if start + count * entsize > len(data):
        raise ImageError(
            f"truncated ELF: section headers at {start:#x} run past the end of the file ({len(data):#x})",
            where=where,
        )
    sections = []
    for index, sec in enumerate(elf.iter_sections()):
        header = bytes(data[start + index * entsize: start + (index + 1) * entsize])
        sections.append(Section(sec.name, header, _sh_type_number(sec["sh_type"]), sec["sh_flags"],
                                sec["sh_addr"], sec["sh_offset"], sec["sh_size"], sec["sh_link"]))
    return sections


def _sh_type_number(sh_type) -> int:
    from elftools.elf.enums import ENUM_SH_TYPE_BASE

    return sh_type if isinstance(sh_type, int) else ENUM_SH_TYPE_BASE.get(sh_type, 0)
