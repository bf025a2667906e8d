"""The MC146818's interrupts (devices/cmos_rtc.py): register C's flags and IRQ 8.

Oracles: the datasheet's rate table (period = 2^(rate - 1) cycles of 32.768 kHz, rates 1
and 2 as 8 and 9) computed here with fractions; Python's datetime for the second
boundaries and the alarm's matches; QEMU 7.2's choices where the datasheet leaves room
(tests/data/grub_reference/rtc_qemu-7.2_pc.txt: no PF while PIE is off, UF at every
update whatever UIE says, an interrupt enabled over a set flag raised at once), and, in
the guest tests, the guest's own count of handler entries."""
from __future__ import annotations

import datetime as dt
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from interrupts.harness import COUNTER_SLOT, IdtGuest, compute_loop, run_protected_to_exit
from unikernel_sim.devices.cmos_rtc import (
    B_24_HOUR, B_AIE, B_BINARY, B_PIE, B_UIE, C_AF, C_IRQF, C_PF, C_UF, DATA_PORT, INDEX_PORT, REG_A, REG_B, REG_C,
    REG_HOURS_ALARM, REG_MINUTES_ALARM, REG_SECONDS_ALARM, CmosRtc,
)
from unikernel_sim.machine import Machine
from unikernel_sim.run import boot

DATA = Path(__file__).resolve().parents[1] / "data" / "grub_reference"
SECOND = 1_000_000_000
DIVIDER_NORMAL = 0x20


class Rig:
    """An RTC on a settable clock, its IRQ 8 level recorded."""

    def __init__(self, start: dt.datetime = dt.datetime(2026, 1, 1)) -> None:
        self.t = 0
        self.levels: list[bool] = []
        self.rtc = CmosRtc(lambda: self.t, start=start, irq=self.levels.append)

    def write(self, index: int, value: int) -> None:
        self.rtc.io_write(INDEX_PORT, 1, index)
        self.rtc.io_write(DATA_PORT, 1, value)

    def read(self, index: int) -> int:
        self.rtc.io_write(INDEX_PORT, 1, index)
        return self.rtc.io_read(DATA_PORT, 1)

    @property
    def line(self) -> bool:
        return bool(self.levels) and self.levels[-1]


