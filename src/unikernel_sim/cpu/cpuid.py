"""CPUID as this platform answers it: QEMU's model, with leaf 1 following the machine.

Unicorn answers CPUID with QEMU's qemu64-style model. Leaf 1 is answered here:
the on-chip local APIC bit (EDX bit 9) follows IA32_APIC_BASE's global enable as
QEMU's does (the local APIC is devices/local_apic.py), OSXSAVE mirrors CR4, and
every other leaf is QEMU's.

Deterministic mode also clears RDRAND (ECX bit 30): QEMU fills RDRAND from the
host's random source, and the seeding that makes it repeatable (`-seed`) is not
reachable in Unicorn's library, so a kernel that checks the bit (SDM vol. 1 7.3.17.1)
must fall back to a seed that replays. A kernel that executes RDRAND without
checking still gets host randomness.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Callable

from unicorn import UC_HOOK_INSN, Uc
from unicorn.x86_const import (
    UC_X86_INS_CPUID, UC_X86_REG_CR4, UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDX,
)

from unikernel_sim.arch import CR4

if TYPE_CHECKING:
    from unikernel_sim.cpu.engine import ProbeEngine

LEAF_FEATURES = 1
EDX_APIC = 1 << 9            # SDM vol. 2A, CPUID table 3-11: on-chip APIC
ECX_XSAVE = 1 << 26          # table 3-10: XSAVE supported
ECX_OSXSAVE = 1 << 27        # table 3-10: CR4.OSXSAVE set by the OS
ECX_RDRAND = 1 << 30         # table 3-10: RDRAND supported
CPUID_BYTES = b"\x0f\xa2"
SCRATCH_ADDRESS = 0x1000
HANDLED = 1                  # Unicorn's CPUID hook: skip QEMU's own execution
NOT_HANDLED = 0

Registers = tuple[int, int, int, int]     # (eax, ebx, ecx, edx)


@lru_cache(maxsize=1)
def qemu_leaf1() -> Registers:
    """QEMU's own leaf-1 answer, asked once per process on the probe engine (its CR4
    differs from the guest's, so OSXSAVE is recomputed by leaf1). A machine asks it
    while its new engine is lent to the probes (a guest's CPUID would otherwise
    make an engine for it mid-run)."""
    uc = _probe_engine().fresh()
    uc.mem_write(SCRATCH_ADDRESS, CPUID_BYTES)
    uc.reg_write(UC_X86_REG_EAX, LEAF_FEATURES)
    uc.reg_write(UC_X86_REG_ECX, 0)
    uc.emu_start(SCRATCH_ADDRESS, SCRATCH_ADDRESS + len(CPUID_BYTES))
    return tuple(uc.reg_read(r) & 0xFFFFFFFF for r in (UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX,
                                                         UC_X86_REG_EDX))


def leaf1(cr4: int, *, deterministic: bool = False, apic_enabled: bool = True) -> Registers:
    """Leaf 1 for a CPU whose CR4 is cr4: QEMU's bits, APIC only while IA32_APIC_BASE
    enables it, OSXSAVE mirroring CR4, and no RDRAND in deterministic mode."""
    eax, ebx, ecx, edx = qemu_leaf1()
    ecx &= ~ECX_OSXSAVE
    if deterministic:
        ecx &= ~ECX_RDRAND
    if ecx & ECX_XSAVE and cr4 & CR4.OSXSAVE:
        ecx |= ECX_OSXSAVE
    return eax, ebx, ecx, edx if apic_enabled else edx & ~EDX_APIC


def install(uc: Uc, *, deterministic: bool, model: str | None = None,
            apic_enabled: Callable[[], bool] = lambda: True) -> None:
    """Answer CPUID for this platform (a Python hook on CPUID only: a rare instruction):
    leaf 1 as above, or, with a model, every leaf from that model's table."""
    table = CpuModel.load(model) if model is not None else None

    def on_cpuid(uc: Uc, _user) -> int:
        leaf = uc.reg_read(UC_X86_REG_EAX) & 0xFFFFFFFF
        cr4 = uc.reg_read(UC_X86_REG_CR4)
        if table is not None:
            registers = table.lookup(leaf, uc.reg_read(UC_X86_REG_ECX) & 0xFFFFFFFF, cr4, deterministic)
        elif leaf == LEAF_FEATURES:
            registers = leaf1(cr4, deterministic=deterministic)
        else:
            return NOT_HANDLED
        if leaf == LEAF_FEATURES and not apic_enabled():
            registers = (*registers[:3], registers[3] & ~EDX_APIC)   # QEMU clears it with the APIC off
        for register, value in zip((UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDX), registers):
            uc.reg_write(register, value)       # a 32-bit result zero-extends, as CPUID does
        return HANDLED                          # Unicorn still moves RIP past the CPUID

    uc.hook_add(UC_HOOK_INSN, on_cpuid, None, 1, 0, UC_X86_INS_CPUID)


MODELS = ("qemu64", "haswell")
"""--cpu choices: QEMU 7.2's default CPU and its Haswell model (TCG), recorded from QEMU itself
(cpu/models/*.txt)."""
SUBLEAF_LEAVES = frozenset({4, 7, 0xB, 0xD})
EXTENDED_BASE = 0x80000000


class CpuModel:
    """A CPUID table: (leaf, subleaf) -> (eax, ebx, ecx, edx), answered as QEMU's
    cpu_x86_cpuid does: a leaf above the highest basic or extended one gets the
    highest basic leaf's answer; leaves without subleaves ignore ECX."""

    def __init__(self, leaves: dict[tuple[int, int], Registers]) -> None:
        self.leaves = leaves
        self.max_basic = leaves[(0, 0)][0]
        self.max_extended = leaves.get((EXTENDED_BASE, 0), (0, 0, 0, 0))[0]

    @classmethod
    @lru_cache(maxsize=None)
    def load(cls, name: str) -> "CpuModel":
        from importlib import resources

        if name not in MODELS:
            raise ValueError(f"unknown CPU model {name!r}; models: {', '.join(MODELS)}")
        text = (resources.files("unikernel_sim.cpu") / "models" / f"{name}.txt").read_text()
        leaves = {}
        for line in text.splitlines():
            fields = line.split()
            if fields[:1] == ["cpuid"]:
                leaf, sub, *registers = (int(value, 16) for value in fields[1:])
                leaves[(leaf, sub)] = tuple(registers)
        return cls(leaves)

    def lookup(self, leaf: int, subleaf: int, cr4: int, deterministic: bool) -> Registers:
        if leaf >= EXTENDED_BASE:
            if leaf > self.max_extended:
                leaf = self.max_basic
        elif leaf > self.max_basic:
            leaf = self.max_basic
        if leaf not in SUBLEAF_LEAVES:
            subleaf = 0
        eax, ebx, ecx, edx = self.leaves.get((leaf, subleaf), (0, 0, 0, 0))
        if leaf == LEAF_FEATURES:
            ecx &= ~ECX_OSXSAVE                         # the recording was made with CR4.OSXSAVE clear
            if ecx & ECX_XSAVE and cr4 & CR4.OSXSAVE:
                ecx |= ECX_OSXSAVE
            if deterministic:
                ecx &= ~ECX_RDRAND
        return eax, ebx, ecx, edx


def _probe_engine() -> "ProbeEngine":
    from unikernel_sim.cpu.engine import probe_engine

    return probe_engine()
