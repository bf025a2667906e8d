"""Symbol lookup from the kernel ELF's .symtab (located by the loader's pyelftools parse).

Addresses are the kernel's own (virtual) addresses, which is what RIP holds.
"""
from __future__ import annotations

import bisect
import struct
from typing import TYPE_CHECKING

from unikernel_sim.boot.elf_image import SHT_SYMTAB, read_elf
from unikernel_sim.errors import ImageError
from unikernel_sim.records import Record

if TYPE_CHECKING:
    from unikernel_sim.boot.elf_image import ElfImage, Section

LABEL_REACH = 0x1000      # how far past a size-less label an address still belongs to it

# ELF gABI symbol table entries: (st_name, st_value, st_size, st_info, st_other, st_shndx)
# for ELF32, (st_name, st_info, st_other, st_shndx, st_value, st_size) for ELF64.
ELF32_SYM = "IIIBBH"
ELF64_SYM = "IBBHQQ"
SHN_UNDEF = 0
SYMBOL_KINDS = {0: "STT_NOTYPE", 1: "STT_OBJECT", 2: "STT_FUNC"}   # ELF32_ST_TYPE(st_info)
ST_TYPE_MASK = 0xF


class Symbol(Record):
    """One ELF symbol the reports and guest calls name."""

    name: str
    address: int
    size: int
    kind: str          # "STT_FUNC", "STT_OBJECT", "STT_NOTYPE"


class SymbolTable:
    def __init__(self, symbols: list[Symbol]) -> None:
        self.symbols = sorted(symbols, key=lambda s: (s.address, -s.size))
        self._addresses = [s.address for s in self.symbols]
        self._by_name = {s.name: s for s in self.symbols}

    @classmethod
    def from_elf(cls, image: "ElfImage", data: bytes) -> "SymbolTable":
        """Every named function, object and label the kernel defines.

        The section headers come from the loader's own parse (read_elf, pyelftools);
        the fixed-size entries are unpacked with struct (ELF gABI "Symbol Table":
        Elf32_Sym / Elf64_Sym), because pyelftools' per-symbol parsing costs ~70 us
        a symbol and sits on the path to the first serial byte. x86 ELF files are
        little-endian, and read_elf accepts only x86 machines."""
        symbols = []
        for section in image.sections:
            if section.sh_type != SHT_SYMTAB or section.sh_link >= len(image.sections):
                continue
            strings = image.sections[section.sh_link]
            symbols.extend(_decode_symbols(_contents(data, section), _contents(data, strings), image.elf_class))
        return cls(symbols)

    @classmethod
    def from_elf_bytes(cls, data: bytes) -> "SymbolTable":
        """from_elf() for a file not yet parsed; empty when it is no usable x86 ELF."""
        try:
            return cls.from_elf(read_elf(data, "symbols"), data)
        except ImageError:
            return cls([])

    def __len__(self) -> int:
        return len(self.symbols)

    def address_of(self, name: str) -> int | None:
        symbol = self._by_name.get(name)
        return symbol.address if symbol else None

    def resolve(self, where: str | int) -> int:
        """The address of a symbol name, or an address as given; KeyError for an unknown name."""
        if isinstance(where, int):
            return where
        address = self.address_of(where)
        if address is None:
            raise KeyError(f"no symbol {where!r} in the kernel")
        return address

    def get(self, name: str) -> Symbol | None:
        return self._by_name.get(name)

    def lookup(self, address: int) -> tuple[Symbol, int] | None:
        """The symbol containing address (or the nearest function before it) and the offset."""
        index = bisect.bisect_right(self._addresses, address) - 1
        best = None
        while index >= 0:
            symbol = self.symbols[index]
            distance = address - symbol.address
            if distance > LABEL_REACH:
                break
            if distance < symbol.size:
                return symbol, distance
            if best is None and symbol.kind in ("STT_FUNC", "STT_NOTYPE") and symbol.size == 0:
                best = (symbol, distance)      # an assembly label without a size, close by
            index -= 1
        return best

    def describe(self, address: int) -> str:
        """``name+0x1c`` or ``0x...`` when nothing covers address."""
        found = self.lookup(address)
        if found is None:
            return f"{address:#x}"
        symbol, offset = found
        return f"{symbol.name}+{offset:#x}" if offset else symbol.name


def _contents(data: bytes, section: "Section") -> bytes:
    return data[section.sh_offset:section.sh_offset + section.sh_size]


def _decode_symbols(table: bytes, strings: bytes, elf_class: int) -> list[Symbol]:
    layout = struct.Struct("<" + (ELF64_SYM if elf_class == 64 else ELF32_SYM))
    usable = len(table) - len(table) % layout.size
    symbols = []
    for fields in layout.iter_unpack(table[:usable]):
        if elf_class == 64:
            name_offset, info, _, shndx, value, size = fields
        else:
            name_offset, value, size, info, _, shndx = fields
        kind = SYMBOL_KINDS.get(info & ST_TYPE_MASK)
        if kind is None or shndx == SHN_UNDEF or not name_offset:
            continue
        end = strings.find(b"\0", name_offset)
        name = strings[name_offset:end if end >= 0 else len(strings)].decode("utf-8", errors="replace")
        if name:
            symbols.append(Symbol(name, value, size, kind))
    return symbols