def tick_times(rate: int, until_ns: int) -> list[int]:
    """The datasheet's periodic ticks up to until_ns: multiples of the period from time 0,
    each at the first whole ns at or after it."""
    period = Fraction(1 << ((rate + 7 if rate <= 2 else rate) - 1), 32_768) * SECOND
    times, k = [], 1
    while (k * period) <= until_ns:
        times.append(-(-k * period.numerator // period.denominator))
        k += 1
    return times


@settings(max_examples=60, deadline=None)
@given(rate=st.integers(1, 15), data=st.data())
def test_pf_appears_exactly_when_a_periodic_tick_has_passed(rate, data):
    """Reading C at random times: PF is set exactly when a tick of the datasheet's
    schedule fell since the previous read (and the read clears it)."""
    rig = Rig()
    rig.write(REG_A, DIVIDER_NORMAL | rate)
    rig.write(REG_B, B_24_HOUR | B_BINARY | B_PIE)
    horizon = 40 * SECOND // 2 ** max(0, 15 - rate)          # a handful of periods at any rate
    reads = sorted(data.draw(st.lists(st.integers(1, horizon), min_size=1, max_size=30, unique=True)))
    ticks = tick_times(rate, horizon)
    previous = 0
    for t in reads:
        rig.t = t
        expected = any(previous < tick <= t for tick in ticks)
        assert bool(rig.read(REG_C) & C_PF) == expected, (rate, previous, t)
        previous = t


def test_no_pf_while_pie_is_off_and_none_at_rate_0():
    rig = Rig()
    rig.t = SECOND // 10
    assert rig.read(REG_C) & C_PF == 0                          # rate 6, PIE off (QEMU)
    rig.write(REG_A, DIVIDER_NORMAL)
    rig.write(REG_B, B_24_HOUR | B_PIE)
    rig.t += SECOND // 10
    assert rig.read(REG_C) == 0
    assert rig.levels == []


def test_irq_8_rises_once_and_stays_high_until_c_is_read():
    rig = Rig()
    rig.write(REG_B, B_24_HOUR | B_PIE)                         # rate 6: 1024 Hz
    rig.t = 10_000_000
    rig.rtc.advance(rig.t)
    assert rig.levels == [True]
    rig.t = 20_000_000
    rig.rtc.advance(rig.t)
    assert rig.levels == [True]                                 # no second edge
    assert rig.rtc.next_event_ns() is None                      # and nothing to stop the guest for
    assert rig.read(REG_C) == C_IRQF | C_PF
    assert rig.levels == [True, False] and rig.read(REG_C) == 0
    assert rig.rtc.next_event_ns() == tick_times(6, 21_000_000)[-1]   # the next tick after 20 ms


def test_uf_at_every_update_whatever_uie_says_and_uie_over_it_raises_at_once():
    start = dt.datetime(2026, 3, 1, 12, 0, 0, 250_000)         # updates at 0.75 s, 1.75 s... of virtual time
    rig = Rig(start)
    rig.t = 740_000_000
    assert rig.read(REG_C) == 0
    rig.t = 760_000_000
    assert rig.read(REG_C) == C_UF                              # no IRQF: UIE is off
    assert rig.levels == []
    rig.t = 1_800_000_000
    rig.write(REG_B, B_24_HOUR | B_UIE)                         # UF already set: raised at once
    assert rig.levels == [True]
    assert rig.read(REG_C) == C_IRQF | C_UF
    assert rig.rtc.next_event_ns() == 2_750_000_000
    rig.write(REG_B, B_24_HOUR)
    assert rig.levels == [True, False]


@pytest.mark.parametrize("binary", [True, False])
def test_the_alarm_matches_the_time_in_the_clocks_format_and_dont_care_bytes_match_anything(binary):
    """AF at the update whose new time equals the alarm (BCD or binary as register B says);
    0xC0-0xFF in a byte matches any value. A long gap still finds a match inside it."""
    start = dt.datetime(2026, 5, 5, 23, 59, 50)
    rig = Rig(start)
    fmt = B_24_HOUR | (B_BINARY if binary else 0)

    def code(value: int) -> int:
        return value if binary else (value // 10) << 4 | value % 10

    rig.write(REG_B, fmt | B_AIE)
    rig.write(REG_SECONDS_ALARM, code(5))
    rig.write(REG_MINUTES_ALARM, code(0))
    rig.write(REG_HOURS_ALARM, code(0))                         # 00:00:05, the next day
    for second in range(1, 15):
        rig.t = second * SECOND
        c = rig.read(REG_C)
        now = start + dt.timedelta(seconds=second)
        assert bool(c & C_AF) == ((now.hour, now.minute, now.second) == (0, 0, 5)), now
        assert c & C_UF
    rig.write(REG_HOURS_ALARM, 0xC0)                            # any hour: 00:00:05 or 01:00:05...
    rig.t += 3 * 3600 * SECOND                                  # 00:00:04 -> 03:00:04 in one read
    assert rig.read(REG_C) & C_AF
    rig.t += 2 * SECOND                                         # -> 03:00:06: 03:00:05 in it
    assert rig.read(REG_C) & C_AF
    rig.t += 10 * SECOND                                        # -> 03:00:16: no :00:05 in it
    assert not rig.read(REG_C) & C_AF


def test_the_state_survives_a_snapshot_and_the_line_with_it():
    machine = Machine(16, deterministic=True)             # its clock starts on a whole second
    rtc = machine.board.rtc
    rtc.io_write(INDEX_PORT, 1, REG_B)
    rtc.io_write(DATA_PORT, 1, B_24_HOUR | B_PIE)
    snapshot = machine.snapshot()
    rtc.advance(rtc.accounted_ns + 10_000_000)
    assert rtc.line and rtc.ram[REG_C] == C_IRQF | C_PF
    machine.restore(snapshot)
    assert not rtc.line and rtc.ram[REG_C] == 0


# --- in a guest ------------------------------------------------------------------------
RTC_VECTOR_8259 = 0x70                  # IRQ 8 at the BIOS slave base
IRQ8_ENABLE = "in al, 0x21\nand al, 0xfb\nout 0x21, al\nin al, 0xa1\nand al, 0xfe\nout 0xa1, al"
RTC_PIE_1024 = "mov al, 0x0b\nout 0x70, al\nmov al, 0x42\nout 0x71, al"
READ_C_AND_EOI = """
    push eax
    inc dword ptr [{counter:#x}]
    mov al, 0x0c
    out 0x70, al
    in al, 0x71
    mov al, 0x20
    out 0xa0, al
    out 0x20, al
    pop eax
    iretd
""".format(counter=COUNTER_SLOT)
TEN_MS_OF_WORK = 2_500_000             # iterations of compute_loop: 10 M instructions = 10 ms


def rtc_guest(tmp_path, handler: str, *, first: str = "", work: int = 10 * TEN_MS_OF_WORK) -> Machine:
    """A guest that unmasks IRQ 8 (after `first`), turns on the 1024 Hz periodic interrupt
    and computes; run deterministically to its exit."""
    guest = IdtGuest(before=first + "\n" + IRQ8_ENABLE + "\n" + RTC_PIE_1024, fault="nop", flags=0x202,
                     after=compute_loop(work), handlers={RTC_VECTOR_8259: handler})
    return run_protected_to_exit(guest, tmp_path)


def test_a_guest_that_reads_c_takes_every_periodic_interrupt(tmp_path):
    machine = rtc_guest(tmp_path, READ_C_AND_EOI)
    ticks = len(tick_times(6, machine.clock.now_ns()))
    assert ticks > 50
    assert ticks - 2 <= machine.ram.u32(COUNTER_SLOT) <= ticks


def test_a_guest_that_never_reads_c_gets_one_interrupt(tmp_path):
    handler = READ_C_AND_EOI.replace("mov al, 0x0c\n    out 0x70, al\n    in al, 0x71\n", "")
    machine = rtc_guest(tmp_path, handler)
    assert machine.clock.now_ns() > 50_000_000 and machine.ram.u32(COUNTER_SLOT) == 1


def test_the_hpets_legacy_replacement_takes_irq_8_from_the_rtc(tmp_path):
    """Legacy replacement routes HPET timer 1 to IRQ 8 instead of the RTC (HPET 1.0a 2.3.9.2.2)."""
    legacy = "mov dword ptr [0xfed00010], 3"          # ENABLE_CNF | LEG_RT_CNF, timer 1 idle
    machine = rtc_guest(tmp_path, READ_C_AND_EOI, first=legacy, work=5 * TEN_MS_OF_WORK)
    assert machine.ram.u32(COUNTER_SLOT) == 0 and machine.board.rtc.line


@pytest.mark.slow
def test_the_flags_and_irq_8_are_qemus():
    """probe_rtc.c booted here prints what GRUB 2.06 + QEMU 7.2 printed (fast mode: the
    probe waits ~6 s of host time for updates and an alarm; counts that depend on the
    host print as range verdicts)."""
    recorded = (DATA / "rtc_qemu-7.2_pc.txt").read_text()
    result = boot(str(DATA / "probe_rtc.elf"), timeout=120)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    assert result.serial == recorded
