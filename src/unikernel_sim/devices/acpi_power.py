"""The ACPI PM1a control register as QEMU's PC machines expose it, so a kernel
can power the machine off the way hobby kernels do under QEMU:
`outw(0x604, 0x2000)` (QEMU's PIIX4/ICH9 PM block) or `outw(0xB004, 0x2000)`
(Bochs and older QEMU). Writing SLP_EN (bit 13) ends the run as a power-off.
(ACPI spec 6.5, 4.8.3.2.1: PM1 control register; SLP_TYPx is ignored here.)"""
from __future__ import annotations

from typing import Callable

from unikernel_sim.devices.device import Device, PortRange

QEMU_PM1A_CONTROL = 0x604
BOCHS_PM1A_CONTROL = 0xB004
PM1_CONTROL_WIDTH = 2
SLP_EN = 1 << 13


class AcpiPowerControl(Device):
    name = "acpi-pm1a-control"
    ports = (PortRange(QEMU_PM1A_CONTROL, PM1_CONTROL_WIDTH), PortRange(BOCHS_PM1A_CONTROL, PM1_CONTROL_WIDTH))
    io_width = PM1_CONTROL_WIDTH
    saved_fields = ("value",)

    def __init__(self, on_power_off: Callable[[int], None]) -> None:
        self.on_power_off = on_power_off
        self.value = 0

    def io_read(self, port: int, size: int) -> int:
        return self.value & ~SLP_EN

    def io_write(self, port: int, size: int, value: int) -> None:
        if port & 1:                      # the high byte alone
            value <<= 8
        self.value = value & 0xFFFF
        if self.value & SLP_EN:
            self.on_power_off(self.value)
