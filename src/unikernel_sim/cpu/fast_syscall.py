"""SYSCALL and SYSENTER as the SDM defines them (vol. 2B, "Operation" sections).

Unicorn 2.1.4 turns both into "run the UC_HOOK_INSN hooks, then step over
the instruction": with no hook they are no-ops, so a kernel's system-call entry
never runs and user code carries on with garbage in RAX. These hooks perform
the transitions themselves. SYSCALL:

  #UD unless IA32_EFER.SCE = 1 and the CPU is in 64-bit mode (Intel: SYSCALL is
      not available in compatibility or legacy mode)
  RCX <- address of the next instruction       R11 <- RFLAGS with RF clear
  RFLAGS <- RFLAGS AND NOT IA32_FMASK (RF clear too)
  CS <- IA32_STAR[47:32] AND 0xFFFC,  SS <- IA32_STAR[47:32] + 8,  CPL <- 0
  RIP <- IA32_LSTAR

SYSENTER:

  #GP(0) if CR0.PE = 0 or IA32_SYSENTER_CS[15:2] = 0
  RFLAGS.VM, IF, RF <- 0
  CS <- IA32_SYSENTER_CS AND 0xFFFC,  SS <- that + 8,  CPL <- 0
  RSP <- IA32_SYSENTER_ESP,  RIP <- IA32_SYSENTER_EIP  (low 32 bits outside IA-32e mode)

Measured (both instructions): the hook sees RIP at the SYSCALL itself, and Unicorn adds the
instruction's length to whatever RIP the hook leaves, so the hook writes
LSTAR minus that length. CS and SS are loaded through the API, i.e. from the
GDT, where the SDM loads fixed flat descriptors; a kernel whose STAR points at
its own flat 64-bit code and data descriptors (the only kind SYSRET can return
through) sees no difference. SYSRET and SYSEXIT are QEMU's and work as they are.
"""
from __future__ import annotations

from typing import Callable

from unicorn import UC_HOOK_INSN, Uc
from unicorn import x86_const as x86

from unikernel_sim.arch import CR0, EFER, MASK32, MASK64, MAX_INSTRUCTION_LENGTH, MSR, RFLAGS, Vector
from unikernel_sim.cpu.unicorn_compat import in_64bit_mode, set_cpl
from unikernel_sim.memory.guest_memory import GuestMemory

SELECTOR_RPL = 3


class FastSystemCall:
    def __init__(self, uc: Uc, memory: GuestMemory, *,
                 raise_fault: Callable[[int, int | None, int], None]) -> None:
        self.memory = memory
        self.raise_fault = raise_fault
        self.count = 0                    # SYSCALLs and SYSENTERs performed
        self._decoder = None
        uc.hook_add(UC_HOOK_INSN, self._on_syscall, None, 1, 0, x86.UC_X86_INS_SYSCALL)
        uc.hook_add(UC_HOOK_INSN, self._on_sysenter, None, 1, 0, x86.UC_X86_INS_SYSENTER)

    def _on_syscall(self, uc, _user) -> None:
        rip = uc.reg_read(x86.UC_X86_REG_RIP)
        length = self._length(rip)
        if not uc.msr_read(MSR.EFER) & EFER.SCE or not in_64bit_mode(uc):
            self.raise_fault(Vector.UD, None, rip)
            return
        self.count += 1
        star, lstar, fmask = uc.msr_read(MSR.STAR), uc.msr_read(MSR.LSTAR), uc.msr_read(MSR.FMASK)
        rflags = uc.reg_read(x86.UC_X86_REG_RFLAGS)
        uc.reg_write(x86.UC_X86_REG_RCX, (rip + length) & MASK64)
        uc.reg_write(x86.UC_X86_REG_R11, rflags & ~RFLAGS.RF)
        self._enter_ring0(uc, (star >> 32) & 0xFFFC)
        uc.reg_write(x86.UC_X86_REG_RFLAGS, rflags & ~(fmask | RFLAGS.RF) & MASK32)
        uc.reg_write(x86.UC_X86_REG_RIP, (lstar - length) & MASK64)   # Unicorn adds length back

    def _on_sysenter(self, uc, _user) -> None:
        rip = uc.reg_read(x86.UC_X86_REG_RIP)
        length = self._length(rip)
        kernel_cs = uc.msr_read(MSR.SYSENTER_CS) & 0xFFFC
        if not uc.reg_read(x86.UC_X86_REG_CR0) & CR0.PE or kernel_cs == 0:
            self.raise_fault(Vector.GP, 0, rip)
            return
        self.count += 1
        wide = MASK64 if uc.msr_read(MSR.EFER) & EFER.LMA else MASK32
        rflags = uc.reg_read(x86.UC_X86_REG_RFLAGS)
        self._enter_ring0(uc, kernel_cs)
        uc.reg_write(x86.UC_X86_REG_RFLAGS, rflags & ~(RFLAGS.VM | RFLAGS.IF | RFLAGS.RF) & MASK32)
        uc.reg_write(x86.UC_X86_REG_RSP, uc.msr_read(MSR.SYSENTER_ESP) & wide)
        uc.reg_write(x86.UC_X86_REG_RIP, ((uc.msr_read(MSR.SYSENTER_EIP) & wide) - length) & MASK64)

    @staticmethod
    def _enter_ring0(uc, kernel_cs: int) -> None:
        """CPL 0 first: QEMU refuses a ring-0 SS while the CPU is at CPL 3 (unicorn_compat.set_cpl)."""
        set_cpl(uc, 0)
        uc.reg_write(x86.UC_X86_REG_SS, kernel_cs + 8)
        uc.reg_write(x86.UC_X86_REG_CS, kernel_cs)

    def _length(self, rip: int) -> int:
        """The instruction's length (prefixes included), which Unicorn adds to RIP after the hook."""
        if self._decoder is None:
            import capstone

            self._decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        code = self.memory.read(rip, MAX_INSTRUCTION_LENGTH) or self.memory.read(rip, 2) or b""
        for instruction in self._decoder.disasm(code, rip, 1):
            return instruction.size
        return 2
