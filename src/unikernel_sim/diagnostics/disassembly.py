"""Instructions around an address, with capstone, each with symbol+offset
and source line. Decoding starts at the enclosing function's first byte
(x86 cannot be decoded backwards reliably), or a little before the address
when no symbol covers it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from unikernel_sim.diagnostics.debug_info import debug_info_of

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

MAX_INSTRUCTION = 15
FALLBACK_LOOKBACK = 64


@dataclass
class Instruction:
    address: int
    size: int
    text: str
    where: str
    source: str | None
    bytes_hex: str


def disassembler(long_mode: bool):
    from capstone import CS_ARCH_X86, CS_MODE_32, CS_MODE_64, Cs

    return Cs(CS_ARCH_X86, CS_MODE_64 if long_mode else CS_MODE_32)


def around(machine: "Machine", address: int, before: int = 8, after: int = 8,
           long_mode: bool = True) -> list[Instruction]:
    symbols = machine.symbols
    start = address - FALLBACK_LOOKBACK
    found = symbols.lookup(address) if symbols is not None else None
    if found is not None and 0 <= address - found[0].address < 1 << 16:
        start = found[0].address
    length = address - start + (after + 1) * MAX_INSTRUCTION
    code = machine.read_virtual(start, length)
    while code is None and length > MAX_INSTRUCTION:
        length //= 2
        code = machine.read_virtual(start, length)
    if code is None:
        start, code = address, machine.read_virtual(address, MAX_INSTRUCTION) or b""
    decoded = list(disassembler(long_mode).disasm(code, start))
    index = next((i for i, insn in enumerate(decoded) if insn.address == address), None)
    if index is None:       # not on an instruction boundary from the function start: decode from address
        decoded = list(disassembler(long_mode).disasm(machine.read_virtual(address, after * MAX_INSTRUCTION) or b"",
                                                      address))
        index = 0
    chosen = decoded[max(0, index - before): index + after + 1]
    debug = debug_info_of(machine)
    return [Instruction(i.address, i.size, f"{i.mnemonic} {i.op_str}".strip(), machine.describe(i.address),
                        str(debug.source_line(i.address)) if debug and debug.source_line(i.address) else None,
                        bytes(i.bytes).hex()) for i in chosen]
