"""Interrupts from the modern PC's controllers through the guest's own IDT, in a
deterministic run so the virtual time at the end is the oracle for the rates:
the local APIC timer (1 GHz / divide, a period of initial count + 1 ticks), the
PIT routed through the I/O APIC with the 8259 masked (MADT: IRQ 0 on pin 2), and
the HPET's timer 0 taking IRQ 0 in legacy replacement mode (the PIT cut off)."""
from __future__ import annotations

from interrupts.harness import COUNTER_SLOT, IdtGuest, build_protected
from unikernel_sim.run import boot

LAPIC = 0xFEE00000
IOAPIC = 0xFEC00000
HPET = 0xFED00000
MARKER_SLOT = COUNTER_SLOT + 8
START_SLOT = COUNTER_SLOT + 16
TICKS = 10


def wait_for_ticks(ticks: int) -> str:
    return f"""
    wait:
        hlt
        cmp dword ptr [{COUNTER_SLOT:#x}], {ticks}
        jb wait
        mov al, 0
        out 0xf4, al
    """


def counting_handler(eoi: str) -> str:
    return f"inc dword ptr [{COUNTER_SLOT:#x}]\n{eoi}\niretd"


LAPIC_EOI = f"mov dword ptr [{LAPIC + 0xB0:#x}], 0"
PIC_EOI = "push eax\nmov al, 0x20\nout 0x20, al\npop eax"


def run(guest: IdtGuest, tmp_path):
    image, _ = build_protected(guest)
    path = tmp_path / "apic_guest.bin"
    path.write_bytes(image)
    result = boot(str(path), deterministic=True, max_instructions=50_000_000)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    return result


def elapsed_ms(result) -> float:
    return result.machine.clock.now_ns() / 1e6


def test_the_local_apic_timer_ticks_at_1_ghz_over_the_divider(tmp_path):
    """Divide by 16, initial count 62,499: a period of 62,500 x 16 ns = 1 ms."""
    guest = IdtGuest(
        before=f"""
            mov dword ptr [{LAPIC + 0x3E0:#x}], 3
            mov dword ptr [{LAPIC + 0x320:#x}], 0x20040
            mov dword ptr [{LAPIC + 0x380:#x}], 62499
        """,
        fault="nop", flags=0x202, after=wait_for_ticks(TICKS),
        handlers={0x40: counting_handler(LAPIC_EOI)})
    result = run(guest, tmp_path)
    assert result.machine.ram.u32(COUNTER_SLOT) == TICKS
    assert TICKS <= elapsed_ms(result) < TICKS + 0.5
    assert result.machine.board.lapic.isr == 0                    # every EOI arrived


def test_the_pit_through_the_io_apic_with_the_8259_masked(tmp_path):
    """Pin 2 -> vector 0x30 (edge, physical destination 0); the 8259's IRQ 0 vector (0x08)
    must never run: each interrupt is delivered once, by the path the kernel chose."""
    pit_1khz = 1193
    guest = IdtGuest(
        before=f"""
            mov dword ptr [{IOAPIC:#x}], 0x15
            mov dword ptr [{IOAPIC + 0x10:#x}], 0
            mov dword ptr [{IOAPIC:#x}], 0x14
            mov dword ptr [{IOAPIC + 0x10:#x}], 0x30
            mov al, 0x34
            out 0x43, al
            mov al, {pit_1khz & 0xFF}
            out 0x40, al
            mov al, {pit_1khz >> 8}
            out 0x40, al
        """,
        fault="nop", flags=0x202, after=wait_for_ticks(TICKS),
        handlers={0x30: counting_handler(LAPIC_EOI),
                  0x08: f"mov dword ptr [{MARKER_SLOT:#x}], 1\n{PIC_EOI}\niretd"})
    result = run(guest, tmp_path)
    assert result.machine.ram.u32(MARKER_SLOT) == 0
    period_ms = pit_1khz / 1_193_182 * 1000
    assert TICKS - 1 <= elapsed_ms(result) / period_ms < TICKS + 1


def test_hpet_legacy_replacement_takes_irq0_from_the_pit(tmp_path):
    """Timer 0, periodic, 32-bit mode, 100,000 ticks of 10 ns = 1 ms, legacy routing:
    IRQ 0 at the 8259 (vector 0x08) at the HPET's rate, not the PIT's 18.2 Hz."""
    guest = IdtGuest(
        before=f"""
            mov dword ptr [{HPET + 0x100:#x}], 0x14c
            mov dword ptr [{HPET + 0x108:#x}], 100000
            mov dword ptr [{HPET + 0x108:#x}], 100000
            mov dword ptr [{HPET + 0x10:#x}], 3
            mov al, 0xfe
            out 0x21, al
        """,
        fault="nop", flags=0x202, after=wait_for_ticks(TICKS),
        handlers={0x08: counting_handler(PIC_EOI)})
    result = run(guest, tmp_path)
    assert TICKS - 1 <= elapsed_ms(result) < TICKS + 1
