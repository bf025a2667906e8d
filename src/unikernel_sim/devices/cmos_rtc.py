"""MC146818 real-time clock and CMOS RAM at ports 0x70 (index) / 0x71 (data).

The time is a configurable start (fixed in deterministic mode, so runs repeat)
plus the machine's virtual time. Register B selects BCD or binary and 12/24 h
as on the MC146818A; register D reports valid RAM. The BIOS memory-size bytes
are filled in as a PC BIOS would.

  0x00 seconds  0x02 minutes  0x04 hours  0x06 weekday  0x07 day  0x08 month
  0x09 year     0x32 century
  0x0A status A  bit 7 UIP (update in progress)
  0x0B status B  bit 1 24-hour, bit 2 DM (binary), bit 4 UIE, bit 5 AIE, bit 6 PIE
  0x0C status C  interrupt flags (read clears)
  0x0D status D  bit 7 VRT (RAM and time valid)
  0x15/0x16 base memory KiB, 0x17/0x18 and 0x30/0x31 extended memory KiB (to 64 MiB),
  0x34/0x35 memory above 16 MiB in 64 KiB blocks
"""
from __future__ import annotations

import datetime as dt
from typing import Callable

from unikernel_sim.devices.device import Device, PortRange

INDEX_PORT = 0x70
DATA_PORT = 0x71
NMI_DISABLE = 0x80
REG_SECONDS, REG_MINUTES, REG_HOURS = 0x00, 0x02, 0x04
REG_WEEKDAY, REG_DAY, REG_MONTH, REG_YEAR = 0x06, 0x07, 0x08, 0x09
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
REG_CENTURY = 0x32
B_24_HOUR = 0x02
B_BINARY = 0x04
B_SET = 0x80
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
    saved_fields = ("offset_seconds", "index", "nmi_disabled", "ram")

    def __init__(self, now: Callable[[], int], start: dt.datetime = DEFAULT_START, ram_bytes: int = 0) -> None:
        self.now = now
        self.start = start
        self.offset_seconds = 0           # guest writes to the time registers move the clock
        self.index = 0
        self.nmi_disabled = False
        self.ram = bytearray(128)
        self.ram[REG_A] = A_DEFAULT
        self.ram[REG_B] = B_24_HOUR
        self.ram[REG_D] = D_VALID
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
        return self.start + dt.timedelta(seconds=self.offset_seconds, microseconds=self.now() // 1000)

    def _time_register(self, index: int) -> int:
        t = self.current_time()
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

    def io_read(self, port: int, size: int) -> int:
        if port == INDEX_PORT:
            return 0xFF                    # the index register is write-only on a PC
        index = self.index
        if index in (REG_SECONDS, REG_MINUTES, REG_HOURS, REG_WEEKDAY, REG_DAY, REG_MONTH, REG_YEAR,
                     REG_CENTURY):
            return self._time_register(index)
        if index == REG_A:
            within_second = (self.now() // 1000) % 1_000_000 * 1000
            uip = A_UIP if within_second >= 1_000_000_000 - UIP_WINDOW_NS else 0
            return (self.ram[REG_A] & 0x7F) | uip
        if index == REG_C:
            value, self.ram[REG_C] = self.ram[REG_C], 0
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
        else:
            self.ram[index] = value

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
