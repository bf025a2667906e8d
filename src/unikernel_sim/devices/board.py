"""The PC: which devices sit where, and how their interrupt lines are wired.

One declaration (``PcBoard.__init__``) lists the legacy devices of QEMU's
i440FX/PIIX3 `pc` machine that a unikernel talks to. Everything else iterates
``board.devices``: port and MMIO dispatch, bringing devices up to the current
virtual time, finding the next event the guest must be stopped for, saving and
restoring state, and the device lines of the crash report. Adding a device is
one file plus one line here.

Devices never import each other: the board connects their interrupt outputs
to the interrupt controllers, and hands each the few machine services it needs
(the clock, RAM reads, output sinks, "the guest asked for X") as plain callables
in ``BoardWiring``.

Interrupt wiring, as on QEMU's `pc`: every ISA IRQ line goes to the 8259 pair and
to the I/O APIC (IRQ 0 on pin 2, the others on their own pin, as the MADT says);
the I/O APIC sends to the local APIC; the CPU takes the local APIC's vector first,
then the 8259's request if the local APIC lets it through LINT0 (virtual wire).
"""
from __future__ import annotations

import datetime as dt
from typing import Callable

from unikernel_sim.devices.bochs_vbe import BochsVbe
from unikernel_sim.devices.bus import IoBus
from unikernel_sim.devices.cmos_rtc import CmosRtc
from unikernel_sim.devices.debug_exit import DebugConsole, DebugExit
from unikernel_sim.devices.device import Device, LoadPlan, State
from unikernel_sim.devices.hpet import Hpet
from unikernel_sim.devices.i8042 import I8042
from unikernel_sim.devices.i8254 import Pit8254
from unikernel_sim.devices.i8259 import PicPair
from unikernel_sim.devices.io_apic import IoApic, isa_pin
from unikernel_sim.devices.local_apic import LocalApic
from unikernel_sim.devices.mmio import MmioBus
from unikernel_sim.devices.pci.host_bridge import PciHostBridge, PiixResetControl
from unikernel_sim.devices.piix4_pm import SCI_IRQ, Piix4PowerManagement
from unikernel_sim.devices.post_port import PostPort
from unikernel_sim.devices.system_control_a import SystemControlPortA
from unikernel_sim.devices.uart16550 import COM1_BASE, COM1_IRQ, Uart16550
from unikernel_sim.devices.vga_text import VgaText
from unikernel_sim.identity_cache import IdentityCache
from unikernel_sim.records import Record

IRQ_TIMER = 0
IRQ_KEYBOARD = 1
IRQ_RTC = 8
IRQ_MOUSE = 12


class BoardWiring(Record):
    """What the devices need from the machine around them."""

    now_ns: Callable[[], int]                         # the virtual clock
    read_ram: Callable[[int, int], bytes]             # (physical address, length) -> bytes
    serial_out: Callable[[int], None]                 # a byte COM1 transmitted
    debugcon_out: Callable[[int], None]               # a byte written to port 0xE9
    guest_exit: Callable[[int], None]                 # value written to the debug-exit port
    power_off: Callable[[int, str], None]             # ACPI PM1a control value with SLP_EN, sleep state
    reset: Callable[[str], None]                      # the guest asked for a reset (names the source)
    interrupt_changed: Callable[[], None]             # the PIC's INTR output may have changed
    events_moved: Callable[[], None]                  # the next device event may have moved
    map_memory: Callable[[int, int, int], None]       # (base, size, perms): memory snapshots cover
    uart_fast_path: Callable[[bool, int | None], None] = lambda tx_plain, lsr_value: None   # COM1's C path
    port_b_fast_path: Callable[[int | None, int, int | None], None] = lambda value, since, until: None  # port 0x61's


LOAD_PLANS = 16                 # snapshots whose device-loading plan is kept (devices/device.py)


