"""Intel 8254 programmable interval timer and PC system control port B (0x61).

The counters are not stepped: each channel remembers when it was loaded, and
its count and output at any virtual time are computed from the elapsed input
clocks (1.193182 MHz), so reading the counter costs nothing while the guest
runs. Channel 0 drives IRQ 0; channel 2's gate is port 0x61 bit 0 and its
output shows in port 0x61 bit 5, which is how kernels calibrate the TSC.

Register table:

  0x40-0x42  counters 0-2: read/write the count (LSB, MSB or LSB then MSB)
  0x43       control word: bits 7-6 SC (11 = read-back), 5-4 RW (00 = latch count,
             01 LSB, 10 MSB, 11 LSB then MSB), 3-1 mode, 0 BCD
             read-back: bit 5 = 0 latch count, bit 4 = 0 latch status, bits 3-1 counters
  0x61       bit 0 gate 2, bit 1 speaker data, bit 4 refresh toggle (read),
             bit 5 OUT2 (read)

Modes (8254 datasheet, "Modes of Operation"): 0 interrupt on terminal count,
1 hardware one-shot, 2 rate generator, 3 square wave, 4 software strobe,
5 hardware strobe; 6 and 7 alias 2 and 3.
"""
from __future__ import annotations

from typing import Callable

from unikernel_sim.devices.device import Device, PortRange, Stateful

PIT_HZ = 1_193_182
NS_PER_SECOND = 1_000_000_000
CHANNEL_PORTS = (0x40, 0x41, 0x42)
CONTROL_PORT = 0x43
PORT_B = 0x61
RW_LATCH, RW_LSB, RW_MSB, RW_WORD = 0, 1, 2, 3
STATUS_OUTPUT = 0x80
STATUS_NULL_COUNT = 0x40
REFRESH_PERIOD_NS = 15_085          # port 0x61 bit 4 toggles every 15.085 us
PORT_B_GATE2 = 0x01
PORT_B_SPEAKER = 0x02
PORT_B_REFRESH = 0x10
PORT_B_OUT2 = 0x20


def ticks_at(ns: int) -> int:
    """Input clocks elapsed in ns nanoseconds."""
    return ns * PIT_HZ // NS_PER_SECOND


