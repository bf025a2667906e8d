"""The local APIC, I/O APIC and HPET as units, driven through their registers with
a clock of our own, against the rules the documents give: SDM vol. 3A chapter 11
(priority classes 11.8.3.1, EOI 11.8.5, the timer 11.5.4, IPIs 11.6), the 82093AA
datasheet (redirection entries, remote IRR), the HPET specification 1.0a (2.3.9
comparators, periodic mode)."""
from __future__ import annotations

from unikernel_sim.devices.hpet import Hpet
from unikernel_sim.devices.io_apic import IoApic
from unikernel_sim.devices.local_apic import LocalApic, divide_shift

EOI, TPR, PPR, SVR, ESR, ICR_LOW, ICR_HIGH = 0x0B0, 0x080, 0x0A0, 0x0F0, 0x280, 0x300, 0x310
LVT_TIMER, INITIAL, CURRENT, DIVIDE, LVT_ERROR = 0x320, 0x380, 0x390, 0x3E0, 0x370
IRR, ISR = 0x200, 0x100


class Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def make_lapic():
    clock, eois = Clock(), []
    return LocalApic(clock, on_level_eoi=eois.append), clock, eois


def test_divide_configuration_encodings():
    """SDM figure 11-10: 000 -> 2, 001 -> 4, 010 -> 8, 011 -> 16, 100x -> 32.. 128, 1011 -> 1."""
    assert [1 << divide_shift(v) for v in (0b0000, 0b0001, 0b0010, 0b0011, 0b1000, 0b1001, 0b1010, 0b1011)] == \
        [2, 4, 8, 16, 32, 64, 128, 1]


def test_priority_classes_gate_delivery_and_eoi_clears_the_highest_in_service():
    lapic, _, _ = make_lapic()
    lapic.accept(0x41)
    lapic.accept(0x52)
    assert lapic.acknowledge() == 0x52                 # the higher class first
    assert lapic.mmio_read(PPR, 4) == 0x50             # PPR = the in-service class
    assert not lapic.interrupt_pending                 # 0x41's class (4) is not above 5
    lapic.mmio_write(EOI, 4, 0)
    assert lapic.mmio_read(ISR + 0x20, 4) == 0         # 0x52 left the ISR (bits 32-63 register)
    assert lapic.acknowledge() == 0x41
    lapic.mmio_write(EOI, 4, 0)
    lapic.mmio_write(TPR, 4, 0x60)
    lapic.accept(0x61)
    assert lapic.acknowledge() is None                 # class 6 is not above the TPR's 6
    lapic.mmio_write(TPR, 4, 0x50)
    assert lapic.acknowledge() == 0x61


def test_level_triggered_eoi_is_broadcast_with_its_vector():
    lapic, _, eois = make_lapic()
    lapic.accept(0x33, level_triggered=True)
    lapic.accept(0x34)
    assert lapic.acknowledge() == 0x34
    lapic.mmio_write(EOI, 4, 0)
    assert lapic.acknowledge() == 0x33
    lapic.mmio_write(EOI, 4, 0)
    assert eois == [0x33]


def test_software_disable_stops_delivery_but_not_the_8259_path():
    lapic, _, _ = make_lapic()
    lapic.accept(0x40)
    lapic.mmio_write(SVR, 4, 0xFF)                     # bit 8 clear
    assert not lapic.interrupt_pending and lapic.acknowledge() is None
    assert lapic.accepts_pic                           # LINT0 still ExtINT, as QEMU keeps it
    lapic.mmio_write(SVR, 4, 0x1FF)
    assert lapic.acknowledge() == 0x40


def test_illegal_vectors_and_registers_set_esr_and_raise_the_error_lvt():
    lapic, _, _ = make_lapic()
    lapic.mmio_write(LVT_ERROR, 4, 0xFE)               # unmasked, vector 0xFE
    lapic.accept(0x05)                                 # vectors 0-15 are illegal to receive
    assert lapic.mmio_read(ESR, 4) & 0x40
    lapic.mmio_read(0x010, 4)                          # a reserved offset
    assert lapic.mmio_read(ESR, 4) & 0x80
    assert lapic.acknowledge() == 0xFE
    lapic.mmio_write(ESR, 4, 0)
    assert lapic.mmio_read(ESR, 4) == 0


def test_self_ipis_by_shorthand_and_destination():
    lapic, _, _ = make_lapic()
    lapic.mmio_write(ICR_LOW, 4, (1 << 18) | 0x44)      # shorthand self
    lapic.mmio_write(ICR_HIGH, 4, 0)
    lapic.mmio_write(ICR_LOW, 4, 0x45)                  # physical destination 0 = this APIC
    lapic.mmio_write(ICR_HIGH, 4, 5 << 24)
    lapic.mmio_write(ICR_LOW, 4, 0x46)                  # physical destination 5: nobody
    lapic.mmio_write(ICR_LOW, 4, (3 << 18) | 0x47)      # all excluding self
    lapic.mmio_write(ICR_LOW, 4, (1 << 18) | (5 << 8))  # INIT to self: ignored, counted
    assert lapic.acknowledge() == 0x45
    assert lapic.acknowledge() is None                 # 0x44 is in 0x45's class: after the EOI
    lapic.mmio_write(EOI, 4, 0)
    assert lapic.acknowledge() == 0x44 and lapic.acknowledge() is None
    assert lapic.ignored_ipis == 1
    assert lapic.mmio_read(ICR_LOW, 4) & (1 << 12) == 0  # delivery status idle


