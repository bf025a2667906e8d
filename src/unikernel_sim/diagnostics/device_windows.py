"""The fixed physical windows where a PC has device registers instead of RAM.

A kernel written for QEMU's or a real PC's platform often reaches for these
without asking first; unisim emulates the legacy ISA devices only (docs/platform.md),
so an access there ends the run, and the report should say which device the
kernel was looking for rather than only "outside RAM"."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceWindow:
    start: int
    end: int                 # exclusive
    device: str
    instead: str             # what to use on this platform


WINDOWS = (
    # SDM vol. 3A 11.4.1: IA32_APIC_BASE's power-on value puts the xAPIC page here.
    DeviceWindow(0xFEE00000, 0xFEF00000, "the local APIC (xAPIC registers at 0xfee00000)",
                 "use the 8259 PIC and the 8254 PIT; CPUID.01H:EDX.APIC reads 0 here"),
    # 82093AA I/O APIC datasheet, default base; where QEMU's ACPI MADT puts it.
    DeviceWindow(0xFEC00000, 0xFEC01000, "the I/O APIC (registers at 0xfec00000)",
                 "route IRQs through the 8259 PIC"),
    # IA-PC HPET specification 1.0a, the base QEMU's ACPI HPET table announces.
    DeviceWindow(0xFED00000, 0xFED00400, "the HPET (registers at 0xfed00000)",
                 "time with the 8254 PIT or rdtsc"),
)


def device_window(address: int) -> DeviceWindow | None:
    """The device window holding physical address, or None."""
    return next((w for w in WINDOWS if w.start <= address < w.end), None)
