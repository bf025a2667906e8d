"""What the tests' assembler (keystone 0.9.2) does that the Intel syntax does not say.

docs/unicorn-quirks.md lists it with the way the tests avoid it; each test here asserts the
quirk is still there, so an upgrade that fixes it shows."""
from __future__ import annotations

from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from keystone import KS_ARCH_X86, KS_MODE_64, Ks

ADDRESS = 0x120000


def disassembled(source: str) -> str:
    code = bytes(Ks(KS_ARCH_X86, KS_MODE_64).asm(source, ADDRESS)[0])
    instruction = next(Cs(CS_ARCH_X86, CS_MODE_64).disasm(code, ADDRESS))
    return f"{instruction.mnemonic} {instruction.op_str}"


def test_k1_a_64_bit_load_from_an_absolute_address_becomes_rip_relative_with_it_as_displacement():
    # Intel syntax `mov rbx, [0x11c010]` reads 0x11c010; keystone reads rip + 0x11c010
    assert disassembled("mov rbx, [0x11c010]") == "mov rbx, qword ptr [rip + 0x11c010]"
    # the workaround: the address in a register
    assert disassembled("mov rbx, [rbx]") == "mov rbx, qword ptr [rbx]"
