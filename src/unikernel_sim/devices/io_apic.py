"""The I/O APIC (Intel 82093AA datasheet; QEMU 7.2's version 0x20 model) at
0xFEC00000: 24 interrupt pins, each with a redirection entry that sends it to the
local APIC.

Registers, through an index (IOREGSEL, offset 0x00) and a window (IOWIN, 0x10):

  0x00 IOAPICID: bits 24-27 the ID (writable)
  0x01 IOAPICVER: 0x00170020 - version 0x20, 24 entries (maximum index 0x17)
  0x02 IOAPICARB: arbitration ID, reads 0
  0x10 + 2n, 0x11 + 2n: redirection entry n, low then high dword:
       bits 0-7 vector, 8-10 delivery mode (0 fixed, 1 lowest priority, 2 SMI, 4 NMI,
       5 INIT, 7 ExtINT), 11 destination mode (1 logical), 12 delivery status (RO),
       13 polarity (1 low), 14 remote IRR (RO), 15 trigger (1 level), 16 mask,
       56-63 destination
  offset 0x40: EOI register (version 0x20): writing a vector clears the remote IRR of
       the entries that use it, as the local APIC's EOI broadcast does

Behaviour as QEMU's: an edge on a masked pin is latched and delivered when the pin is
unmasked; a level pin delivers while asserted with remote IRR clear, sets remote IRR,
and delivers again after the EOI if still asserted; polarity is not applied (the
board's lines carry the asserted state). Fixed and lowest-priority entries go to the
one local APIC when the destination matches it; SMI, NMI, INIT and ExtINT entries are
counted and dropped. Power-on: every entry masked (recorded after SeaBIOS), ID 0.
ISA IRQs arrive as the MADT says: IRQ 0 (the PIT) on pin 2, the rest on their own pin.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from unikernel_sim.devices.device import Device, MmioWindow

if TYPE_CHECKING:
    from unikernel_sim.devices.local_apic import LocalApic

IOAPIC_BASE = 0xFEC00000
WINDOW = 0x1000
IOREGSEL, IOWIN, IOEOI = 0x00, 0x10, 0x40
ID_REGISTER, VERSION_REGISTER, ARBITRATION_REGISTER, REDIRECTION_TABLE = 0x00, 0x01, 0x02, 0x10
PINS = 24
VERSION_VALUE = 0x00170020
ID_MASK = 0x0F000000

VECTOR_MASK = 0xFF
DELIVERY_MODE_SHIFT, DELIVERY_MODE_MASK = 8, 0x7
FIXED, LOWEST_PRIORITY = 0, 1
LOGICAL = 1 << 11
DELIVERY_STATUS = 1 << 12
REMOTE_IRR = 1 << 14
LEVEL_TRIGGERED = 1 << 15
MASKED = 1 << 16
READ_ONLY_BITS = DELIVERY_STATUS | REMOTE_IRR
DESTINATION_SHIFT = 56
POWER_ON_ENTRY = MASKED
ISA_PIN = {0: 2}                                # the MADT's only ISA override that moves a line


def isa_pin(irq: int) -> int:
    return ISA_PIN.get(irq, irq)


class IoApic(Device):
    name = "io-apic"
    mmio = (MmioWindow(IOAPIC_BASE, WINDOW),)
    saved_fields = ("select", "apic_id", "entries", "lines", "latched", "dropped")

    def __init__(self, lapic: "LocalApic") -> None:
        self.lapic = lapic
        self.on_mask_change = lambda: None     # which timed devices' events matter changed
        self.reset()

    def reset(self) -> None:
        self.select = 0
        self.apic_id = 0
        self.entries = [POWER_ON_ENTRY] * PINS
        self.lines = 0                 # asserted pins (bit n)
        self.latched = 0               # edges waiting for their pin to be unmasked
        self.dropped = 0               # SMI/NMI/INIT/ExtINT deliveries not emulated

    # --- pins -----------------------------------------------------------------------------
    def set_line(self, pin: int, level: bool) -> None:
        bit = 1 << pin
        rising = level and not self.lines & bit
        self.lines = self.lines | bit if level else self.lines & ~bit
        entry = self.entries[pin]
        if entry & LEVEL_TRIGGERED:
            if level:
                self._service(pin)
        elif rising:
            self.latched |= bit
            self._service(pin)

    def pin_masked(self, pin: int) -> bool:
        return bool(self.entries[pin] & MASKED)

    def end_of_interrupt(self, vector: int) -> None:
        """The local APIC's EOI of a level-triggered vector (or a write to IOEOI)."""
        for pin, entry in enumerate(self.entries):
            if entry & VECTOR_MASK == vector and entry & REMOTE_IRR:
                self.entries[pin] = entry & ~REMOTE_IRR
                if entry & LEVEL_TRIGGERED and self.lines >> pin & 1:
                    self._service(pin)

    def _service(self, pin: int) -> None:
        entry = self.entries[pin]
        if entry & MASKED:
            return
        if entry & LEVEL_TRIGGERED:
            if entry & REMOTE_IRR or not self.lines >> pin & 1:
                return
        elif not self.latched >> pin & 1:
            return
        self.latched &= ~(1 << pin)
        mode = (entry >> DELIVERY_MODE_SHIFT) & DELIVERY_MODE_MASK
        if mode not in (FIXED, LOWEST_PRIORITY):
            self.dropped += 1
            return
        if not self.lapic.is_destination(entry >> DESTINATION_SHIFT, bool(entry & LOGICAL)):
            return
        if entry & LEVEL_TRIGGERED:
            self.entries[pin] = entry | REMOTE_IRR
        self.lapic.accept(entry & VECTOR_MASK, level_triggered=bool(entry & LEVEL_TRIGGERED))

    # --- guest accesses --------------------------------------------------------------------
    def mmio_read(self, offset: int, size: int) -> int:
        if offset == IOREGSEL:
            return self.select
        if offset == IOWIN:
            return self._read_register(self.select)
        return 0

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        if offset == IOREGSEL:
            self.select = value & 0xFF
        elif offset == IOWIN:
            self._write_register(self.select, value & 0xFFFFFFFF)
        elif offset == IOEOI:
            self.end_of_interrupt(value & VECTOR_MASK)

    def _read_register(self, index: int) -> int:
        if index == ID_REGISTER:
            return self.apic_id << 24
        if index == VERSION_REGISTER:
            return VERSION_VALUE
        if index == ARBITRATION_REGISTER:
            return 0
        pin, high = self._entry_of(index)
        if pin is None:
            return 0
        return (self.entries[pin] >> (32 if high else 0)) & 0xFFFFFFFF

    def _write_register(self, index: int, value: int) -> None:
        if index == ID_REGISTER:
            self.apic_id = (value & ID_MASK) >> 24
            return
        pin, high = self._entry_of(index)
        if pin is None:
            return
        entry = self.entries[pin]
        if high:
            entry = (entry & 0xFFFFFFFF) | (value << 32)
        else:
            entry = (entry & ~0xFFFFFFFF) | (value & ~READ_ONLY_BITS) | (entry & READ_ONLY_BITS)
            if not value & LEVEL_TRIGGERED:
                entry &= ~REMOTE_IRR
        masked_before = self.entries[pin] & MASKED
        self.entries[pin] = entry
        if masked_before != entry & MASKED:
            self.on_mask_change()
        if not entry & MASKED:
            if entry & LEVEL_TRIGGERED:
                self._service(pin)
            elif self.latched >> pin & 1:
                self._service(pin)

    @staticmethod
    def _entry_of(index: int) -> tuple[int | None, bool]:
        if REDIRECTION_TABLE <= index < REDIRECTION_TABLE + 2 * PINS:
            return (index - REDIRECTION_TABLE) // 2, bool((index - REDIRECTION_TABLE) & 1)
        return None, False

    def describe_state(self) -> str:
        unmasked = [f"{pin}->{entry & VECTOR_MASK:#04x}{'L' if entry & LEVEL_TRIGGERED else 'E'}"
                    for pin, entry in enumerate(self.entries) if not entry & MASKED]
        return f"{self.name}: id={self.apic_id}, unmasked pins [{', '.join(unmasked)}], lines={self.lines:#x}"
