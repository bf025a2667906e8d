"""SYSCALL as the SDM defines it (vol. 2B, SYSCALL "Operation").

Unicorn 2.1.4 turns SYSCALL into "run the UC_HOOK_INSN hooks, then step over
the instruction": with no hook it is a no-op, so a kernel's system-call entry
at IA32_LSTAR never runs and user code carries on with garbage in RAX. This
hook performs the transition itself:

  #UD unless IA32_EFER.SCE = 1 and the CPU is in 64-bit mode (Intel: SYSCALL is
      not available in compatibility or legacy mode)
  RCX <- address of the next instruction       R11 <- RFLAGS with RF clear
  RFLAGS <- RFLAGS AND NOT IA32_FMASK (RF clear too)
  CS <- IA32_STAR[47:32] AND 0xFFFC,  SS <- IA32_STAR[47:32] + 8,  CPL <- 0
  RIP <- IA32_LSTAR

Measured: the hook sees RIP at the SYSCALL itself, and Unicorn adds the
instruction's length to whatever RIP the hook leaves, so the hook writes
LSTAR minus that length. CS and SS are loaded through the API, i.e. from the
GDT, where the SDM loads fixed flat descriptors; a kernel whose STAR points at
its own flat 64-bit code and data descriptors (the only kind SYSRET can return
through) sees no difference. SYSRET itself is QEMU's and works as it is.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from unicorn import UC_HOOK_INSN
from unicorn import x86_const as x86

from unikernel_sim.cpu.exception_state import in_64bit_mode, set_cpl

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

MSR_EFER = 0xC0000080
MSR_STAR = 0xC0000081
MSR_LSTAR = 0xC0000082
MSR_FMASK = 0xC0000084
EFER_SCE = 1 << 0
EFLAGS_RF = 1 << 16
VECTOR_UD = 6
SELECTOR_RPL = 3
MAX_INSTRUCTION = 15
MASK64 = (1 << 64) - 1


class FastSystemCall:
    def __init__(self, machine: "Machine") -> None:
        self.machine = machine
        self.count = 0
        self._decoder = None
        machine.uc.hook_add(UC_HOOK_INSN, self._on_syscall, None, 1, 0, x86.UC_X86_INS_SYSCALL)

    def _on_syscall(self, uc, _user) -> None:
        rip = uc.reg_read(x86.UC_X86_REG_RIP)
        length = self._length(rip)
        if not uc.msr_read(MSR_EFER) & EFER_SCE or not in_64bit_mode(uc):
            self.machine.raise_fault(VECTOR_UD, None, rip)
            return
        self.count += 1
        star, lstar, fmask = uc.msr_read(MSR_STAR), uc.msr_read(MSR_LSTAR), uc.msr_read(MSR_FMASK)
        rflags = uc.reg_read(x86.UC_X86_REG_RFLAGS)
        uc.reg_write(x86.UC_X86_REG_RCX, (rip + length) & MASK64)
        uc.reg_write(x86.UC_X86_REG_R11, rflags & ~EFLAGS_RF)
        kernel_cs = (star >> 32) & 0xFFFC
        set_cpl(uc, 0)
        uc.reg_write(x86.UC_X86_REG_SS, kernel_cs + 8)
        uc.reg_write(x86.UC_X86_REG_CS, kernel_cs)
        uc.reg_write(x86.UC_X86_REG_RFLAGS, rflags & ~(fmask | EFLAGS_RF) & 0xFFFFFFFF)
        uc.reg_write(x86.UC_X86_REG_RIP, (lstar - length) & MASK64)   # Unicorn adds length back

    def _length(self, rip: int) -> int:
        if self._decoder is None:
            from unikernel_sim.diagnostics.disassembly import disassembler

            self._decoder = disassembler(long_mode=True)
        code = self.machine.read_virtual(rip, MAX_INSTRUCTION) or self.machine.read_virtual(rip, 2) or b""
        for instruction in self._decoder.disasm(code, rip, 1):
            return instruction.size
        return 2
