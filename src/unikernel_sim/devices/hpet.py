"""The High Precision Event Timer (IA-PC HPET specification 1.0a) at 0xFED00000, as
QEMU 7.2's `pc` has it: a 64-bit main counter at 100 MHz and three comparators.

Register table (64-bit registers; the guest may access each 32-bit half):

  0x000 GCAP_ID  (RO) 0x009896808086A201: period 10,000,000 fs (32-63), vendor 0x8086
                 (16-31), legacy replacement capable (15), 64-bit counter (13), three
                 timers (NUM_TIM_CAP 2, bits 8-12), revision 1
  0x010 GEN_CONF bit 0 ENABLE_CNF (the counter runs), bit 1 LEG_RT_CNF (timer 0 drives
                 IRQ 0 and I/O APIC pin 2 instead of the PIT, timer 1 IRQ 8 instead of the RTC)
  0x020 GINTR_STA bit n: timer n's level interrupt is active (write 1 to clear)
  0x0F0 MAIN_CNT the counter (writable while halted)
  0x100 + 0x20n  Tn_CONF: bit 1 level, 2 interrupt enable, 3 periodic, 4 periodic capable
                 (RO), 5 64-bit capable (RO), 6 VAL_SET, 8 32-bit mode, 9-13 I/O APIC pin,
                 14 FSB delivery (not offered); bits 32-63 the pins it may use (RO: pin 2,
                 as recorded)
  0x108 + 0x20n  Tn_COMPARATOR: fires when the counter reaches it; in periodic mode a
                 write sets the period (and with VAL_SET the comparator too), as QEMU does
  0x110 + 0x20n  Tn_FSB_ROUTE (stored; FSB delivery is not offered)

Power-on values as recorded after SeaBIOS: counter halted at 0, timers' configuration
0x30 (capabilities only), comparators all ones. Time is the machine's virtual clock,
so a deterministic run sees the same counts every time.
"""
from __future__ import annotations

from typing import Callable

from unikernel_sim.devices.device import Device, MmioWindow

HPET_BASE = 0xFED00000
WINDOW = 0x1000
CAPABILITIES, CONFIGURATION, INTERRUPT_STATUS, MAIN_COUNTER = 0x000, 0x010, 0x020, 0x0F0
TIMER_BASE, TIMER_STRIDE, TIMERS = 0x100, 0x20, 3
TIMER_CONFIG, TIMER_COMPARATOR, TIMER_FSB = 0x00, 0x08, 0x10
CAPABILITIES_VALUE = 0x009896808086A201
PERIOD_FS = 10_000_000                         # femtoseconds per tick: 100 MHz
FS_PER_NS = 1_000_000
NS_PER_TICK = PERIOD_FS // FS_PER_NS           # 10: a tick is a whole number of ns
ENABLE = 1 << 0
LEGACY_ROUTE = 1 << 1
LEVEL = 1 << 1
INTERRUPT_ENABLE = 1 << 2
PERIODIC = 1 << 3
PERIODIC_CAPABLE = 1 << 4
SIZE_64_CAPABLE = 1 << 5
VALUE_SET = 1 << 6
MODE_32 = 1 << 8
ROUTE_SHIFT, ROUTE_MASK = 9, 0x1F
TIMER_CONFIG_WRITABLE = LEVEL | INTERRUPT_ENABLE | PERIODIC | VALUE_SET | MODE_32 | (ROUTE_MASK << ROUTE_SHIFT)
ROUTE_CAPABILITY = 0x00000004 << 32            # recorded: each timer may use I/O APIC pin 2
TIMER_POWER_ON = PERIODIC_CAPABLE | SIZE_64_CAPABLE | ROUTE_CAPABILITY
ALL_ONES = (1 << 64) - 1
LOW_WORD = 0xFFFFFFFF
LEGACY_LINES = {0: 0, 1: 8}                    # timer -> ISA IRQ under LEG_RT_CNF


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def _merge(old: int, offset: int, size: int, value: int) -> int:
    """A 64-bit register after a write of size bytes at byte offset 0 or 4."""
    shift = 8 * (offset & 7)
    mask = ((1 << (8 * size)) - 1) << shift
    return (old & ~mask) | ((value << shift) & mask)


