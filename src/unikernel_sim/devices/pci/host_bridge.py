"""PCI configuration mechanism #1 (PCI Local Bus 3.0, 3.2.2.3.2) on the i440FX host
bridge, with the functions QEMU's `pc` machine has on bus 0.

CONFIG_ADDRESS (0xCF8) is a dword register: bit 31 enable, bus 23:16, device 15:11,
function 10:8, register 7:2. Only a dword access reaches it (a byte at 0xCF9 is the
PIIX reset control register, a separate device). CONFIG_DATA (0xCFC-0xCFF) reads and
writes the addressed dword's bytes at the offset of the port. A function that does not
exist reads all ones.

The functions' contents are QEMU's, recorded after SeaBIOS ran (devices/pci/
qemu_pc.txt): host bridge 8086:1237 at 00:00.0, PIIX3 ISA bridge 8086:7000 at 00:01.0,
PIIX3 IDE 8086:7010 at 00:01.1, PIIX4 power management 8086:7113 at 00:01.3 (its I/O
base 0x600 is where the ACPI PM1a control register sits) and the std VGA 1234:1111 at
00:02.0 (BAR0 the 16 MiB framebuffer at 0xFD000000, BAR2 its 4 KiB MMIO). Writable:
the command register, latency timer, cache line size, interrupt line, the implemented
BAR bits (sizes as recorded) and the device-specific registers 0x40-0xFF; the rest of
the header reads as recorded.
"""
from __future__ import annotations

import struct
from importlib import resources

from unikernel_sim.devices.device import Device, PortRange, Stateful
from unikernel_sim.records import record_equal, record_repr

CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC
ENABLE = 1 << 31
ABSENT = 0xFFFFFFFF
CONFIG_SIZE = 256
COMMAND = 0x04
COMMAND_WRITABLE = 0x0547              # I/O, memory, bus master, special cycles, parity, SERR, INTx disable
CACHE_LINE, LATENCY = 0x0C, 0x0D
BAR_FIRST, BARS = 0x10, 6
INTERRUPT_LINE = 0x3C
DEVICE_SPECIFIC = 0x40


class PciFunction(Stateful):
    """One function on bus 0: its 256-byte configuration space as QEMU 7.2 shows it after SeaBIOS."""

    saved_fields = ("config",)

    def __init__(self, device: int, function: int, config: bytearray, bar_masks: list[int] | None = None) -> None:
        self.device = device
        self.function = function
        self.config = config
        self.bar_masks = [0] * BARS if bar_masks is None else bar_masks   # writable bits of each BAR

    def __repr__(self) -> str:
        return record_repr(self)

    def __eq__(self, other: object) -> bool:
        return record_equal(self, other)

    def read_dword(self, register: int) -> int:
        return struct.unpack_from("<I", self.config, register)[0]

    def write(self, offset: int, data: bytes) -> None:
        """Bytes at offset, each as the register there allows."""
        for i, byte in enumerate(data):
            self._write_byte(offset + i, byte)

    def _write_byte(self, offset: int, byte: int) -> None:
        if offset in (COMMAND, COMMAND + 1):
            mask = (COMMAND_WRITABLE >> (8 * (offset - COMMAND))) & 0xFF
            self.config[offset] = (self.config[offset] & ~mask) | (byte & mask)
        elif offset in (CACHE_LINE, LATENCY, INTERRUPT_LINE) or offset >= DEVICE_SPECIFIC:
            self.config[offset] = byte
        elif BAR_FIRST <= offset < BAR_FIRST + 4 * BARS:
            bar, shift = divmod(offset - BAR_FIRST, 4)
            mask = (self.bar_masks[bar] >> (8 * shift)) & 0xFF
            self.config[offset] = (self.config[offset] & ~mask) | (byte & mask)


def qemu_pc_functions() -> list[PciFunction]:
    """Bus 0 of QEMU's pc machine, from the recording."""
    text = (resources.files("unikernel_sim.devices.pci") / "qemu_pc.txt").read_text()
    functions: dict[tuple[int, int], PciFunction] = {}
    for line in text.splitlines():
        fields = line.split()
        if fields[:1] == ["pci"]:
            device, function = (int(x, 16) for x in fields[1].split("."))
            dwords = [int(fields[2][i:i + 8], 16) for i in range(0, len(fields[2]), 8)]
            functions[(device, function)] = PciFunction(device, function, bytearray(struct.pack(f"<{len(dwords)}I",
                                                                                               *dwords)))
        elif fields[:1] == ["bar"]:
            device, function = (int(x, 16) for x in fields[1].split("."))
            bar, value = int(fields[2]), int(fields[3], 16)
            target = functions[(device, function)]
            io = value & 1
            target.bar_masks[bar] = value & (0xFFFFFFFC if io else 0xFFFFFFF0)
    return list(functions.values())


class PciHostBridge(Device):
    name = "pci"
    ports = (PortRange(CONFIG_ADDRESS, 1), PortRange(CONFIG_DATA, 4))
    io_width = 4
    saved_fields = ("address", "functions")

    def __init__(self, functions: list[PciFunction] | None = None) -> None:
        self.address = 0
        self.functions = functions if functions is not None else qemu_pc_functions()
        self._by_location = {(f.device, f.function): f for f in self.functions}

    def _target(self) -> tuple[PciFunction | None, int]:
        bus = (self.address >> 16) & 0xFF
        device, function = (self.address >> 11) & 0x1F, (self.address >> 8) & 0x7
        found = self._by_location.get((device, function)) if self.address & ENABLE and bus == 0 else None
        return found, self.address & 0xFC

    def io_read(self, port: int, size: int) -> int:
        if port == CONFIG_ADDRESS:
            return self.address if size == 4 else (1 << (8 * size)) - 1
        target, register = self._target()
        offset = register + port - CONFIG_DATA
        if target is None:
            return (1 << (8 * size)) - 1
        return int.from_bytes(target.config[offset:offset + size].ljust(size, b"\xff"), "little")

    def io_write(self, port: int, size: int, value: int) -> None:
        if port == CONFIG_ADDRESS:
            if size == 4:                               # only a dword access is the address latch
                self.address = value & 0x80FFFFFC
            return
        target, register = self._target()
        offset = register + port - CONFIG_DATA
        if target is not None and offset < CONFIG_SIZE:
            target.write(offset, value.to_bytes(size, "little")[:CONFIG_SIZE - offset])

    def describe_state(self) -> str:
        ids = ", ".join(f"{f.device:02x}.{f.function} {f.read_dword(0) & 0xFFFF:04x}:{f.read_dword(0) >> 16:04x}"
                        for f in self.functions)
        return f"pci: address {self.address:#010x}; {ids}"


class PiixResetControl(Device):
    """The PIIX3 reset control register at 0xCF9 (datasheet 2.3.1): writing bit 2 (RCPU)
    resets the CPU - a hard reset when bit 1 (SRST) is set, as QEMU treats both."""

    name = "piix-reset-control"
    ports = (PortRange(0xCF9, 1),)
    saved_fields = ("value",)
    RESET_CPU = 0x04
    WRITABLE = 0x0E

    def __init__(self, reset) -> None:
        self.value = 0
        self.reset = reset

    def io_read(self, port: int, size: int) -> int:
        return self.value

    def io_write(self, port: int, size: int, value: int) -> None:
        self.value = value & self.WRITABLE & ~self.RESET_CPU
        if value & self.RESET_CPU:
            self.reset("port 0xCF9 reset control")
