"""The HPET's main counter read without Python (cpu/_hpet_counter.c): the HPET's page is
mapped to C callbacks that answer MAIN_CNT from the virtual clock and hand every other
access to the device.

The device stays the only owner of the counter's state: it publishes (running, the value
at start, the start time) here whenever a write, a reset or a restore changes them
(Hpet.publish), and the C read computes exactly what Hpet.counter would. Reads are
Python's again while the host watches every access (--trace mmio)."""
from __future__ import annotations

import ctypes
from typing import Callable

from unikernel_sim.cpu.native import check_mirror, library
from unikernel_sim.cpu.vclock import VClockState, VirtualClock
from unikernel_sim.devices.hpet import HPET_BASE
from unikernel_sim.devices.mmio import MmioBus


class HpetCounterState(ctypes.Structure):
    """Mirror of struct hpet_counter (_hpet_counter.c)."""

    _fields_ = [
        ("clock", ctypes.POINTER(VClockState)),
        ("served", ctypes.c_uint64),
        ("running", ctypes.c_uint64),
        ("counter_at_start", ctypes.c_uint64),
        ("start_ns", ctypes.c_int64),
        ("reads", ctypes.c_uint64),
        ("slow_read", ctypes.c_void_p),
        ("slow_write", ctypes.c_void_p),
    ]


check_mirror(HpetCounterState, "_hpet_counter.c's struct hpet_counter", "hpet_counter_struct_size")
_READ = ctypes.cast(library.hpet_counter_read, ctypes.c_void_p).value
_WRITE = ctypes.cast(library.hpet_counter_write, ctypes.c_void_p).value


class HpetCounterPath:
    def __init__(self, clock: VirtualClock, mmio: MmioBus, guard: Callable) -> None:
        """Map the HPET's page to the C callbacks; guard(function, *args) runs the
        device's handlers where an exception cannot cross the C frame."""
        s = self.state = HpetCounterState()
        s.clock = clock._pointer
        s.served = int(mmio.tracer is None)

        def set_slow(read, write) -> None:
            s.slow_read = ctypes.cast(read, ctypes.c_void_p).value
            s.slow_write = ctypes.cast(write, ctypes.c_void_p).value

        mmio.serve_natively(HPET_BASE, _READ, _WRITE, ctypes.addressof(s), set_slow, guard)
        mmio.tracing_changed.append(lambda tracing: setattr(s, "served", int(not tracing)))

    def publish(self, running: bool, counter_at_start: int, start_ns: int) -> None:
        """What the counter is computed from now (Hpet.publish)."""
        s = self.state
        s.running, s.counter_at_start, s.start_ns = int(running), counter_at_start, start_ns

    @property
    def reads(self) -> int:
        """Counter reads answered in C (statistics)."""
        return self.state.reads