class Hpet(Device):
    name = "hpet"
    mmio = (MmioWindow(HPET_BASE, WINDOW),)
    saved_fields = ("config", "status", "counter_at_start", "start_ns", "timer_config", "comparator", "period",
                    "fsb_route", "match", "wrap_pending", "_lines")

    def __init__(self, now_ns: Callable[[], int], set_isa_irq: Callable[[int, bool], None],
                 set_ioapic_pin: Callable[[int, bool], None], on_reprogram: Callable[[], None] = lambda: None) -> None:
        self.now_ns = now_ns
        self.set_isa_irq = set_isa_irq                  # legacy replacement: the PIC and the I/O APIC
        self.set_ioapic_pin = set_ioapic_pin            # otherwise the pin Tn_INT_ROUTE_CNF names
        self.on_reprogram = on_reprogram
        self.counter_view: Callable[[bool, int, int], None] = lambda running, at_start, start_ns: None
        self.reset()

    def reset(self) -> None:
        self.config = self.status = 0
        self.counter_at_start = 0          # the counter's value when it last started (or its frozen value)
        self.start_ns = 0
        self.timer_config = [TIMER_POWER_ON] * TIMERS
        self.comparator = [ALL_ONES] * TIMERS
        self.period = [0] * TIMERS
        self.fsb_route = [0] * TIMERS
        self.match: list[int | None] = [None] * TIMERS   # the counter value each timer fires at
        self.wrap_pending = [False] * TIMERS     # one-shot 32-bit: that match is the counter's wrap
        self._lines = 0                    # timers whose level interrupt is asserted
        self.publish()

    def publish(self) -> None:
        """Tell the C counter reads (cpu/hpet_counter.py) what counter() is computed from."""
        self.counter_view(bool(self.config & ENABLE), self.counter_at_start, self.start_ns)

    def after_load(self) -> None:
        self.publish()

    @property
    def legacy_replacement(self) -> bool:
        """Timer 0 and 1 have taken over IRQ 0 and IRQ 8 (the PIT and RTC lose them)."""
        return bool(self.config & ENABLE and self.config & LEGACY_ROUTE)

    # --- the counter --------------------------------------------------------------------
    def counter(self, now_ns: int) -> int:
        if not self.config & ENABLE:
            return self.counter_at_start
        return (self.counter_at_start + (now_ns - self.start_ns) * FS_PER_NS // PERIOD_FS) & ALL_ONES

    def time_of(self, count: int) -> int:
        """The virtual ns at which the running counter reaches count (ceiling)."""
        ticks = count - self.counter_at_start
        return self.start_ns + -(-ticks * PERIOD_FS // FS_PER_NS)

    # --- time -----------------------------------------------------------------------------
    def _arm(self, timer: int, now_ns: int) -> None:
        """Compute when timer n next fires, as QEMU's hpet_set_timer: a comparator at or
        behind the counter (a signed 64-bit difference, or 32-bit in 32-bit mode) fires
        one tick from now; a one-shot timer fires once per programming, and a one-shot
        32-bit one also when the counter's low word reaches 0xFFFFFFFF first (HPET 1.0a
        2.3.9.2.2; recorded: tests/data/grub_reference/hpet_oneshot_qemu-7.2_pc.txt)."""
        config = self.timer_config[timer]
        self.wrap_pending[timer] = False
        if not (self.config & ENABLE and config & INTERRUPT_ENABLE):
            self.match[timer] = None
            return
        now_count = self.counter(now_ns)
        difference = self._ticks_to_comparator(timer, now_count)
        if config & MODE_32 and not config & PERIODIC:
            to_wrap = LOW_WORD - (now_count & LOW_WORD)
            if to_wrap < difference:
                difference, self.wrap_pending[timer] = to_wrap, True
        self.match[timer] = now_count + difference

    def _ticks_to_comparator(self, timer: int, now_count: int) -> int:
        """Ticks from now_count to the comparator, at least 1 (a signed 64-bit difference,
        or 32-bit in 32-bit mode: one at or behind the counter fires on the next tick)."""
        bits = 32 if self.timer_config[timer] & MODE_32 else 64
        return max(_signed((self.comparator[timer] - now_count) & ((1 << bits) - 1), bits), 1)

    def next_event_ns(self) -> int | None:
        times = [self.time_of(match) for match in self.match if match is not None]
        return min(times) if times else None

    def advance(self, now_ns: int) -> None:
        if not self.config & ENABLE:
            return
        now_count = self.counter(now_ns)
        for timer in range(TIMERS):
            match = self.match[timer]
            if match is None or match > now_count:
                continue
            config = self.timer_config[timer]
            if config & PERIODIC and self.period[timer]:
                # The comparator as a counter value: in 32-bit mode only the low words are
                # compared (QEMU's hpet_time_after), so past 2^32 the period still steps it
                # (recorded: tests/data/grub_reference/hpet32_qemu-7.2_pc.txt).
                bits = 32 if config & MODE_32 else 64
                mask = (1 << bits) - 1
                cmp = now_count + _signed((self.comparator[timer] - now_count) & mask, bits)
                while cmp <= now_count:
                    cmp += self.period[timer]
                self.comparator[timer] = cmp & mask
                self.match[timer] = cmp
            elif self.wrap_pending[timer]:          # the wrap's interrupt: the match's is still to come
                self.wrap_pending[timer] = False
                self.match[timer] = now_count + self._ticks_to_comparator(timer, now_count)
            else:
                self.match[timer] = None
            self._fire(timer)

    def move_periodic_match(self, timer: int, periods: int) -> None:
        """Timer n's match and comparator `periods` periods on: the timer tick in C
        (cpu/tick_path.py) fired that many matches of a periodic timer whose comparator
        was its match, as advance() would have."""
        self.match[timer] += periods * self.period[timer]
        self.comparator[timer] = self.match[timer] & (LOW_WORD if self.timer_config[timer] & MODE_32 else ALL_ONES)

    def _fire(self, timer: int) -> None:
        if self.timer_config[timer] & LEVEL:
            self.status |= 1 << timer
            self._drive(timer, True)
        else:
            self._drive(timer, True)
            self._drive(timer, False)

    def _drive(self, timer: int, level: bool) -> None:
        bit = 1 << timer
        self._lines = self._lines | bit if level else self._lines & ~bit
        if self.legacy_replacement and timer in LEGACY_LINES:
            self.set_isa_irq(LEGACY_LINES[timer], level)
        else:
            self.set_ioapic_pin((self.timer_config[timer] >> ROUTE_SHIFT) & ROUTE_MASK, level)

    # --- guest accesses -------------------------------------------------------------------
    def mmio_read(self, offset: int, size: int) -> int:
        register, half = offset & ~7, offset & 7
        value = self._read(register)
        return (value >> (8 * half)) & ((1 << (8 * size)) - 1)

    def _read(self, register: int) -> int:
        if register == CAPABILITIES:
            return CAPABILITIES_VALUE
        if register == CONFIGURATION:
            return self.config
        if register == INTERRUPT_STATUS:
            return self.status
        if register == MAIN_COUNTER:
            return self.counter(self.now_ns())
        timer, field = self._timer_field(register)
        if timer is None:
            return 0
        if field == TIMER_CONFIG:
            return self.timer_config[timer]
        if field == TIMER_COMPARATOR:
            return self.comparator[timer]
        return self.fsb_route[timer]

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        register, half = offset & ~7, offset & 7
        now = self.now_ns()
        self.advance(now)
        if register == CONFIGURATION:
            self._write_configuration(_merge(self.config, half, size, value) & (ENABLE | LEGACY_ROUTE), now)
        elif register == INTERRUPT_STATUS:
            cleared = _merge(0, half, size, value) & self.status
            self.status &= ~cleared
            for timer in range(TIMERS):
                if cleared >> timer & 1:
                    self._drive(timer, False)
        elif register == MAIN_COUNTER and not self.config & ENABLE:
            self.counter_at_start = _merge(self.counter_at_start, half, size, value)
        else:
            timer, field = self._timer_field(register)
            if timer is not None:
                self._write_timer(timer, field, half, size, value)
                self._arm(timer, now)
        if register in (CONFIGURATION, MAIN_COUNTER):
            for timer in range(TIMERS):
                self._arm(timer, now)
            self.publish()
        self.on_reprogram()

    def _write_configuration(self, new: int, now: int) -> None:
        if new & ENABLE and not self.config & ENABLE:
            self.start_ns = now                            # the counter resumes from its value
        elif not new & ENABLE and self.config & ENABLE:
            self.counter_at_start = self.counter(now)      # the counter stops where it is
        for timer in range(TIMERS):                        # lines move with LEG_RT_CNF: drop them first
            if self._lines >> timer & 1:
                self._drive(timer, False)
        self.config = new
        for timer in range(TIMERS):
            if self.status >> timer & 1:
                self._drive(timer, True)

    def _write_timer(self, timer: int, field: int, half: int, size: int, value: int) -> None:
        if field == TIMER_CONFIG:
            old = self.timer_config[timer]
            new = _merge(old, half, size, value) & TIMER_CONFIG_WRITABLE
            self.timer_config[timer] = (old & ~TIMER_CONFIG_WRITABLE) | new
            if not new & LEVEL and self.status >> timer & 1:     # back to edge: drop the level
                self.status &= ~(1 << timer)
                self._drive(timer, False)
        elif field == TIMER_COMPARATOR:
            # As QEMU 7.2: the comparator takes the write unless the timer is periodic
            # without VAL_SET; a periodic timer's period takes a low-half write always, a
            # high-half write only when the comparator did not (recorded:
            # tests/data/grub_reference/hpet_period_qemu-7.2_pc.txt).
            config = self.timer_config[timer]
            sets_comparator = not config & PERIODIC or config & VALUE_SET
            if sets_comparator:
                written = _merge(self.comparator[timer], half, size, value)
                self.comparator[timer] = written & 0xFFFFFFFF if config & MODE_32 else written
            if config & PERIODIC and (half == 0 or not sets_comparator):
                self.period[timer] = _merge(self.period[timer], half, size, value) & (
                    0x7FFFFFFF if config & MODE_32 else ALL_ONES >> 1)
            self.timer_config[timer] &= ~VALUE_SET
        else:
            self.fsb_route[timer] = _merge(self.fsb_route[timer], half, size, value)

    @staticmethod
    def _timer_field(register: int) -> tuple[int | None, int]:
        if TIMER_BASE <= register < TIMER_BASE + TIMERS * TIMER_STRIDE:
            timer, field = divmod(register - TIMER_BASE, TIMER_STRIDE)
            return timer, field
        return None, 0

    def describe_state(self) -> str:
        running = "running" if self.config & ENABLE else "halted"
        timers = ", ".join(f"T{n} cfg={self.timer_config[n] & 0xFFFF:#x} cmp={self.comparator[n]:#x}"
                           for n in range(TIMERS))
        legacy = ", legacy replacement" if self.config & LEGACY_ROUTE else ""
        return f"{self.name}: {running}{legacy}, {timers}"