def test_timer_one_shot_and_periodic_counts():
    """Counts at 1 GHz / divide; a period is initial + 1 ticks (QEMU)."""
    lapic, clock, _ = make_lapic()
    lapic.mmio_write(DIVIDE, 4, 0b0011)                # 16: one tick per 16 ns
    lapic.mmio_write(LVT_TIMER, 4, 0x40)               # one-shot, unmasked
    lapic.mmio_write(INITIAL, 4, 1000)
    clock.ns = 16 * 400
    assert lapic.mmio_read(CURRENT, 4) == 600
    assert lapic.next_event_ns() == 16 * 1001
    clock.ns = 16 * 1001
    lapic.advance(clock.ns)
    assert lapic.acknowledge() == 0x40 and lapic.mmio_read(CURRENT, 4) == 0
    assert lapic.next_event_ns() is None
    lapic.mmio_write(LVT_TIMER, 4, 0x41 | (1 << 17))    # periodic
    lapic.mmio_write(INITIAL, 4, 99)
    start = clock.ns
    clock.ns = start + 16 * 100 * 3 + 16 * 10
    lapic.advance(clock.ns)
    assert lapic.mmio_read(CURRENT, 4) == 99 - 10
    assert lapic.next_event_ns() == start + 16 * 100 * 4


def test_io_apic_level_pin_waits_for_eoi_and_edges_latch_while_masked():
    lapic, _, _ = make_lapic()
    ioapic = IoApic(lapic)
    lapic.on_level_eoi = ioapic.end_of_interrupt

    def write_entry(pin: int, low: int, high: int = 0) -> None:
        ioapic.mmio_write(0x00, 4, 0x10 + 2 * pin + 1)
        ioapic.mmio_write(0x10, 4, high)
        ioapic.mmio_write(0x00, 4, 0x10 + 2 * pin)
        ioapic.mmio_write(0x10, 4, low)

    write_entry(4, 0x8000 | 0x34)                      # level, vector 0x34, physical dest 0
    ioapic.set_line(4, True)
    assert lapic.acknowledge() == 0x34
    ioapic.mmio_write(0x00, 4, 0x18)
    assert ioapic.mmio_read(0x10, 4) & (1 << 14)       # remote IRR
    lapic.mmio_write(EOI, 4, 0)                        # line still high: delivered again
    assert lapic.acknowledge() == 0x34
    ioapic.set_line(4, False)
    lapic.mmio_write(EOI, 4, 0)
    assert lapic.acknowledge() is None
    ioapic.set_line(2, True)                           # pin 2 masked (power-on): latched
    ioapic.set_line(2, False)
    assert lapic.acknowledge() is None
    write_entry(2, 0x30)                               # unmask: the latched edge arrives
    assert lapic.acknowledge() == 0x30


def test_hpet_periodic_comparator_and_legacy_replacement():
    clock = Clock()
    lines = []
    hpet = Hpet(clock, set_isa_irq=lambda irq, level: lines.append(("isa", irq, level)),
                set_ioapic_pin=lambda pin, level: lines.append(("pin", pin, level)))
    assert hpet.mmio_read(0x000, 4) == 0x8086A201 and hpet.mmio_read(0x004, 4) == 10_000_000
    # T0: interrupt enabled, periodic, VAL_SET, 32-bit mode (as Linux programs it: a low-half
    # write leaves the comparator's power-on high half of all ones in 64-bit mode)
    hpet.mmio_write(0x100, 4, (1 << 2) | (1 << 3) | (1 << 6) | (1 << 8))
    hpet.mmio_write(0x108, 4, 1000)                     # comparator 1000 (10 us), and with it the period
    hpet.mmio_write(0x010, 4, 0b11)                     # enable + legacy replacement
    assert hpet.legacy_replacement
    assert hpet.next_event_ns() == 10_000
    clock.ns = 10_000
    hpet.advance(clock.ns)
    assert ("isa", 0, True) in lines and hpet.mmio_read(0x108, 4) == 2000
    clock.ns = 35_000                                   # 3.5 periods later: one edge, comparator ahead
    lines.clear()
    hpet.advance(clock.ns)
    assert lines == [("isa", 0, True), ("isa", 0, False)] and hpet.mmio_read(0x108, 4) == 4000
    assert hpet.mmio_read(0x0F0, 4) == 3500
