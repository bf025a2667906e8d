"""Memory-mapped device windows: physical address ranges served by a device
instead of RAM.

Each window is mapped with Unicorn's mmio_map, so an access outside every
window costs nothing (no memory hook), and an access inside one becomes a
call to the device's mmio_read/mmio_write with the offset from the window's
base. Unicorn delivers a 64-bit access as two 32-bit ones, low half first
(docs/unicorn-quirks.md, Q18): devices see the accesses the bus makes, as a
device on a 32-bit bus would.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from unikernel_sim.devices.device import Device, MmioWindow

if TYPE_CHECKING:
    from unicorn import Uc

PAGE = 0x1000

MmioTracer = Callable[[str, int, int, int], None]
"""Called as (kind, physical address, size, value) for every access, when tracing."""


class MmioBus:
    def __init__(self, uc: "Uc", ram_size: int) -> None:
        self.uc = uc
        self.ram_size = ram_size
        self.windows: list[tuple[MmioWindow, Device]] = []
        self.tracer: MmioTracer | None = None
        self.in_access = False      # a device is serving a guest load or store right now (Q19)
        self.before_access: Callable[[], None] = lambda: None   # device state to the Python models first

    def map(self, window: MmioWindow, device: Device) -> None:
        """Serve window's addresses from device; ValueError if it overlaps RAM or another window."""
        if window.base % PAGE or window.size % PAGE or window.size <= 0:
            raise ValueError(f"MMIO window {window.base:#x}+{window.size:#x} of {device.name} is not whole pages")
        end = window.base + window.size
        if window.base < self.ram_size:
            raise ValueError(f"MMIO window {window.base:#x} of {device.name} overlaps guest RAM")
        for other, owner in self.windows:
            if window.base < other.base + other.size and other.base < end:
                raise ValueError(f"MMIO window {window.base:#x} of {device.name} overlaps {owner.name}'s")
        base = window.base

        def read(uc, offset: int, size: int, _user) -> int:
            self.before_access()
            self.in_access = True
            try:
                value = device.mmio_read(offset, size) & ((1 << (8 * size)) - 1)
            finally:
                self.in_access = False
            if self.tracer:
                self.tracer("read", base + offset, size, value)
            return value

        def write(uc, offset: int, size: int, value: int, _user) -> None:
            self.before_access()
            if self.tracer:
                self.tracer("write", base + offset, size, value)
            self.in_access = True
            try:
                device.mmio_write(offset, size, value & ((1 << (8 * size)) - 1))
            finally:
                self.in_access = False

        self.uc.mmio_map(window.base, window.size, read, None, write, None)
        self.windows.append((window, device))
