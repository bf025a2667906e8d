"""Model-specific registers that belong to a device here, not to Unicorn's CPU.

Unicorn 2.1.4 has no local APIC behind its CPU: RDMSR of IA32_APIC_BASE (0x1B)
returns 0 and WRMSR is dropped (docs/unicorn-quirks.md Q22), and neither
instruction can be hooked. So the guard that already stops before MOV to CR
(cpu/control_register_guard.py) also stops before every RDMSR/WRMSR in the
kernel's code and asks this table: an MSR listed here is read or written here
(EDX:EAX, ECX as the SDM's RDMSR/WRMSR pages say) and the instruction is skipped;
any other MSR runs in Unicorn as before.

  0x1B IA32_APIC_BASE (SDM vol. 3A 11.4.4): 0xFEE00900 at power-on - base
       0xFEE00000, bit 11 global enable, bit 8 BSP. Writes enable or disable the
       local APIC; moving the base and x2APIC mode (bit 10) are not offered.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unikernel_sim.devices.local_apic import LocalApic

IA32_APIC_BASE = 0x1B


class ModelSpecificRegisters:
    def __init__(self, lapic: "LocalApic") -> None:
        self.lapic = lapic
        self.accesses = 0                 # RDMSR/WRMSR executions served here

    def read(self, msr: int) -> int | None:
        """The value of msr if it is emulated here, else None (Unicorn answers)."""
        if msr == IA32_APIC_BASE:
            self.accesses += 1
            return self.lapic.apic_base
        return None

    def write(self, msr: int, value: int) -> bool:
        """Apply a write of value to msr if it is emulated here; False otherwise."""
        if msr == IA32_APIC_BASE:
            self.accesses += 1
            self.lapic.write_base_msr(value)
            return True
        return False
