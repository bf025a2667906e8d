"""8254 PIT against the datasheet: modes 0, 2 and 3, access modes, the latch
and read-back commands, channel 2 gated by port 0x61, and the rate of IRQ 0.
Time is driven by hand (ns) so every expectation is exact arithmetic."""
from __future__ import annotations

import pytest

from unikernel_sim.devices.i8254 import PIT_HZ, Pit8254, ns_of_tick

NS = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns

    def ticks(self, n: int) -> None:
        """Advance to exactly n more input clocks."""
        from unikernel_sim.devices.i8254 import ticks_at

        now_ticks = ticks_at(self.ns)
        self.ns = ns_of_tick(now_ticks + n)


def make():
    clock = Clock()
    irqs = []
    pit = Pit8254(clock, irq0=lambda: irqs.append(clock.ns))
    return pit, clock, irqs


def w(pit, port, value):
    pit.io_write(port, 1, value)


def r(pit, port):
    return pit.io_read(port, 1)


def read_word(pit, channel):
    return r(pit, 0x40 + channel) | (r(pit, 0x40 + channel) << 8)


def test_mode2_counts_down_and_reloads():
    pit, clock, _ = make()
    w(pit, 0x43, 0x34)                 # ch0, lo/hi, mode 2
    w(pit, 0x40, 100)
    w(pit, 0x40, 0)
    assert read_word(pit, 0) == 100
    clock.ticks(30)
    assert read_word(pit, 0) == 70
    clock.ticks(70)
    assert read_word(pit, 0) == 100    # reloaded at the end of the period


def test_mode2_irq_rate_is_pit_hz_over_count():
    pit, clock, irqs = make()
    count = 1193                       # ~1000 Hz
    w(pit, 0x43, 0x34)
    w(pit, 0x40, count & 0xFF)
    w(pit, 0x40, count >> 8)
    edges = 0
    for _ in range(1000):
        nxt = pit.next_event_ns()
        clock.ns = nxt
        edges += pit.advance(clock.ns)
    assert edges == 1000
    elapsed_s = clock.ns / NS
    assert elapsed_s == pytest.approx(1000 * count / PIT_HZ, rel=1e-9)


def test_mode3_square_wave_output_and_count_by_two():
    pit, clock, _ = make()
    w(pit, 0x43, 0x36)                 # ch0, lo/hi, mode 3
    w(pit, 0x40, 10)
    w(pit, 0x40, 0)
    ch = pit.channels[0]
    assert ch.output(clock.ns) is True
    clock.ticks(2)
    assert read_word(pit, 0) == 6      # decrements by two
    clock.ticks(3)
    assert ch.output(clock.ns) is False   # second half of the period
    clock.ticks(5)
    assert ch.output(clock.ns) is True


def test_mode0_interrupt_on_terminal_count_once():
    pit, clock, irqs = make()
    w(pit, 0x43, 0x30)                 # ch0, lo/hi, mode 0
    w(pit, 0x40, 50)
    assert pit.channels[0].output(clock.ns) is False
    w(pit, 0x40, 0)
    clock.ticks(49)
    assert pit.advance(clock.ns) == 0
    clock.ticks(1)
    assert pit.advance(clock.ns) == 1
    assert pit.channels[0].output(clock.ns) is True
    clock.ticks(1000)
    assert pit.advance(clock.ns) == 0 and pit.next_event_ns() is None


def test_lobyte_and_hibyte_only_access():
    pit, clock, _ = make()
    w(pit, 0x43, 0x14)                 # ch0, LSB only, mode 2
    w(pit, 0x40, 200)
    assert r(pit, 0x40) == 200
    w(pit, 0x43, 0x24)                 # MSB only
    w(pit, 0x40, 0x02)
    assert pit.channels[0].period == 0x200
    assert r(pit, 0x40) == 0x02


def test_latch_command_freezes_the_value_until_read():
    pit, clock, _ = make()
    w(pit, 0x43, 0x34)
    w(pit, 0x40, 0x00)
    w(pit, 0x40, 0x10)                 # 4096
    clock.ticks(96)
    w(pit, 0x43, 0x00)                 # latch channel 0
    clock.ticks(1000)
    assert read_word(pit, 0) == 4000
    assert read_word(pit, 0) == 3000   # live again


def test_read_back_status():
    pit, clock, _ = make()
    w(pit, 0x43, 0xB0)                 # ch2, lo/hi, mode 0
    w(pit, 0x43, 0xE8)                 # read-back: status only, channel 2
    status = r(pit, 0x42)
    assert status == 0x40 | 0x30 | 0x00   # null count, lo/hi, mode 0, output low


def test_channel2_gate_and_out2_in_port_61_calibration_loop():
    """The loop most kernels use: gate ch2 on, mode 0 count N, poll port 0x61 bit 5."""
    pit, clock, _ = make()
    port_b = pit                        # port 0x61 belongs to the PIT device
    port_b.io_write(0x61, 1, 0x01)     # gate 2 high, speaker off
    w(pit, 0x43, 0xB0)
    count = 11932                      # 10 ms
    w(pit, 0x42, count & 0xFF)
    w(pit, 0x42, count >> 8)
    assert port_b.io_read(0x61, 1) & 0x20 == 0
    clock.ticks(count - 1)
    assert port_b.io_read(0x61, 1) & 0x20 == 0
    clock.ticks(1)
    assert port_b.io_read(0x61, 1) & 0x20
    assert clock.ns == pytest.approx(10e6, rel=1e-3)


def test_channel2_gate_low_pauses_mode0():
    pit, clock, _ = make()
    port_b = pit                        # port 0x61 belongs to the PIT device
    port_b.io_write(0x61, 1, 0x01)
    w(pit, 0x43, 0xB0)
    w(pit, 0x42, 100)
    w(pit, 0x42, 0)
    clock.ticks(40)
    port_b.io_write(0x61, 1, 0x00)     # gate low: counting stops
    clock.ticks(500)
    assert read_word(pit, 2) == 60
    port_b.io_write(0x61, 1, 0x01)
    clock.ticks(10)
    assert read_word(pit, 2) == 50


def test_power_on_state_is_18_2_hz():
    pit, clock, irqs = make()
    pit.power_on_state()
    first = pit.next_event_ns()
    assert first == ns_of_tick(65536)
    assert NS / first == pytest.approx(18.2065, rel=1e-4)


def test_bcd_counting():
    pit, clock, _ = make()
    w(pit, 0x43, 0x35)                 # ch0, lo/hi, mode 2, BCD
    w(pit, 0x40, 0x00)
    w(pit, 0x40, 0x10)                 # 1000 in BCD
    clock.ticks(1)
    assert read_word(pit, 0) == 0x0999
