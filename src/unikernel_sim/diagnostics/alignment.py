"""Watching SSE instructions that require 16-byte-aligned memory operands.

Unicorn executes a misaligned movaps/movdqa (and legacy-SSE arithmetic on an
m128 operand) where hardware raises #GP(0). On request (--strict-alignment or
--check-alignment) the kernel's executable segments are decoded with capstone
once, each such instruction gets a code hook (on its own address only), and
the hook computes the effective address from the operand and the registers:
strict mode then raises the #GP real hardware would; check mode records it
for the report. Off by default: each watched instruction costs a Python call.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from unicorn import UC_HOOK_CODE
from unicorn import x86_const as x86

from unikernel_sim.arch import Vector

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

UNALIGNED_OK = frozenset({"movups", "movupd", "movdqu", "lddqu", "movq", "movd", "movss", "movsd",
                          "movhps", "movlps", "movhpd", "movlpd", "pinsrb", "pinsrw", "pinsrd", "pinsrq",
                          "pextrb", "pextrw", "pextrd", "pextrq", "insertps", "extractps", "cvtss2sd",
                          "cvtsd2ss", "comiss", "comisd", "ucomiss", "ucomisd", "movddup", "fxsave",
                          "fxsave64", "fxrstor", "fxrstor64", "ldmxcsr", "stmxcsr"})


def requires_alignment(instruction) -> int | None:
    """Index of the m128 operand that must be aligned, or None."""
    from capstone import x86 as cs_x86

    if instruction.mnemonic.startswith("v") or instruction.mnemonic in UNALIGNED_OK:
        return None
    for index, operand in enumerate(instruction.operands):
        if operand.type == cs_x86.X86_OP_MEM and operand.size == 16:
            return index
    return None


def effective_address(machine: "Machine", instruction, operand) -> int:
    uc = machine.uc

    def reg(register_id: int) -> int:
        if register_id == 0:
            return 0
        name = instruction.reg_name(register_id)
        if name == "rip":
            return instruction.address + instruction.size
        return uc.reg_read(getattr(x86, f"UC_X86_REG_{name.upper()}"))

    memory = operand.mem
    return (reg(memory.base) + reg(memory.index) * memory.scale + memory.disp) & ((1 << 64) - 1)


class AlignmentWatch:
    def __init__(self, machine: "Machine", strict: bool) -> None:
        from unikernel_sim.diagnostics.disassembly import disassembler

        self.machine = machine
        self.strict = strict
        self.watched = 0
        elf = machine.kernel.elf if machine.kernel else None
        decoder = disassembler(long_mode=elf is None or elf.elf_class == 64)
        decoder.detail = True
        self._instructions = {}
        for segment in machine.kernel.elf.segments if machine.kernel and machine.kernel.elf else []:
            if not segment.executable:
                continue
            for instruction in decoder.disasm(segment.data, segment.vaddr):
                index = requires_alignment(instruction)
                if index is not None:
                    self._instructions[instruction.address] = (instruction, instruction.operands[index])
                    machine.uc.hook_add(UC_HOOK_CODE, self._on_instruction, begin=instruction.address,
                                        end=instruction.address)
                    self.watched += 1
        machine.uc.ctl_flush_tb()

    def _on_instruction(self, uc, address: int, size: int, _user) -> None:
        instruction, operand = self._instructions[address]
        target = effective_address(self.machine, instruction, operand)
        if target % 16 == 0:
            return
        text = f"{instruction.mnemonic} {instruction.op_str}"
        self.machine.alignment_violations.append((address, target, text))
        if self.strict:
            self.machine.raise_fault(Vector.GP, 0, address)
