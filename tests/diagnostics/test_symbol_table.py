"""The symbol table read from .symtab equals what pyelftools' own per-symbol
parser (an independent decoder of the same gABI layout) reports, for the
64-bit firmware and for a 32-bit kernel linked by GNU ld."""
from __future__ import annotations

import io
import shutil
import subprocess

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from unikernel_sim.boot.symbols import Symbol, SymbolTable

KINDS = ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE")

ELF32_SOURCE = """
    .section .text
    .globl _start
    .type _start, @function
_start:
    call helper
    hlt
    .size _start, . - _start
    .type helper, @function
helper:
    ret
    .size helper, . - helper
local_label:
    nop
    .section .data
    .globl counter
    .type counter, @object
counter:
    .long 0
    .size counter, 4
    .section .bss
    .type buffer, @object
buffer:
    .zero 64
    .size buffer, 64
"""


def pyelftools_symbols(data: bytes) -> list[Symbol]:
    found = []
    for section in ELFFile(io.BytesIO(data)).iter_sections():
        if not isinstance(section, SymbolTableSection):
            continue
        for symbol in section.iter_symbols():
            kind = symbol["st_info"]["type"]
            if symbol.name and kind in KINDS and symbol["st_shndx"] != "SHN_UNDEF":
                found.append(Symbol(symbol.name, symbol["st_value"], symbol["st_size"], kind))
    return sorted(found, key=repr)


def test_firmware_symbols_match_pyelftools(firmware_elf):
    data = open(firmware_elf, "rb").read()
    table = SymbolTable.from_elf_bytes(data)
    assert sorted(table.symbols, key=repr) == pyelftools_symbols(data)
    assert table.get("kernel_main").kind == "STT_FUNC"


@pytest.mark.skipif(not (shutil.which("as") and shutil.which("ld")), reason="GNU as and ld are needed")
def test_elf32_symbols_match_pyelftools(tmp_path):
    source = tmp_path / "kernel32.s"
    source.write_text(ELF32_SOURCE)
    subprocess.run(["as", "--32", "-o", str(tmp_path / "kernel32.o"), str(source)], check=True)
    subprocess.run(["ld", "-m", "elf_i386", "-Ttext=0x100000", "-o", str(tmp_path / "kernel32.elf"),
                    str(tmp_path / "kernel32.o")], check=True)
    data = (tmp_path / "kernel32.elf").read_bytes()
    table = SymbolTable.from_elf_bytes(data)
    assert sorted(table.symbols, key=repr) == pyelftools_symbols(data)
    assert table.get("_start") == Symbol("_start", 0x100000, 6, "STT_FUNC")
    assert table.get("buffer").size == 64
    assert table.describe(0x100005) == "_start+0x5"


def test_no_symtab_gives_an_empty_table():
    assert len(SymbolTable.from_elf_bytes(b"\x7fELF" + bytes(60))) == 0
