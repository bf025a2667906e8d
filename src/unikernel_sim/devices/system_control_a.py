"""System Control Port A (port 0x92, "fast A20 and reset"), as PC chipsets
and QEMU's i440FX/Q35 machines have it.

  bit 0  fast reset: writing 1 (from 0) resets the machine
  bit 1  A20 gate: reads 1; Multiboot2 hands over with A20 enabled and it stays so
  bits 2-7  kept as written (bit 3: CMOS security lock, 6-7: disk activity LEDs)

Kernels read-modify-write it to enable A20 (`in al, 0x92; or al, 2; out 0x92, al`);
an empty-bus read of 0xFF would make that write set bit 0 and reset the machine,
so the port must read back as a chipset's does (QEMU: 0x02 after power-on).
Masking A20 (writing bit 1 = 0) is recorded but not emulated: addresses never wrap
at 1 MiB here (no Multiboot2 kernel can want them to: it is entered with A20 on).
"""
from __future__ import annotations

from typing import Callable

from unikernel_sim.devices.device import Device, PortRange

SYSTEM_CONTROL_A = 0x92
FAST_RESET = 1 << 0
A20_GATE = 1 << 1
POWER_ON_VALUE = A20_GATE


class SystemControlPortA(Device):
    name = "system-control-a"
    ports = (PortRange(SYSTEM_CONTROL_A),)
    saved_fields = ("value",)

    def __init__(self, on_reset: Callable[[], None]) -> None:
        self.on_reset = on_reset
        self.value = POWER_ON_VALUE

    def io_read(self, port: int, size: int) -> int:
        return (self.value & ~FAST_RESET) | A20_GATE

    def io_write(self, port: int, size: int, value: int) -> None:
        previous, self.value = self.value, value & 0xFF
        if value & FAST_RESET and not previous & FAST_RESET:
            self.on_reset()
