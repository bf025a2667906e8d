"""Creating the Unicorn engine and reading the CPU state in one place.

The engine is created in UC_MODE_64 even for 32-bit kernels: in a UC_MODE_32
engine the register API is fixed to 32 bits, so after the guest enters long
mode RIP and R8-R15 read back as 0 (docs/unicorn-quirks.md, Q0). The Multiboot2 32-bit
entry state is then reached by running a stub (boot/handoff.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn import x86_const as x86

from unikernel_sim.arch import EFER, GPR_NAMES, MSR, RFLAGS, SEGMENT_NAMES



TRANSLATION_BUFFER = 256 << 20
"""Unicorn reserves 1 GiB of address space per engine for translated code by
default, and QEMU's code exits the process when it cannot (no error to catch).
256 MiB holds far more than any unikernel's hot code (TinyLlama uses a few MiB),
and keeps the simulator inside `ulimit -v` limits that fit its guest RAM."""
PROBE_TRANSLATION_BUFFER = 4 << 20     # scratch engines run a handful of instructions


def create_engine(translation_buffer: int = TRANSLATION_BUFFER) -> Uc:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.ctl_set_tcg_buffer_size(translation_buffer)
    return uc


def create_probe_engine() -> Uc:
    """A small engine for one-off probes (cpuid answers, context layout)."""
    return create_engine(PROBE_TRANSLATION_BUFFER)


def reg_id(name: str) -> int:
    return getattr(x86, f"UC_X86_REG_{name.upper()}")


@dataclass
class CpuState:
    """A plain copy of the registers a report or a test looks at."""

    gpr: dict[str, int]
    rip: int
    rflags: int
    cr0: int
    cr2: int
    cr3: int
    cr4: int
    efer: int
    segments: dict[str, int]
    gdtr: tuple[int, int]   # (base, limit)
    idtr: tuple[int, int]

    @property
    def long_mode(self) -> bool:
        return bool(self.efer & EFER.LMA)

    @property
    def interrupts_enabled(self) -> bool:
        return bool(self.rflags & RFLAGS.IF)


def read_cpu_state(uc: Uc) -> CpuState:
    gdtr = uc.reg_read(x86.UC_X86_REG_GDTR)
    idtr = uc.reg_read(x86.UC_X86_REG_IDTR)
    return CpuState(
        gpr={name: uc.reg_read(reg_id(name)) for name in GPR_NAMES},
        rip=uc.reg_read(x86.UC_X86_REG_RIP),
        rflags=uc.reg_read(x86.UC_X86_REG_RFLAGS),
        cr0=uc.reg_read(x86.UC_X86_REG_CR0),
        cr2=uc.reg_read(x86.UC_X86_REG_CR2),
        cr3=uc.reg_read(x86.UC_X86_REG_CR3),
        cr4=uc.reg_read(x86.UC_X86_REG_CR4),
        efer=uc.msr_read(MSR.EFER),
        segments={name: uc.reg_read(reg_id(name)) for name in SEGMENT_NAMES},
        gdtr=(gdtr[1], gdtr[2]),
        idtr=(idtr[1], idtr[2]),
    )
