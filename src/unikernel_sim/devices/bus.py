"""The x86 I/O port space (64 Ki byte-wide ports) and the devices on it.

Accesses wider than a device's register width are split into consecutive byte
accesses, as the ISA bus does for 8-bit devices (so ``outw`` to the UART's
divisor latch writes DLL then DLM). Ports with no device behave like an empty
ISA bus: reads return all ones, writes vanish; both are counted so that
``--verbose`` can list them and ``--strict-io`` can stop on the first.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

from unikernel_sim.devices.device import Device

UnknownPortHandler = Callable[[str, int, int, int], None]
"""Called as (kind, port, size, value) for an access to a port with no device."""

PortTracer = Callable[[str, int, int, int], None]
"""Called as (kind, port, size, value) for every access, when tracing."""


class IoBus:
    PORT_COUNT = 0x10000

    def __init__(self) -> None:
        self._devices: dict[int, Device] = {}
        self.unknown_reads: Counter[int] = Counter()
        self.unknown_writes: Counter[int] = Counter()
        self.on_unknown: UnknownPortHandler | None = None
        self.tracer: PortTracer | None = None

    def attach(self, first_port: int, count: int, device: Device) -> None:
        """Put device on ports first_port .. first_port+count-1."""
        for port in range(first_port, first_port + count):
            if port in self._devices:
                raise ValueError(f"I/O port {port:#x} already has a device")
            self._devices[port] = device

    def read(self, port: int, size: int) -> int:
        device = self._devices.get(port)
        if device is not None and size <= device.io_width:
            value = device.io_read(port, size)
        else:
            value = 0
            for i in range(size):
                value |= self._read_byte((port + i) & 0xFFFF) << (8 * i)
        if self.tracer:
            self.tracer("in", port, size, value)
        return value

    def write(self, port: int, size: int, value: int) -> None:
        if self.tracer:
            self.tracer("out", port, size, value)
        device = self._devices.get(port)
        if device is not None and size <= device.io_width:
            device.io_write(port, size, value)
            return
        for i in range(size):
            self._write_byte((port + i) & 0xFFFF, (value >> (8 * i)) & 0xFF)

    def _read_byte(self, port: int) -> int:
        device = self._devices.get(port)
        if device is not None:
            return device.io_read(port, 1) & 0xFF
        self.unknown_reads[port] += 1
        if self.on_unknown:
            self.on_unknown("in", port, 1, 0xFF)
        return 0xFF

    def _write_byte(self, port: int, value: int) -> None:
        device = self._devices.get(port)
        if device is not None:
            device.io_write(port, 1, value)
            return
        self.unknown_writes[port] += 1
        if self.on_unknown:
            self.on_unknown("out", port, 1, value)
