"""Memory-mapped device windows: physical address ranges served by a device
instead of RAM.

Each window is mapped with Unicorn's mmio_map, so an access outside every
window costs nothing (no memory hook), and an access inside one becomes a
call to the device's mmio_read/mmio_write with the offset from the window's
base. Unicorn delivers a 64-bit access as two 32-bit ones, low half first
(docs/unicorn-quirks.md, Q18): devices see the accesses the bus makes, as a
device on a 32-bit bus would.
"""
from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Callable

from unikernel_sim.devices.device import Device, MmioWindow

if TYPE_CHECKING:
    from unicorn import Uc

PAGE = 0x1000

_SLOW_READ = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint, ctypes.c_void_p)
_SLOW_WRITE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint, ctypes.c_uint64, ctypes.c_void_p)
MmioTracer = Callable[[str, int, int, int], None]
"""Called as (kind, physical address, size, value) for every access, when tracing."""


class MmioBus:
    def __init__(self, uc: "Uc", ram_size: int) -> None:
        self.uc = uc
        self.ram_size = ram_size
        self.windows: list[tuple[MmioWindow, Device]] = []
        self._tracer: MmioTracer | None = None
        self.tracing_changed: list[Callable[[bool], None]] = []   # C paths that must let Python see all
        self.in_access = False      # a device is serving a guest load or store right now (Q19)
        self.before_access: Callable[[], None] = lambda: None   # device state to the Python models first
        self._handlers: dict[int, tuple[Callable, Callable]] = {}   # window base -> (read, write)
        self._native: list = []                                   # C callbacks' Python halves, kept alive

    @property
    def tracer(self) -> MmioTracer | None:
        return self._tracer

    @tracer.setter
    def tracer(self, tracer: MmioTracer | None) -> None:
        """Called for every access from now on (None: no longer); a C path that answers
        accesses itself (the HPET counter's) hands them to Python meanwhile."""
        self._tracer = tracer
        for listener in self.tracing_changed:
            listener(tracer is not None)

    def map(self, window: MmioWindow, device: Device) -> None:
        """Serve window's addresses from device; ValueError if it overlaps RAM or another window."""
        if window.base % PAGE or window.size % PAGE or window.size <= 0:
            raise ValueError(f"MMIO window {window.base:#x}+{window.size:#x} of {device.name} is not whole pages")
        end = window.base + window.size
        if window.base < self.ram_size:
            raise ValueError(f"MMIO window {window.base:#x} of {device.name} overlaps guest RAM")
        for other, owner in self.windows:
            if window.base < other.base + other.size and other.base < end:
                raise ValueError(f"MMIO window {window.base:#x} of {device.name} overlaps {owner.name}'s")
        base = window.base

        def read(uc, offset: int, size: int, _user) -> int:
            self.before_access()
            self.in_access = True
            try:
                value = device.mmio_read(offset, size) & ((1 << (8 * size)) - 1)
            finally:
                self.in_access = False
            if self._tracer:
                self._tracer("read", base + offset, size, value)
            return value

        def write(uc, offset: int, size: int, value: int, _user) -> None:
            self.before_access()
            if self._tracer:
                self._tracer("write", base + offset, size, value)
            self.in_access = True
            try:
                device.mmio_write(offset, size, value & ((1 << (8 * size)) - 1))
            finally:
                self.in_access = False

        self.uc.mmio_map(window.base, window.size, read, None, write, None)
        self.windows.append((window, device))
        self._handlers[window.base] = (read, write)

    def serve_natively(self, base: int, read_c: int, write_c: int, user: int,
                       set_slow: Callable[[object, object], None], guard: Callable) -> None:
        """Map the window at base to C callbacks (read_c, write_c: addresses of
        uc_cb_mmio_read_t / uc_cb_mmio_write_t functions, user their user data) that serve
        what they can and call the device's own handlers for the rest: set_slow receives
        those as C function pointers. guard(function, *args) runs a handler where an
        exception cannot cross the C frame (it is kept and re-raised by the run loop)."""
        from unicorn.unicorn_py3.unicorn import uclib

        window = next(w for w, _device in self.windows if w.base == base)
        read, write = self._handlers[base]
        slow_read = _SLOW_READ(lambda _uc, offset, size, _user: guard(read, None, offset, size, None) or 0)
        slow_write = _SLOW_WRITE(lambda _uc, offset, size, value, _user: guard(write, None, offset, size, value, None))
        self._native.append((slow_read, slow_write))
        set_slow(slow_read, slow_write)
        self.uc.mem_unmap(window.base, window.size)
        status = uclib.uc_mmio_map(self.uc._uch, window.base, window.size, read_c, user, write_c, user)
        if status:
            raise RuntimeError(f"uc_mmio_map of the window at {base:#x} failed with Unicorn error {status}")