def ns_of_tick(ticks: int) -> int:
    """The first nanosecond at which ticks input clocks have elapsed."""
    return -(-ticks * NS_PER_SECOND // PIT_HZ)


def _from_bcd(value: int) -> int:
    return sum(((value >> (4 * i)) & 0xF) * 10 ** i for i in range(4))


def _to_bcd(value: int) -> int:
    return sum(((value // 10 ** i) % 10) << (4 * i) for i in range(4))


class PitChannel(Stateful):
    saved_fields = ("mode", "rw", "bcd", "reload", "loaded_at", "gate", "paused_ticks", "write_low", "latched",
                    "status_latched", "read_high_next", "null_count", "output_initial")

    def __init__(self, index: int, gate: bool) -> None:
        self.index = index
        self.mode = 0
        self.rw = RW_WORD
        self.bcd = False
        self.reload = 0               # the programmed count (0 = 65536 / 10000 BCD)
        self.loaded_at: int | None = None   # virtual ns when counting (re)started
        self.gate = gate
        self.paused_ticks = 0         # mode 0/4 with gate low: ticks counted before the pause
        self.write_low: int | None = None   # first byte of an LSB-then-MSB write
        self.latched: list[int] = []  # bytes still to read from a count latch
        self.status_latched: int | None = None
        self.read_high_next = False
        self.null_count = True
        self.output_initial = False

    # --- arithmetic over virtual time ----------------------------------------------
    @property
    def period(self) -> int:
        if self.bcd:
            return _from_bcd(self.reload) or 10_000
        return self.reload or 0x10000

    def elapsed(self, now: int) -> int | None:
        if self.loaded_at is None:
            return None
        if not self.gate and self.mode in (0, 2, 3, 4):
            return self.paused_ticks if self.mode in (0, 4) else None
        return self.paused_ticks + ticks_at(now - self.loaded_at)

    def count(self, now: int) -> int:
        """The value the counting element holds at now (what a latch captures)."""
        ticks = self.elapsed(now)
        n = self.period
        if ticks is None:
            return self.reload & 0xFFFF
        if self.mode in (2, 6):
            value = n - (ticks % n)
        elif self.mode in (3, 7):
            half = n // 2 if n % 2 == 0 else (n + 1) // 2
            position = ticks % n
            value = (n - 2 * position) if position < half else (n - 2 * (position - half))
            value = max(value, 2) if n > 1 else value
        else:                                  # 0, 1, 4, 5: count down and wrap
            value = (n - ticks) % (10_000 if self.bcd else 0x10000)
        value &= 0xFFFF
        return _to_bcd(value % 10_000) if self.bcd else value

    def output(self, now: int) -> bool:
        ticks = self.elapsed(now)
        n = self.period
        if self.loaded_at is None:
            return self.output_initial
        if self.mode in (2, 6, 3, 7) and not self.gate:
            return True
        if ticks is None:
            return self.output_initial
        if self.mode == 0:
            return ticks >= n
        if self.mode in (2, 6):
            return ticks % n != n - 1
        if self.mode in (3, 7):
            high = (n + 1) // 2
            return ticks % n < high
        if self.mode == 4:
            return ticks != n
        return True

    def output_steady_until(self, now: int) -> int | None | bool:
        """Until when output() keeps the value it has at now, with no write in between:
        the first ns at which it may change, None if never, False if not worked out (the
        periodic modes, and mode 4's one-tick strobe, change too often to be worth it)."""
        if self.loaded_at is None or self.mode in (1, 5):
            return None
        if not self.gate:                      # modes 0/4 hold their count, 2/3 hold high
            return None
        if self.mode != 0:
            return False
        ticks = self.elapsed(now)
        if ticks is None or ticks >= self.period:
            return None                        # terminal count passed: high until a write
        return self.next_rising_edge(now)

    def rising_edges(self, start: int, end: int) -> int:
        """Number of low-to-high output transitions in (start, end] (ns)."""
        if self.loaded_at is None or not self.gate:
            return 0
        t0, t1 = self.elapsed(start), self.elapsed(end)
        if t0 is None or t1 is None or t1 <= t0:
            return 0
        n = self.period
        if self.mode == 0:
            return 1 if t0 < n <= t1 else 0
        if self.mode in (2, 6, 3, 7):
            # A period starts (output rises) at ticks n, 2n, ...
            return t1 // n - t0 // n
        return 0

    def next_rising_edge(self, now: int) -> int | None:
        """Virtual ns of the next rising edge after now, or None."""
        if self.loaded_at is None or not self.gate:
            return None
        ticks = self.elapsed(now)
        if ticks is None:
            return None
        n = self.period
        if self.mode == 0:
            if ticks >= n:
                return None
            target = n
        elif self.mode in (2, 6, 3, 7):
            target = (ticks // n + 1) * n
        else:
            return None
        return self.loaded_at + ns_of_tick(target - self.paused_ticks)

    # --- programming -------------------------------------------------------------
    def set_mode(self, rw: int, mode: int, bcd: bool) -> None:
        self.rw, self.mode, self.bcd = rw, mode, bcd
        self.loaded_at = None
        self.paused_ticks = 0
        self.write_low = None
        self.read_high_next = False
        self.null_count = True
        self.output_initial = mode != 0           # mode 0 output starts low, others high

    def write_count(self, value: int, now: int) -> bool:
        """One byte written to the counter port; True when a full count is loaded."""
        if self.rw == RW_LSB:
            self.reload = value
        elif self.rw == RW_MSB:
            self.reload = value << 8
        elif self.write_low is None:
            self.write_low = value
            if self.mode == 0:                    # writing the first byte stops mode 0
                self.loaded_at = None
                self.output_initial = False
            return False
        else:
            self.reload = self.write_low | (value << 8)
            self.write_low = None
        if self.mode in (2, 3, 6, 7) and self.loaded_at is not None and self.gate:
            # New count takes effect at the end of the current period (datasheet).
            self.loaded_at = self.next_rising_edge(now) or now
            self.paused_ticks = 0
        else:
            self.loaded_at = now
            self.paused_ticks = 0
        self.null_count = False
        return True

    def latch_count(self, now: int) -> None:
        if self.latched:
            return                                # a latch is held until read
        value = self.count(now)
        if self.rw == RW_LSB:
            self.latched = [value & 0xFF]
        elif self.rw == RW_MSB:
            self.latched = [value >> 8]
        else:
            self.latched = [value & 0xFF, value >> 8]

    def latch_status(self, now: int) -> None:
        if self.status_latched is None:
            self.status_latched = ((STATUS_OUTPUT if self.output(now) else 0)
                                   | (STATUS_NULL_COUNT if self.null_count else 0)
                                   | (self.rw << 4) | (self.mode << 1) | int(self.bcd))

    def read(self, now: int) -> int:
        if self.status_latched is not None:
            value, self.status_latched = self.status_latched, None
            return value
        if self.latched:
            return self.latched.pop(0)
        value = self.count(now)
        if self.rw == RW_LSB:
            return value & 0xFF
        if self.rw == RW_MSB:
            return value >> 8
        high = self.read_high_next
        self.read_high_next = not high
        return value >> 8 if high else value & 0xFF

    def set_gate(self, level: bool, now: int) -> None:
        if level == self.gate:
            return
        if self.loaded_at is not None:
            if not level and self.mode in (0, 4):
                self.paused_ticks = self.elapsed(now) or 0
            elif level and self.mode in (0, 4):
                self.loaded_at = now              # resume counting from the paused ticks
            elif level:                           # rising gate restarts modes 1, 2, 3, 5
                self.loaded_at = now
                self.paused_ticks = 0
        self.gate = level


def _power_on_channels() -> list[PitChannel]:
    """Channels 0 and 1 have their gates tied high on a PC; channel 2's is port 0x61 bit 0."""
    return [PitChannel(0, gate=True), PitChannel(1, gate=True), PitChannel(2, gate=False)]


class Pit8254(Device):
    """Three channels; channel 0's output edges are reported through irq0(). Also
    system control port B (0x61): channel 2's gate and output, the speaker data
    bit and the refresh toggle, which is how kernels calibrate the TSC."""

    name = "i8254"
    ports = (PortRange(CHANNEL_PORTS[0], 4), PortRange(PORT_B))
    irq_lines = (0,)
    interrupt_only_events = True
    saved_fields = ("channels", "_accounted_until", "port_b")

    def __init__(self, now: Callable[[], int], irq0: Callable[[], None] | None = None) -> None:
        self.now = now
        self.irq0 = irq0 or (lambda: None)
        self.channels = _power_on_channels()
        self.on_reprogram: Callable[[], None] = lambda: None
        self._accounted_until = 0
        self.port_b = 0                           # port 0x61 bits 0-3 as written
        # Told at each port 0x61 read what such a read returns, the refresh bit aside, from
        # when until when (virtual ns; None: for ever), and told "nothing" (value None)
        # after every change: the C port path serves the reads in between
        # (cpu/fast_ports.py), a calibration loop's thousands of them.
        self.port_b_path: Callable[[int | None, int, int | None], None] = lambda value, since, until: None

    def reset(self) -> None:
        self.channels = _power_on_channels()
        self.port_b = 0
        self.power_on_state()
        self.port_b_path(None, 0, None)

    def after_load(self) -> None:
        self.port_b_path(None, 0, None)              # the state changed under what was published

    def power_on_state(self) -> None:
        """What a PC BIOS leaves: channel 0 in mode 3 with count 0 (65536), ~18.2 Hz."""
        channel = self.channels[0]
        channel.set_mode(RW_WORD, 3, False)
        channel.reload = 0
        channel.loaded_at = self.now()
        channel.null_count = False
        self._accounted_until = channel.loaded_at

    # --- time ------------------------------------------------------------------------
    def next_event_ns(self) -> int | None:
        return self.channels[0].next_rising_edge(max(self._accounted_until, 0))

    def advance(self, now: int) -> int:
        """Account channel 0 edges up to now; raises IRQ 0 once if any. Returns the edge count."""
        edges = self.channels[0].rising_edges(self._accounted_until, now)
        self._accounted_until = max(self._accounted_until, now)
        if edges:
            self.irq0()
        return edges

    # --- I/O ------------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if port == PORT_B:
            return self._read_port_b()
        if port == CONTROL_PORT:
            return 0xFF                           # the control register is write-only
        return self.channels[port - CHANNEL_PORTS[0]].read(self.now())

    def io_write(self, port: int, size: int, value: int) -> None:
        value &= 0xFF
        now = self.now()
        self.port_b_path(None, 0, None)              # gate, mode and count all shape port 0x61
        if port == PORT_B:
            self.port_b = value & 0x0F
            self.channels[2].set_gate(bool(value & PORT_B_GATE2), now)
            return
        if port == CONTROL_PORT:
            self._control(value, now)
            return
        index = port - CHANNEL_PORTS[0]
        if index == 0:
            self.advance(now)
        if self.channels[index].write_count(value, now) and index == 0:
            self._accounted_until = now
            self.on_reprogram()

    def _control(self, value: int, now: int) -> None:
        select = value >> 6
        if select == 3:                           # read-back command
            for index in range(3):
                if value & (2 << index):
                    if not value & 0x20:
                        self.channels[index].latch_count(now)
                    if not value & 0x10:
                        self.channels[index].latch_status(now)
            return
        channel = self.channels[select]
        rw = (value >> 4) & 3
        if rw == RW_LATCH:
            channel.latch_count(now)
            return
        mode = (value >> 1) & 7
        if select == 0:
            self.advance(now)
        channel.set_mode(rw, mode, bool(value & 1))
        if select == 0:
            self.on_reprogram()

    def describe_state(self) -> str:
        parts = [f"ch{c.index} mode {c.mode} count {c.period} gate {int(c.gate)}"
                 + ("" if c.loaded_at is not None else " (not counting)") for c in self.channels]
        return "i8254: " + "; ".join(parts) + f"; port 0x61={self.port_b:#04x}"

    def _read_port_b(self) -> int:
        now = self.now()
        value = self.port_b & (PORT_B_GATE2 | PORT_B_SPEAKER)
        if self.channels[2].output(now):
            value |= PORT_B_OUT2
        until = self.channels[2].output_steady_until(now)
        if until is not False:
            self.port_b_path(value, now, until)
        if (now // REFRESH_PERIOD_NS) & 1:
            value |= PORT_B_REFRESH
        return value