class PcBoard:
    def __init__(self, wiring: BoardWiring, io: IoBus, mmio: MmioBus, *, ram_size: int,
                 serial_input: bytes = b"", rtc_start: dt.datetime) -> None:
        self.io = io
        self.mmio = mmio
        self.devices: list[Device] = []
        self._timed: list[Device] = []          # the devices that act on their own over time
        self._load_plans = IdentityCache(LOAD_PLANS)   # a snapshot's device states -> their LoadPlan
        self._now = now = wiring.now_ns
        self._events_moved = wiring.events_moved

        self.pic = self.attach(PicPair(on_change=wiring.interrupt_changed))
        self.pic.power_on_state()
        self.pic.sync = self.catch_up
        self.pic.on_mask_change = wiring.events_moved       # an unmasked timer needs a deadline
        self.lapic = self.attach(LocalApic(now, on_change=wiring.interrupt_changed,
                                           on_level_eoi=lambda vector: self.ioapic.end_of_interrupt(vector),
                                           on_reprogram=wiring.events_moved))
        self.ioapic = self.attach(IoApic(self.lapic))
        self.ioapic.on_mask_change = wiring.events_moved
        self.hpet = self.attach(Hpet(now, set_isa_irq=self.set_irq, set_ioapic_pin=self.ioapic.set_line,
                                     on_reprogram=wiring.events_moved))
        self.pit = self.attach(Pit8254(now, irq0=self._pit_output))
        self.pit.on_reprogram = wiring.events_moved
        self.pit.power_on_state()
        self.pit.port_b_path = wiring.port_b_fast_path
        self.rtc = self.attach(CmosRtc(now, start=rtc_start, ram_bytes=ram_size, irq=self._rtc_output))
        self.keyboard = self.attach(I8042(now, irq1=lambda: self.pulse_irq(IRQ_KEYBOARD),
                                          reset=lambda: wiring.reset("keyboard controller"),
                                          irq12=lambda: self.pulse_irq(IRQ_MOUSE)))
        self.port_a = self.attach(SystemControlPortA(on_reset=lambda: wiring.reset("port 0x92 fast reset")))
        self.vga = self.attach(VgaText(wiring.read_ram, now))
        self.vbe = self.attach(BochsVbe(mmio.uc, wiring.map_memory))   # std VGA's graphics modes and framebuffer
        self.uart = self.attach(Uart16550(COM1_BASE, transmit=wiring.serial_out,
                                          irq_line=lambda level: self.set_irq(COM1_IRQ, level)))
        self.uart.fast_path = wiring.uart_fast_path
        self.uart.feed(serial_input)
        self.attach(DebugExit(wiring.guest_exit))
        self.attach(DebugConsole(wiring.debugcon_out))
        self.post = self.attach(PostPort())
        self.pm = self.attach(Piix4PowerManagement(now, wiring.power_off,
                                                   sci=lambda level: self.set_irq(SCI_IRQ, level)))
        self.pci = self.attach(PciHostBridge())
        self.attach(PiixResetControl(reset=wiring.reset))

    def attach(self, device: Device):
        """Put device on its ports and MMIO windows; returns it."""
        for ports in device.ports:
            self.io.attach(ports.first, ports.count, device)
        for window in device.mmio:
            self.mmio.map(window, device)
        device.events_moved = self._events_moved
        self.devices.append(device)
        if _is_timed(device):
            self._timed.append(device)
        return device

    # --- interrupts --------------------------------------------------------------------
    def _pit_output(self) -> None:
        """PIT channel 0's tick, unless the HPET's legacy replacement has taken IRQ 0."""
        if not self.hpet.legacy_replacement:
            self.pulse_irq(IRQ_TIMER)

    def _rtc_output(self, level: bool) -> None:
        """The RTC's IRQ 8, unless the HPET's legacy replacement has taken it (timer 1)."""
        if not self.hpet.legacy_replacement:
            self.set_irq(IRQ_RTC, level)

    def set_irq(self, irq: int, level: bool) -> None:
        """ISA IRQ line irq at level, to both controllers."""
        self.pic.set_irq(irq, level)
        self.ioapic.set_line(isa_pin(irq), level)

    def pulse_irq(self, irq: int) -> None:
        """An edge on ISA IRQ line irq (rise and fall)."""
        self.pic.pulse_irq(irq)
        pin = isa_pin(irq)
        self.ioapic.set_line(pin, True)
        self.ioapic.set_line(pin, False)

    @property
    def interrupt_pending(self) -> bool:
        """Whether the CPU would take an external interrupt now if IF were set."""
        return self.lapic.interrupt_pending or (self.pic.interrupt_pending and self.lapic.accepts_pic)

    def acknowledge(self) -> tuple[int, int | None]:
        """INTA: (vector, ISA IRQ or None): the local APIC's vector first, else the 8259's
        (as QEMU's cpu_get_pic_interrupt)."""
        vector = self.lapic.acknowledge()
        if vector is not None:
            return vector, None
        return self.pic.acknowledge()

    def irq_masked(self, irq: int) -> bool:
        """Whether ISA IRQ irq cannot reach the CPU by either controller."""
        through_pic = self.lapic.accepts_pic and not self.pic.irq_masked(irq)
        return not through_pic and self.ioapic.pin_masked(isa_pin(irq))

    # --- time ----------------------------------------------------------------------
    def advance(self, now_ns: int) -> None:
        """Bring every timed device up to now_ns (timer edges, typed keys...)."""
        for device in self._timed:
            device.advance(now_ns)

    def catch_up(self) -> None:
        self.advance(self._now())

    def next_event_ns(self, *, without: tuple[Device, ...] = ()) -> int | None:
        """The earliest time a device must act on its own, or None. A device whose
        events only raise IRQ lines that are all masked (at the PIC and the I/O APIC) is left
        out, and so are those in `without` (the timers whose ticks C serves: cpu/tick_path.py)."""
        earliest = None
        masked = self.irq_masked
        for device in self._timed:
            if device in without or (device.interrupt_only_events and all(map(masked, device.irq_lines))):
                continue
            when = device.next_event_ns()
            if when is not None and (earliest is None or when < earliest):
                earliest = when
        return earliest

    # --- state -----------------------------------------------------------------------
    def save_state(self) -> list[State]:
        return [device.save_state() for device in self.devices]

    def load_state(self, states: list[State]) -> None:
        """Through a LoadPlan kept for each of the latest LOAD_PLANS states loaded (a test
        restores one snapshot thousands of times, reverse execution a few checkpoints in
        turn); the devices' own load_state when a plan no longer fits."""
        plan = self._load_plans.get(states)
        if plan is None:
            plan = self._load_plans.keep(states, LoadPlan(self.devices, states))
        if not plan.apply():
            self._load_plans.drop(states)
            for device, state in zip(self.devices, states, strict=True):
                device.load_state(state)

    def describe(self) -> list[str]:
        """One line per device with state, for the crash report."""
        return [device.describe_state() for device in self.devices if device.saved_fields]


def _is_timed(device: Device) -> bool:
    """Whether device overrides the contract's time methods. The scheduler asks only
    these: it runs every slice and, in deterministic mode, on every port access."""
    kind = type(device)
    return kind.advance is not Device.advance or kind.next_event_ns is not Device.next_event_ns
