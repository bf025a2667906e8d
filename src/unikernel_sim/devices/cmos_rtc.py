"""MC146818 real-time clock and CMOS RAM at ports 0x70 (index) / 0x71 (data), IRQ 8.

The time is a configurable start (fixed in deterministic mode, so runs repeat)
plus the machine's virtual time. Register B selects BCD or binary and 12/24 h
as on the MC146818A; register D reports valid RAM. The BIOS memory-size bytes
are filled in as a PC BIOS would.

  0x00 seconds  0x01 seconds alarm  0x02 minutes  0x03 minutes alarm  0x04 hours
  0x05 hours alarm  0x06 weekday  0x07 day  0x08 month  0x09 year  0x32 century
  0x0A status A  bit 7 UIP (update in progress), bits 3-0 the periodic rate
  0x0B status B  bit 1 24-hour, bit 2 DM (binary), bit 4 UIE, bit 5 AIE, bit 6 PIE
  0x0C status C  bit 7 IRQF, bit 6 PF, bit 5 AF, bit 4 UF (a read returns and clears them)
  0x0D status D  bit 7 VRT (RAM and time valid)
  0x15/0x16 base memory KiB, 0x17/0x18 and 0x30/0x31 extended memory KiB (to 64 MiB),
  0x34/0x35 memory above 16 MiB in 64 KiB blocks

Interrupts as QEMU 7.2 gives them (recorded: tests/data/grub_reference/rtc_qemu-7.2_pc.txt):
the periodic flag PF is set at the rate of register A's bits 3-0 (period 2^(rate-1)
cycles of the 32.768 kHz time base, rates 1 and 2 as 8 and 9; phase from virtual time 0)
only while PIE is on; UF at every update (each second) and AF at an update whose time
matches the alarm bytes (0xC0-0xFF: any) whatever UIE and AIE say. A flag whose enable
bit is set also sets IRQF and raises IRQ 8, which stays high until register C is read:
a guest that does not read C gets no second edge. Enabling an interrupt whose flag is
already set raises it at once; a write to B that leaves no enabled flag lowers it. Flags
are computed from time when C is read; the scheduler stops the guest only for an event
that will raise the line. Register A's divider bits and B's SET bit are stored but do
not stop the time base.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable

from unikernel_sim.devices.device import Device, PortRange

INDEX_PORT = 0x70
DATA_PORT = 0x71
NMI_DISABLE = 0x80
REG_SECONDS, REG_MINUTES, REG_HOURS = 0x00, 0x02, 0x04
REG_SECONDS_ALARM, REG_MINUTES_ALARM, REG_HOURS_ALARM = 0x01, 0x03, 0x05
REG_WEEKDAY, REG_DAY, REG_MONTH, REG_YEAR = 0x06, 0x07, 0x08, 0x09
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
REG_CENTURY = 0x32
B_24_HOUR = 0x02
B_BINARY = 0x04
B_UIE = 0x10                # update-ended interrupt enable
B_AIE = 0x20                # alarm interrupt enable
B_PIE = 0x40                # periodic interrupt enable
B_SET = 0x80
C_IRQF = 0x80               # an enabled flag is set: IRQ 8 asserted
C_PF = 0x40                 # periodic (the same bit as its enable in B)
C_AF = 0x20                 # alarm
C_UF = 0x10                 # update ended
C_FLAGS = C_PF | C_AF | C_UF
A_RATE = 0x0F
ALARM_DONT_CARE = 0xC0      # an alarm byte with both top bits set matches any value
TIME_BASE_HZ = 32_768
NS_PER_SECOND = 1_000_000_000
RTC_IRQ = 8
ALARM_SCAN_LIMIT = 86_400   # updates checked one by one for an alarm match (a day's worth)
D_VALID = 0x80
A_UIP = 0x80
A_DEFAULT = 0x26            # 32.768 kHz time base, 1024 Hz periodic rate
UIP_WINDOW_NS = 244_000     # UIP is set 244 us before each second's update
DEFAULT_START = dt.datetime(2026, 1, 1, 0, 0, 0)


def _bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def _unbcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0xF)


class CmosRtc(Device):
    name = "cmos-rtc"
    ports = (PortRange(INDEX_PORT, 2),)
    irq_lines = (RTC_IRQ,)
    interrupt_only_events = True        # the flags themselves are computed when C is read
    saved_fields = ("offset_seconds", "index", "nmi_disabled", "ram", "accounted_ns", "line")

    def __init__(self, now: Callable[[], int], start: dt.datetime = DEFAULT_START, ram_bytes: int = 0,
                 irq: Callable[[bool], None] = lambda level: None) -> None:
        self.now = now
        self.start = start
        self.irq = irq                    # IRQ 8 at a level (the board's wiring)
        self.offset_seconds = 0           # guest writes to the time registers move the clock
        self.index = 0
        self.nmi_disabled = False
        self.ram = bytearray(128)
        self.ram[REG_A] = A_DEFAULT
        self.ram[REG_B] = B_24_HOUR
        self.ram[REG_D] = D_VALID
        self.accounted_ns = 0             # the flags hold every event up to this virtual time
        self.line = False                 # IRQ 8's level
        self._quiet_until = 0             # no event before this virtual time (0: not known)
        self._fill_memory_size(ram_bytes)

    def _fill_memory_size(self, ram_bytes: int) -> None:
        base_kib = 640
        ext_kib = min(max(ram_bytes // 1024 - 1024, 0), 0xFFFF)
        above_16m = min(max((ram_bytes - (16 << 20)) // (64 << 10), 0), 0xFFFF)
        self.ram[0x15:0x17] = base_kib.to_bytes(2, "little")
        self.ram[0x17:0x19] = ext_kib.to_bytes(2, "little")
        self.ram[0x30:0x32] = ext_kib.to_bytes(2, "little")
        self.ram[0x34:0x36] = above_16m.to_bytes(2, "little")

    def current_time(self) -> dt.datetime:
        return self._time_at(self.now())

    def _time_at(self, now_ns: int) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.offset_seconds, microseconds=now_ns // 1000)

    def _time_register(self, index: int) -> int:
        return self._register_at(self.current_time(), index)

    def _register_at(self, t: dt.datetime, index: int) -> int:
        """A time register's value for time t in register B's format (BCD or binary, 12/24 h)."""
        binary = bool(self.ram[REG_B] & B_BINARY)
        hour = t.hour
        pm = False
        if not self.ram[REG_B] & B_24_HOUR:
            pm = hour >= 12
            hour = hour % 12 or 12
        values = {REG_SECONDS: t.second, REG_MINUTES: t.minute, REG_HOURS: hour,
                  REG_WEEKDAY: t.isoweekday() % 7 + 1, REG_DAY: t.day, REG_MONTH: t.month,
                  REG_YEAR: t.year % 100, REG_CENTURY: t.year // 100}
        value = values[index] if binary else _bcd(values[index])
        if index == REG_HOURS and pm:
            value |= 0x80
        return value

    # --- time: the update cycle and the periodic interrupt ---------------------------------
    def _second_phase_ns(self) -> int:
        """Where in a virtual second the clock's second boundaries fall (the start's fraction)."""
        return self.start.microsecond * 1000

    def _update_after(self, t: int) -> int:
        """Virtual ns of the first update (second boundary) after t."""
        phase = self._second_phase_ns()
        return ((t + phase) // NS_PER_SECOND + 1) * NS_PER_SECOND - phase

    def _periodic_clocks(self) -> int:
        """The periodic interrupt's period in cycles of the time base; 0: none (rate 0, or PIE off)."""
        rate = self.ram[REG_A] & A_RATE
        if not rate or not self.ram[REG_B] & B_PIE:
            return 0
        return 1 << ((rate + 7 if rate <= 2 else rate) - 1)

    def _periodic_after(self, t: int, clocks: int) -> int:
        """Virtual ns of the first periodic tick after t (ticks at multiples of the period)."""
        elapsed = t * TIME_BASE_HZ // NS_PER_SECOND
        tick = (elapsed // clocks + 1) * clocks
        return -(-tick * NS_PER_SECOND // TIME_BASE_HZ)

    def _alarm_matches(self, t: dt.datetime) -> bool:
        for alarm, index in ((REG_SECONDS_ALARM, REG_SECONDS), (REG_MINUTES_ALARM, REG_MINUTES),
                             (REG_HOURS_ALARM, REG_HOURS)):
            wanted = self.ram[alarm]
            if wanted & ALARM_DONT_CARE != ALARM_DONT_CARE and wanted != self._register_at(t, index):
                return False
        return True

    def _alarm_between(self, first_update: int, last_update: int) -> bool:
        """Whether an update in [first_update, last_update] (second boundaries) matches the alarm."""
        if all(self.ram[alarm] & ALARM_DONT_CARE == ALARM_DONT_CARE
               for alarm in (REG_SECONDS_ALARM, REG_MINUTES_ALARM, REG_HOURS_ALARM)):
            return True
        updates = (last_update - first_update) // NS_PER_SECOND + 1
        return any(self._alarm_matches(self._time_at(first_update + n * NS_PER_SECOND))
                   for n in range(min(updates, ALARM_SCAN_LIMIT)))

    def advance(self, now_ns: int) -> None:
        """Set the flags of every event in (accounted_ns, now_ns] and raise IRQ 8 for an
        enabled one (once: the line stays high until C is read). The board calls this every
        slice; between events it only moves accounted_ns."""
        if now_ns <= self.accounted_ns:
            return
        if now_ns < self._quiet_until:
            self.accounted_ns = now_ns
            return
        start, self.accounted_ns = self.accounted_ns, now_ns
        self._quiet_until = self._next_event_after(now_ns, updates=True)   # UF comes at every update
        flags = 0
        clocks = self._periodic_clocks()
        if clocks and self._periodic_after(start, clocks) <= now_ns:
            flags |= C_PF
        first_update = self._update_after(start)
        if first_update <= now_ns:
            flags |= C_UF
            last_update = self._update_after(now_ns - NS_PER_SECOND)      # the latest at or before now
            if self._alarm_between(first_update, last_update):
                flags |= C_AF
        if flags:
            self._set_flags(flags)

    def _next_event_after(self, t: int, *, updates: bool) -> int | None:
        """The first periodic tick after t (while PIE is on), or update if updates count."""
        clocks = self._periodic_clocks()
        times = [self._periodic_after(t, clocks)] if clocks else []
        if updates:
            times.append(self._update_after(t))
        return min(times, default=None)

    def after_load(self) -> None:
        self._quiet_until = 0

    def _set_flags(self, flags: int) -> None:
        self.ram[REG_C] |= flags
        if flags & self.ram[REG_B] & C_FLAGS:         # B's enables sit on C's flag bits
            self.ram[REG_C] |= C_IRQF
            self._drive(True)

    def _drive(self, level: bool) -> None:
        if level != self.line:
            self.line = level
            self.irq(level)

    def next_event_ns(self) -> int | None:
        """The next event that raises IRQ 8: none while the line is already high."""
        if self.line:
            return None
        return self._next_event_after(max(self.accounted_ns, self.now()),
                                      updates=bool(self.ram[REG_B] & (B_UIE | B_AIE)))

    # --- guest accesses ----------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if port == INDEX_PORT:
            return 0xFF                    # the index register is write-only on a PC
        index = self.index
        if index in (REG_SECONDS, REG_MINUTES, REG_HOURS, REG_WEEKDAY, REG_DAY, REG_MONTH, REG_YEAR,
                     REG_CENTURY):
            return self._time_register(index)
        if index == REG_A:
            within_second = (self.now() + self._second_phase_ns()) % NS_PER_SECOND
            uip = A_UIP if within_second >= NS_PER_SECOND - UIP_WINDOW_NS else 0
            return (self.ram[REG_A] & 0x7F) | uip
        if index == REG_C:
            self.advance(self.now())
            value, self.ram[REG_C] = self.ram[REG_C], 0
            if self.line:                  # a line that falls lets the next event raise it again
                self._drive(False)
                self.events_moved()
            return value
        return self.ram[index]

    def io_write(self, port: int, size: int, value: int) -> None:
        value &= 0xFF
        if port == INDEX_PORT:
            self.index = value & 0x7F
            self.nmi_disabled = bool(value & NMI_DISABLE)
            return
        index = self.index
        if index in (REG_SECONDS, REG_MINUTES, REG_HOURS, REG_DAY, REG_MONTH, REG_YEAR, REG_CENTURY):
            self._set_time_field(index, value)
        elif index in (REG_C, REG_D):
            return                          # read-only
        elif index in (REG_A, REG_B):
            self.advance(self.now())        # the events so far under the old rate and enables
            self.ram[index] = value & 0x7F if index == REG_A else value    # UIP is read-only
            self._quiet_until = 0                                          # the rate or PIE may have moved
            if index == REG_B:
                self._enables_changed()
            self.events_moved()
        else:
            self.ram[index] = value

    def _enables_changed(self) -> None:
        """An interrupt enabled while its flag is set is raised at once; with no enabled flag
        set, IRQF clears and the line falls."""
        if self.ram[REG_B] & self.ram[REG_C] & C_FLAGS:
            self.ram[REG_C] |= C_IRQF
            self._drive(True)
        else:
            self.ram[REG_C] &= ~C_IRQF & 0xFF
            self._drive(False)

    def _set_time_field(self, index: int, value: int) -> None:
        binary = bool(self.ram[REG_B] & B_BINARY)
        number = value if binary else _unbcd(value & 0x7F)
        t = self.current_time()
        fields = {"second": t.second, "minute": t.minute, "hour": t.hour, "day": t.day,
                  "month": t.month, "year": t.year}
        name = {REG_SECONDS: "second", REG_MINUTES: "minute", REG_HOURS: "hour", REG_DAY: "day",
                REG_MONTH: "month"}.get(index)
        if name:
            fields[name] = number
        elif index == REG_YEAR:
            fields["year"] = t.year // 100 * 100 + number
        else:
            fields["year"] = number * 100 + t.year % 100
        try:
            wanted = dt.datetime(**fields)
        except ValueError:
            return                          # an impossible date: real RTCs go haywire, we ignore it
        self.offset_seconds += int((wanted - t.replace(microsecond=0)).total_seconds())
