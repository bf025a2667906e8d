"""Symbol lookup from the kernel ELF's .symtab (pyelftools).

Addresses are the kernel's own (virtual) addresses, which is what RIP holds.
"""
from __future__ import annotations

import bisect
import io
from dataclasses import dataclass


LABEL_REACH = 0x1000      # how far past a size-less label an address still belongs to it


@dataclass(frozen=True)
class Symbol:
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
    def from_elf_bytes(cls, data: bytes) -> "SymbolTable":
        from elftools.elf.elffile import ELFFile
        from elftools.elf.sections import SymbolTableSection

        symbols = []
        try:
            elf = ELFFile(io.BytesIO(data))
            for section in elf.iter_sections():
                if not isinstance(section, SymbolTableSection):
                    continue
                for sym in section.iter_symbols():
                    kind = sym["st_info"]["type"]
                    if not sym.name or kind not in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE"):
                        continue
                    if sym["st_shndx"] == "SHN_UNDEF":
                        continue
                    symbols.append(Symbol(sym.name, sym["st_value"], sym["st_size"], kind))
        except Exception:  # a kernel without a usable symtab still boots
            return cls([])
        return cls(symbols)

    def __len__(self) -> int:
        return len(self.symbols)

    def address_of(self, name: str) -> int | None:
        symbol = self._by_name.get(name)
        return symbol.address if symbol else None

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
